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
indicators_app = typer.Typer(help="Indicator banks (Art. 44): import hashes.", no_args_is_help=True,
                          rich_markup_mode="markdown")
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

err = Console(stderr=True)


def _settings() -> settings_mod.Settings:
    try:
        return settings_mod.load()
    except settings_mod.SettingsError as exc:
        err.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None


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


@indicators_app.command("import")
def indicators_import(
    file: Path,
    bank: Annotated[str, typer.Option(help="known_material or false_positive")],
    source: Annotated[Optional[str], typer.Option(help="where the hashes come from")] = None,
    added_by: Annotated[Optional[str], typer.Option(help="who adds them")] = None,
    reason: Annotated[Optional[str], typer.Option(help="why they are added")] = None,
) -> None:
    """Load hashes (JSON lines with sha256, md5 and/or pdq) into an indicator bank."""
    from triage.banks import BankError, import_file

    s = _settings()
    try:
        added, known = import_file(s, bank, file, source=source or file.name,
                                   added_by=added_by or os.environ.get("USER", "operator"),
                                   reason=reason)
    except BankError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    print(f"{added} indicator(s) added to {bank}; {known} already there")


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


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (done by `centre up`)."""
    from centre.db import upgrade

    s = _settings()
    upgrade(s.database_url)
    print("database at the newest migration")


@app.command()
def bench(
    reports: int = typer.Option(20000, help="synthetic reports to push through"),
    p1_share: float = typer.Option(0.05, help="share of urgent (P1) reports"),
    paced_rate: float = typer.Option(1000.0, help="reports/s of the latency phase"),
    paced_seconds: float = typer.Option(10.0, help="length of the latency phase"),
) -> None:
    """Measure the pipeline on a fresh local stack: end-to-end throughput, latency per
    priority at a steady rate, peak memory per process, and the raw Kafka pass-through rate
    of the same messages."""
    from centre.bench import run_bench

    raise typer.Exit(run_bench(_settings(), reports=reports, p1_share=p1_share,
                               paced_rate=paced_rate, paced_seconds=paced_seconds))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
