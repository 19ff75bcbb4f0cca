"""The victims' flow: file a request, match stored and new reports against its private bank,
send removal notices until the provider answers, record the answers, withdraw.

Every function that changes something takes an open session and writes in the caller's
transaction (the victims worker files a batch in one; the command line one step). Every step
is an audit entry (`_audit`, the one place this flow writes the audit trail), about
`victim:<request id>`; what is about the victim as a person goes only into the entry's
`personal` part, sealed under the victim's own key, which `centre audit purge` destroys when
the retention of the kind `victim` has run out after the last use (the withdrawal, or the
last step of an open request).

Notices (notice/v1 `removal`, and `removal_cancelled` after a withdrawal) are queued in
`victim_notices` with deterministic ids in the transaction that decides them, sent by
`dispatch` after it commits, and marked sent only once the broker acknowledged them. A
removal notice not answered is sent again every CENTRE_VICTIM_NOTICE_REPEAT_HOURS (24) with
the same notice_id and a higher `attempt`; after CENTRE_VICTIM_NOTICE_ESCALATE_AFTER sends
(3) without an answer, and at once on a refusal, it is escalated to the coordinating
authority's list (`escalations`). A notice about a report under a liaison's no-removal hold
(Art. 48(6)) waits, first sending and reminders alike, until the hold ends.

Nothing here writes a victim's identity, a hash of their pictures or a URL to a log or a
metric; logs name requests by id only.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import statistics
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import and_, delete, func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from centre import messages as m
from centre import metrics
from centre.audit.sink import NO_AUDIT, AuditSink, queue, staff  # noqa: F401
from centre.audit.tables import AuditSubjectKey
from centre.db import Report, ReportContent
from routing.tables import Delivery, Hold
from victims.tables import VictimBankState, VictimHash, VictimMatch, VictimNotice, VictimRequest
from centre.topology import NOTICE_RESPONSES, notices_topic
from victims.bank import VictimBank, cluster_families, reports_of, stored_candidates
from victims.model import Item

log = logging.getLogger(__name__)
STAGE = "victims"
OPEN, WITHDRAWN = "open", "withdrawn"
RESCAN_AFTER = dt.timedelta(seconds=60)  # one more pass over stored reports after filing
RESCAN_AFTER_FAILURE = dt.timedelta(minutes=10)  # live matching failed: a pass, not a storm
KEEP_ALIVE = dt.timedelta(days=7)  # an open request's key is touched at least this often
_NS = uuid.uuid5(uuid.UUID("6f1c3c52-8a47-4f4e-9d0c-7d2b1f0e5a11"), "victims")
LEGAL_BASIS = ("CSA Regulation proposal, Art. 21: the EU Centre assists a victim, at their "
               "request, in the removal of material depicting them")
REFUSED = ("no request with this id and PIN: check both (the PIN was shown once, when the "
           "request was filed)")


class VictimError(ValueError):
    """Bad input from a case handler or an impossible step; the message says why."""


class NotFoundOrWrongPin(VictimError):
    """An unknown request id or a wrong PIN: one message for both, no hint which."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


# ------------------------------------------------------------------------------- audit

# The one place this flow writes the audit trail: `_audit` keeps an event with the session's
# transaction, an `AuditSink` appends or emits it (centre/audit/sink.py).
_audit = queue


def subject(request_id: str) -> str:
    return f"victim:{request_id}"


# ------------------------------------------------------------------------------- ids


def notice_id_for(request_id: str, report_id: str, content_id: str) -> str:
    return str(uuid.uuid5(_NS, f"removal|{request_id}|{report_id}|{content_id}"))


def cancel_id_for(notice_id: str) -> str:
    return str(uuid.uuid5(_NS, f"removal_cancelled|{notice_id}"))


def request_ref(request_id: str, provider_id: str) -> str:
    """The request as one provider knows it: the same for all its notices about the request,
    different for every provider, so providers cannot put their notices together, and
    neither names nor leads to the victim."""
    return str(uuid.uuid5(_NS, f"ref|{request_id}|{provider_id}"))


# ------------------------------------------------------------------------------- helpers


def _chunks(items: Sequence[Any], n: int = 500) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _insert_ignore(s: Session, table: Any) -> Any:
    """INSERT that skips rows already there (a replay; the search of stored reports and the
    live matching of new ones both finding the same match)."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return insert(table)


def bump_version(s: Session) -> None:
    """Tell every victims worker's live matching that the victims' banks changed."""
    s.execute(update(VictimBankState).where(VictimBankState.id == 1).values(
        version=VictimBankState.version + 1))


def get(s: Session, request_id: str, *, lock: bool = False) -> VictimRequest | None:
    q = select(VictimRequest).where(VictimRequest.request_id == (request_id or "").strip())
    return s.scalars(q.with_for_update() if lock else q).one_or_none()


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _text(v: Any) -> str:
    """A provider's string as a text column can hold it: no NUL (PostgreSQL refuses it) or
    other control characters (they belong in no id or URL)."""
    return _CONTROL.sub("", str(v))


def _bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _aware(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t


# ------------------------------------------------------------------------------- matching


def match_row(request_id: str, item: int, signal: str, distance: int, *, report_id: str,
              case_id: str, provider_id: str, provider_report_id: str,
              reported_at: dt.datetime, content: dict[str, Any], found_by: str,
              now: dt.datetime) -> dict[str, Any]:
    """A row of victim_matches: what a notice needs, copied from the report's content item."""
    url = content.get("url")
    return {"request_id": request_id, "item": item, "report_id": report_id,
            "case_id": case_id, "provider_id": provider_id,
            "provider_report_id": _text(provider_report_id)[:200],
            "content_id": _text(content.get("content_id"))[:200], "reported_at": reported_at,
            "signal": signal, "distance": int(distance),
            "content": {k: content[k] for k in ("media_type", "sha256", "md5", "pdq")
                        if isinstance(content.get(k), str)},
            "url": _text(url) if isinstance(url, str) else None,
            "publicly_available": _bool(content.get("publicly_available")),
            "removed": _bool(content.get("removed")), "found_by": found_by,
            "found_at": now, "state": "new"}


def insert_matches(s: Session, rows: list[dict[str, Any]]) -> None:
    for chunk in _chunks(rows, 1000):
        s.execute(_insert_ignore(s, VictimMatch.__table__), list(chunk))


def match_reports(s: Session, bank: VictimBank, report_ids: Sequence[str], *,
                  found_by: str, now: dt.datetime) -> list[dict[str, Any]]:
    """Check the media of these stored reports against the bank (each item directly: a
    cluster can hold near copies of near copies); rows for victim_matches."""
    from triage.rules import media_items
    from triage.signals import content_signals

    out: list[dict[str, Any]] = []
    for chunk in _chunks(list(report_ids)):
        meta: list[tuple[Any, dict[str, Any]]] = []
        sigs: list[list[tuple[str, str]]] = []
        for r in s.execute(select(Report.report_id, Report.case_id, Report.provider_id,
                                  Report.provider_report_id, Report.received_at,
                                  ReportContent.body)
                           .join(ReportContent, ReportContent.report_id == Report.report_id)
                           .where(Report.report_id.in_(list(chunk)))):
            for content in media_items(r.body or {}):
                meta.append((r, content))
                sigs.append(list(content_signals(content)))
        for (r, content), hits in zip(meta, bank.match(sigs)):
            for h in hits:
                out.append(match_row(h.request_id, h.item, h.signal, h.distance,
                                     report_id=r.report_id, case_id=r.case_id,
                                     provider_id=r.provider_id,
                                     provider_report_id=r.provider_report_id,
                                     reported_at=r.received_at, content=content,
                                     found_by=found_by, now=now))
    return out


@dataclass(slots=True)
class Searched:
    clusters: int = 0
    reports: int = 0
    matches: int = 0  # matches of the request after the search (earlier ones included)
    notices: int = 0  # notices queued by this search


def past_match(s: Session, request_ids: Sequence[str], *, now: dt.datetime,
               actor: str = STAGE) -> Searched:
    """Search every stored report for these requests' hashes at once (through
    cluster_signals, then the matched reports only), record the matches and queue their
    notices. One pass over the stored PDQ values, however many requests."""
    ids = list(request_ids)
    bank = VictimBank.load(s, ids)
    out = Searched()
    if len(bank):
        clusters = cluster_families(s, stored_candidates(s, bank))
        reports = reports_of(s, clusters)
        out.clusters, out.reports = len(clusters), len(reports)
        insert_matches(s, match_reports(s, bank, reports, found_by="past", now=now))
    out.notices = notice_new_matches(s, now=now, request_ids=ids)[1]
    counts = dict(s.execute(select(VictimMatch.request_id, func.count()).where(
        VictimMatch.request_id.in_(ids)).group_by(VictimMatch.request_id)).all())
    out.matches = int(sum(counts.values()))
    for rid in ids:
        r = s.get(VictimRequest, rid)
        if r is not None:
            r.past_matched_at = now
        _audit(s, actor, "victim.stored_reports_searched", subject(rid),
               {"clusters": out.clusters, "reports_checked": out.reports,
                "matches": int(counts.get(rid, 0)), "requests_searched_together": len(ids)},
               at=now, discriminator=m.iso(now))
    return out


def live_rows(bank: VictimBank, envelopes: Sequence[dict[str, Any]],
              now: dt.datetime) -> list[dict[str, Any]]:
    """Matches of a batch of triaged reports (pure): rows for victim_matches. One vectorised
    index query for the whole batch."""
    from triage.rules import media_items
    from triage.signals import content_signals

    if not len(bank):
        return []
    meta: list[tuple[dict[str, Any], dict[str, Any]]] = []
    sigs: list[list[tuple[str, str]]] = []
    for e in envelopes:
        for content in media_items(e["report"]):
            meta.append((e, content))
            sigs.append(list(content_signals(content)))
    out = []
    for (e, content), hits in zip(meta, bank.match(sigs)):
        for h in hits:
            out.append(match_row(h.request_id, h.item, h.signal, h.distance,
                                 report_id=e["report_id"], case_id=e["case_id"],
                                 provider_id=e["provider_id"],
                                 provider_report_id=e["provider_report_id"],
                                 reported_at=m.parse_time(e["received_at"]),
                                 content=content, found_by="live", now=now))
    return out


def live_matches(s: Session, bank: VictimBank, envelopes: Sequence[dict[str, Any]],
                 now: dt.datetime) -> int:
    """Match a batch of triaged reports (as the victims worker reads them from
    reports.triaged) against the victims' banks and record the matches in the caller's
    transaction; a match already recorded (the report read again) is skipped by the unique
    (request, report, content item). Never on the case. A failure of the matching itself
    never stops the worker: on PostgreSQL it runs in a savepoint (a failed statement would
    otherwise doom the whole transaction), and the open requests get a search of the stored
    reports instead. The log names the error's type only: its text could quote a victim's
    hashes or a URL."""
    nested = s.begin_nested() if s.get_bind().dialect.name == "postgresql" else None
    try:
        bank.refresh(s)
        rows = live_rows(bank, envelopes, now)
        if rows:
            insert_matches(s, rows)
    except Exception as exc:  # a bug here: the stored reports are searched again instead
        if nested is not None:
            nested.rollback()
        log.error("victims: live matching failed on a batch (%s); stored reports will be "
                  "searched again for the open requests", type(exc).__name__)
        metrics.ERRORS.labels(STAGE, "victim_matching_failed").inc()
        s.execute(update(VictimRequest).where(VictimRequest.state == OPEN,
                                              VictimRequest.rescan_at.is_(None))
                  .values(rescan_at=now + RESCAN_AFTER_FAILURE))
        return 0
    if nested is not None:
        nested.commit()
    if rows:
        metrics.OUTCOMES.labels(STAGE, "victim_match").inc(len(rows))
    return len(rows)


# ------------------------------------------------------------------------------- filing


@dataclass(slots=True)
class Filed:
    request_id: str
    new: bool
    searched: Searched = field(default_factory=Searched)


def file_request(s: Session, doc: dict[str, Any], items: list[Item], *, source: str,
                 now: dt.datetime) -> Filed:
    """Record a victim-request/v1: the request, its private bank, then the search of every
    stored report. A request id seen before changes nothing (a replay)."""
    rid = doc["request_id"]
    if s.get(VictimRequest, rid) is not None:
        return Filed(rid, False)
    s.add(VictimRequest(request_id=rid, state=OPEN, pin_hash=doc["pin"], items=len(items),
                        requested_at=doc["requested_at"][:64], filed_at=now,
                        filed_by=str(doc["filed_by"])[:100], source=source[:300],
                        rescan_at=now + RESCAN_AFTER))
    s.flush()
    rows = [{"request_id": rid, "item": it.item, "kind": k, "value": v,
             "media_type": it.media_type, "pdq_quality": it.pdq_quality if k == "pdq" else None}
            for it in items for k, v in it.hashes()]
    for chunk in _chunks(rows, 1000):
        s.execute(_insert_ignore(s, VictimHash.__table__), list(chunk))
    bump_version(s)
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    _audit(s, STAGE, "victim.request_filed", subject(rid),
           {"items": len(items), "hashes": kinds, "filed_by": doc["filed_by"],
            "identity_recorded": bool(doc.get("identity_recorded")), "source": source},
           at=now, discriminator=rid)
    metrics.OUTCOMES.labels(STAGE, "filed").inc()
    searched = past_match(s, [rid], now=now)
    log.info("victim request filed: %d item(s), %d match(es), %d notice(s)", len(items),
             searched.matches, searched.notices)
    return Filed(rid, True, searched)


def rescan_due(s: Session, now: dt.datetime, limit: int = 1000) -> list[str]:
    """Search stored reports once more, in one pass, for the open requests whose rescan is
    due (reports triaged while a request was being filed, matched live before its bank was
    seen; or a batch whose live matching failed)."""
    rows = s.scalars(select(VictimRequest).where(
        VictimRequest.rescan_at.is_not(None), VictimRequest.rescan_at <= now)
        .order_by(VictimRequest.rescan_at).limit(limit)).all()
    for r in rows:
        r.rescan_at = None
    due = [r.request_id for r in rows if r.state == OPEN]
    if due:
        past_match(s, due, now=now)
    return [r.request_id for r in rows]


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
    return {"schema": "notice/v1", "notice_id": notice_id, "type": "removal",
            "provider_id": mt.provider_id, "provider_report_id": mt.provider_report_id,
            "report_id": mt.report_id, "content_id": mt.content_id,
            "content": dict(mt.content or {}), "url": mt.url,
            "request_ref": request_ref(mt.request_id, mt.provider_id),
            "legal_basis": LEGAL_BASIS,
            "answer": {"schema": "notice-response/v1", "topic": NOTICE_RESPONSES,
                       "status": ["removed", "not_found", "refused"]}}


def notice_new_matches(s: Session, *, now: dt.datetime, request_ids: Sequence[str] | None = None,
                       limit: int = 5000) -> tuple[int, int]:
    """Decide about matches not looked at yet: a removal notice for each eligible one of an
    open request (queued, sent by `dispatch`). Returns (matches decided, notices queued)."""
    q = (select(VictimMatch, VictimRequest.state)
         .join(VictimRequest, VictimRequest.request_id == VictimMatch.request_id)
         .where(VictimMatch.state == "new"))
    if request_ids is not None:
        q = q.where(VictimMatch.request_id.in_(list(request_ids)))
    # FOR SHARE of the requests (PostgreSQL; SQLite has one writer): a withdrawal waits, or
    # is seen, never committed in between.
    rows = s.execute(q.order_by(VictimMatch.id).limit(limit)
                     .with_for_update(read=True, of=VictimRequest)).all()
    notices: list[dict[str, Any]] = []
    for mt, req_state in rows:
        if req_state != OPEN:
            mt.state = "withdrawn"
            continue
        if eligible(mt.publicly_available, mt.removed):
            nid = notice_id_for(mt.request_id, mt.report_id, mt.content_id)
            notices.append({"notice_id": nid, "request_id": mt.request_id, "match_id": mt.id,
                            "type": "removal", "provider_id": mt.provider_id,
                            "report_id": mt.report_id, "body": removal_body(mt, nid),
                            "state": "pending", "attempts": 0, "created_at": now})
            mt.state = "noticed"
        else:
            mt.state = "no_notice"
        _audit(s, STAGE, "victim.matched", subject(mt.request_id),
               {"report_id": mt.report_id, "case_id": mt.case_id,
                "provider_id": mt.provider_id, "content_id": mt.content_id, "item": mt.item,
                "signal": mt.signal, "distance": mt.distance, "found_by": mt.found_by,
                "notice": mt.state == "noticed"},
               at=now, discriminator=f"{mt.report_id}|{mt.content_id}")
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


def removal_holds(s: Session, report_ids: Iterable[str], now: dt.datetime) \
        -> dict[str, dt.datetime]:
    """Reports under an Art. 48(6) hold that asks the provider not to remove the content
    (`centre liaison hold --no-removal`): when the last such hold ends. A removal notice
    about one waits until then, first sending and repeats alike."""
    ids = sorted(set(report_ids))
    out: dict[str, dt.datetime] = {}
    for chunk in _chunks(ids):
        for rid, until in s.execute(select(Hold.report_id, func.max(Hold.until)).where(
                Hold.report_id.in_(list(chunk)), Hold.no_removal.is_(True), Hold.until > now)
                .group_by(Hold.report_id)):
            out[rid] = _aware(until)
    return out


def dispatch(sessions: Any, producer: Any, provider_topics: Any, *, now: dt.datetime,
             repeat: dt.timedelta, escalate_after: int, audit: AuditSink = NO_AUDIT,
             limit: int = 5000) -> Dispatched:
    """Send what is due: removal notices never sent, unanswered ones whose repeat is due
    (escalating those sent `escalate_after` times without an answer), cancellations. Marked
    sent only after the broker acknowledged them."""
    out = Dispatched()
    with sessions.begin() as s:
        rows = s.scalars(select(VictimNotice).where(or_(
            and_(VictimNotice.state == "pending", or_(VictimNotice.next_due_at.is_(None),
                                                      VictimNotice.next_due_at <= now)),
            and_(VictimNotice.state == "sent", VictimNotice.next_due_at <= now)))
            .order_by(VictimNotice.created_at, VictimNotice.notice_id).limit(limit)).all()
        if not rows:
            return out
        held = removal_holds(s, [n.report_id for n in rows if n.type == "removal"], now)
        withdrawn = set(s.scalars(select(VictimRequest.request_id).where(
            VictimRequest.request_id.in_(sorted({n.request_id for n in rows})),
            VictimRequest.state == WITHDRAWN)))
        outgoing = []
        for n in rows:
            if n.type == "removal" and n.request_id in withdrawn:
                n.state, n.next_due_at = "cancelled", None  # withdrawn since it was queued
                continue
            until = held.get(n.report_id) if n.type == "removal" else None
            if until is not None:  # law enforcement asked the provider not to remove it yet
                n.next_due_at = until
                out.held += 1
                _audit(s, STAGE, "victim.notice_held", subject(n.request_id),
                       {"notice_id": n.notice_id, "provider_id": n.provider_id,
                        "until": m.iso(until), "sent_before": n.attempts}, at=now,
                       discriminator=f"{n.notice_id}|{m.iso(until)}")
                continue
            if (n.state == "sent" and n.type == "removal" and n.attempts >= escalate_after
                    and n.escalation is None):
                n.escalation, n.escalated_at = "unanswered", now
                out.escalated += 1
                _audit(s, STAGE, "victim.notice_escalated", subject(n.request_id),
                       {"notice_id": n.notice_id, "provider_id": n.provider_id,
                        "why": "unanswered", "sent": n.attempts}, at=now,
                       discriminator=n.notice_id)
            body = dict(n.body)
            body.update(attempt=n.attempts + 1, at=m.iso(now))
            if n.type == "removal":
                body["first_sent_at"] = m.iso(n.first_sent_at or now)
            outgoing.append((n.notice_id, n.provider_id, n.type, n.attempts, n.request_id,
                             body))
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
                    "attempts": attempts + 1, "last_sent_at": now, "next_due_at": now + repeat,
                    "first_sent_at": func.coalesce(VictimNotice.first_sent_at, now),
                    "state": "sent"}
            else:
                values = {"attempts": attempts + 1, "last_sent_at": now, "first_sent_at": now,
                          "next_due_at": None, "state": "done"}
            done = s.execute(update(VictimNotice).where(
                VictimNotice.notice_id == nid, VictimNotice.attempts == attempts,
                VictimNotice.state.in_(("pending", "sent"))).values(**values)).rowcount
            if not done and kind == "removal":
                late = s.get(VictimNotice, nid)
                if late is not None and late.state == "cancelled":
                    # The victim withdrew while this was on its way: tell the provider.
                    s.execute(_insert_ignore(s, VictimNotice.__table__),
                              [cancellation_row(late, now)])
            if kind != "removal":
                out.cancellations += 1
            elif attempts:
                out.repeats += 1
            else:
                out.sent += 1
            _audit(s, STAGE, "victim.notice_sent", subject(rid),
                   {"notice_id": nid, "provider_id": provider, "type": kind,
                    "attempt": attempts + 1, "answered_meanwhile": not done},
                   at=now, discriminator=f"{nid}|{attempts + 1}")
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
        _audit(s, STAGE, "victim.response_refused", f"notice:{nid}",
               {"provider_id": provider, "codes": codes, "source": source}, at=now,
               discriminator=source)
        metrics.OUTCOMES.labels(STAGE, "response_refused").inc()
        return Answered(False, nid, problems=[problem(
            "unknown_notice", f"no removal notice with this notice_id was sent to "
            f"{provider}", "$.notice_id")])
    out = Answered(True, nid, n.request_id)
    if n.answer in ("removed", "not_found") or (n.answer == status and status == "refused"):
        _audit(s, STAGE, "victim.response_repeated", subject(n.request_id),
               {"notice_id": nid, "provider_id": provider, "status": status,
                "kept": n.answer, "source": source}, at=now, discriminator=source)
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
    details: dict[str, Any] = {"notice_id": nid, "provider_id": provider, "status": status,
                               "report_id": n.report_id, "source": source}
    if reason:
        details["reason"] = str(reason)[:2000]
    if n.removed_at is not None and n.first_sent_at is not None:
        details["hours_to_removal"] = round(
            (_aware(n.removed_at) - _aware(n.first_sent_at)).total_seconds() / 3600, 3)
    _audit(s, STAGE, "victim.notice_answered", subject(n.request_id), details, at=now,
           discriminator=source)
    metrics.OUTCOMES.labels(STAGE, f"answer_{status}").inc()
    return out


# ------------------------------------------------------------------------------- closing


@dataclass(slots=True)
class Withdrawn:
    request_id: str
    repeated: bool = False
    hashes_removed: int = 0
    notices_cancelled: int = 0
    cancellations_queued: int = 0


def cancellation_row(n: VictimNotice, now: dt.datetime) -> dict[str, Any]:
    """A queued notice/v1 `removal_cancelled` for a removal notice the provider has."""
    cid = cancel_id_for(n.notice_id)
    return {"notice_id": cid, "request_id": n.request_id, "match_id": n.match_id,
            "type": "removal_cancelled", "provider_id": n.provider_id,
            "report_id": n.report_id, "state": "pending", "attempts": 0, "created_at": now,
            "body": {"schema": "notice/v1", "notice_id": cid, "type": "removal_cancelled",
                     "provider_id": n.provider_id, "cancels": n.notice_id,
                     "provider_report_id": n.body.get("provider_report_id"),
                     "report_id": n.report_id, "content_id": n.body.get("content_id"),
                     "request_ref": n.body.get("request_ref"),
                     "reason": "the request was withdrawn; no answer is needed"}}


def withdraw(s: Session, request_id: str, *, by: str, now: dt.datetime) -> Withdrawn:
    """Close a request at the victim's wish (like StopNCII): the bank is removed (the live
    matching of new reports drops it at its next batch), notices not answered are cancelled (providers that had
    one get a `removal_cancelled`), matches not decided yet are dropped. The victim's key
    stays until the retention of `victim` has run from now, then `purge` destroys it."""
    r = get(s, request_id, lock=True)
    if r is None:
        raise NotFoundOrWrongPin()
    if r.state == WITHDRAWN:
        return Withdrawn(r.request_id, repeated=True)
    out = Withdrawn(r.request_id)
    r.state, r.withdrawn_at, r.withdrawn_by, r.rescan_at = WITHDRAWN, now, by[:100], None
    out.hashes_removed = s.execute(delete(VictimHash).where(
        VictimHash.request_id == r.request_id)).rowcount or 0
    bump_version(s)
    s.execute(update(VictimMatch).where(VictimMatch.request_id == r.request_id,
                                        VictimMatch.state == "new").values(state="withdrawn"))
    open_notices = s.scalars(select(VictimNotice).where(
        VictimNotice.request_id == r.request_id, VictimNotice.type == "removal",
        VictimNotice.state.in_(("pending", "sent")))).all()
    cancels = []
    for n in open_notices:
        if n.state == "sent":
            cancels.append(cancellation_row(n, now))
        n.state, n.next_due_at = "cancelled", None
    for chunk in _chunks(cancels, 1000):
        s.execute(_insert_ignore(s, VictimNotice.__table__), list(chunk))
    out.notices_cancelled, out.cancellations_queued = len(open_notices), len(cancels)
    # `personal` (nothing but the time) restarts the victim's retention at the withdrawal.
    _audit(s, staff(by), "victim.request_withdrawn", subject(r.request_id),
           {"hashes_removed": out.hashes_removed, "notices_cancelled": len(open_notices),
            "cancellations_queued": len(cancels)}, at=now, discriminator="withdrawn",
           person=subject(r.request_id), personal={"withdrawn_at": m.iso(now)})
    metrics.OUTCOMES.labels(STAGE, "withdrawn").inc()
    log.info("victim request withdrawn: %d notice(s) cancelled", len(open_notices))
    return out


def keep_alive(s: Session, now: dt.datetime, limit: int = 1000) -> int:
    """An open request keeps the victim's key: retention runs from the withdrawal, not
    from the filing. A key unused for KEEP_ALIVE gets an entry that uses it."""
    rows = s.scalars(select(VictimRequest.request_id).join(
        AuditSubjectKey, AuditSubjectKey.person == literal("victim:") + VictimRequest.request_id)
        .where(VictimRequest.state == OPEN, AuditSubjectKey.last_used_at < now - KEEP_ALIVE)
        .limit(limit)).all()
    for rid in rows:
        _audit(s, STAGE, "victim.request_open", subject(rid), {"state": OPEN}, at=now,
               discriminator=m.iso(now)[:10], person=subject(rid),
               personal={"open_at": m.iso(now)})
    return len(rows)


# ------------------------------------------------------------------------------- reading


def status(s: Session, request_id: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """What Art. 20 lets a victim know, without anybody else's data: how many reports held
    their material, which providers reported it and when, whether it was forwarded to law
    enforcement and to whom, the notices sent, the answers and the removals. No report ids,
    no URLs, nothing about the reports' other content or users."""
    r = get(s, request_id)
    if r is None:
        raise NotFoundOrWrongPin()
    matches = s.execute(select(VictimMatch.report_id, VictimMatch.provider_id,
                               VictimMatch.reported_at, VictimMatch.item, VictimMatch.signal)
                        .where(VictimMatch.request_id == r.request_id)).all()
    report_ids = sorted({x.report_id for x in matches})
    by_provider: dict[str, dict[str, Any]] = {}
    seen_reports: set[tuple[str, str]] = set()
    for x in matches:
        if (x.provider_id, x.report_id) in seen_reports:
            continue
        seen_reports.add((x.provider_id, x.report_id))
        p = by_provider.setdefault(x.provider_id, {"provider": x.provider_id, "reports": 0,
                                                   "first_reported_at": x.reported_at,
                                                   "last_reported_at": x.reported_at})
        p["reports"] += 1
        p["first_reported_at"] = min(p["first_reported_at"], x.reported_at)
        p["last_reported_at"] = max(p["last_reported_at"], x.reported_at)
    forwarded: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(report_ids):
        for rcpt, state, at in s.execute(select(Delivery.recipient, Delivery.state,
                                                Delivery.forwarded_at)
                                         .where(Delivery.report_id.in_(list(chunk)))):
            f = forwarded.setdefault(rcpt, {"to": rcpt, "cases": 0, "first_forwarded_at": None,
                                            "waiting": 0})
            if state == "forwarded" and at is not None:
                f["cases"] += 1
                f["first_forwarded_at"] = min(filter(None, [f["first_forwarded_at"], at]))
            else:
                f["waiting"] += 1
    notices = s.execute(select(VictimNotice.provider_id, VictimNotice.state,
                               VictimNotice.answer, VictimNotice.first_sent_at,
                               VictimNotice.last_sent_at, VictimNotice.attempts,
                               VictimNotice.removed_at, VictimNotice.answered_at)
                        .where(VictimNotice.request_id == r.request_id,
                               VictimNotice.type == "removal")).all()
    totals = {"notices": len(notices), "sent": 0, "repeats": 0, "removed": 0, "not_found": 0,
              "refused": 0, "waiting_for_answer": 0, "not_sent_yet": 0, "cancelled": 0}
    prov_notices: dict[str, dict[str, Any]] = {}

    def no_notices() -> dict[str, Any]:
        return {"notices": 0, "removed": 0, "not_found": 0, "refused": 0,
                "waiting_for_answer": 0, "first_notice_at": None, "last_removed_at": None}

    for n in notices:
        pn = prov_notices.setdefault(n.provider_id, no_notices())
        pn["notices"] += 1
        if n.attempts:
            totals["sent"] += 1
            totals["repeats"] += n.attempts - 1
            pn["first_notice_at"] = min(filter(None, [pn["first_notice_at"], n.first_sent_at]))
        if n.answer in ("removed", "not_found", "refused"):
            totals[n.answer] += 1
            pn[n.answer] += 1
            if n.answer == "removed" and n.removed_at is not None:
                pn["last_removed_at"] = max(filter(None, [pn["last_removed_at"], n.removed_at]))
        elif n.state == "cancelled":
            totals["cancelled"] += 1
        elif n.state == "pending":
            totals["not_sent_yet"] += 1
        elif n.state == "sent":
            totals["waiting_for_answer"] += 1
            pn["waiting_for_answer"] += 1
    providers = []
    for pid in sorted(set(by_provider) | set(prov_notices)):
        row = {"provider": pid, **{k: v for k, v in by_provider.get(pid, {
            "reports": 0, "first_reported_at": None, "last_reported_at": None}).items()
            if k != "provider"}}
        row.update(prov_notices.get(pid) or no_notices())
        providers.append({k: (m.iso(v) if isinstance(v, dt.datetime) else v)
                          for k, v in row.items()})
    items_found = sorted({x.item for x in matches})
    return {
        "request_id": r.request_id, "state": r.state, "filed_at": m.iso(r.filed_at),
        "withdrawn_at": m.iso(r.withdrawn_at) if r.withdrawn_at else None,
        "stored_reports_searched_at": m.iso(r.past_matched_at) if r.past_matched_at else None,
        "items_in_your_list": r.items, "items_found": len(items_found),
        "items_found_list": items_found,
        "reports_holding_your_material": len(report_ids),
        "providers": providers,
        "forwarded_to_law_enforcement": [
            {k: (m.iso(v) if isinstance(v, dt.datetime) else v) for k, v in f.items()}
            for _r, f in sorted(forwarded.items())],
        "removal_notices": totals,
    }


def escalations(s: Session, limit: int = 1000) -> list[dict[str, Any]]:
    """The coordinating authority's list: removal notices refused, or unanswered after the
    repeats, oldest first. References only: never the victim's identity."""
    rows = s.scalars(select(VictimNotice).where(VictimNotice.escalation.is_not(None),
                                                VictimNotice.type == "removal")
                     .order_by(VictimNotice.escalated_at).limit(limit)).all()
    return [{"notice_id": n.notice_id, "provider_id": n.provider_id,
             "provider_report_id": n.body.get("provider_report_id"),
             "report_id": n.report_id, "request_ref": n.body.get("request_ref"),
             "why": n.escalation, "escalated_at": m.iso(n.escalated_at) if n.escalated_at else None,
             "first_sent_at": m.iso(n.first_sent_at) if n.first_sent_at else None,
             "sent": n.attempts, "state": n.state, "answer": n.answer,
             "refusal_reason": n.answer_reason if n.answer == "refused" else None}
            for n in rows]


def requests(s: Session, *, state: str | None = None, limit: int = 200,
             request_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Requests for the case handler: ids, states, counts; no identity, no hashes."""
    q = select(VictimRequest)
    if state is not None:
        q = q.where(VictimRequest.state == state)
    if request_ids is not None:
        q = q.where(VictimRequest.request_id.in_(list(request_ids)))
    rows = s.scalars(q.order_by(VictimRequest.filed_at.desc()).limit(limit)).all()
    ids = [r.request_id for r in rows]
    counts: dict[str, dict[str, int]] = {i: {"matches": 0, "notices": 0, "open_notices": 0}
                                         for i in ids}
    for chunk in _chunks(ids):
        for rid, n in s.execute(select(VictimMatch.request_id, func.count()).where(
                VictimMatch.request_id.in_(list(chunk))).group_by(VictimMatch.request_id)):
            counts[rid]["matches"] = int(n)
        for rid, st, n in s.execute(select(VictimNotice.request_id, VictimNotice.state,
                                           func.count()).where(
                VictimNotice.request_id.in_(list(chunk)), VictimNotice.type == "removal")
                .group_by(VictimNotice.request_id, VictimNotice.state)):
            counts[rid]["notices"] += int(n)
            if st in ("pending", "sent"):
                counts[rid]["open_notices"] += int(n)
    return [{"request_id": r.request_id, "state": r.state, "filed_at": m.iso(r.filed_at),
             "filed_by": r.filed_by, "items": r.items, **counts[r.request_id]} for r in rows]


def removal_hours(rows: Iterable[tuple[str, dt.datetime | None, dt.datetime | None]]) \
        -> dict[str, dict[str, Any]]:
    """Per provider: removals, median and 90th percentile of hours from the first notice to
    the removal."""
    spans: dict[str, list[float]] = {}
    for pid, first, removed in rows:
        if first is None or removed is None:
            continue
        spans.setdefault(pid, []).append(
            max(0.0, (_aware(removed) - _aware(first)).total_seconds() / 3600))
    out = {}
    for pid, v in sorted(spans.items()):
        v.sort()
        p90 = v[max(0, math.ceil(0.9 * len(v)) - 1)]  # nearest rank
        out[pid] = {"removals": len(v), "median_hours": round(statistics.median(v), 3),
                    "p90_hours": round(p90, 3)}
    return out
