"""The `centre` command line."""

from __future__ import annotations

import json
import logging
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
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
liaison_app = typer.Typer(
    help="A law-enforcement liaison's view: pull sealed cases.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
keys_app = typer.Typer(
    help="Keys: the centre's signing key, recipients' and providers' keys.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True, rich_markup_mode="markdown")
app.add_typer(liaison_app, name="liaison")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
from victims.cli import victims_app

app.add_typer(victims_app, name="victims")
from complaints.cli import complaints_app

app.add_typer(complaints_app, name="complaints")
from centre.audit.cli import audit_app

app.add_typer(audit_app, name="audit")
# Each domain's part of the command line, and the benches.
from app.cli_bench import bench_app
from routing.cli import cases_app, liaison_hold
from triage.cli import indicators_app

app.add_typer(indicators_app, name="indicators")
app.add_typer(cases_app, name="cases")
app.add_typer(bench_app, name="bench")
liaison_app.command("hold")(liaison_hold)

err = Console(stderr=True)


def _record_staff_step(
    s: settings_mod.Settings, action: str, subject: str, details: dict[str, object]
) -> None:
    """An audit entry for a step a member of staff took through this command line."""
    import getpass

    from centre.audit import AuditEvent, AuditLog, staff_actor

    try:
        AuditLog(s).record(
            [
                AuditEvent(
                    actor=staff_actor(getpass.getuser()),
                    action=action,
                    subject=subject,
                    discriminator=str(details),
                    details=details,
                )
            ]
        )
    except Exception as exc:  # the step is done; saying it is not recorded is the honest part
        err.print(f"[red]done, but not recorded in the audit trail: {exc}[/]")
        raise typer.Exit(1) from None


from centre.cli_errors import load_settings as _settings


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
    print(
        f"centre ready: bootstrap={s.bootstrap} home={s.home} processes={json.dumps(pids(stack))}",
        flush=True,
    )
    try:
        stop.wait()
    finally:
        print("stopping…", flush=True)
        stack.stop()
        print("stopped", flush=True)


@app.command()
def worker(
    stage: Annotated[str, typer.Argument(help=f"one of: {', '.join(STAGES)}")],
    loglevel: str = "warn",
) -> None:
    """Run one pipeline stage until stopped (CENTRE_RUNTIME: kafka or faust). `centre up`
    runs one per stage; run more, on other machines too, to share a stage's partitions."""
    from centre.runtime import run_worker

    logging.basicConfig(level=logging.WARNING)
    run_worker(_settings(), stage, loglevel)


@app.command()
def demo(reports: int = typer.Option(12, help="how many sample reports to push")) -> None:
    """Run the stack, push sample reports, and show what each liaison received."""
    from app.demo import run_demo

    raise typer.Exit(run_demo(_settings(), reports))


@app.command()
def submit(
    files: Annotated[list[Path], typer.Argument(help="JSON object, JSON array or JSON lines")],
    sign_key: Annotated[
        Optional[Path],
        typer.Option(help="provider's Ed25519 private key (PEM) to sign each report"),
    ] = None,
    raw: Annotated[
        bool,
        typer.Option(help="send each file's bytes unchanged as one message (to test rejections)"),
    ] = False,
) -> None:
    """Send reports to reports.intake; prints how many were sent."""
    from app.submit import submit_files

    sent = submit_files(_settings(), files, sign_key=sign_key, raw=raw, errors=err)
    print(f"sent {sent} report(s) to {_settings().topic('reports.intake')}")


@liaison_app.command("pull")
def liaison_pull(
    country: Annotated[Optional[str], typer.Option(help="member state, e.g. de")] = None,
    europol: Annotated[bool, typer.Option("--europol", help="pull Europol's cases")] = False,
    key: Annotated[
        Optional[Path],
        typer.Option(help="the liaison's X25519 private key (PEM); default: the local key set"),
    ] = None,
    max: Annotated[Optional[int], typer.Option("--max", help="stop after N cases")] = None,
    timeout: Annotated[
        float, typer.Option(help="stop after this many seconds without a new message")
    ] = 10.0,
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
    public_key_file: Annotated[
        Path, typer.Argument(help="the liaison's X25519 public key, PEM or 32 raw bytes")
    ],
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
    _record_staff_step(s, "key.recipient_added", f"recipient:{recipient.lower()}", {"key_id": kid})
    print(f"key {kid} registered for {recipient.lower()}; new cases are sealed to it")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (done by `centre up`)."""
    from centre.db import upgrade

    s = _settings()
    upgrade(s.database_url)
    print("database at the newest migration")


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


@app.command()
def stats(
    since: Optional[str] = typer.Option(
        None, help="only reports received on or after this date (YYYY-MM-DD, UTC)"
    ),
    until: Optional[str] = typer.Option(None, help="only reports received before this date"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """The figures of Art. 83, without personal data: reports by provider and outcome, by
    category, manifestly unfounded, cases forwarded per member state and Europol, and how
    many times the same item was reported."""
    import datetime as dt

    from app import stats as stats_mod
    from centre.db import make_engine

    def day(v: str | None, name: str) -> dt.datetime | None:
        if v is None:
            return None
        try:
            return dt.datetime.strptime(v, "%Y-%m-%d").replace(tzinfo=dt.UTC)
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
