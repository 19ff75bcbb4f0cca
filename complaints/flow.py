"""The complaint flow: file, assign, note, decide, and the effects of a decision.

Every function that changes a complaint takes an open session and writes in the caller's
transaction (the intake stage files a whole batch in one; the command line one complaint).
Every transition is a row in `complaint_events` for the case handler and an audit entry
(`_audit`). Effects that leave the centre (retraction/v1 to law enforcement, notice/v1 to
providers) are queued in `complaint_messages` with deterministic ids in the same transaction
as the decision and sent by `dispatch` after it commits; a message is marked sent only once
the broker acknowledged it. A crash, a retry or a repeated decide therefore re-sends only
what has not gone, and a retraction is sent once per (case, recipient) ever.

Personal data (the complainant's contact reference, the statement) never goes to a log, a
metric or the statistics; logs name complaints by id.

The flow's parts are beside this module: complaints/common.py (constants, errors, audit, ids,
helpers), complaints/subject.py (the report a complaint is about), complaints/effects.py
(what a decision queues: retractions, the false_positive bank, related cases, notices) and
complaints/sending.py (`dispatch`). This module keeps filing, linking, assigning, noting and
deciding, and is the flow's front door: the worker, the service and the tests reach all of it
as `flow.<name>`.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from centre import messages as m
from centre import metrics
from centre.audit.sink import NO_AUDIT, AuditSink, queue, staff  # noqa: F401
from centre.db import Report
from complaints import states

# The front door: the names marked `noqa: F401` are not used here; the worker, the service and
# the tests reach them as `flow.<name>`.
from complaints.common import (
    HELD_BY_HOLDS,
    MAX_ACTOR,
    MAX_TEXT,
    STAGE,
    ComplaintError,
    NotFound,  # noqa: F401
    _audit,  # noqa: F401
    _event,
    _text,
    active_holds,
    complaint_id_for,
    filing_id_for,
    get,
    notice_id_for,
)
from complaints.effects import (
    _bank,
    _decided_notice,
    _list_related,
    _notice_row,
    _queue,
    _reinstatement,
    _retractions,
)
from complaints.model import ComplaintV1
from complaints.sending import Dispatched, dispatch  # noqa: F401
from complaints.subject import Subject, resolve
from complaints.tables import Complaint, ComplaintFiling

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------- filing


@dataclass(frozen=True, slots=True)
class Filed:
    complaint_id: str
    filing_id: str
    state: str
    matched: bool
    joined: bool  # joined a complaint already open about the same report
    new: bool  # False: this filing was received before (a resend or a replay)
    due_at: dt.datetime
    case_id: str | None


def _ack(c: Complaint, f: ComplaintFiling, filed: Filed, now: dt.datetime) -> dict[str, Any]:
    """notice/v1 `complaint_received` for a company that filed (or had a handler file) it."""
    return {
        "schema": "notice/v1",
        "notice_id": notice_id_for("complaint_received", c.complaint_id, f.filing_id),
        "type": "complaint_received",
        "provider_id": f.filer,
        "complaint_id": c.complaint_id,
        "complaint_ref": f.complaint_ref,
        "state": c.state,
        "matched": filed.matched,
        "joined": filed.joined,
        "decide_by": m.iso(c.due_at),
        "at": m.iso(now),
    }


def file_complaint(
    s: Session, complaint: ComplaintV1, *, source: str, actor: str, now: dt.datetime, sla_days: int
) -> Filed:
    """Record one complaint/v1. Unmatched ones are kept (state received, `matched_by` None);
    one about a report with an open complaint joins it; a filing seen before changes
    nothing. A filing through a company queues its `complaint_received` notice."""
    body = complaint.model_dump(by_alias=True, exclude_unset=True)
    filer = complaint.filer
    fid = filing_id_for(complaint.channel, filer, complaint.complaint_ref)
    prior = s.get(ComplaintFiling, fid)
    if prior is not None:
        c = s.get(Complaint, prior.complaint_id)
        assert c is not None
        return Filed(
            c.complaint_id,
            fid,
            c.state,
            c.matched_by is not None,
            prior.joined,
            False,
            c.due_at,
            c.case_id,
        )
    concerns = dict(body["concerns"])
    subject = resolve(
        s, concerns, complaint.provider_id if complaint.channel == "provider" else None
    )
    c = None
    if subject is not None:
        # Serialise filings about one report (PostgreSQL; SQLite has one writer anyway) so
        # that two at once cannot both open a complaint.
        s.execute(
            select(Report.report_id).where(Report.report_id == subject.report_id).with_for_update()
        )
        c = s.scalars(
            select(Complaint)
            .where(Complaint.report_id == subject.report_id, Complaint.state.in_(states.OPEN))
            .order_by(Complaint.opened_at)
            .limit(1)
        ).first()
    joined = c is not None
    if c is None:
        c = Complaint(
            complaint_id=complaint_id_for(fid),
            state=states.RECEIVED,
            matched_by=subject.matched_by if subject else None,
            report_id=subject.report_id if subject else None,
            case_id=subject.case_id if subject else None,
            provider_id=subject.provider_id if subject else None,
            opened_at=now,
            due_at=now + dt.timedelta(days=sla_days),
            related_cases=0,
            effects="none",
        )
        s.add(c)
        s.flush()
    f = ComplaintFiling(
        filing_id=fid,
        complaint_id=c.complaint_id,
        channel=complaint.channel,
        filer=filer,
        complaint_ref=complaint.complaint_ref,
        grounds=complaint.grounds,
        contact_ref=complaint.contact_ref,
        statement=complaint.statement,
        concerns=concerns,
        body=body,
        filed_at=complaint.filed_at,
        received_at=now,
        source=source[:300],
        joined=joined,
    )
    s.add(f)
    details = {
        "filing_id": fid,
        "channel": complaint.channel,
        "filer": filer,
        "grounds": complaint.grounds,
        "matched_by": c.matched_by,
        "source": source,
    }
    if not joined:
        details["to"] = states.RECEIVED
    _event(
        s,
        c,
        actor,
        "joined" if joined else "filed",
        now,
        details,
        by_staff=source.startswith("cli:"),
        discriminator=fid,
    )
    filed = Filed(
        c.complaint_id, fid, c.state, c.matched_by is not None, joined, True, c.due_at, c.case_id
    )
    if complaint.channel == "provider":
        ack = _ack(c, f, filed, now)
        _queue(s, [_notice_row(c, ack, filer, now, case_id=None)])
    outcome = "joined" if joined else ("filed" if subject else "unmatched")
    metrics.OUTCOMES.labels(STAGE, outcome).inc()
    log.info("complaint %s: filing %s %s", c.complaint_id, fid, outcome)
    return filed


def link(
    s: Session, complaint_id: str, concerns: dict[str, Any], *, by: str, now: dt.datetime
) -> Subject:
    """Tie an unmatched complaint to the report a case handler found for it."""
    by = _text("by", by, MAX_ACTOR)
    c = get(s, complaint_id, lock=True)
    if c.state in states.FINAL:
        raise ComplaintError(f"the complaint is already {c.state}; a decision is final")
    if c.report_id is not None:
        raise ComplaintError(f"the complaint is already about case {c.case_id}")
    subject = resolve(s, concerns)
    if subject is None:
        raise ComplaintError("the centre knows no report by what you gave")
    c.matched_by, c.report_id = subject.matched_by, subject.report_id
    c.case_id, c.provider_id = subject.case_id, subject.provider_id
    _event(
        s,
        c,
        by,
        "linked",
        now,
        {"matched_by": subject.matched_by, "report_id": c.report_id},
        by_staff=True,
    )
    return subject


# ------------------------------------------------------------------------------- handling


def assign(s: Session, complaint_id: str, handler: str, *, by: str, now: dt.datetime) -> Complaint:
    """Give the complaint to a case handler: received → under_review, or hand it over."""
    handler = _text("handler", handler, MAX_ACTOR)
    by = _text("by", by, MAX_ACTOR)
    c = get(s, complaint_id, lock=True)
    states.check(c.state, states.UNDER_REVIEW)
    before, previous = c.state, c.assignee
    c.state, c.assignee = states.UNDER_REVIEW, handler
    if before == states.RECEIVED:
        _event(
            s,
            c,
            by,
            "assigned",
            now,
            {"from": before, "to": c.state, "assignee": handler},
            by_staff=True,
        )
    else:
        _event(
            s, c, by, "reassigned", now, {"previous": previous, "assignee": handler}, by_staff=True
        )
    return c


def note(s: Session, complaint_id: str, text: str, *, by: str, now: dt.datetime) -> Complaint:
    """Add a case handler's note (kept in the complaint's history; any state)."""
    text = _text("the note", text, MAX_TEXT)
    by = _text("by", by, MAX_ACTOR)
    c = get(s, complaint_id, lock=True)
    _event(s, c, by, "noted", now, {"chars": len(text)}, by_staff=True, personal={"text": text})
    return c


@dataclass(slots=True)
class Decided:
    complaint_id: str
    decision: str
    repeated: bool = False  # decided the same way before: nothing recorded again
    retractions: int = 0  # queued now (a (case, recipient) retracted before is not again)
    notices: int = 0
    banked: int = 0  # new false_positive entries (re-enabled ones included)
    bank_values: int = 0  # hashes of the content, whether new to the bank or not
    related_cases: int = 0
    held_until: dt.datetime | None = None


def decide(
    s: Session, complaint_id: str, *, uphold: bool, reason: str, by: str, now: dt.datetime
) -> Decided:
    """Decide a complaint under review and queue its effects (sent by `dispatch`).

    Upheld: a retraction/v1 to every recipient the case went to, a `reinstatement` notice to
    the reporting company, the content's hashes into the false_positive bank with the
    complaint as their provenance, the other cases of its cluster listed for review, and the
    decision to each company that filed. Rejected: the decision with the reasons to each
    company that filed; nothing else changes."""
    reason = _text("the reason", reason, MAX_TEXT)
    by = _text("by", by, MAX_ACTOR)
    decision = states.UPHELD if uphold else states.REJECTED
    c = get(s, complaint_id, lock=True)
    if c.state == decision:
        return Decided(
            c.complaint_id,
            decision,
            repeated=True,
            related_cases=c.related_cases,
            held_until=c.effects_held_until,
        )
    states.check(c.state, decision)
    if uphold and c.report_id is None:
        raise ComplaintError(
            "the complaint names nothing the centre knows (unmatched): link "
            "it to a report first (centre complaints link ID …), or reject it"
        )
    before = c.state
    c.state, c.decided_at, c.decided_by, c.decision_reason = decision, now, by, reason
    out = Decided(c.complaint_id, decision)
    rows: list[dict[str, Any]] = []
    if uphold:
        rows += _retractions(s, c, reason, now)
        out.retractions = len(rows)
        out.bank_values, out.banked = _bank(s, c, reason, by, now)
        out.related_cases = c.related_cases = _list_related(s, c)
        if c.provider_id:
            rows.append(
                _notice_row(
                    c, _reinstatement(s, c, reason, now), c.provider_id, now, case_id=c.case_id
                )
            )
    filings = s.scalars(
        select(ComplaintFiling)
        .where(ComplaintFiling.complaint_id == c.complaint_id)
        .order_by(ComplaintFiling.received_at, ComplaintFiling.filing_id)
    ).all()
    for f in filings:
        if f.channel == "provider":
            rows.append(_notice_row(c, _decided_notice(c, f, now), f.filer, now, case_id=c.case_id))
    out.notices = len(rows) - out.retractions
    held = active_holds(s, [c.case_id], now)
    until = held.get(c.case_id) if c.case_id else None
    for r in rows:
        if until is not None and r["kind"] == "notice" and r["body"]["type"] in HELD_BY_HOLDS:
            r["state"], r["not_before"] = "held", until
    _queue(s, rows)
    c.effects = (
        "held"
        if until and any(r["state"] == "held" for r in rows)
        else ("pending" if rows else "none")
    )
    c.effects_held_until = until if c.effects == "held" else None
    out.held_until = c.effects_held_until
    _event(
        s,
        c,
        by,
        "decided",
        now,
        {
            "from": before,
            "to": decision,
            "reason": reason,
            "retractions": out.retractions,
            "notices": out.notices,
            "banked": out.banked,
            "related_cases": out.related_cases,
        },
        by_staff=True,
    )
    if until is not None:
        _event(
            s,
            c,
            "centre",
            "effects_held",
            now,
            {
                "until": m.iso(until),
                "why": "Art. 48(6) hold on the case: notices to the provider wait for its end",
            },
            by_staff=False,
            discriminator=m.iso(until),
        )
    metrics.OUTCOMES.labels(STAGE, decision).inc()
    log.info(
        "complaint %s %s by %s: %d retraction(s), %d notice(s), %d related case(s)",
        c.complaint_id,
        decision,
        by,
        out.retractions,
        out.notices,
        out.related_cases,
    )
    return out
