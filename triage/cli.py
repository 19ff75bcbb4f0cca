"""`centre indicators`: triage's part of the command line, the indicator banks (Art. 44)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from centre.cli_errors import load_settings as _settings

indicators_app = typer.Typer(
    help="Indicator banks (Art. 44): load, export, list, disable, enable and remove the hashes "
    "reports are matched against.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

_BANK_HELP = "the bank: known_material, grooming or false_positive"


from centre.cli_errors import failed as _bank_failed

_SELECT_VALUE = "the entries with this hash value (any kind, unless --kind is given)"
_SELECT_SOURCE = "the entries that came from this source"
_SELECT_ID = "the entry with this id (as shown by `centre indicators list`)"
_SELECT_KIND = "only entries of this kind: sha256, md5 or pdq"


@indicators_app.command("import")
def indicators_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="the file to load: JSON lines (one object per line) or CSV with a header row"
        ),
    ],
    bank: Annotated[
        str, typer.Option(help=_BANK_HELP.replace("the bank", "the bank to load into"))
    ],
    source: Annotated[
        Optional[str],
        typer.Option(
            help="where the hashes come from, for rows that do not name their own source "
            "(default: the file's name)"
        ),
    ] = None,
    added_by: Annotated[
        Optional[str],
        typer.Option(help="who adds them, for rows that do not say (default: your user name)"),
    ] = None,
    reason: Annotated[
        Optional[str], typer.Option(help="why they are added, for rows that do not say")
    ] = None,
    fmt: Annotated[
        Optional[str],
        typer.Option(
            "--format",
            help="jsonl or csv (default: CSV when the file name ends in .csv, "
            "JSON lines otherwise)",
        ),
    ] = None,
) -> None:
    """Load hashes into an indicator bank.

    Each row (a JSON object per line, or a CSV row under a header) holds at least one hash:
    sha256, md5 or pdq, or a kind and a value as written by `centre indicators export`. A row
    may name its own source, added_by and reason; otherwise the options below apply. Hashes
    already in the bank are counted and left as they are.

    When any row is wrong nothing is loaded, and the message names each wrong line and field.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from triage.bank_common import BankError
    from triage.bank_import import import_file

    s = _settings()
    try:
        added, known = import_file(
            s,
            bank,
            file,
            source=source or file.name,
            added_by=added_by or os.environ.get("USER", "operator"),
            reason=reason,
            fmt=fmt,
        )
    except (BankError, SQLAlchemyError) as exc:
        raise _bank_failed(exc) from None
    print(f"{added} indicator(s) added to {bank}; {known} already there")


@indicators_app.command("export")
def indicators_export(
    bank: Annotated[str, typer.Argument(help=_BANK_HELP)],
    file: Annotated[Path, typer.Argument(help="the file to write (replaced if it exists)")],
    fmt: Annotated[
        Optional[str],
        typer.Option(
            "--format",
            help="jsonl or csv (default: CSV when the file name ends in .csv, "
            "JSON lines otherwise)",
        ),
    ] = None,
    include_disabled: Annotated[
        bool, typer.Option("--include-disabled", help="also write the disabled entries")
    ] = False,
) -> None:
    """Write a bank's entries to a file with their provenance.

    Each entry gives its kind, value, source, who added it and when (UTC), why, whether it
    is enabled, and its last change. `centre indicators import` reads the file back as it is.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from triage.bank_common import BankError
    from triage.bank_export import export_file

    s = _settings()
    try:
        n = export_file(s, bank, file, fmt=fmt, include_disabled=include_disabled)
    except (BankError, SQLAlchemyError) as exc:
        raise _bank_failed(exc) from None
    print(f"{n} indicator(s) of {bank} written to {file}")


def _bank_switch(
    enabled: bool,
    bank: str,
    value: Optional[str],
    source: Optional[str],
    id_: Optional[int],
    kind: Optional[str],
    reason: str,
    by: str,
) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from triage.bank_changes import set_enabled
    from triage.bank_common import BankError, Selector

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
    reason: Annotated[str, typer.Option(help="why they are enabled again (kept with each entry)")],
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

    from triage.bank_changes import remove
    from triage.bank_common import BankError, Selector

    s = _settings()
    which = Selector(value=value, source=source, id=id_, kind=kind)
    try:
        n = remove(s, bank, which, reason=reason, by=by)
    except (BankError, SQLAlchemyError) as exc:
        raise _bank_failed(exc) from None
    print(f"{n} indicator(s) removed from {bank}")


@indicators_app.command("list")
def indicators_list(
    bank: Annotated[
        Optional[str],
        typer.Argument(help=_BANK_HELP + " (without it: how many entries each bank holds)"),
    ] = None,
    kind: Annotated[
        Optional[str], typer.Option(help="only entries of this kind: sha256, md5 or pdq")
    ] = None,
    source: Annotated[Optional[str], typer.Option(help="only entries from this source")] = None,
    state: Annotated[
        Optional[bool],
        typer.Option(
            "--enabled/--disabled",
            show_default=False,
            help="only enabled, or only disabled, entries (default: both)",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="show at most this many entries, oldest first")] = 100,
) -> None:
    """Show a bank's entries with their provenance, or how many entries each bank holds.

    Without a bank: per bank and kind of hash, how many entries are enabled and disabled.
    """
    from rich.table import Table
    from sqlalchemy.exc import SQLAlchemyError

    from triage.bank_common import BANKS, BankError
    from triage.banks import list_entries, summary

    s = _settings()
    out = Console(width=None if sys.stdout.isatty() else 240)
    try:
        if bank is None:
            rows = summary(s, kind=kind, source=source)
        else:
            entries, total = list_entries(
                s, bank, kind=kind, source=source, enabled=state, limit=limit
            )
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
        change = (
            f"{e.changed_at.strftime(stamp)} by {e.changed_by}: {e.change_reason}"
            if e.changed_at
            else ""
        )
        table.add_row(
            str(e.id),
            e.kind,
            e.value,
            escape(e.source),
            escape(e.added_by),
            e.added_at.strftime(stamp),
            escape(e.reason or ""),
            "enabled" if e.enabled else "disabled",
            escape(change),
        )
    out.print(table)
    if len(entries) < total:
        print(f"showing {len(entries)} of {total}; use --limit to see more")
