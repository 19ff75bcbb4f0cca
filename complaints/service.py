"""A case handler's desk: the complaint flow against the centre's database and broker, one
complaint at a time, for `centre complaints …` (and tests). Each step is one transaction;
effects are sent right after a decision commits (what cannot be sent then stays queued and
the complaints worker sends it)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import func, select

from centre import messages as m
from centre.db import make_engine, make_sessionmaker
from centre.settings import Settings
from complaints import flow, states
from complaints.model import ComplaintV1
from complaints.tables import (
    Complaint,
    ComplaintEvent,
    ComplaintFiling,
    ComplaintMessage,
    ComplaintRelatedCase,
)

log = logging.getLogger(__name__)


class Desk:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        self.sessions = make_sessionmaker(self.engine)
        self._producer: Any = None
        self._keys: Any = None
        self._topics: Any = None
        self._audit: flow.AuditSink | None = None

    def audit(self) -> flow.AuditSink:
        """Steps are appended to the audit trail in their own transaction: no step without
        its entry."""
        if self._audit is None:
            from centre.audit import AuditLog

            self._audit = flow.AuditSink(log=AuditLog(self.settings, engine=self.engine))
        return self._audit

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
        self.engine.dispose()

    def __enter__(self) -> Desk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending -------------------------------------------------------------------------

    def send(self, complaint_ids: list[str], now: dt.datetime | None = None) -> flow.Dispatched:
        """Send the complaint's queued messages now (raises when the broker does not take
        them; they stay queued for the worker)."""
        from centre.kafka import BatchProducer, ProviderTopics
        from centre.keys import KeySet

        if not any(self._has_unsent(cid) for cid in complaint_ids):
            return flow.Dispatched()  # nothing to send: no broker connection at all
        if self._producer is None:
            self._producer = BatchProducer(self.settings, **{"message.timeout.ms": 20000})
            self._keys = KeySet(self.settings.keys_dir)
            self._topics = ProviderTopics(self.settings)
        return flow.dispatch(
            self.sessions,
            self._producer,
            self._keys,
            self._topics,
            complaint_ids=complaint_ids,
            now=now,
            audit=self.audit(),
        )

    def _has_unsent(self, complaint_id: str) -> bool:
        with self.sessions() as s:
            return bool(
                s.scalar(
                    select(func.count())
                    .select_from(ComplaintMessage)
                    .where(
                        ComplaintMessage.complaint_id == complaint_id,
                        ComplaintMessage.state.in_(("pending", "held")),
                    )
                )
            )

    # -- steps -----------------------------------------------------------------------------

    def file(
        self, complaint: ComplaintV1, *, by: str, now: dt.datetime | None = None
    ) -> flow.Filed:
        now = now or m.now()
        with self.sessions.begin() as s:
            filed = flow.file_complaint(
                s,
                complaint,
                source=f"cli:{by}"[:300],
                actor=by,
                now=now,
                sla_days=self.settings.complaint_sla_days,
            )
            self.audit().commit(s)
        if self._has_unsent(filed.complaint_id):
            try:
                self.send([filed.complaint_id], now)
            except Exception as exc:  # the receipt stays queued; the worker sends it
                log.warning("complaint %s: receipt not sent now: %s", filed.complaint_id, exc)
        return filed

    def assign(self, complaint_id: str, handler: str, *, by: str) -> Complaint:
        with self.sessions.begin() as s:
            c = flow.assign(s, complaint_id, handler, by=by, now=m.now())
            self.audit().commit(s)
            return c

    def note(self, complaint_id: str, text: str, *, by: str) -> Complaint:
        with self.sessions.begin() as s:
            c = flow.note(s, complaint_id, text, by=by, now=m.now())
            self.audit().commit(s)
            return c

    def link(self, complaint_id: str, concerns: dict[str, Any], *, by: str) -> flow.Subject:
        with self.sessions.begin() as s:
            sub = flow.link(s, complaint_id, concerns, by=by, now=m.now())
            self.audit().commit(s)
            return sub

    def decide(
        self, complaint_id: str, *, uphold: bool, reason: str, by: str
    ) -> tuple[flow.Decided, flow.Dispatched | None, str | None]:
        """Decide, then send the effects. Returns (decision, what was sent, why sending
        failed or None); a failed send leaves the effects queued for the worker."""
        now = m.now()
        with self.sessions.begin() as s:
            decided = flow.decide(s, complaint_id, uphold=uphold, reason=reason, by=by, now=now)
            self.audit().commit(s)
        try:
            sent = self.send([decided.complaint_id], m.now())
        except Exception as exc:  # broker down: the decision stands, effects stay queued
            log.warning("complaint %s: effects not sent now: %s", decided.complaint_id, exc)
            return decided, None, str(exc)
        return decided, sent, None

    # -- reading ---------------------------------------------------------------------------

    def list(
        self,
        *,
        state: str | None = None,
        overdue: bool = False,
        assignee: str | None = None,
        limit: int = 200,
        now: dt.datetime | None = None,
    ) -> list[dict[str, Any]]:
        now = now or m.now()
        if state is not None and state not in states.STATES:
            raise flow.ComplaintError(
                f"unknown state {state!r}; the states are {', '.join(states.STATES)}"
            )
        q = select(Complaint)
        if state is not None:
            q = q.where(Complaint.state == state)
        if overdue:
            q = q.where(Complaint.state.in_(states.OPEN), Complaint.due_at < now)
        if assignee is not None:
            q = q.where(Complaint.assignee == assignee)
        q = q.order_by(Complaint.due_at, Complaint.complaint_id).limit(limit)
        with self.sessions() as s:
            rows = s.scalars(q).all()
            ids = [c.complaint_id for c in rows]
            filings: dict[str, list[tuple[str, str]]] = {}
            if ids:
                for cid, grounds, channel in s.execute(
                    select(
                        ComplaintFiling.complaint_id,
                        ComplaintFiling.grounds,
                        ComplaintFiling.channel,
                    )
                    .where(ComplaintFiling.complaint_id.in_(ids))
                    .order_by(ComplaintFiling.received_at)
                ):
                    filings.setdefault(cid, []).append((grounds, channel))
        return [_summary(c, filings.get(c.complaint_id, []), now) for c in rows]

    def show(
        self, complaint_id: str, *, related: int = 20, now: dt.datetime | None = None
    ) -> dict[str, Any]:
        """Everything about one complaint for the case handler (contact references included:
        the handler answers through them)."""
        now = now or m.now()
        with self.sessions() as s:
            c = flow.get(s, complaint_id)
            filings = s.scalars(
                select(ComplaintFiling)
                .where(ComplaintFiling.complaint_id == c.complaint_id)
                .order_by(ComplaintFiling.received_at)
            ).all()
            events = s.scalars(
                select(ComplaintEvent)
                .where(ComplaintEvent.complaint_id == c.complaint_id)
                .order_by(ComplaintEvent.id)
            ).all()
            msgs = s.scalars(
                select(ComplaintMessage)
                .where(ComplaintMessage.complaint_id == c.complaint_id)
                .order_by(ComplaintMessage.created_at, ComplaintMessage.message_id)
            ).all()
            rel = s.execute(
                select(ComplaintRelatedCase.case_id, ComplaintRelatedCase.report_id)
                .where(ComplaintRelatedCase.complaint_id == c.complaint_id)
                .order_by(ComplaintRelatedCase.case_id)
                .limit(related)
            ).all()
            hold = flow.active_holds(s, [c.case_id], now).get(c.case_id or "")
        out = _summary(c, [(f.grounds, f.channel) for f in filings], now)
        out.update(
            {
                "report_id": c.report_id,
                "provider_id": c.provider_id,
                "decided_by": c.decided_by,
                "decision_reason": c.decision_reason,
                "case_under_hold_until": m.iso(hold) if hold else None,
                "filings": [
                    {
                        "filing_id": f.filing_id,
                        "channel": f.channel,
                        "filer": f.filer,
                        "complaint_ref": f.complaint_ref,
                        "grounds": f.grounds,
                        "contact_ref": f.contact_ref,
                        "statement": f.statement,
                        "concerns": f.concerns,
                        "filed_at": f.filed_at,
                        "received_at": m.iso(f.received_at),
                        "joined": f.joined,
                        "answer": _answer_route(f),
                    }
                    for f in filings
                ],
                "history": [
                    {"at": m.iso(e.at), "actor": e.actor, "action": e.action, "details": e.details}
                    for e in events
                ],
                "messages": [
                    {
                        "kind": x.kind,
                        "type": x.body.get("type") or x.body.get("schema"),
                        "recipient": x.recipient,
                        "state": x.state,
                        "not_before": m.iso(x.not_before) if x.not_before else None,
                        "sent_at": m.iso(x.sent_at) if x.sent_at else None,
                    }
                    for x in msgs
                ],
                "related_cases_shown": [{"case_id": cid, "report_id": rid} for cid, rid in rel],
            }
        )
        return out


def _answer_route(f: ComplaintFiling) -> str:
    if f.channel == "provider":
        return f"notice/v1 on provider.{f.filer}.notices"
    if f.channel == "coordinating_authority":
        return f"the case handler answers the coordinating authority of {f.filer.upper()}"
    return "the case handler answers through the contact reference"


def _summary(c: Complaint, filings: list[tuple[str, str]], now: dt.datetime) -> dict[str, Any]:
    grounds = list(dict.fromkeys(g for g, _ch in filings))
    return {
        "complaint_id": c.complaint_id,
        "state": c.state,
        "matched": c.matched_by is not None,
        "matched_by": c.matched_by,
        "case_id": c.case_id,
        "grounds": grounds,
        "channels": list(dict.fromkeys(ch for _g, ch in filings)),
        "filings": len(filings),
        "assignee": c.assignee,
        "opened_at": m.iso(c.opened_at),
        "due_at": m.iso(c.due_at),
        "overdue": c.state in states.OPEN and c.due_at < now,
        "decided_at": m.iso(c.decided_at) if c.decided_at else None,
        "related_cases": c.related_cases,
        "effects": c.effects,
        "effects_held_until": m.iso(c.effects_held_until) if c.effects_held_until else None,
    }
