"""Indicator banks (Art. 44): hashes with their provenance.

Import (JSON lines or CSV), export, list, disable, enable and remove, each a plain function
taking the centre's `Settings`. Bad input raises `BankError` with a message an analyst can act
on: the file line and field, the valid banks, the selector that matched nothing.

An import is all or nothing: the file is read as a stream and inserted in chunks inside one
transaction, and any bad row rolls the whole import back.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, NamedTuple

import orjson
from sqlalchemy import case, delete, func, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine

from centre import messages as m
from centre.db import make_engine
from triage.tables import Indicator
from centre.settings import Settings
from triage.signals import SIGNAL_TYPES

log = logging.getLogger(__name__)

BANKS = ("known_material", "grooming", "false_positive")
KINDS = tuple(SIGNAL_TYPES)
FORMATS = ("jsonl", "csv")
# The columns of an export, and what an import row may carry besides its hashes.
FIELDS = ("kind", "value", "source", "added_by", "added_at", "reason", "enabled",
          "changed_at", "changed_by", "change_reason")
CHUNK = 5000  # rows per INSERT batch
_MAX_SHOWN = 10  # problems quoted in the error; the rest are counted
_TEXT_LIMITS = {"source": 200, "added_by": 100, "changed_by": 100,
                "reason": None, "change_reason": None}
_TRUE = ("true", "1", "yes", "y")
_FALSE = ("false", "0", "no", "n")
_T = Indicator.__table__


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
        parts = [f"--{k} {v}" for k, v in (("value", self.value), ("source", self.source),
                                           ("id", self.id), ("kind", self.kind)) if v is not None]
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
        return {"kind": self.kind, "value": self.value, "source": self.source,
                "added_by": self.added_by, "added_at": iso(self.added_at),
                "reason": self.reason, "enabled": self.enabled,
                "changed_at": iso(self.changed_at) if self.changed_at else None,
                "changed_by": self.changed_by, "change_reason": self.change_reason}


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
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


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
        return open(path, mode, **kw)  # noqa: SIM115 - closed by the caller
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
            raise BankError(f"{path}: nothing imported; line 1: the header row must name a "
                            f"column {', '.join(KINDS)} (or kind and value); it has "
                            f"{', '.join(h for h in header if h) or 'no names'}")
        for row in reader:
            n = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) > len(header) and any(c.strip() for c in row[len(header):]):
                yield n, f"{len(row)} fields but the header names {len(header)}"
                continue
            yield n, {h: c.strip() for h, c in zip(header, row) if h and c.strip()}
    except UnicodeDecodeError:
        raise BankError(f"{path}: nothing imported; line {reader.line_num + 1}: "
                        "not UTF-8 text") from None
    except csv.Error as exc:
        raise BankError(f"{path}: nothing imported; line {reader.line_num}: {exc}") from None


def _time(name: str, raw: Any, problems: list[str]) -> dt.datetime | None:
    if not isinstance(raw, str):
        problems.append(f"{name}: must be a date and time in ISO 8601, e.g. 2026-11-20T10:15:00Z")
        return None
    try:
        t = dt.datetime.fromisoformat(raw)
    except ValueError:
        problems.append(f"{name}: {raw!r} is not a date and time in ISO 8601, "
                        "e.g. 2026-11-20T10:15:00Z")
        return None
    if t.tzinfo is None:
        problems.append(f"{name}: {raw!r} needs a time zone, e.g. 2026-11-20T10:15:00Z")
        return None
    return t.astimezone(dt.timezone.utc)


def _row_indicators(doc: dict[str, Any], bank: str, defaults: _Defaults, now: dt.datetime,
                    problems: list[str]) -> list[dict[str, Any]]:
    """The indicators of one row (one per hash it carries), or problems appended."""
    signals: list[tuple[str, str]] = []
    if "kind" in doc or "value" in doc:  # the export's shape: one kind and its value
        kind, value = doc.get("kind"), doc.get("value")
        if not isinstance(kind, str) or kind not in SIGNAL_TYPES:
            problems.append(f"kind: must be one of {', '.join(KINDS)}"
                            + (f", not {kind!r}" if kind is not None else ""))
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
    base = dict(bank=bank, source=prov.get("source", defaults.source),
                added_by=prov.get("added_by", defaults.added_by),
                added_at=prov.get("added_at", now), reason=prov.get("reason", defaults.reason),
                enabled=enabled, changed_at=prov.get("changed_at"),
                changed_by=prov.get("changed_by"), change_reason=prov.get("change_reason"))
    return [dict(base, kind=k, value=v) for k, v in dict.fromkeys(signals)]


_COLUMNS = ("bank", "kind", "value", "source", "added_by", "added_at", "reason", "enabled",
            "changed_at", "changed_by", "change_reason")
_PG_TYPES = {"added_at": "timestamptz", "changed_at": "timestamptz", "enabled": "boolean"}
# One statement per chunk, its columns sent as arrays: a many-row VALUES list costs psycopg
# more to prepare than PostgreSQL takes to run it.
_PG_INSERT = text(
    f"WITH ins AS (INSERT INTO indicators ({', '.join(_COLUMNS)}) "
    "SELECT * FROM unnest("
    + ", ".join(f"CAST(:{c} AS {_PG_TYPES.get(c, 'text')}[])" for c in _COLUMNS)
    + ") ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM ins")


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert, skipping entries already in the bank; returns how many were new."""
    if conn.dialect.name == "postgresql":
        return int(conn.execute(_PG_INSERT, {c: [r[c] for r in rows] for c in _COLUMNS})
                   .scalar_one())
    stmt = sqlite.insert(_T).on_conflict_do_nothing().returning(_T.c.id)
    return len(conn.execute(stmt, rows).all())


def _text_default(name: str, value: str | None, limit: int | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if limit and len(value) > limit:
        raise BankError(f"{name} is longer than {limit} characters")
    return value


def import_file(settings: Settings, bank: str, path: Path, *, source: str, added_by: str,
                reason: str | None, fmt: str | None = None) -> ImportResult:
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
    f = (_open(path, "r", encoding="utf-8-sig", newline="") if fmt == "csv"
         else _open(path, "rb"))
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
            out += [(r["kind"], r["value"])
                    for r in _row_indicators(rec, "-", defaults, now, row_problems)]
            for p in row_problems:
                problems.add(n, p)
    if problems.count:
        raise problems.error(path)
    return out


# ---------------------------------------------------------------------------------- export


def _entry(row: Any) -> Entry:
    return Entry(id=row.id, bank=row.bank, kind=row.kind, value=row.value, source=row.source,
                 added_by=row.added_by, added_at=_utc(row.added_at), reason=row.reason,
                 enabled=bool(row.enabled),
                 changed_at=_utc(row.changed_at) if row.changed_at else None,
                 changed_by=row.changed_by, change_reason=row.change_reason)


def export_file(settings: Settings, bank: str, path: Path, *, fmt: str | None = None,
                include_disabled: bool = False) -> int:
    """Write a bank's entries with their provenance; returns how many. Disabled entries only
    with include_disabled. The file appears whole or not at all."""
    check_bank(bank)
    fmt = file_format(path, fmt)
    conds = [_T.c.bank == bank] + ([] if include_disabled else [_T.c.enabled.is_(True)])
    part = path.with_name(f".{path.name}.part")
    n = 0
    engine = _engine(settings)
    try:
        with engine.connect() as conn:
            result = conn.execution_options(yield_per=10_000).execute(
                select(_T).where(*conds).order_by(_T.c.id))
            if fmt == "csv":
                with open(part, "w", encoding="utf-8", newline="") as ft:
                    w = csv.writer(ft)
                    w.writerow(FIELDS)
                    for row in result:
                        rec = _entry(row).record()
                        rec["enabled"] = "true" if rec["enabled"] else "false"
                        w.writerow(["" if rec[k] is None else rec[k] for k in FIELDS])
                        n += 1
            else:
                with open(part, "wb") as fb:
                    for row in result:
                        fb.write(orjson.dumps(_entry(row).record()) + b"\n")
                        n += 1
        os.replace(part, path)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise BankError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        engine.dispose()
    return n


# ------------------------------------------------------------------ disable, enable, remove


def _where(bank: str, sel: Selector) -> list[Any]:
    check_bank(bank)
    if sel.value is None and sel.source is None and sel.id is None:
        raise BankError("say which entries: give a value, a source or an id "
                        "(--value, --source or --id)")
    _check_kind(sel.kind)
    conds: list[Any] = [_T.c.bank == bank]
    if sel.value is not None:
        kinds = [sel.kind] if sel.kind else list(KINDS)
        normal: dict[str, list[str]] = {}
        for k in kinds:
            try:
                normal.setdefault(SIGNAL_TYPES[k].normalise(sel.value), []).append(k)
            except ValueError:
                pass
        if not normal:
            raise BankError(f"{sel.value!r} is not a valid {' or '.join(kinds)} hash")
        (value, valid_kinds), = normal.items()  # every kind lower-cases the same way
        conds += [_T.c.value == value, _T.c.kind.in_(valid_kinds)]
    elif sel.kind is not None:
        conds.append(_T.c.kind == sel.kind)
    if sel.source is not None:
        conds.append(_T.c.source == sel.source)
    if sel.id is not None:
        conds.append(_T.c.id == sel.id)
    return conds


def _who_why(reason: str | None, by: str | None) -> tuple[str, str]:
    why = _text_default("reason", reason, None)
    who = _text_default("by", by, 100)
    if why is None:
        raise BankError("give the reason for the change (--reason)")
    if who is None:
        raise BankError("say who makes the change (--by)")
    return why, who


def set_enabled(settings: Settings, bank: str, enabled: bool, selector: Selector, *,
                reason: str, by: str) -> ChangeResult:
    """Disable (or enable) the selected entries, recording when, by whom and why. Entries
    already in that state keep their earlier record. Returns (changed, unchanged)."""
    conds = _where(bank, selector)
    why, who = _who_why(reason, by)
    engine = _engine(settings)
    try:
        with engine.begin() as conn:
            matched = conn.execute(select(func.count()).select_from(_T).where(*conds)).scalar_one()
            if not matched:
                raise BankError(f"no entry of {bank} matches {selector.describe()}; "
                                "nothing changed")
            changed = conn.execute(
                update(_T).where(*conds, _T.c.enabled.is_(not enabled)).values(
                    enabled=enabled, changed_at=m.now(), changed_by=who, change_reason=why)
            ).rowcount
    finally:
        engine.dispose()
    log.info("%s %d entries of %s (%s) by %s: %s", "enabled" if enabled else "disabled",
             changed, bank, selector.describe(), who, why)
    return ChangeResult(changed, matched - changed)


def disable(settings: Settings, bank: str, selector: Selector, *, reason: str,
            by: str) -> ChangeResult:
    return set_enabled(settings, bank, False, selector, reason=reason, by=by)


def enable(settings: Settings, bank: str, selector: Selector, *, reason: str,
           by: str) -> ChangeResult:
    return set_enabled(settings, bank, True, selector, reason=reason, by=by)


def remove(settings: Settings, bank: str, selector: Selector, *, reason: str, by: str) -> int:
    """Delete the selected entries; returns how many. Who and why go to the log (the rows,
    and with them their provenance, are gone)."""
    conds = _where(bank, selector)
    why, who = _who_why(reason, by)
    engine = _engine(settings)
    try:
        with engine.begin() as conn:
            n = conn.execute(delete(_T).where(*conds)).rowcount
            if not n:
                raise BankError(f"no entry of {bank} matches {selector.describe()}; "
                                "nothing removed")
    finally:
        engine.dispose()
    log.info("removed %d entries of %s (%s) by %s: %s", n, bank, selector.describe(), who, why)
    return n


# ------------------------------------------------------------------------------------ list


def list_entries(settings: Settings, bank: str, *, kind: str | None = None,
                 source: str | None = None, enabled: bool | None = None,
                 limit: int | None = 100) -> tuple[list[Entry], int]:
    """Entries of a bank, oldest first, at most `limit`; and how many match in all."""
    check_bank(bank)
    _check_kind(kind)
    if limit is not None and limit < 1:
        raise BankError("the limit must be at least 1")
    conds: list[Any] = [_T.c.bank == bank]
    if kind is not None:
        conds.append(_T.c.kind == kind)
    if source is not None:
        conds.append(_T.c.source == source)
    if enabled is not None:
        conds.append(_T.c.enabled.is_(enabled))
    engine = _engine(settings)
    try:
        with engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(_T).where(*conds)).scalar_one()
            q = select(_T).where(*conds).order_by(_T.c.id)
            rows = conn.execute(q.limit(limit) if limit is not None else q).all()
    finally:
        engine.dispose()
    return [_entry(r) for r in rows], total


def summary(settings: Settings, *, kind: str | None = None,
            source: str | None = None) -> list[SummaryRow]:
    """Per bank and kind: how many entries are enabled and disabled."""
    _check_kind(kind)
    conds: list[Any] = []
    if kind is not None:
        conds.append(_T.c.kind == kind)
    if source is not None:
        conds.append(_T.c.source == source)
    on = func.sum(case((_T.c.enabled.is_(True), 1), else_=0))
    off = func.sum(case((_T.c.enabled.is_(True), 0), else_=1))
    engine = _engine(settings)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(_T.c.bank, _T.c.kind, on, off).where(*conds)
                                .group_by(_T.c.bank, _T.c.kind)).all()
    finally:
        engine.dispose()
    order = {b: i for i, b in enumerate(BANKS)}
    return sorted((SummaryRow(b, k, int(e or 0), int(d or 0)) for b, k, e, d in rows),
                  key=lambda r: (order.get(r.bank, len(BANKS)), r.bank, KINDS.index(r.kind)
                                 if r.kind in KINDS else len(KINDS), r.kind))
