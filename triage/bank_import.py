"""Importing a bank's file (JSON lines or CSV, as exported or with the hashes in columns):
reading the rows as a stream, checking and normalising each (its hashes and provenance),
and inserting them in chunks in one transaction, all or nothing; and `parse_lines`, the
(kind, value) pairs of a JSON lines file, checked the same way.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from centre import messages as m
from centre.settings import Settings
from triage.bank_common import (
    _T,
    KINDS,
    BankError,
    ImportResult,
    _engine,
    _text_default,
    check_bank,
    file_format,
)
from triage.signals import SIGNAL_TYPES

# The banks' log keeps its name from before the split of triage/banks.py.
log = logging.getLogger("triage.banks")

CHUNK = 5000  # rows per INSERT batch
_MAX_SHOWN = 10  # problems quoted in the error; the rest are counted
_TEXT_LIMITS = {
    "source": 200,
    "added_by": 100,
    "changed_by": 100,
    "reason": None,
    "change_reason": None,
}
_TRUE = ("true", "1", "yes", "y")
_FALSE = ("false", "0", "no", "n")


# ---------------------------------------------------------------------------------- import


@dataclass(frozen=True)
class _Defaults:
    source: str
    added_by: str
    reason: str | None


class _Problems:
    def __init__(self) -> None:
        self.shown: list[str] = []
        self.count = 0

    def add(self, line: int, message: str) -> None:
        self.count += 1
        if len(self.shown) < _MAX_SHOWN:
            self.shown.append(f"line {line}: {message}")

    def error(self, path: Path) -> BankError:
        more = f" (and {self.count - len(self.shown)} more)" if self.count > len(self.shown) else ""
        return BankError(f"{path}: nothing imported; " + "; ".join(self.shown) + more)


def _open(path: Path, mode: str, **kw: Any) -> IO[Any]:
    try:
        return open(path, mode, **kw)
    except OSError as exc:
        raise BankError(f"cannot read {path}: {exc.strerror or exc}") from None


def _jsonl_records(f: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            yield n, "not a JSON object (each line must hold one JSON object)"
            continue
        if not isinstance(doc, dict):
            yield n, "not a JSON object (each line must hold one JSON object)"
            continue
        yield n, doc


def _csv_records(f: IO[str], path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    try:
        head = f.readline()
    except UnicodeDecodeError:
        raise BankError(f"{path}: nothing imported; line 1: not UTF-8 text") from None
    if not head.strip():
        return
    # Spreadsheets set to European locales save CSV with semicolons.
    delimiter = max((",", ";", "\t"), key=head.count)
    f.seek(0)
    reader = csv.reader(f, delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(reader)]
        if not any(h in SIGNAL_TYPES or h == "value" for h in header):
            raise BankError(
                f"{path}: nothing imported; line 1: the header row must name a "
                f"column {', '.join(KINDS)} (or kind and value); it has "
                f"{', '.join(h for h in header if h) or 'no names'}"
            )
        for row in reader:
            n = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) > len(header) and any(c.strip() for c in row[len(header) :]):
                yield n, f"{len(row)} fields but the header names {len(header)}"
                continue
            yield n, {h: c.strip() for h, c in zip(header, row) if h and c.strip()}
    except UnicodeDecodeError:
        raise BankError(
            f"{path}: nothing imported; line {reader.line_num + 1}: not UTF-8 text"
        ) from None
    except csv.Error as exc:
        raise BankError(f"{path}: nothing imported; line {reader.line_num}: {exc}") from None


def _time(name: str, raw: Any, problems: list[str]) -> dt.datetime | None:
    if not isinstance(raw, str):
        problems.append(f"{name}: must be a date and time in ISO 8601, e.g. 2026-11-20T10:15:00Z")
        return None
    try:
        t = dt.datetime.fromisoformat(raw)
    except ValueError:
        problems.append(
            f"{name}: {raw!r} is not a date and time in ISO 8601, e.g. 2026-11-20T10:15:00Z"
        )
        return None
    if t.tzinfo is None:
        problems.append(f"{name}: {raw!r} needs a time zone, e.g. 2026-11-20T10:15:00Z")
        return None
    return t.astimezone(dt.UTC)


def _row_indicators(
    doc: dict[str, Any], bank: str, defaults: _Defaults, now: dt.datetime, problems: list[str]
) -> list[dict[str, Any]]:
    """The indicators of one row (one per hash it carries), or problems appended."""
    signals: list[tuple[str, str]] = []
    if "kind" in doc or "value" in doc:  # the export's shape: one kind and its value
        kind, value = doc.get("kind"), doc.get("value")
        if not isinstance(kind, str) or kind not in SIGNAL_TYPES:
            problems.append(
                f"kind: must be one of {', '.join(KINDS)}"
                + (f", not {kind!r}" if kind is not None else "")
            )
        elif value is None:
            problems.append("value: missing (a row with a kind needs its value)")
        else:
            try:
                signals.append((kind, SIGNAL_TYPES[kind].normalise(str(value))))
            except ValueError as exc:
                problems.append(f"value: {exc}")
    for kind, st in SIGNAL_TYPES.items():
        if kind in doc:
            try:
                signals.append((kind, st.normalise(str(doc[kind]))))
            except ValueError as exc:
                problems.append(f"{kind}: {exc}")
    if not signals and not problems:
        problems.append(f"needs at least one of {', '.join(KINDS)}")

    prov: dict[str, Any] = {}
    for name, limit in _TEXT_LIMITS.items():
        v = doc.get(name)
        if v is None:
            continue
        if not isinstance(v, str):
            problems.append(f"{name}: must be text")
            continue
        v = v.strip()
        if not v:
            continue
        if limit and len(v) > limit:
            problems.append(f"{name}: longer than {limit} characters")
        prov[name] = v
    for name in ("added_at", "changed_at"):
        if doc.get(name) not in (None, ""):
            prov[name] = _time(name, doc[name], problems)
    enabled = True
    raw = doc.get("enabled")
    if isinstance(raw, bool):
        enabled = raw
    elif isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
        enabled = raw.strip().lower() in _TRUE
    elif raw is not None:
        problems.append("enabled: must be true or false")
    if problems:
        return []
    base = dict(
        bank=bank,
        source=prov.get("source", defaults.source),
        added_by=prov.get("added_by", defaults.added_by),
        added_at=prov.get("added_at", now),
        reason=prov.get("reason", defaults.reason),
        enabled=enabled,
        changed_at=prov.get("changed_at"),
        changed_by=prov.get("changed_by"),
        change_reason=prov.get("change_reason"),
    )
    return [dict(base, kind=k, value=v) for k, v in dict.fromkeys(signals)]


_COLUMNS = (
    "bank",
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
_PG_TYPES = {"added_at": "timestamptz", "changed_at": "timestamptz", "enabled": "boolean"}
# One statement per chunk, its columns sent as arrays: a many-row VALUES list costs psycopg
# more to prepare than PostgreSQL takes to run it.
_PG_INSERT = text(
    f"WITH ins AS (INSERT INTO indicators ({', '.join(_COLUMNS)}) "
    "SELECT * FROM unnest("
    + ", ".join(f"CAST(:{c} AS {_PG_TYPES.get(c, 'text')}[])" for c in _COLUMNS)
    + ") ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM ins"
)


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert, skipping entries already in the bank; returns how many were new."""
    if conn.dialect.name == "postgresql":
        return int(
            conn.execute(_PG_INSERT, {c: [r[c] for r in rows] for c in _COLUMNS}).scalar_one()
        )
    stmt = sqlite.insert(_T).on_conflict_do_nothing().returning(_T.c.id)
    return len(conn.execute(stmt, rows).all())


def import_file(
    settings: Settings,
    bank: str,
    path: Path,
    *,
    source: str,
    added_by: str,
    reason: str | None,
    fmt: str | None = None,
) -> ImportResult:
    """Load the hashes of a JSON lines or CSV file into a bank.

    Each row carries one or more of sha256, md5, pdq (or `kind` and `value`, as exported),
    and may carry its own source, added_by, reason (and added_at, enabled, changed_* as
    exported) in place of the defaults given here. Any bad row: nothing is imported and the
    error names the lines and fields. Returns (added, already present)."""
    check_bank(bank)
    fmt = file_format(path, fmt)
    src = _text_default("source", source, 200)
    who = _text_default("added_by", added_by, 100)
    if src is None or who is None:
        raise BankError("source and added_by must not be empty")
    defaults = _Defaults(src, who, _text_default("reason", reason, None))
    f = _open(path, "r", encoding="utf-8-sig", newline="") if fmt == "csv" else _open(path, "rb")
    records = _csv_records(f, path) if fmt == "csv" else _jsonl_records(f)
    problems = _Problems()
    added = seen = 0
    now = m.now()
    engine = _engine(settings)
    try:
        with f, engine.begin() as conn:
            chunk: dict[tuple[str, str], dict[str, Any]] = {}
            for n, rec in records:
                if isinstance(rec, str):
                    problems.add(n, rec)
                    continue
                row_problems: list[str] = []
                rows = _row_indicators(rec, bank, defaults, now, row_problems)
                for p in row_problems:
                    problems.add(n, p)
                if problems.count:
                    continue  # keep reading only to report the problems
                for r in rows:
                    seen += 1
                    chunk.setdefault((r["kind"], r["value"]), r)
                if len(chunk) >= CHUNK:
                    added += _insert(conn, list(chunk.values()))
                    chunk.clear()
            if problems.count:
                raise problems.error(path)  # rolls the transaction back
            if chunk:
                added += _insert(conn, list(chunk.values()))
    except OSError as exc:
        raise BankError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        engine.dispose()
    log.info("imported %s: %d added to %s, %d already there", path, added, bank, seen - added)
    return ImportResult(added, seen - added)


def parse_lines(path: Path) -> list[tuple[str, str]]:
    """(kind, normalised value) pairs of a JSON lines file; any bad line raises BankError."""
    out: list[tuple[str, str]] = []
    problems = _Problems()
    defaults, now = _Defaults("-", "-", None), m.now()
    with _open(path, "rb") as f:
        for n, rec in _jsonl_records(f):
            if isinstance(rec, str):
                problems.add(n, rec)
                continue
            row_problems: list[str] = []
            out += [
                (r["kind"], r["value"])
                for r in _row_indicators(rec, "-", defaults, now, row_problems)
            ]
            for p in row_problems:
                problems.add(n, p)
    if problems.count:
        raise problems.error(path)
    return out
