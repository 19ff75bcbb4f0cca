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
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.orm import Session

from centre import messages as m
from centre import metrics
from centre.audit.sink import NO_AUDIT, AuditSink, queue, staff  # noqa: F401
from centre.db import Report, ReportContent
from complaints.tables import (
    Complaint,
    ComplaintEvent,
    ComplaintFiling,
    ComplaintMessage,
    ComplaintRelatedCase,
)
from routing.tables import Delivery, Hold
from triage.tables import Cluster, ClusterSignal, Indicator, ReportCluster
from centre.topology import le_topic, notices_topic
from complaints import states
from complaints.model import HASH_KINDS, ComplaintV1

log = logging.getLogger(__name__)
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


def _event(s: Session, c: Complaint, actor: str, action: str, now: dt.datetime,
           details: dict[str, Any], *, by_staff: bool, discriminator: str = "",
           personal: dict[str, Any] | None = None) -> None:
    """A step in the complaint's history, and its audit entry. `actor` is the case handler
    (`by_staff`), or the filer / the centre for what the worker does. `personal` (a note's
    text) goes to the audit trail sealed under the complaint's own key, erasable."""
    s.add(ComplaintEvent(complaint_id=c.complaint_id, at=now, actor=actor, action=action,
                         details={**details, **(personal or {})}))
    _audit(s, staff(actor) if by_staff else STAGE, f"complaint.{action}",
           f"complaint:{c.complaint_id}",
           {"state": c.state, "case_id": c.case_id, "by": actor, **details}, at=now,
           discriminator=discriminator or (uuid.uuid4().hex if by_staff else ""),
           person=f"complaint:{c.complaint_id}" if personal else None, personal=personal)


def get(s: Session, complaint_id: str, *, lock: bool = False) -> Complaint:
    q = select(Complaint).where(Complaint.complaint_id == complaint_id.strip())
    c = s.scalars(q.with_for_update() if lock else q).one_or_none()
    if c is None:
        raise NotFound(f"no complaint {complaint_id!r}; `centre complaints list` shows them")
    return c


def active_holds(s: Session, case_ids: Iterable[str | None],
                 now: dt.datetime) -> dict[str, dt.datetime]:
    """For each case under an Art. 48(6) hold now: when the last of its holds ends."""
    ids = sorted({c for c in case_ids if c})
    if not ids:
        return {}
    return {cid: until for cid, until in s.execute(
        select(Hold.case_id, func.max(Hold.until)).where(
            Hold.case_id.in_(ids), Hold.until > now).group_by(Hold.case_id))}


# ------------------------------------------------------------------------------- subject


@dataclass(frozen=True, slots=True)
class Subject:
    matched_by: str
    report_id: str
    case_id: str
    provider_id: str


def cluster_family(s: Session, cluster_ids: Iterable[str]) -> list[str]:
    """Every cluster that is, or was merged into, the same surviving cluster as any given."""
    roots: set[str] = set()
    for cid in set(cluster_ids):
        seen = set()
        while cid not in seen:
            seen.add(cid)
            nxt = s.scalar(select(Cluster.merged_into).where(Cluster.cluster_id == cid))
            if nxt is None:
                break
            cid = nxt
        roots.add(cid)
    family, frontier = set(roots), set(roots)
    while frontier:
        below = set(s.scalars(select(Cluster.cluster_id).where(
            Cluster.merged_into.in_(sorted(frontier)))))
        frontier = below - family
        family |= frontier
    return sorted(family)


def _by_hash(s: Session, kind: str, value: str, prefer_provider: str | None) -> Subject | None:
    """The report a complaint about content concerns: the earliest of the filing company's
    own reports holding it, else the earliest report of its cluster."""
    cid = s.scalar(select(ClusterSignal.cluster_id).where(ClusterSignal.value == value,
                                                          ClusterSignal.kind == kind))
    if cid is None:
        return None
    family = cluster_family(s, [cid])
    q = (select(Report.report_id, Report.case_id, Report.provider_id)
         .join(ReportCluster, ReportCluster.report_id == Report.report_id)
         .where(ReportCluster.cluster_id.in_(family)))
    row = None
    if prefer_provider:
        row = s.execute(q.where(Report.provider_id == prefer_provider)
                        .order_by(Report.received_at, Report.report_id).limit(1)).first()
    if row is None:
        row = s.execute(q.order_by(Report.received_at, Report.report_id).limit(1)).first()
    return Subject(kind, *row) if row else None


def resolve(s: Session, concerns: dict[str, Any],
            channel_provider: str | None = None) -> Subject | None:
    """The report a complaint names, or None (unmatched). By precedence: report_id, case_id,
    provider_id + provider_report_id, then sha256, md5, pdq."""
    cols = (Report.report_id, Report.case_id, Report.provider_id)
    if concerns.get("report_id"):
        row = s.execute(select(*cols).where(Report.report_id == concerns["report_id"])).first()
        if row:
            return Subject("report_id", *row)
    if concerns.get("case_id"):
        row = s.execute(select(*cols).where(Report.case_id == concerns["case_id"])).first()
        if row:
            return Subject("case_id", *row)
    prid = concerns.get("provider_report_id")
    pid = concerns.get("provider_id") or channel_provider
    if prid and pid:
        row = s.execute(select(*cols).where(Report.provider_id == pid,
                                            Report.provider_report_id == prid)).first()
        if row:
            return Subject("provider_report_id", *row)
    for kind in HASH_KINDS:
        if concerns.get(kind):
            found = _by_hash(s, kind, str(concerns[kind]).lower(), channel_provider)
            if found:
                return found
    return None


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
    return {"schema": "notice/v1",
            "notice_id": notice_id_for("complaint_received", c.complaint_id, f.filing_id),
            "type": "complaint_received", "provider_id": f.filer,
            "complaint_id": c.complaint_id, "complaint_ref": f.complaint_ref,
            "state": c.state, "matched": filed.matched, "joined": filed.joined,
            "decide_by": m.iso(c.due_at), "at": m.iso(now)}


def file_complaint(s: Session, complaint: ComplaintV1, *, source: str, actor: str,
                   now: dt.datetime, sla_days: int) -> Filed:
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
        return Filed(c.complaint_id, fid, c.state, c.matched_by is not None, prior.joined,
                     False, c.due_at, c.case_id)
    concerns = dict(body["concerns"])
    subject = resolve(s, concerns, complaint.provider_id if complaint.channel == "provider"
                      else None)
    c = None
    if subject is not None:
        # Serialise filings about one report (PostgreSQL; SQLite has one writer anyway) so
        # that two at once cannot both open a complaint.
        s.execute(select(Report.report_id).where(Report.report_id == subject.report_id)
                  .with_for_update())
        c = s.scalars(select(Complaint).where(
            Complaint.report_id == subject.report_id, Complaint.state.in_(states.OPEN))
            .order_by(Complaint.opened_at).limit(1)).first()
    joined = c is not None
    if c is None:
        c = Complaint(complaint_id=complaint_id_for(fid), state=states.RECEIVED,
                      matched_by=subject.matched_by if subject else None,
                      report_id=subject.report_id if subject else None,
                      case_id=subject.case_id if subject else None,
                      provider_id=subject.provider_id if subject else None,
                      opened_at=now, due_at=now + dt.timedelta(days=sla_days),
                      related_cases=0, effects="none")
        s.add(c)
        s.flush()
    f = ComplaintFiling(filing_id=fid, complaint_id=c.complaint_id, channel=complaint.channel,
                        filer=filer, complaint_ref=complaint.complaint_ref,
                        grounds=complaint.grounds, contact_ref=complaint.contact_ref,
                        statement=complaint.statement, concerns=concerns, body=body,
                        filed_at=complaint.filed_at, received_at=now, source=source[:300],
                        joined=joined)
    s.add(f)
    details = {"filing_id": fid, "channel": complaint.channel, "filer": filer,
               "grounds": complaint.grounds, "matched_by": c.matched_by, "source": source}
    if not joined:
        details["to"] = states.RECEIVED
    _event(s, c, actor, "joined" if joined else "filed", now, details,
           by_staff=source.startswith("cli:"), discriminator=fid)
    filed = Filed(c.complaint_id, fid, c.state, c.matched_by is not None, joined, True,
                  c.due_at, c.case_id)
    if complaint.channel == "provider":
        ack = _ack(c, f, filed, now)
        _queue(s, [_notice_row(c, ack, filer, now, case_id=None)])
    outcome = "joined" if joined else ("filed" if subject else "unmatched")
    metrics.OUTCOMES.labels(STAGE, outcome).inc()
    log.info("complaint %s: filing %s %s", c.complaint_id, fid, outcome)
    return filed


def link(s: Session, complaint_id: str, concerns: dict[str, Any], *, by: str,
         now: dt.datetime) -> Subject:
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
    _event(s, c, by, "linked", now, {"matched_by": subject.matched_by,
                                     "report_id": c.report_id}, by_staff=True)
    return subject


# ------------------------------------------------------------------------------- handling


def assign(s: Session, complaint_id: str, handler: str, *, by: str,
           now: dt.datetime) -> Complaint:
    """Give the complaint to a case handler: received → under_review, or hand it over."""
    handler = _text("handler", handler, MAX_ACTOR)
    by = _text("by", by, MAX_ACTOR)
    c = get(s, complaint_id, lock=True)
    states.check(c.state, states.UNDER_REVIEW)
    before, previous = c.state, c.assignee
    c.state, c.assignee = states.UNDER_REVIEW, handler
    if before == states.RECEIVED:
        _event(s, c, by, "assigned", now, {"from": before, "to": c.state,
                                           "assignee": handler}, by_staff=True)
    else:
        _event(s, c, by, "reassigned", now, {"previous": previous, "assignee": handler},
               by_staff=True)
    return c


def note(s: Session, complaint_id: str, text: str, *, by: str, now: dt.datetime) -> Complaint:
    """Add a case handler's note (kept in the complaint's history; any state)."""
    text = _text("the note", text, MAX_TEXT)
    by = _text("by", by, MAX_ACTOR)
    c = get(s, complaint_id, lock=True)
    _event(s, c, by, "noted", now, {"chars": len(text)}, by_staff=True,
           personal={"text": text})
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


def decide(s: Session, complaint_id: str, *, uphold: bool, reason: str, by: str,
           now: dt.datetime) -> Decided:
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
        return Decided(c.complaint_id, decision, repeated=True,
                       related_cases=c.related_cases, held_until=c.effects_held_until)
    states.check(c.state, decision)
    if uphold and c.report_id is None:
        raise ComplaintError("the complaint names nothing the centre knows (unmatched): link "
                             "it to a report first (centre complaints link ID …), or reject it")
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
            rows.append(_notice_row(c, _reinstatement(s, c, reason, now), c.provider_id, now,
                                    case_id=c.case_id))
    filings = s.scalars(select(ComplaintFiling).where(
        ComplaintFiling.complaint_id == c.complaint_id).order_by(ComplaintFiling.received_at,
                                                                 ComplaintFiling.filing_id)).all()
    for f in filings:
        if f.channel == "provider":
            rows.append(_notice_row(c, _decided_notice(c, f, now), f.filer, now,
                                    case_id=c.case_id))
    out.notices = len(rows) - out.retractions
    held = active_holds(s, [c.case_id], now)
    until = held.get(c.case_id) if c.case_id else None
    for r in rows:
        if until is not None and r["kind"] == "notice" and r["body"]["type"] in HELD_BY_HOLDS:
            r["state"], r["not_before"] = "held", until
    _queue(s, rows)
    c.effects = "held" if until and any(r["state"] == "held" for r in rows) else \
        ("pending" if rows else "none")
    c.effects_held_until = until if c.effects == "held" else None
    out.held_until = c.effects_held_until
    _event(s, c, by, "decided", now, {"from": before, "to": decision, "reason": reason,
                                      "retractions": out.retractions, "notices": out.notices,
                                      "banked": out.banked,
                                      "related_cases": out.related_cases}, by_staff=True)
    if until is not None:
        _event(s, c, "centre", "effects_held", now, {
            "until": m.iso(until),
            "why": "Art. 48(6) hold on the case: notices to the provider wait for its end"},
            by_staff=False, discriminator=m.iso(until))
    metrics.OUTCOMES.labels(STAGE, decision).inc()
    log.info("complaint %s %s by %s: %d retraction(s), %d notice(s), %d related case(s)",
             c.complaint_id, decision, by, out.retractions, out.notices, out.related_cases)
    return out


def _retractions(s: Session, c: Complaint, reason: str, now: dt.datetime) -> list[dict[str, Any]]:
    """One retraction/v1 per recipient the case went to (or waits to go to); none for a
    (case, recipient) that was retracted before."""
    assert c.case_id is not None
    rcpts = sorted(set(s.scalars(select(Delivery.recipient).where(
        Delivery.case_id == c.case_id))))
    ids = {retraction_id_for(c.case_id, r): r for r in rcpts}
    done = set(s.scalars(select(ComplaintMessage.message_id).where(
        ComplaintMessage.message_id.in_(list(ids)))))
    rows = []
    for rid, rcpt in ids.items():
        if rid in done:
            continue
        body = {"schema": "retraction/v1", "case_id": c.case_id,
                "reason": f"complaint upheld: {reason}", "at": m.iso(now),
                "retraction_id": rid, "complaint_id": c.complaint_id}
        rows.append({"message_id": rid, "complaint_id": c.complaint_id, "kind": "retraction",
                     "recipient": rcpt, "case_id": c.case_id, "topic": le_topic(rcpt),
                     "key": c.case_id, "body": body, "state": "pending", "not_before": None,
                     "created_at": now, "sent_at": None})
    return rows


def _notice_row(c: Complaint, notice: dict[str, Any], provider_id: str, now: dt.datetime, *,
                case_id: str | None) -> dict[str, Any]:
    return {"message_id": notice["notice_id"], "complaint_id": c.complaint_id,
            "kind": "notice", "recipient": provider_id, "case_id": case_id,
            "topic": notices_topic(provider_id),
            "key": str(notice.get("provider_report_id") or notice.get("complaint_ref")
                       or c.complaint_id)[:255],
            "body": notice, "state": "pending", "not_before": None, "created_at": now,
            "sent_at": None}


def _queue(s: Session, rows: list[dict[str, Any]]) -> None:
    """Insert messages whose id is not queued yet (an id is sent at most once)."""
    if not rows:
        return
    have = set(s.scalars(select(ComplaintMessage.message_id).where(
        ComplaintMessage.message_id.in_([r["message_id"] for r in rows]))))
    new = [r for r in rows if r["message_id"] not in have]
    if new:
        s.execute(insert(ComplaintMessage), new)


def _report_body(s: Session, report_id: str) -> dict[str, Any]:
    return s.scalar(select(ReportContent.body).where(ReportContent.report_id == report_id)) or {}


def content_signals_of(c_matched_by: str | None, concerns: dict[str, Any],
                       report: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
    """The content an upheld complaint is about: (content_ids, (kind, value) hashes).

    A complaint about a report covers all its media; one about a hash covers the content
    items holding that hash (or the hash alone when no item of the report holds it)."""
    from triage.rules import media_items
    from triage.signals import content_signals

    def hashes(item: dict[str, Any]) -> set[tuple[str, str]]:
        return {(k, str(item[k]).lower()) for k in HASH_KINDS if isinstance(item.get(k), str)}

    items = media_items(report)
    if c_matched_by in HASH_KINDS:
        named = str(concerns.get(c_matched_by, "")).lower()
        items = [i for i in items if (c_matched_by, named) in hashes(i)]
        if not items:
            return [], [(c_matched_by, named)]
    # As triage matches them: a PDQ below quality 50 is not used (it would match too much).
    signals = list(dict.fromkeys(sig for i in items for sig in content_signals(i)))
    return [str(i.get("content_id")) for i in items], signals


def _first_concerns(s: Session, c: Complaint) -> dict[str, Any]:
    return s.scalar(select(ComplaintFiling.concerns).where(
        ComplaintFiling.complaint_id == c.complaint_id, ComplaintFiling.joined.is_(False))
        .limit(1)) or {}


def _bank(s: Session, c: Complaint, reason: str, by: str,
          now: dt.datetime) -> tuple[int, int]:
    """The content's hashes into the false_positive bank, with the complaint as provenance,
    so that later reports of it are manifestly unfounded. Returns (hashes, new or
    re-enabled entries)."""
    assert c.report_id is not None
    _ids, signals = content_signals_of(c.matched_by, _first_concerns(s, c),
                                       _report_body(s, c.report_id))
    if not signals:
        return 0, 0
    values = sorted({v for _k, v in signals})
    existing = {(k, v): enabled for k, v, enabled in s.execute(
        select(Indicator.kind, Indicator.value, Indicator.enabled).where(
            Indicator.bank == FALSE_POSITIVE, Indicator.value.in_(values)))}
    source = f"complaint:{c.complaint_id}"
    why = f"complaint {c.complaint_id} upheld: {reason}"
    new = [{"bank": FALSE_POSITIVE, "kind": k, "value": v, "source": source[:200],
            "added_by": by, "added_at": now, "reason": why, "enabled": True}
           for k, v in signals if (k, v) not in existing]
    if new:
        s.execute(insert(Indicator), new)
    off = [(k, v) for (k, v), enabled in existing.items() if not enabled]
    for k, v in off:  # disabled before: the upheld complaint is the newer decision
        s.execute(update(Indicator).where(
            Indicator.bank == FALSE_POSITIVE, Indicator.kind == k, Indicator.value == v)
            .values(enabled=True, changed_at=now, changed_by=by, change_reason=why))
    return len(signals), len(new) + len(off)


def _list_related(s: Session, c: Complaint) -> int:
    """List the other cases of the report's clusters for review, in one INSERT … SELECT."""
    assert c.report_id is not None
    own = list(s.scalars(select(ReportCluster.cluster_id).where(
        ReportCluster.report_id == c.report_id)))
    if not own:
        return 0
    family = cluster_family(s, own)
    sel = (select(literal(c.complaint_id), Report.case_id, Report.report_id)
           .join(ReportCluster, ReportCluster.report_id == Report.report_id)
           .where(ReportCluster.cluster_id.in_(family), Report.report_id != c.report_id)
           .distinct())
    s.execute(insert(ComplaintRelatedCase).from_select(
        ["complaint_id", "case_id", "report_id"], sel))
    return int(s.scalar(select(func.count()).select_from(ComplaintRelatedCase).where(
        ComplaintRelatedCase.complaint_id == c.complaint_id)) or 0)


def _reinstatement(s: Session, c: Complaint, reason: str, now: dt.datetime) -> dict[str, Any]:
    """notice/v1 `reinstatement` to the company that reported: the report was wrongful, the
    content may be restored and the user's account action undone."""
    assert c.report_id is not None and c.provider_id is not None
    prid = s.scalar(select(Report.provider_report_id).where(Report.report_id == c.report_id))
    content_ids, _sigs = content_signals_of(c.matched_by, _first_concerns(s, c),
                                            _report_body(s, c.report_id))
    return {"schema": "notice/v1",
            "notice_id": notice_id_for("reinstatement", c.complaint_id, c.report_id),
            "type": "reinstatement", "provider_id": c.provider_id,
            "provider_report_id": prid, "report_id": c.report_id,
            "complaint_id": c.complaint_id, "content_ids": content_ids,
            "reason": reason, "at": m.iso(now)}


def _decided_notice(c: Complaint, f: ComplaintFiling, now: dt.datetime) -> dict[str, Any]:
    """notice/v1 `complaint_decided` to the company that filed, for its user."""
    return {"schema": "notice/v1",
            "notice_id": notice_id_for("complaint_decided", c.complaint_id, f.filing_id),
            "type": "complaint_decided", "provider_id": f.filer,
            "complaint_id": c.complaint_id, "complaint_ref": f.complaint_ref,
            "decision": c.state,
            "reasons": [{"code": f"complaint_{c.state}", "message": c.decision_reason or ""}],
            "at": m.iso(now)}


# ------------------------------------------------------------------------------- sending


@dataclass(slots=True)
class Dispatched:
    retractions: int = 0
    notices: int = 0
    held: int = 0
    waiting_key: int = 0
    complaints: set[str] = field(default_factory=set)


def dispatch(sessions: Any, producer: Any, keys: Any, provider_topics: Any, *,
             complaint_ids: Iterable[str] | None = None,
             stale_before: dt.datetime | None = None,
             now: dt.datetime | None = None, audit: AuditSink = NO_AUDIT) -> Dispatched:
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
            q = q.where(or_(ComplaintMessage.state == "held",
                            ComplaintMessage.created_at <= stale_before))
        rows = s.scalars(q.order_by(ComplaintMessage.created_at,
                                    ComplaintMessage.message_id)).all()
        if not rows:
            return out
        holds = active_holds(s, [r.case_id for r in rows if r.kind == "notice"], now)
        sendable = []
        changed: dict[str, dt.datetime] = {}
        for r in rows:
            until = holds.get(r.case_id or "") if (
                r.kind == "notice" and r.body.get("type") in HELD_BY_HOLDS) else None
            if until is not None:
                out.held += 1
                if r.state != "held" or r.not_before != until:
                    r.state, r.not_before = "held", until
                    changed[r.complaint_id] = until
                continue
            sendable.append((r.message_id, r.kind, r.recipient, r.topic, r.key, r.body,
                             r.complaint_id))
        for cid, until in changed.items():
            c = s.get(Complaint, cid)
            if c is not None:
                c.effects, c.effects_held_until = "held", until
                _event(s, c, "centre", "effects_held", now, {
                    "until": m.iso(until), "why": "Art. 48(6) hold on the case: notices to "
                    "the provider wait for its end"}, by_staff=False,
                    discriminator=m.iso(until))
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
            s.execute(update(ComplaintMessage).where(
                ComplaintMessage.message_id.in_(sent), ComplaintMessage.state != "sent")
                .values(state="sent", sent_at=now, not_before=None))
        for cid in sorted(touched | set(changed)):
            c = s.get(Complaint, cid)
            if c is None:
                continue
            left = dict(s.execute(select(ComplaintMessage.state, func.count()).where(
                ComplaintMessage.complaint_id == cid, ComplaintMessage.state != "sent")
                .group_by(ComplaintMessage.state)).all())
            if cid in touched:
                mine = [x for x in sendable if x[6] == cid and x[0] in set(sent)]
                receipts = all(x[5].get("type") == "complaint_received" for x in mine)
                _event(s, c, "centre", "receipt_sent" if receipts else "effects_sent", now, {
                    "retractions": sum(1 for x in mine if x[1] == "retraction"),
                    "notices": sum(1 for x in mine if x[1] == "notice"),
                    "types": sorted({str(x[5].get("type") or x[5].get("schema"))
                                     for x in mine})}, by_staff=False,
                    discriminator=",".join(sorted(x[0] for x in mine)))
            if c.state in states.FINAL:
                c.effects = ("held" if left.get("held") else
                             "pending" if left.get("pending") else "done")
                if c.effects != "held":
                    c.effects_held_until = None
        audit.settle(s)
    out.complaints = touched
    return out
