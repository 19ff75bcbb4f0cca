"""Sending what the flow queued (`dispatch`): retraction/v1 sealed for each recipient,
notices to providers, each marked sent once the broker acknowledged it; notices about a
decision on a case under an Art. 48(6) hold wait until the hold ends, a retraction for a
recipient with no key waits for the key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update

from centre import messages as m
from centre import metrics
from centre.audit.sink import NO_AUDIT, AuditSink
from complaints import states
from complaints.common import HELD_BY_HOLDS, STAGE, _event, active_holds
from complaints.tables import Complaint, ComplaintMessage

# ------------------------------------------------------------------------------- sending


@dataclass(slots=True)
class Dispatched:
    retractions: int = 0
    notices: int = 0
    held: int = 0
    waiting_key: int = 0
    complaints: set[str] = field(default_factory=set)


def dispatch(
    sessions: Any,
    producer: Any,
    keys: Any,
    provider_topics: Any,
    *,
    complaint_ids: Iterable[str] | None = None,
    stale_before: dt.datetime | None = None,
    now: dt.datetime | None = None,
    audit: AuditSink = NO_AUDIT,
) -> Dispatched:
    """Send what is queued and not sent: retraction/v1 sealed for each recipient, notices to
    providers; mark them sent once the broker acknowledged them. Notices about a decision
    on a case under an Art. 48(6) hold stay `held` until the hold ends (checked every time,
    so a hold placed or ended later counts). A retraction for a recipient with no key waits.

    `complaint_ids`: only these complaints' messages (the command line, right after a
    decision). Otherwise every held message, and pending ones created before `stale_before`
    (the worker picks up what a crashed or failed command left)."""
    from sqlalchemy import or_

    from centre.crypto import Sealer

    now = now or m.now()
    out = Dispatched()
    with sessions.begin() as s:
        q = select(ComplaintMessage).where(ComplaintMessage.state.in_(("pending", "held")))
        if complaint_ids is not None:
            q = q.where(ComplaintMessage.complaint_id.in_(sorted(set(complaint_ids))))
        elif stale_before is not None:
            q = q.where(
                or_(ComplaintMessage.state == "held", ComplaintMessage.created_at <= stale_before)
            )
        rows = s.scalars(q.order_by(ComplaintMessage.created_at, ComplaintMessage.message_id)).all()
        if not rows:
            return out
        holds = active_holds(s, [r.case_id for r in rows if r.kind == "notice"], now)
        sendable = []
        changed: dict[str, dt.datetime] = {}
        for r in rows:
            until = (
                holds.get(r.case_id or "")
                if (r.kind == "notice" and r.body.get("type") in HELD_BY_HOLDS)
                else None
            )
            if until is not None:
                out.held += 1
                if r.state != "held" or r.not_before != until:
                    r.state, r.not_before = "held", until
                    changed[r.complaint_id] = until
                continue
            sendable.append(
                (r.message_id, r.kind, r.recipient, r.topic, r.key, r.body, r.complaint_id)
            )
        for cid, until in changed.items():
            c = s.get(Complaint, cid)
            if c is not None:
                c.effects, c.effects_held_until = "held", until
                _event(
                    s,
                    c,
                    "centre",
                    "effects_held",
                    now,
                    {
                        "until": m.iso(until),
                        "why": "Art. 48(6) hold on the case: notices to "
                        "the provider wait for its end",
                    },
                    by_staff=False,
                    discriminator=m.iso(until),
                )
        audit.settle(s)
    sent: list[str] = []
    notices = [x for x in sendable if x[1] == "notice"]
    if notices:
        provider_topics.ensure({x[2] for x in notices})
    for mid, _kind, _rcpt, topic, key, body, _cid in notices:
        producer.send(topic, m.dumps(body), key=key.encode())
        sent.append(mid)
        out.notices += 1
    to_seal, seal_meta = [], []
    for mid, kind, rcpt, topic, key, body, _cid in sendable:
        if kind != "retraction":
            continue
        if not keys.has_recipient(rcpt):
            out.waiting_key += 1
            metrics.ERRORS.labels(STAGE, "recipient_key_missing").inc()
            continue
        to_seal.append((m.dumps(body), rcpt, keys.recipient_public(rcpt)))
        seal_meta.append((mid, topic, key))
    if to_seal:
        sealer = Sealer(keys.centre_signer())
        for env, (mid, topic, key) in zip(sealer.seal_batch(to_seal), seal_meta):
            producer.send(topic, env, key=key.encode())
            sent.append(mid)
            out.retractions += 1
    if sent:
        producer.flush_or_raise()
    metrics.MESSAGES_OUT.labels(STAGE, "notice").inc(out.notices)
    metrics.MESSAGES_OUT.labels(STAGE, "retraction").inc(out.retractions)
    touched = {x[6] for x in sendable if x[0] in set(sent)}
    with sessions.begin() as s:
        if sent:
            s.execute(
                update(ComplaintMessage)
                .where(ComplaintMessage.message_id.in_(sent), ComplaintMessage.state != "sent")
                .values(state="sent", sent_at=now, not_before=None)
            )
        for cid in sorted(touched | set(changed)):
            c = s.get(Complaint, cid)
            if c is None:
                continue
            left = dict(
                s.execute(
                    select(ComplaintMessage.state, func.count())
                    .where(ComplaintMessage.complaint_id == cid, ComplaintMessage.state != "sent")
                    .group_by(ComplaintMessage.state)
                ).all()
            )
            if cid in touched:
                mine = [x for x in sendable if x[6] == cid and x[0] in set(sent)]
                receipts = all(x[5].get("type") == "complaint_received" for x in mine)
                _event(
                    s,
                    c,
                    "centre",
                    "receipt_sent" if receipts else "effects_sent",
                    now,
                    {
                        "retractions": sum(1 for x in mine if x[1] == "retraction"),
                        "notices": sum(1 for x in mine if x[1] == "notice"),
                        "types": sorted(
                            {str(x[5].get("type") or x[5].get("schema")) for x in mine}
                        ),
                    },
                    by_staff=False,
                    discriminator=",".join(sorted(x[0] for x in mine)),
                )
            if c.state in states.FINAL:
                c.effects = (
                    "held" if left.get("held") else "pending" if left.get("pending") else "done"
                )
                if c.effects != "held":
                    c.effects_held_until = None
        audit.settle(s)
    out.complaints = touched
    return out
