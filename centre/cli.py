"""The `centre` command line."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from centre import settings as settings_mod
from centre.topology import EUROPOL, MEMBER_STATES, STAGES

app = typer.Typer(
    help="The EU centre's report pipeline: intake, triage, routing to law enforcement.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
indicators_app = typer.Typer(
    help="Indicator banks (Art. 44): load, export, list, disable, enable and remove the hashes "
    "reports are matched against.", no_args_is_help=True, rich_markup_mode="markdown")
liaison_app = typer.Typer(help="A law-enforcement liaison's view: pull sealed cases.",
                          no_args_is_help=True, rich_markup_mode="markdown")
keys_app = typer.Typer(help="Keys: the centre's signing key, recipients' and providers' keys.",
                       no_args_is_help=True, rich_markup_mode="markdown")
db_app = typer.Typer(help="Database schema.", no_args_is_help=True,
                          rich_markup_mode="markdown")
app.add_typer(indicators_app, name="indicators")
app.add_typer(liaison_app, name="liaison")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
from victims.cli import victims_app  # noqa: E402  (a sub-app of its own package)

app.add_typer(victims_app, name="victims")
from complaints.cli import complaints_app  # noqa: E402

app.add_typer(complaints_app, name="complaints")
from centre.audit.cli import audit_app  # noqa: E402  (a sub-app of its own module)

app.add_typer(audit_app, name="audit")

err = Console(stderr=True)


def _record_staff_step(s: settings_mod.Settings, action: str, subject: str,
                       details: dict[str, object]) -> None:
    """An audit entry for a step a member of staff took through this command line."""
    import getpass

    from centre.audit import AuditEvent, AuditLog, staff_actor

    try:
        AuditLog(s).record([AuditEvent(actor=staff_actor(getpass.getuser()), action=action,
                                       subject=subject, discriminator=str(details),
                                       details=details)])
    except Exception as exc:  # the step is done; saying it is not recorded is the honest part
        err.print(f"[red]done, but not recorded in the audit trail: {exc}[/]")
        raise typer.Exit(1) from None


from centre.cli_errors import load_settings as _settings  # noqa: E402


@app.command()
def up() -> None:
    """Start the whole local stack in the foreground: broker (unless CENTRE_KAFKA_BOOTSTRAP is
    set), topics, database migrations, keys, every worker. Prints a line with 'ready' when it
    accepts reports; stops cleanly on Ctrl-C or SIGTERM."""
    from centre.stack import Stack, pids

    s = _settings()
    stack = Stack(s)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        stack.start()
    except Exception as exc:
        err.print(f"[red]could not start:[/] {exc}")
        raise typer.Exit(1) from None
    print(f"centre ready: bootstrap={s.bootstrap} home={s.home} "
          f"processes={json.dumps(pids(stack))}", flush=True)
    try:
        stop.wait()
    finally:
        print("stopping…", flush=True)
        stack.stop()
        print("stopped", flush=True)


@app.command()
def worker(stage: Annotated[str, typer.Argument(help=f"one of: {', '.join(STAGES)}")],
           loglevel: str = "warn") -> None:
    """Run one pipeline stage until stopped (CENTRE_RUNTIME: kafka or faust). `centre up`
    runs one per stage; run more, on other machines too, to share a stage's partitions."""
    from centre.runtime import run_worker

    logging.basicConfig(level=logging.WARNING)
    run_worker(_settings(), stage, loglevel)


@app.command()
def demo(reports: int = typer.Option(12, help="how many sample reports to push")) -> None:
    """Run the stack, push sample reports, and show what each liaison received."""
    from centre.demo import run_demo

    raise typer.Exit(run_demo(_settings(), reports))


@app.command()
def submit(
    files: Annotated[list[Path], typer.Argument(help="JSON object, JSON array or JSON lines")],
    sign_key: Annotated[Optional[Path], typer.Option(help="provider's Ed25519 private key "
                                                           "(PEM) to sign each report")] = None,
    raw: Annotated[bool, typer.Option(help="send each file's bytes unchanged as one message "
                                           "(to test rejections)")] = False,
) -> None:
    """Send reports to reports.intake; prints how many were sent."""
    from centre.submit import submit_files

    sent = submit_files(_settings(), files, sign_key=sign_key, raw=raw, errors=err)
    print(f"sent {sent} report(s) to {_settings().topic('reports.intake')}")


_BANK_HELP = "the bank: known_material, grooming or false_positive"


from centre.cli_errors import failed as _bank_failed  # noqa: E402


_SELECT_VALUE = "the entries with this hash value (any kind, unless --kind is given)"
_SELECT_SOURCE = "the entries that came from this source"
_SELECT_ID = "the entry with this id (as shown by `centre indicators list`)"
_SELECT_KIND = "only entries of this kind: sha256, md5 or pdq"


@indicators_app.command("import")
def indicators_import(
    file: Annotated[Path, typer.Argument(help="the file to load: JSON lines (one object per "
                                              "line) or CSV with a header row")],
    bank: Annotated[str, typer.Option(help=_BANK_HELP.replace("the bank", "the bank to "
                                                                          "load into"))],
    source: Annotated[Optional[str], typer.Option(
        help="where the hashes come from, for rows that do not name their own source "
             "(default: the file's name)")] = None,
    added_by: Annotated[Optional[str], typer.Option(
        help="who adds them, for rows that do not say (default: your user name)")] = None,
    reason: Annotated[Optional[str], typer.Option(
        help="why they are added, for rows that do not say")] = None,
    fmt: Annotated[Optional[str], typer.Option(
        "--format", help="jsonl or csv (default: CSV when the file name ends in .csv, "
                         "JSON lines otherwise)")] = None,
) -> None:
    """Load hashes into an indicator bank.

    Each row (a JSON object per line, or a CSV row under a header) holds at least one hash:
    sha256, md5 or pdq, or a kind and a value as written by `centre indicators export`. A row
    may name its own source, added_by and reason; otherwise the options below apply. Hashes
    already in the bank are counted and left as they are.

    When any row is wrong nothing is loaded, and the message names each wrong line and field.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from triage.banks import BankError, import_file

    s = _settings()
    try:
        added, known = import_file(s, bank, file, source=source or file.name,
                                   added_by=added_by or os.environ.get("USER", "operator"),
                                   reason=reason, fmt=fmt)
    except (BankError, SQLAlchemyError) as exc:
        raise _bank_failed(exc) from None
    print(f"{added} indicator(s) added to {bank}; {known} already there")


@indicators_app.command("export")
def indicators_export(
    bank: Annotated[str, typer.Argument(help=_BANK_HELP)],
    file: Annotated[Path, typer.Argument(help="the file to write (replaced if it exists)")],
    fmt: Annotated[Optional[str], typer.Option(
        "--format", help="jsonl or csv (default: CSV when the file name ends in .csv, "
                         "JSON lines otherwise)")] = None,
    include_disabled: Annotated[bool, typer.Option(
        "--include-disabled", help="also write the disabled entries")] = False,
) -> None:
    """Write a bank's entries to a file with their provenance.

    Each entry gives its kind, value, source, who added it and when (UTC), why, whether it
    is enabled, and its last change. `centre indicators import` reads the file back as it is.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from triage.banks import BankError, export_file

    s = _settings()
    try:
        n = export_file(s, bank, file, fmt=fmt, include_disabled=include_disabled)
    except (BankError, SQLAlchemyError) as exc:
        raise _bank_failed(exc) from None
    print(f"{n} indicator(s) of {bank} written to {file}")


def _bank_switch(enabled: bool, bank: str, value: Optional[str], source: Optional[str],
                 id_: Optional[int], kind: Optional[str], reason: str, by: str) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from triage.banks import BankError, Selector, set_enabled

    s = _settings()
    which = Selector(value=value, source=source, id=id_, kind=kind)
    try:
        changed, same = set_enabled(s, bank, enabled, which, reason=reason, by=by)
    except (BankError, SQLAlchemyError) as exc:
        raise _bank_failed(exc) from None
    word = "enabled" if enabled else "disabled"
    print(f"{changed} indicator(s) of {bank} {word}; {same} already {word}")


@indicators_app.command("disable")
def indicators_disable(
    bank: Annotated[str, typer.Argument(help=_BANK_HELP)],
    reason: Annotated[str, typer.Option(help="why they are disabled (kept with each entry)")],
    by: Annotated[str, typer.Option(help="who disables them (kept with each entry)")],
    value: Annotated[Optional[str], typer.Option(help=_SELECT_VALUE)] = None,
    source: Annotated[Optional[str], typer.Option(help=_SELECT_SOURCE)] = None,
    id_: Annotated[Optional[int], typer.Option("--id", help=_SELECT_ID)] = None,
    kind: Annotated[Optional[str], typer.Option(help=_SELECT_KIND)] = None,
) -> None:
    """Stop matching reports against some entries of a bank, without deleting them.

    Say which entries with --value, --source or --id (given together, an entry must match
    all). Who, when and why are kept with each entry; `enable` undoes it.
    """
    _bank_switch(False, bank, value, source, id_, kind, reason, by)


@indicators_app.command("enable")
def indicators_enable(
    bank: Annotated[str, typer.Argument(help=_BANK_HELP)],
    reason: Annotated[str, typer.Option(help="why they are enabled again (kept with each "
                                             "entry)")],
    by: Annotated[str, typer.Option(help="who enables them (kept with each entry)")],
    value: Annotated[Optional[str], typer.Option(help=_SELECT_VALUE)] = None,
    source: Annotated[Optional[str], typer.Option(help=_SELECT_SOURCE)] = None,
    id_: Annotated[Optional[int], typer.Option("--id", help=_SELECT_ID)] = None,
    kind: Annotated[Optional[str], typer.Option(help=_SELECT_KIND)] = None,
) -> None:
    """Match reports against disabled entries of a bank again.

    Say which entries with --value, --source or --id (given together, an entry must match
    all). Who, when and why are kept with each entry.
    """
    _bank_switch(True, bank, value, source, id_, kind, reason, by)


@indicators_app.command("remove")
def indicators_remove(
    bank: Annotated[str, typer.Argument(help=_BANK_HELP)],
    reason: Annotated[str, typer.Option(help="why they are removed")],
    by: Annotated[str, typer.Option(help="who removes them")],
    value: Annotated[Optional[str], typer.Option(help=_SELECT_VALUE)] = None,
    source: Annotated[Optional[str], typer.Option(help=_SELECT_SOURCE)] = None,
    id_: Annotated[Optional[int], typer.Option("--id", help=_SELECT_ID)] = None,
    kind: Annotated[Optional[str], typer.Option(help=_SELECT_KIND)] = None,
) -> None:
    """Delete entries from a bank for good, with their provenance; prints how many.

    Say which entries with --value, --source or --id (given together, an entry must match
    all). To stop using entries but keep their record, use `disable` instead.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from triage.banks import BankError, Selector, remove

    s = _settings()
    which = Selector(value=value, source=source, id=id_, kind=kind)
    try:
        n = remove(s, bank, which, reason=reason, by=by)
    except (BankError, SQLAlchemyError) as exc:
        raise _bank_failed(exc) from None
    print(f"{n} indicator(s) removed from {bank}")


@indicators_app.command("list")
def indicators_list(
    bank: Annotated[Optional[str], typer.Argument(
        help=_BANK_HELP + " (without it: how many entries each bank holds)")] = None,
    kind: Annotated[Optional[str], typer.Option(help="only entries of this kind: sha256, md5 "
                                                     "or pdq")] = None,
    source: Annotated[Optional[str], typer.Option(help="only entries from this source")] = None,
    state: Annotated[Optional[bool], typer.Option(
        "--enabled/--disabled", show_default=False,
        help="only enabled, or only disabled, entries (default: both)")] = None,
    limit: Annotated[int, typer.Option(help="show at most this many entries, oldest first")] = 100,
) -> None:
    """Show a bank's entries with their provenance, or how many entries each bank holds.

    Without a bank: per bank and kind of hash, how many entries are enabled and disabled.
    """
    from rich.markup import escape
    from rich.table import Table
    from sqlalchemy.exc import SQLAlchemyError

    from triage.banks import BANKS, BankError, list_entries, summary

    s = _settings()
    out = Console(width=None if sys.stdout.isatty() else 240)
    try:
        if bank is None:
            rows = summary(s, kind=kind, source=source)
        else:
            entries, total = list_entries(s, bank, kind=kind, source=source, enabled=state,
                                          limit=limit)
    except (BankError, SQLAlchemyError) as exc:
        raise _bank_failed(exc) from None

    if bank is None:
        table = Table(title="Indicator banks")
        for col in ("bank", "kind", "enabled", "disabled"):
            table.add_column(col, justify="right" if col in ("enabled", "disabled") else "left")
        present = {r.bank for r in rows}
        for r in rows:
            table.add_row(escape(r.bank), r.kind, str(r.enabled), str(r.disabled))
        for b in BANKS:
            if b not in present:
                table.add_row(b, "(none)", "0", "0")
        out.print(table)
        return
    table = Table(title=f"{bank}: {len(entries)} of {total} entr{'y' if total == 1 else 'ies'}")
    table.add_column("id", justify="right")
    table.add_column("kind")
    table.add_column("value", no_wrap=True)
    for col in ("source", "added by", "added at (UTC)", "reason", "state", "last change"):
        table.add_column(col)
    stamp = "%Y-%m-%d %H:%M:%SZ"
    for e in entries:
        change = (f"{e.changed_at.strftime(stamp)} by {e.changed_by}: {e.change_reason}"
                  if e.changed_at else "")
        table.add_row(str(e.id), e.kind, e.value, escape(e.source), escape(e.added_by),
                      e.added_at.strftime(stamp), escape(e.reason or ""),
                      "enabled" if e.enabled else "disabled", escape(change))
    out.print(table)
    if len(entries) < total:
        print(f"showing {len(entries)} of {total}; use --limit to see more")


@liaison_app.command("hold")
def liaison_hold(
    case_id: Annotated[str, typer.Argument(help="the case's case_id")],
    days: Annotated[int, typer.Option(help="how long, at most 548 days (18 months)")],
    reason: Annotated[str, typer.Option(help="why (kept by the centre, not sent to the "
                                        "provider)")],
    no_inform: Annotated[bool, typer.Option("--no-inform", help="the provider must not tell "
                                            "the user")] = False,
    no_removal: Annotated[bool, typer.Option("--no-removal", help="the provider must not "
                                             "remove the content")] = False,
    by: Annotated[str, typer.Option(help="who asks (your member state or Europol)")] = "liaison",
) -> None:
    """Ask, under Art. 48(6), that the provider not inform the user and/or not remove the
    content while you investigate, for at most 18 months. The centre records it and sends
    the provider a notice saying what not to do and until when (not your reason)."""
    from routing.holds import HoldError, place_hold

    try:
        notice = place_hold(_settings(), case_id, days=days, no_inform=no_inform,
                            no_removal=no_removal, reason=reason, requested_by=by)
    except HoldError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    print(f"hold {notice['notice_id']} until {notice['hold']['until']}; "
          f"{notice['provider_id']} notified")


@liaison_app.command("pull")
def liaison_pull(
    country: Annotated[Optional[str], typer.Option(help="member state, e.g. de")] = None,
    europol: Annotated[bool, typer.Option("--europol", help="pull Europol's cases")] = False,
    key: Annotated[Optional[Path], typer.Option(help="the liaison's X25519 private key (PEM); "
                                                     "default: the local key set")] = None,
    max: Annotated[Optional[int], typer.Option("--max", help="stop after N cases")] = None,
    timeout: Annotated[float, typer.Option(help="stop after this many seconds without a new "
                                                "message")] = 10.0,
) -> None:
    """Print the cases sealed for one recipient, one JSON object per line, and commit them."""
    from centre.keys import KeySet, load_private_x25519
    from centre.liaison import pull

    if europol == (country is not None):
        err.print("[red]give exactly one of --country CC or --europol[/]")
        raise typer.Exit(2)
    recipient = EUROPOL if europol else (country or "").lower()
    if recipient not in MEMBER_STATES + (EUROPOL,):
        err.print(f"[red]unknown member state {country!r}; use one of {' '.join(MEMBER_STATES)}[/]")
        raise typer.Exit(2)
    s = _settings()
    keys = KeySet(s.keys_dir)
    try:
        private = load_private_x25519(key) if key else keys.recipient_private_keys(recipient)
        centre_keys = keys.centre_public_keys()
    except (OSError, KeyError, ValueError) as exc:
        err.print(f"[red]no usable key for {recipient}:[/] {exc}")
        raise typer.Exit(1) from None
    out = sys.stdout
    for opened in pull(s, recipient, private, centre_keys, max_messages=max, timeout=timeout):
        out.write(json.dumps(opened.document, ensure_ascii=False) + "\n")
        out.flush()


@keys_app.command("init")
def keys_init(force: bool = typer.Option(False, help="replace existing keys (dangerous)")) -> None:
    """Make the local key set under CENTRE_HOME/keys: the centre's signing key and one key pair
    per recipient (demo and local work; in production each liaison holds its own key)."""
    from centre.keys import KeySet

    s = _settings()
    KeySet.init(s.keys_dir, force=force)
    print(f"keys ready in {s.keys_dir}")


@keys_app.command("add-recipient")
def keys_add_recipient(
    recipient: Annotated[str, typer.Argument(help="member state code (de, fr, …) or europol")],
    public_key_file: Annotated[Path, typer.Argument(help="the liaison's X25519 public key, "
                                                    "PEM or 32 raw bytes")],
) -> None:
    """Register a liaison's public key as the one new cases are sealed to. Earlier keys stay
    on record, so cases already sealed still open with the liaison's old private key; cases
    that waited because no key was registered go out within seconds."""
    from centre.keys import KeySet, KeySetError

    s = _settings()
    try:
        data = public_key_file.read_bytes()
        kid = KeySet(s.keys_dir).add_recipient(recipient.lower(), data)
    except OSError as exc:
        err.print(f"[red]cannot read {public_key_file}: {exc.strerror}[/]")
        raise typer.Exit(2) from None
    except (KeySetError, ValueError) as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    _record_staff_step(s, "key.recipient_added", f"recipient:{recipient.lower()}",
                       {"key_id": kid})
    print(f"key {kid} registered for {recipient.lower()}; new cases are sealed to it")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (done by `centre up`)."""
    from centre.db import upgrade

    s = _settings()
    upgrade(s.database_url)
    print("database at the newest migration")


bench_app = typer.Typer(
    help="Measure and print figures. Without a subcommand: the whole pipeline on a fresh "
    "local stack (end-to-end throughput, latency per priority at a steady rate, peak memory "
    "and CPU per process, raw Kafka pass-through of the same messages and the ratio). "
    "`centre bench index`: the PDQ near-duplicate index alone; `triage`, `routing`, "
    "`complaints`, `victims`, `audit`: one part each.",
    rich_markup_mode="markdown")
app.add_typer(bench_app, name="bench")


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    reports: int = typer.Option(20000, help="synthetic reports to push through"),
    p1_share: float = typer.Option(0.05, help="share of urgent (P1) reports"),
    paced_rate: float = typer.Option(1000.0, help="reports/s of the latency phase"),
    paced_seconds: float = typer.Option(30.0, help="length of the latency phase"),
    keep: bool = typer.Option(False, help="keep the bench's stack directory (logs, data)"),
    postgres: str = typer.Option("", help="a PostgreSQL URL: the stack runs on a scratch "
                                 "database made on that server (dropped after)"),
) -> None:
    """Without a subcommand: measure the pipeline on a fresh local stack (end-to-end
    throughput, latency per priority at a steady rate, peak memory and CPU per process, and
    the raw Kafka pass-through rate of the same messages). `centre bench index` measures the
    PDQ index alone."""
    if ctx.invoked_subcommand is not None:
        return
    from centre.bench import run_bench

    raise typer.Exit(run_bench(_settings(), reports=reports, p1_share=p1_share,
                               paced_rate=paced_rate, paced_seconds=paced_seconds, keep=keep,
                               postgres=postgres or None))


@bench_app.command("index")
def bench_index(
    sizes: str = typer.Option("1000000,10000000", help="index sizes to build, comma-separated"),
    queries: int = typer.Option(10000, help="single-hash queries per size (half near "
                                "duplicates, half random), checked against brute force"),
) -> None:
    """Build the PDQ near-duplicate index at each size from random hashes and print build
    time, memory, query latency p50/p99 at distance 31, batched query rate, and recall
    against brute force."""
    from triage.index_bench import print_index_bench, run_index_bench

    try:
        wanted = [int(x.replace("_", "")) for x in sizes.split(",") if x.strip()]
    except ValueError:
        err.print(f"[red]--sizes must be whole numbers separated by commas, not {sizes!r}[/]")
        raise typer.Exit(2) from None
    print_index_bench(run_index_bench(wanted, queries=queries))


@bench_app.command("triage")
def bench_triage(
    reports: int = typer.Option(20000, help="synthetic reports accepted before triage starts"),
    indicators: int = typer.Option(1_000_000, help="random PDQ indicators loaded"),
    keep: bool = typer.Option(False, help="keep the bench's stack directory (logs, data)"),
) -> None:
    """Triage alone on a backlog with a large PDQ bank loaded: its throughput (first to last
    output), the raw pass-through rate of the same messages and the ratio, memory, index load
    time."""
    from centre.bench import run_triage_bench

    raise typer.Exit(run_triage_bench(_settings(), reports=reports, indicators=indicators,
                                      keep=keep))


@bench_app.command("chaos")
def bench_chaos(
    reports: int = typer.Option(100_000, help="how many reports to send"),
    rate: float = typer.Option(500.0, help="reports per second sent while the faults happen"),
    postgres: bool = typer.Option(False, help="on a private PostgreSQL server (Debian's "
                                              "packages), restarted mid-stream too"),
    keep: bool = typer.Option(False, help="keep the run's stack directory (logs, data)"),
) -> None:
    """The pipeline under faults: every worker killed, the broker paused and crashed (and
    PostgreSQL restarted); prints reports lost, shown twice, the audit trail's verdict and
    each fault's time to recover. Exit 1 when anything was lost or not recovered from."""
    from centre.chaos import run_chaos_bench

    raise typer.Exit(run_chaos_bench(_settings(), reports=reports, rate=rate,
                                     postgres=postgres, keep=keep))


@bench_app.command("routing")
def bench_routing(
    reports: int = typer.Option(20000, help="synthetic reports triaged before routing starts"),
    backlog: int = typer.Option(10000, help="P3 cases queued for one member state before a "
                                "new P1 arrives"),
    keep: bool = typer.Option(False, help="keep the bench's stack directory (logs, data)"),
) -> None:
    """Routing alone on a backlog of triaged reports: its throughput including sealing for
    every recipient, the raw pass-through rate of the same messages and the ratio; then a
    backlog of P3 cases for one member state and a new P1: the liaison's first pull must
    return the P1."""
    from centre.bench import run_routing_bench

    raise typer.Exit(run_routing_bench(_settings(), reports=reports, backlog=backlog,
                                       keep=keep))


@bench_app.command("complaints")
def bench_complaints(
    cluster_size: int = typer.Option(100_000, help="reports of the same picture in the "
                                     "complaint's cluster"),
    keep: bool = typer.Option(False, help="keep the bench's directory (broker logs, database)"),
) -> None:
    """Uphold a complaint about content reported CLUSTER_SIZE times on a fresh database and
    broker: time to list the related cases, bank the hashes and send the sealed retractions
    and the notices until acknowledged (target ≤ 5 s); a retry sends nothing; every liaison
    topic holds the retraction once."""
    from complaints.bench import run_complaints_bench

    if cluster_size < 1:
        err.print("[red]--cluster-size must be at least 1[/]")
        raise typer.Exit(2)
    raise typer.Exit(run_complaints_bench(_settings(), cluster_size=cluster_size, keep=keep))


@bench_app.command("victims")
def bench_victims(
    stored: int = typer.Option(1_000_000, help="stored reports the request is matched against"),
    hashes: int = typer.Option(1_000, help="items in the victim's request"),
    reports: int = typer.Option(20_000, help="reports triaged with and without the banks"),
    victim_hashes: int = typer.Option(10_000, help="victims' hashes banked for live matching"),
    rounds: int = typer.Option(2, help="alternated triage runs with and without (best of)"),
    live: bool = typer.Option(True, help="also measure live matching in triage"),
    keep: bool = typer.Option(False, help="keep the bench's directories (logs, data)"),
    database_url: str = typer.Option("", help="an empty scratch database for the first "
                                     "part (e.g. PostgreSQL); default: a new SQLite file"),
) -> None:
    """A victim's request of HASHES items filed against STORED reports on a fresh database
    (target ≤ 10 s for the filing, the search of every stored report and the notices
    queued; the matches must be exactly those seeded), then triage alone with and without
    VICTIM_HASHES banked (target: ≤ 10% less throughput). Never touches the centre's own
    database or topics."""
    from victims.bench import run_victims_bench

    if min(stored, hashes, reports, victim_hashes, rounds) < 1:
        err.print("[red]--stored, --hashes, --reports, --victim-hashes and --rounds must be "
                  "at least 1[/]")
        raise typer.Exit(2)
    raise typer.Exit(run_victims_bench(
        _settings(), stored=stored, hashes=hashes, reports=reports,
        victim_hashes=victim_hashes, rounds=rounds, live=live, keep=keep,
        database_url=database_url or None))


@keys_app.command("rotate-audit")
def keys_rotate_audit() -> None:
    """Make a new key-encryption key for the audit trail and use it from now on. Older keys
    stay, so everything already recorded stays readable and nothing is rewritten; the
    rotation is itself recorded in the trail."""
    from sqlalchemy.exc import SQLAlchemyError

    from centre.audit import AuditError
    from centre.audit.cli import rotate_audit_kek
    from centre.keys import KeySetError, UnknownKeyError

    try:
        kid = rotate_audit_kek(_settings())
    except (AuditError, KeySetError, UnknownKeyError, SQLAlchemyError, OSError) as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    print(f"audit key {kid} is current; older audit keys are kept to read older entries")


@bench_app.command("audit")
def bench_audit(
    entries: int = typer.Option(100_000, help="entries to write, then verify and export"),
    batch: int = typer.Option(500, help="entries per appended batch"),
) -> None:
    """The audit trail alone, on a scratch database and key set (never the centre's own):
    writer entries/s (SQLite, and PostgreSQL when CENTRE_DATABASE_URL is one), verification
    of the database and of an export, export entries/s, and the memory each step took."""
    from centre.audit.bench import run_audit_bench

    run_audit_bench(_settings(), entries=entries, batch=batch)


cases_app = typer.Typer(help="Cases as the centre recorded them (Art. 45): where they went, "
                        "when, and whether the liaison pulled them.", no_args_is_help=True,
                        rich_markup_mode="markdown")
app.add_typer(cases_app, name="cases")


@cases_app.command("overdue")
def cases_overdue(
    hours: float = typer.Option(24.0, "--hours", help="a case not pulled this many hours "
                                "after it was forwarded is overdue"),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table"),
) -> None:
    """List cases forwarded to a liaison that its `centre liaison pull` has not acknowledged
    within --hours (default 24): case, recipient, priority, when forwarded, how long ago. P1
    first. Exit status 0 either way."""
    import datetime as dt

    from rich.table import Table
    from sqlalchemy import select

    from centre.db import make_engine
    from routing.tables import Delivery

    if hours < 0:
        err.print("[red]--hours must not be negative[/]")
        raise typer.Exit(2)
    now = dt.datetime.now(dt.timezone.utc)
    engine = make_engine(_settings().database_url)
    try:
        with engine.connect() as c:
            rows = c.execute(select(Delivery.case_id, Delivery.recipient, Delivery.priority,
                                    Delivery.forwarded_at).where(
                Delivery.state == "forwarded", Delivery.delivered_at.is_(None),
                Delivery.forwarded_at <= now - dt.timedelta(hours=hours))
                .order_by(Delivery.priority, Delivery.forwarded_at)).all()
    finally:
        engine.dispose()
    if as_json:
        for case_id, rcpt, prio, at in rows:
            print(json.dumps({"case_id": case_id, "recipient": rcpt, "priority": prio,
                              "forwarded_at": at.isoformat()}))
        return
    t = Table(title=f"{len(rows)} case deliveries not pulled within {hours:g} h")
    for col in ("case", "recipient", "priority", "forwarded at (UTC)", "waiting"):
        t.add_column(col)
    for case_id, rcpt, prio, at in rows:
        t.add_row(case_id, rcpt, prio, at.strftime("%Y-%m-%d %H:%M"),
                  f"{(now - at).total_seconds() / 3600:.1f} h")
    Console().print(t)


@app.command()
def stats(
    since: Optional[str] = typer.Option(None, help="only reports received on or after this "
                                        "date (YYYY-MM-DD, UTC)"),
    until: Optional[str] = typer.Option(None, help="only reports received before this date"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """The figures of Art. 83, without personal data: reports by provider and outcome, by
    category, manifestly unfounded, cases forwarded per member state and Europol, and how
    many times the same item was reported."""
    import datetime as dt

    from centre import stats as stats_mod
    from centre.db import make_engine

    def day(v: str | None, name: str) -> dt.datetime | None:
        if v is None:
            return None
        try:
            return dt.datetime.strptime(v, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            err.print(f"[red]--{name} must be a date like 2026-11-23, not {v!r}[/]")
            raise typer.Exit(2) from None

    engine = make_engine(_settings().database_url)
    try:
        figures = stats_mod.collect(engine, day(since, "since"), day(until, "until"))
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    console = Console()
    for table in stats_mod.render(figures):
        console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
