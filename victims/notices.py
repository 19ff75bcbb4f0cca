"""Removal notices and the providers' answers: when a match gets a notice and what it
says, `removal_cancelled` after a withdrawal, deciding about new matches (`notice_new_matches`),
the Art. 48(6) no-removal holds a notice waits for, sending what is due with its repeats and
escalations (`dispatch`), and recording a provider's notice-response/v1 (`answer`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from centre import messages as m
from centre import metrics
from centre.audit.sink import NO_AUDIT, AuditSink
from centre.topology import NOTICE_RESPONSES, notices_topic
from routing.tables import Hold
from victims.common import (
    LEGAL_BASIS,
    OPEN,
    STAGE,
    WITHDRAWN,
    _audit,
    _aware,
    _chunks,
    _insert_ignore,
    cancel_id_for,
    notice_id_for,
    request_ref,
    subject,
)
from victims.tables import VictimMatch, VictimNotice, VictimRequest

# ------------------------------------------------------------------------------- notices


def eligible(publicly_available: bool | None, removed: bool | None) -> bool:
    """A removal notice goes for an item known to be publicly available or not known to be
    removed already."""
    return publicly_available is True or removed is not True


def removal_body(mt: VictimMatch, notice_id: str) -> dict[str, Any]:
    """notice/v1 `removal`: what to remove and where (the provider's own report ids, the
    content's hashes as the provider reported them, the URL when known) and a reference to
    the request valid for this provider only; never the victim's identity or their hashes.
    `attempt`, `first_sent_at` and `at` are added at each sending."""
    return {
        "schema": "notice/v1",
        "notice_id": notice_id,
        "type": "removal",
        "provider_id": mt.provider_id,
        "provider_report_id": mt.provider_report_id,
        "report_id": mt.report_id,
        "content_id": mt.content_id,
        "content": dict(mt.content or {}),
        "url": mt.url,
        "request_ref": request_ref(mt.request_id, mt.provider_id),
        "legal_basis": LEGAL_BASIS,
        "answer": {
            "schema": "notice-response/v1",
            "topic": NOTICE_RESPONSES,
            "status": ["removed", "not_found", "refused"],
        },
    }


def cancellation_row(n: VictimNotice, now: dt.datetime) -> dict[str, Any]:
    """A queued notice/v1 `removal_cancelled` for a removal notice the provider has."""
    cid = cancel_id_for(n.notice_id)
    return {
        "notice_id": cid,
        "request_id": n.request_id,
        "match_id": n.match_id,
        "type": "removal_cancelled",
        "provider_id": n.provider_id,
        "report_id": n.report_id,
        "state": "pending",
        "attempts": 0,
        "created_at": now,
        "body": {
            "schema": "notice/v1",
            "notice_id": cid,
            "type": "removal_cancelled",
            "provider_id": n.provider_id,
            "cancels": n.notice_id,
            "provider_report_id": n.body.get("provider_report_id"),
            "report_id": n.report_id,
            "content_id": n.body.get("content_id"),
            "request_ref": n.body.get("request_ref"),
            "reason": "the request was withdrawn; no answer is needed",
        },
    }


def notice_new_matches(
    s: Session, *, now: dt.datetime, request_ids: Sequence[str] | None = None, limit: int = 5000
) -> tuple[int, int]:
    """Decide about matches not looked at yet: a removal notice for each eligible one of an
    open request (queued, sent by `dispatch`). Returns (matches decided, notices queued)."""
    q = (
        select(VictimMatch, VictimRequest.state)
        .join(VictimRequest, VictimRequest.request_id == VictimMatch.request_id)
        .where(VictimMatch.state == "new")
    )
    if request_ids is not None:
        q = q.where(VictimMatch.request_id.in_(list(request_ids)))
    # FOR SHARE of the requests (PostgreSQL; SQLite has one writer): a withdrawal waits, or
    # is seen, never committed in between.
    rows = s.execute(
        q.order_by(VictimMatch.id).limit(limit).with_for_update(read=True, of=VictimRequest)
    ).all()
    notices: list[dict[str, Any]] = []
    for mt, req_state in rows:
        if req_state != OPEN:
            mt.state = "withdrawn"
            continue
        if eligible(mt.publicly_available, mt.removed):
            nid = notice_id_for(mt.request_id, mt.report_id, mt.content_id)
            notices.append(
                {
                    "notice_id": nid,
                    "request_id": mt.request_id,
                    "match_id": mt.id,
                    "type": "removal",
                    "provider_id": mt.provider_id,
                    "report_id": mt.report_id,
                    "body": removal_body(mt, nid),
                    "state": "pending",
                    "attempts": 0,
                    "created_at": now,
                }
            )
            mt.state = "noticed"
        else:
            mt.state = "no_notice"
        _audit(
            s,
            STAGE,
            "victim.matched",
            subject(mt.request_id),
            {
                "report_id": mt.report_id,
                "case_id": mt.case_id,
                "provider_id": mt.provider_id,
                "content_id": mt.content_id,
                "item": mt.item,
                "signal": mt.signal,
                "distance": mt.distance,
                "found_by": mt.found_by,
                "notice": mt.state == "noticed",
            },
            at=now,
            discriminator=f"{mt.report_id}|{mt.content_id}",
        )
    for chunk in _chunks(notices, 1000):
        s.execute(_insert_ignore(s, VictimNotice.__table__), list(chunk))
    if rows:
        metrics.OUTCOMES.labels(STAGE, "matched").inc(len(rows))
    return len(rows), len(notices)


@dataclass(slots=True)
class Dispatched:
    sent: int = 0
    repeats: int = 0
    cancellations: int = 0
    escalated: int = 0
    held: int = 0  # due, but the report is under a no-removal hold: due again when it ends


def removal_holds(
    s: Session, report_ids: Iterable[str], now: dt.datetime
) -> dict[str, dt.datetime]:
    """Reports under an Art. 48(6) hold that asks the provider not to remove the content
    (`centre liaison hold --no-removal`): when the last such hold ends. A removal notice
    about one waits until then, first sending and repeats alike."""
    ids = sorted(set(report_ids))
    out: dict[str, dt.datetime] = {}
    for chunk in _chunks(ids):
        for rid, until in s.execute(
            select(Hold.report_id, func.max(Hold.until))
            .where(Hold.report_id.in_(list(chunk)), Hold.no_removal.is_(True), Hold.until > now)
            .group_by(Hold.report_id)
        ):
            out[rid] = _aware(until)
    return out


def dispatch(
    sessions: Any,
    producer: Any,
    provider_topics: Any,
    *,
    now: dt.datetime,
    repeat: dt.timedelta,
    escalate_after: int,
    audit: AuditSink = NO_AUDIT,
    limit: int = 5000,
) -> Dispatched:
    """Send what is due: removal notices never sent, unanswered ones whose repeat is due
    (escalating those sent `escalate_after` times without an answer), cancellations. Marked
    sent only after the broker acknowledged them."""
    out = Dispatched()
    with sessions.begin() as s:
        rows = s.scalars(
            select(VictimNotice)
            .where(
                or_(
                    and_(
                        VictimNotice.state == "pending",
                        or_(VictimNotice.next_due_at.is_(None), VictimNotice.next_due_at <= now),
                    ),
                    and_(VictimNotice.state == "sent", VictimNotice.next_due_at <= now),
                )
            )
            .order_by(VictimNotice.created_at, VictimNotice.notice_id)
            .limit(limit)
        ).all()
        if not rows:
            return out
        held = removal_holds(s, [n.report_id for n in rows if n.type == "removal"], now)
        withdrawn = set(
            s.scalars(
                select(VictimRequest.request_id).where(
                    VictimRequest.request_id.in_(sorted({n.request_id for n in rows})),
                    VictimRequest.state == WITHDRAWN,
                )
            )
        )
        outgoing = []
        for n in rows:
            if n.type == "removal" and n.request_id in withdrawn:
                n.state, n.next_due_at = "cancelled", None  # withdrawn since it was queued
                continue
            until = held.get(n.report_id) if n.type == "removal" else None
            if until is not None:  # law enforcement asked the provider not to remove it yet
                n.next_due_at = until
                out.held += 1
                _audit(
                    s,
                    STAGE,
                    "victim.notice_held",
                    subject(n.request_id),
                    {
                        "notice_id": n.notice_id,
                        "provider_id": n.provider_id,
                        "until": m.iso(until),
                        "sent_before": n.attempts,
                    },
                    at=now,
                    discriminator=f"{n.notice_id}|{m.iso(until)}",
                )
                continue
            if (
                n.state == "sent"
                and n.type == "removal"
                and n.attempts >= escalate_after
                and n.escalation is None
            ):
                n.escalation, n.escalated_at = "unanswered", now
                out.escalated += 1
                _audit(
                    s,
                    STAGE,
                    "victim.notice_escalated",
                    subject(n.request_id),
                    {
                        "notice_id": n.notice_id,
                        "provider_id": n.provider_id,
                        "why": "unanswered",
                        "sent": n.attempts,
                    },
                    at=now,
                    discriminator=n.notice_id,
                )
            body = dict(n.body)
            body.update(attempt=n.attempts + 1, at=m.iso(now))
            if n.type == "removal":
                body["first_sent_at"] = m.iso(n.first_sent_at or now)
            outgoing.append((n.notice_id, n.provider_id, n.type, n.attempts, n.request_id, body))
        audit.settle(s)
    if not outgoing:
        return out
    provider_topics.ensure({o[1] for o in outgoing})
    for nid, provider, _t, _a, _r, body in outgoing:
        producer.send(notices_topic(provider), m.dumps(body), key=nid.encode())
    producer.flush_or_raise()
    with sessions.begin() as s:
        for nid, provider, kind, attempts, rid, _body in outgoing:
            if kind == "removal":
                values: dict[str, Any] = {
                    "attempts": attempts + 1,
                    "last_sent_at": now,
                    "next_due_at": now + repeat,
                    "first_sent_at": func.coalesce(VictimNotice.first_sent_at, now),
                    "state": "sent",
                }
            else:
                values = {
                    "attempts": attempts + 1,
                    "last_sent_at": now,
                    "first_sent_at": now,
                    "next_due_at": None,
                    "state": "done",
                }
            done = s.execute(
                update(VictimNotice)
                .where(
                    VictimNotice.notice_id == nid,
                    VictimNotice.attempts == attempts,
                    VictimNotice.state.in_(("pending", "sent")),
                )
                .values(**values)
            ).rowcount
            if not done and kind == "removal":
                late = s.get(VictimNotice, nid)
                if late is not None and late.state == "cancelled":
                    # The victim withdrew while this was on its way: tell the provider.
                    s.execute(
                        _insert_ignore(s, VictimNotice.__table__), [cancellation_row(late, now)]
                    )
            if kind != "removal":
                out.cancellations += 1
            elif attempts:
                out.repeats += 1
            else:
                out.sent += 1
            _audit(
                s,
                STAGE,
                "victim.notice_sent",
                subject(rid),
                {
                    "notice_id": nid,
                    "provider_id": provider,
                    "type": kind,
                    "attempt": attempts + 1,
                    "answered_meanwhile": not done,
                },
                at=now,
                discriminator=f"{nid}|{attempts + 1}",
            )
        audit.settle(s)
    metrics.MESSAGES_OUT.labels(STAGE, "notice").inc(len(outgoing))
    return out


# ------------------------------------------------------------------------------- answers


@dataclass(slots=True)
class Answered:
    accepted: bool
    notice_id: str | None = None
    request_id: str | None = None
    changed: bool = False
    problems: list[dict[str, str]] = field(default_factory=list)


def answer(s: Session, doc: dict[str, Any], *, source: str, now: dt.datetime) -> Answered:
    """Record a provider's notice-response/v1. A provider answering a notice it was not sent
    (or one that does not exist: the same answer) changes nothing and is refused."""
    from victims.model import problem, response_time

    nid, provider, status = doc["notice_id"], doc["provider_id"], doc["status"]
    n = s.get(VictimNotice, nid)
    if n is None or n.provider_id != provider or n.type != "removal":
        codes = ["unknown_notice"]
        _audit(
            s,
            STAGE,
            "victim.response_refused",
            f"notice:{nid}",
            {"provider_id": provider, "codes": codes, "source": source},
            at=now,
            discriminator=source,
        )
        metrics.OUTCOMES.labels(STAGE, "response_refused").inc()
        return Answered(
            False,
            nid,
            problems=[
                problem(
                    "unknown_notice",
                    f"no removal notice with this notice_id was sent to {provider}",
                    "$.notice_id",
                )
            ],
        )
    out = Answered(True, nid, n.request_id)
    if n.answer in ("removed", "not_found") or (n.answer == status and status == "refused"):
        _audit(
            s,
            STAGE,
            "victim.response_repeated",
            subject(n.request_id),
            {
                "notice_id": nid,
                "provider_id": provider,
                "status": status,
                "kept": n.answer,
                "source": source,
            },
            at=now,
            discriminator=source,
        )
        return out
    if not n.attempts:
        # Answered, so it reached the provider: the worker stopped between sending it and
        # marking it sent. It went about when it was queued.
        n.attempts, n.first_sent_at, n.last_sent_at = 1, n.created_at, n.created_at
    reason = doc.get("reason")
    n.answer, n.answer_reason, n.answered_at = status, reason, now
    if status == "removed":
        said = response_time(doc, "removed_at")
        start = _aware(n.first_sent_at) if n.first_sent_at else now
        n.removed_at = min(max(said, start), now) if said else now
    if n.state in ("pending", "sent"):
        n.state, n.next_due_at = "answered", None
    if status == "refused" and n.escalation != "refused":
        n.escalation, n.escalated_at = "refused", now
    out.changed = True
    details: dict[str, Any] = {
        "notice_id": nid,
        "provider_id": provider,
        "status": status,
        "report_id": n.report_id,
        "source": source,
    }
    if reason:
        details["reason"] = str(reason)[:2000]
    if n.removed_at is not None and n.first_sent_at is not None:
        details["hours_to_removal"] = round(
            (_aware(n.removed_at) - _aware(n.first_sent_at)).total_seconds() / 3600, 3
        )
    _audit(
        s,
        STAGE,
        "victim.notice_answered",
        subject(n.request_id),
        details,
        at=now,
        discriminator=source,
    )
    metrics.OUTCOMES.labels(STAGE, f"answer_{status}").inc()
    return out
