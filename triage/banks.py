"""Indicator banks (Art. 44): import of hashes with their provenance."""

from __future__ import annotations

from pathlib import Path

import orjson
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from centre import messages as m
from centre.db import Indicator, make_engine, make_sessionmaker
from centre.settings import Settings
from triage.signals import SIGNAL_TYPES

BANKS = ("known_material", "false_positive")


class BankError(ValueError):
    """Bad input to a bank operation; the message names the file line and field."""


def parse_lines(path: Path) -> list[tuple[str, str]]:
    """(kind, normalised value) pairs from JSON lines; any bad line stops the import whole."""
    out: list[tuple[str, str]] = []
    problems: list[str] = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise BankError(f"cannot read {path}: {exc.strerror}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            problems.append(f"line {n}: not a JSON object")
            continue
        if not isinstance(doc, dict):
            problems.append(f"line {n}: not a JSON object")
            continue
        found = False
        for kind, st in SIGNAL_TYPES.items():
            if kind in doc:
                found = True
                try:
                    out.append((kind, st.normalise(str(doc[kind]))))
                except ValueError as exc:
                    problems.append(f"line {n}: {kind}: {exc}")
        if not found:
            problems.append(f"line {n}: needs at least one of {', '.join(SIGNAL_TYPES)}")
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise BankError(f"{path}: nothing imported; " + "; ".join(problems[:10]) + more)
    return out


def import_file(settings: Settings, bank: str, path: Path, *, source: str, added_by: str,
                reason: str | None) -> tuple[int, int]:
    """Returns (added, already present)."""
    if bank not in BANKS:
        raise BankError(f"unknown bank {bank!r}; banks are {', '.join(BANKS)}")
    pairs = list(dict.fromkeys(parse_lines(path)))
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine).begin() as s:
            existing: set[tuple[str, str]] = set()
            for i in range(0, len(pairs), 500):
                chunk = pairs[i:i + 500]
                found = s.execute(select(Indicator.kind, Indicator.value).where(
                    Indicator.bank == bank, Indicator.value.in_([v for _k, v in chunk]))).all()
                existing |= {tuple(r) for r in found} & set(chunk)
            now = m.now()
            rows = [dict(bank=bank, kind=k, value=v, source=source, added_by=added_by,
                         added_at=now, reason=reason, enabled=True)
                    for k, v in pairs if (k, v) not in existing]
            if rows:
                dialect = s.bind.dialect.name
                ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(
                    Indicator.__table__)
                for i in range(0, len(rows), 1000):
                    s.execute(ins.on_conflict_do_nothing(), rows[i:i + 1000])
    finally:
        engine.dispose()
    return len(rows), len(pairs) - len(rows)
