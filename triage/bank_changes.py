"""Changing a bank's entries: disabling and enabling them with their provenance (when, by
whom, why) and removing them (who and why go to the log), each on the entries a `Selector`
picks, refusing a selector that matches nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, func, select, update

from centre import messages as m
from centre.settings import Settings
from triage.bank_common import (
    _T,
    KINDS,
    BankError,
    ChangeResult,
    Selector,
    _check_kind,
    _engine,
    _text_default,
    check_bank,
)
from triage.signals import SIGNAL_TYPES

# The banks' log keeps its name from before the split of triage/banks.py.
log = logging.getLogger("triage.banks")


# ------------------------------------------------------------------ disable, enable, remove


def _where(bank: str, sel: Selector) -> list[Any]:
    check_bank(bank)
    if sel.value is None and sel.source is None and sel.id is None:
        raise BankError(
            "say which entries: give a value, a source or an id (--value, --source or --id)"
        )
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
        ((value, valid_kinds),) = normal.items()  # every kind lower-cases the same way
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


def set_enabled(
    settings: Settings, bank: str, enabled: bool, selector: Selector, *, reason: str, by: str
) -> ChangeResult:
    """Disable (or enable) the selected entries, recording when, by whom and why. Entries
    already in that state keep their earlier record. Returns (changed, unchanged)."""
    conds = _where(bank, selector)
    why, who = _who_why(reason, by)
    engine = _engine(settings)
    try:
        with engine.begin() as conn:
            matched = conn.execute(select(func.count()).select_from(_T).where(*conds)).scalar_one()
            if not matched:
                raise BankError(
                    f"no entry of {bank} matches {selector.describe()}; nothing changed"
                )
            changed = conn.execute(
                update(_T)
                .where(*conds, _T.c.enabled.is_(not enabled))
                .values(enabled=enabled, changed_at=m.now(), changed_by=who, change_reason=why)
            ).rowcount
    finally:
        engine.dispose()
    log.info(
        "%s %d entries of %s (%s) by %s: %s",
        "enabled" if enabled else "disabled",
        changed,
        bank,
        selector.describe(),
        who,
        why,
    )
    return ChangeResult(changed, matched - changed)


def disable(
    settings: Settings, bank: str, selector: Selector, *, reason: str, by: str
) -> ChangeResult:
    return set_enabled(settings, bank, False, selector, reason=reason, by=by)


def enable(
    settings: Settings, bank: str, selector: Selector, *, reason: str, by: str
) -> ChangeResult:
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
                raise BankError(
                    f"no entry of {bank} matches {selector.describe()}; nothing removed"
                )
    finally:
        engine.dispose()
    log.info("removed %d entries of %s (%s) by %s: %s", n, bank, selector.describe(), who, why)
    return n
