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

The flow's parts are beside this module: victims/common.py (states, errors, audit, ids,
helpers), victims/matching.py (matching stored reports and batches of new ones),
victims/notices.py (removal notices, their sending, the providers' answers) and
victims/reading.py (status, escalations, lists, removal times). This module keeps filing, the
worker's live matching step and withdrawing, and is the flow's front door: the worker, the
service and the tests reach all of it as `flow.<name>`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import delete, literal, select, update
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult

from centre import messages as m
from centre import metrics
from centre.audit.sink import NO_AUDIT, AuditSink, queue, staff  # noqa: F401
from centre.audit.tables import AuditSubjectKey
from victims.bank import VictimBank

# The front door: the names marked `noqa: F401` are not used here; the worker, the service and
# the tests reach them as `flow.<name>`.
from victims.common import (
    KEEP_ALIVE,
    OPEN,
    RESCAN_AFTER,
    RESCAN_AFTER_FAILURE,
    STAGE,
    WITHDRAWN,
    NotFoundOrWrongPin,
    VictimError,  # noqa: F401
    _audit,
    _chunks,
    _insert_ignore,
    bump_version,
    get,
    subject,
)
from victims.matching import (
    Searched,
    insert_matches,
    live_rows,
    match_row,  # noqa: F401
    past_match,
)
from victims.model import Item
from victims.notices import (  # noqa: F401
    Answered,
    Dispatched,
    answer,
    cancellation_row,
    dispatch,
    notice_new_matches,
)
from victims.reading import escalations, removal_hours, requests, status  # noqa: F401
from victims.tables import VictimHash, VictimMatch, VictimNotice, VictimRequest

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------- matching

# The worker's step; the matching itself is in victims/matching.py. `insert_matches` is looked
# up in this module, so replacing `flow.insert_matches` (as a test does) reaches this step.


def live_matches(
    s: Session, bank: VictimBank, envelopes: Sequence[dict[str, Any]], now: dt.datetime
) -> int:
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
        log.error(
            "victims: live matching failed on a batch (%s); stored reports will be "
            "searched again for the open requests",
            type(exc).__name__,
        )
        metrics.ERRORS.labels(STAGE, "victim_matching_failed").inc()
        s.execute(
            update(VictimRequest)
            .where(VictimRequest.state == OPEN, VictimRequest.rescan_at.is_(None))
            .values(rescan_at=now + RESCAN_AFTER_FAILURE)
        )
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


def file_request(
    s: Session, doc: dict[str, Any], items: list[Item], *, source: str, now: dt.datetime
) -> Filed:
    """Record a victim-request/v1: the request, its private bank, then the search of every
    stored report. A request id seen before changes nothing (a replay)."""
    rid = doc["request_id"]
    if s.get(VictimRequest, rid) is not None:
        return Filed(rid, False)
    s.add(
        VictimRequest(
            request_id=rid,
            state=OPEN,
            pin_hash=doc["pin"],
            items=len(items),
            requested_at=doc["requested_at"][:64],
            filed_at=now,
            filed_by=str(doc["filed_by"])[:100],
            source=source[:300],
            rescan_at=now + RESCAN_AFTER,
        )
    )
    s.flush()
    rows = [
        {
            "request_id": rid,
            "item": it.item,
            "kind": k,
            "value": v,
            "media_type": it.media_type,
            "pdq_quality": it.pdq_quality if k == "pdq" else None,
        }
        for it in items
        for k, v in it.hashes()
    ]
    for chunk in _chunks(rows, 1000):
        s.execute(_insert_ignore(s, VictimHash.__table__), list(chunk))
    bump_version(s)
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    _audit(
        s,
        STAGE,
        "victim.request_filed",
        subject(rid),
        {
            "items": len(items),
            "hashes": kinds,
            "filed_by": doc["filed_by"],
            "identity_recorded": bool(doc.get("identity_recorded")),
            "source": source,
        },
        at=now,
        discriminator=rid,
    )
    metrics.OUTCOMES.labels(STAGE, "filed").inc()
    searched = past_match(s, [rid], now=now)
    log.info(
        "victim request filed: %d item(s), %d match(es), %d notice(s)",
        len(items),
        searched.matches,
        searched.notices,
    )
    return Filed(rid, True, searched)


def rescan_due(s: Session, now: dt.datetime, limit: int = 1000) -> list[str]:
    """Search stored reports once more, in one pass, for the open requests whose rescan is
    due (reports triaged while a request was being filed, matched live before its bank was
    seen; or a batch whose live matching failed)."""
    rows = s.scalars(
        select(VictimRequest)
        .where(VictimRequest.rescan_at.is_not(None), VictimRequest.rescan_at <= now)
        .order_by(VictimRequest.rescan_at)
        .limit(limit)
    ).all()
    for r in rows:
        r.rescan_at = None
    due = [r.request_id for r in rows if r.state == OPEN]
    if due:
        past_match(s, due, now=now)
    return [r.request_id for r in rows]


# ------------------------------------------------------------------------------- closing


@dataclass(slots=True)
class Withdrawn:
    request_id: str
    repeated: bool = False
    hashes_removed: int = 0
    notices_cancelled: int = 0
    cancellations_queued: int = 0


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
    deleted = cast(
        "CursorResult[Any]",
        s.execute(delete(VictimHash).where(VictimHash.request_id == r.request_id)),
    )
    out.hashes_removed = deleted.rowcount or 0
    bump_version(s)
    s.execute(
        update(VictimMatch)
        .where(VictimMatch.request_id == r.request_id, VictimMatch.state == "new")
        .values(state="withdrawn")
    )
    open_notices = s.scalars(
        select(VictimNotice).where(
            VictimNotice.request_id == r.request_id,
            VictimNotice.type == "removal",
            VictimNotice.state.in_(("pending", "sent")),
        )
    ).all()
    cancels = []
    for n in open_notices:
        if n.state == "sent":
            cancels.append(cancellation_row(n, now))
        n.state, n.next_due_at = "cancelled", None
    for chunk in _chunks(cancels, 1000):
        s.execute(_insert_ignore(s, VictimNotice.__table__), list(chunk))
    out.notices_cancelled, out.cancellations_queued = len(open_notices), len(cancels)
    # `personal` (nothing but the time) restarts the victim's retention at the withdrawal.
    _audit(
        s,
        staff(by),
        "victim.request_withdrawn",
        subject(r.request_id),
        {
            "hashes_removed": out.hashes_removed,
            "notices_cancelled": len(open_notices),
            "cancellations_queued": len(cancels),
        },
        at=now,
        discriminator="withdrawn",
        person=subject(r.request_id),
        personal={"withdrawn_at": m.iso(now)},
    )
    metrics.OUTCOMES.labels(STAGE, "withdrawn").inc()
    log.info("victim request withdrawn: %d notice(s) cancelled", len(open_notices))
    return out


def keep_alive(s: Session, now: dt.datetime, limit: int = 1000) -> int:
    """An open request keeps the victim's key: retention runs from the withdrawal, not
    from the filing. A key unused for KEEP_ALIVE gets an entry that uses it."""
    rows = s.scalars(
        select(VictimRequest.request_id)
        .join(
            AuditSubjectKey, AuditSubjectKey.person == literal("victim:") + VictimRequest.request_id
        )
        .where(VictimRequest.state == OPEN, AuditSubjectKey.last_used_at < now - KEEP_ALIVE)
        .limit(limit)
    ).all()
    for rid in rows:
        _audit(
            s,
            STAGE,
            "victim.request_open",
            subject(rid),
            {"state": OPEN},
            at=now,
            discriminator=m.iso(now)[:10],
            person=subject(rid),
            personal={"open_at": m.iso(now)},
        )
    return len(rows)
