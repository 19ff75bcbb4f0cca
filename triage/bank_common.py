"""What every bank operation shares: the banks, kinds and file formats, the export's
columns, `BankError`, the result types, `Selector` and `Entry` (an entry with its provenance,
as listed and exported), and the helpers: times in ISO 8601 UTC, checking a bank or a kind,
a file's format, the database engine, an optional text argument, a row as an `Entry`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

from sqlalchemy import Table
from sqlalchemy.engine import Engine

from centre.db import make_engine
from centre.settings import Settings
from triage.signals import SIGNAL_TYPES
from triage.tables import Indicator

BANKS = ("known_material", "grooming", "false_positive")
KINDS = tuple(SIGNAL_TYPES)
FORMATS = ("jsonl", "csv")
# The columns of an export, and what an import row may carry besides its hashes.
FIELDS = (
    "kind",
    "value",
    "source",
    "added_by",
    "added_at",
    "reason",
    "enabled",
    "changed_at",
    "changed_by",
    "change_reason",
)
_T = cast(Table, Indicator.__table__)  # a mapped class's table (typed as a FromClause)


class BankError(ValueError):
    """Bad input to a bank operation; the message names the file line and field."""


class ImportResult(NamedTuple):
    added: int
    already_present: int  # in the bank before, or earlier in the same file


class ChangeResult(NamedTuple):
    changed: int
    unchanged: int  # matched, but already in the wanted state


@dataclass(frozen=True)
class Selector:
    """Which entries of a bank an operation touches; given together, all must hold."""

    value: str | None = None
    source: str | None = None
    id: int | None = None
    kind: str | None = None

    def describe(self) -> str:
        parts = [
            f"--{k} {v}"
            for k, v in (
                ("value", self.value),
                ("source", self.source),
                ("id", self.id),
                ("kind", self.kind),
            )
            if v is not None
        ]
        return " ".join(parts)


@dataclass(frozen=True)
class Entry:
    id: int
    bank: str
    kind: str
    value: str
    source: str
    added_by: str
    added_at: dt.datetime
    reason: str | None
    enabled: bool
    changed_at: dt.datetime | None
    changed_by: str | None
    change_reason: str | None

    def record(self) -> dict[str, Any]:
        """The entry as exported: every provenance field, times in ISO 8601 UTC."""
        return {
            "kind": self.kind,
            "value": self.value,
            "source": self.source,
            "added_by": self.added_by,
            "added_at": iso(self.added_at),
            "reason": self.reason,
            "enabled": self.enabled,
            "changed_at": iso(self.changed_at) if self.changed_at else None,
            "changed_by": self.changed_by,
            "change_reason": self.change_reason,
        }


class SummaryRow(NamedTuple):
    bank: str
    kind: str
    enabled: int
    disabled: int


def iso(t: dt.datetime) -> str:
    """ISO 8601 in UTC with a Z, to the microsecond when there is one (exact round trip)."""
    return _utc(t).isoformat().replace("+00:00", "Z")


def _utc(t: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes for UTC columns.
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def check_bank(bank: str) -> None:
    if bank not in BANKS:
        raise BankError(f"unknown bank {bank!r}; the banks are {', '.join(BANKS)}")


def _check_kind(kind: str | None) -> None:
    if kind is not None and kind not in KINDS:
        raise BankError(f"unknown kind {kind!r}; the kinds are {', '.join(KINDS)}")


def file_format(path: Path, fmt: str | None = None) -> str:
    """jsonl or csv: as given, else from the file name (.csv is CSV, anything else JSON lines)."""
    if fmt is not None:
        f = fmt.strip().lower()
        if f == "json":
            return "jsonl"
        if f not in FORMATS:
            raise BankError(f"unknown format {fmt!r}; use jsonl or csv")
        return f
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def _engine(settings: Settings) -> Engine:
    return make_engine(settings.database_url)


def _text_default(name: str, value: str | None, limit: int | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if limit and len(value) > limit:
        raise BankError(f"{name} is longer than {limit} characters")
    return value


def _entry(row: Any) -> Entry:
    return Entry(
        id=row.id,
        bank=row.bank,
        kind=row.kind,
        value=row.value,
        source=row.source,
        added_by=row.added_by,
        added_at=_utc(row.added_at),
        reason=row.reason,
        enabled=bool(row.enabled),
        changed_at=_utc(row.changed_at) if row.changed_at else None,
        changed_by=row.changed_by,
        change_reason=row.change_reason,
    )
