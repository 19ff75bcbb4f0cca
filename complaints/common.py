"""What every part of the complaint flow shares: its constants, the errors a case handler
is shown, `_audit` (the one place the flow writes the audit trail), the deterministic ids of
filings, complaints, retractions and notices, and the helpers: checked text, a step in a
complaint's history with its audit entry (`_event`), reading a complaint, and the Art. 48(6)
holds on cases.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from centre.audit.sink import queue, staff
from complaints.tables import Complaint, ComplaintEvent
from routing.tables import Hold

STAGE = "complaints"
FALSE_POSITIVE = "false_positive"
MAX_ACTOR = 100
MAX_TEXT = 10_000

_NS = uuid.UUID("3b0f7a0e-5c1d-4e63-9a1e-6c2d0f4b8e21")
# notice/v1 types a provider gets about a complaint's decision: under an Art. 48(6) hold on
# the case they wait until the hold ends (the receipt of a complaint does not wait).
HELD_BY_HOLDS = ("reinstatement", "complaint_decided")


class ComplaintError(ValueError):
    """Bad input from a case handler or an impossible step; the message says why."""


class NotFound(ComplaintError):
    """No complaint with that id."""


# ------------------------------------------------------------------------------- audit

# The one place this flow writes the audit trail: `_audit` keeps an event with the session's
# transaction, an `AuditSink` appends or emits it (centre/audit/sink.py).
_audit = queue

# ------------------------------------------------------------------------------- ids


def filing_id_for(channel: str, filer: str, complaint_ref: str) -> str:
    """The same filer's same reference is the same filing (a resend, a replay)."""
    return str(uuid.uuid5(_NS, f"filing|{channel}|{filer}|{complaint_ref}"))


def complaint_id_for(filing_id: str) -> str:
    return str(uuid.uuid5(_NS, f"complaint|{filing_id}"))


def retraction_id_for(case_id: str, recipient: str) -> str:
    return str(uuid.uuid5(_NS, f"retraction|{case_id}|{recipient}"))


def notice_id_for(kind: str, complaint_id: str, target: str) -> str:
    return str(uuid.uuid5(_NS, f"notice|{kind}|{complaint_id}|{target}"))


# ------------------------------------------------------------------------------- helpers


def _text(name: str, value: str | None, limit: int) -> str:
    v = (value or "").strip()
    if not v:
        raise ComplaintError(f"{name} must not be empty")
    if len(v) > limit:
        raise ComplaintError(f"{name} must be at most {limit} characters")
    return v


def _event(
    s: Session,
    c: Complaint,
    actor: str,
    action: str,
    now: dt.datetime,
    details: dict[str, Any],
    *,
    by_staff: bool,
    discriminator: str = "",
    personal: dict[str, Any] | None = None,
) -> None:
    """A step in the complaint's history, and its audit entry. `actor` is the case handler
    (`by_staff`), or the filer / the centre for what the worker does. `personal` (a note's
    text) goes to the audit trail sealed under the complaint's own key, erasable."""
    s.add(
        ComplaintEvent(
            complaint_id=c.complaint_id,
            at=now,
            actor=actor,
            action=action,
            details={**details, **(personal or {})},
        )
    )
    _audit(
        s,
        staff(actor) if by_staff else STAGE,
        f"complaint.{action}",
        f"complaint:{c.complaint_id}",
        {"state": c.state, "case_id": c.case_id, "by": actor, **details},
        at=now,
        discriminator=discriminator or (uuid.uuid4().hex if by_staff else ""),
        person=f"complaint:{c.complaint_id}" if personal else None,
        personal=personal,
    )


def get(s: Session, complaint_id: str, *, lock: bool = False) -> Complaint:
    q = select(Complaint).where(Complaint.complaint_id == complaint_id.strip())
    c = s.scalars(q.with_for_update() if lock else q).one_or_none()
    if c is None:
        raise NotFound(f"no complaint {complaint_id!r}; `centre complaints list` shows them")
    return c


def active_holds(
    s: Session, case_ids: Iterable[str | None], now: dt.datetime
) -> dict[str, dt.datetime]:
    """For each case under an Art. 48(6) hold now: when the last of its holds ends."""
    ids = sorted({c for c in case_ids if c})
    if not ids:
        return {}
    return {
        cid: until
        for cid, until in s.execute(
            select(Hold.case_id, func.max(Hold.until))
            .where(Hold.case_id.in_(ids), Hold.until > now)
            .group_by(Hold.case_id)
        )
    }
