"""Indicator banks (Art. 44): hashes with their provenance.

Import (JSON lines or CSV), export, list, disable, enable and remove, each a plain function
taking the centre's `Settings`. Bad input raises `BankError` with a message an analyst can act
on: the file line and field, the valid banks, the selector that matched nothing.

An import is all or nothing: the file is read as a stream and inserted in chunks inside one
transaction, and any bad row rolls the whole import back.

The operations are beside this module: triage/bank_common.py (banks, kinds, types, helpers),
triage/bank_import.py (import and parse), triage/bank_export.py (export) and
triage/bank_changes.py (disable, enable, remove). This module keeps listing and is the banks'
front door: the command line and the tests reach the rest as `banks.<name>` too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select

from centre.settings import Settings

# The front door: the names marked `noqa: F401` are not used here; the tests reach them as
# `banks.<name>`.
from triage.bank_changes import disable, enable, remove  # noqa: F401
from triage.bank_common import (
    _T,
    BANKS,
    FIELDS,  # noqa: F401
    KINDS,
    BankError,
    Entry,
    ImportResult,  # noqa: F401
    SummaryRow,
    _check_kind,
    _engine,
    _entry,
    check_bank,
)
from triage.bank_export import export_file  # noqa: F401
from triage.bank_import import CHUNK, import_file  # noqa: F401

# ------------------------------------------------------------------------------------ list


def list_entries(
    settings: Settings,
    bank: str,
    *,
    kind: str | None = None,
    source: str | None = None,
    enabled: bool | None = None,
    limit: int | None = 100,
) -> tuple[list[Entry], int]:
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


def summary(
    settings: Settings, *, kind: str | None = None, source: str | None = None
) -> list[SummaryRow]:
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
            rows = conn.execute(
                select(_T.c.bank, _T.c.kind, on, off).where(*conds).group_by(_T.c.bank, _T.c.kind)
            ).all()
    finally:
        engine.dispose()
    order = {b: i for i, b in enumerate(BANKS)}
    return sorted(
        (SummaryRow(b, k, int(e or 0), int(d or 0)) for b, k, e, d in rows),
        key=lambda r: (
            order.get(r.bank, len(BANKS)),
            r.bank,
            KINDS.index(r.kind) if r.kind in KINDS else len(KINDS),
            r.kind,
        ),
    )
