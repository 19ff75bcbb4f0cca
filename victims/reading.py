"""What is read about requests: a victim's status (what Art. 20 lets them know), the
coordinating authority's list of escalated notices, the case handler's list of requests, and
the removal times per provider for the statistics. Nothing here changes anything.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from centre import messages as m
from routing.tables import Delivery
from victims.common import NotFoundOrWrongPin, _aware, _chunks, get
from victims.tables import VictimMatch, VictimNotice, VictimRequest

# ------------------------------------------------------------------------------- reading


def status(s: Session, request_id: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """What Art. 20 lets a victim know, without anybody else's data: how many reports held
    their material, which providers reported it and when, whether it was forwarded to law
    enforcement and to whom, the notices sent, the answers and the removals. No report ids,
    no URLs, nothing about the reports' other content or users."""
    r = get(s, request_id)
    if r is None:
        raise NotFoundOrWrongPin()
    matches = s.execute(
        select(
            VictimMatch.report_id,
            VictimMatch.provider_id,
            VictimMatch.reported_at,
            VictimMatch.item,
            VictimMatch.signal,
        ).where(VictimMatch.request_id == r.request_id)
    ).all()
    report_ids = sorted({x.report_id for x in matches})
    by_provider: dict[str, dict[str, Any]] = {}
    seen_reports: set[tuple[str, str]] = set()
    for x in matches:
        if (x.provider_id, x.report_id) in seen_reports:
            continue
        seen_reports.add((x.provider_id, x.report_id))
        p = by_provider.setdefault(
            x.provider_id,
            {
                "provider": x.provider_id,
                "reports": 0,
                "first_reported_at": x.reported_at,
                "last_reported_at": x.reported_at,
            },
        )
        p["reports"] += 1
        p["first_reported_at"] = min(p["first_reported_at"], x.reported_at)
        p["last_reported_at"] = max(p["last_reported_at"], x.reported_at)
    forwarded: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(report_ids):
        for rcpt, state, at in s.execute(
            select(Delivery.recipient, Delivery.state, Delivery.forwarded_at).where(
                Delivery.report_id.in_(list(chunk))
            )
        ):
            f = forwarded.setdefault(
                rcpt, {"to": rcpt, "cases": 0, "first_forwarded_at": None, "waiting": 0}
            )
            if state == "forwarded" and at is not None:
                f["cases"] += 1
                f["first_forwarded_at"] = min(filter(None, [f["first_forwarded_at"], at]))
            else:
                f["waiting"] += 1
    notices = s.execute(
        select(
            VictimNotice.provider_id,
            VictimNotice.state,
            VictimNotice.answer,
            VictimNotice.first_sent_at,
            VictimNotice.last_sent_at,
            VictimNotice.attempts,
            VictimNotice.removed_at,
            VictimNotice.answered_at,
        ).where(VictimNotice.request_id == r.request_id, VictimNotice.type == "removal")
    ).all()
    totals = {
        "notices": len(notices),
        "sent": 0,
        "repeats": 0,
        "removed": 0,
        "not_found": 0,
        "refused": 0,
        "waiting_for_answer": 0,
        "not_sent_yet": 0,
        "cancelled": 0,
    }
    prov_notices: dict[str, dict[str, Any]] = {}

    def no_notices() -> dict[str, Any]:
        return {
            "notices": 0,
            "removed": 0,
            "not_found": 0,
            "refused": 0,
            "waiting_for_answer": 0,
            "first_notice_at": None,
            "last_removed_at": None,
        }

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
        row = {
            "provider": pid,
            **{
                k: v
                for k, v in by_provider.get(
                    pid, {"reports": 0, "first_reported_at": None, "last_reported_at": None}
                ).items()
                if k != "provider"
            },
        }
        row.update(prov_notices.get(pid) or no_notices())
        providers.append(
            {k: (m.iso(v) if isinstance(v, dt.datetime) else v) for k, v in row.items()}
        )
    items_found = sorted({x.item for x in matches})
    return {
        "request_id": r.request_id,
        "state": r.state,
        "filed_at": m.iso(r.filed_at),
        "withdrawn_at": m.iso(r.withdrawn_at) if r.withdrawn_at else None,
        "stored_reports_searched_at": m.iso(r.past_matched_at) if r.past_matched_at else None,
        "items_in_your_list": r.items,
        "items_found": len(items_found),
        "items_found_list": items_found,
        "reports_holding_your_material": len(report_ids),
        "providers": providers,
        "forwarded_to_law_enforcement": [
            {k: (m.iso(v) if isinstance(v, dt.datetime) else v) for k, v in f.items()}
            for _r, f in sorted(forwarded.items())
        ],
        "removal_notices": totals,
    }


def escalations(s: Session, limit: int = 1000) -> list[dict[str, Any]]:
    """The coordinating authority's list: removal notices refused, or unanswered after the
    repeats, oldest first. References only: never the victim's identity."""
    rows = s.scalars(
        select(VictimNotice)
        .where(VictimNotice.escalation.is_not(None), VictimNotice.type == "removal")
        .order_by(VictimNotice.escalated_at)
        .limit(limit)
    ).all()
    return [
        {
            "notice_id": n.notice_id,
            "provider_id": n.provider_id,
            "provider_report_id": n.body.get("provider_report_id"),
            "report_id": n.report_id,
            "request_ref": n.body.get("request_ref"),
            "why": n.escalation,
            "escalated_at": m.iso(n.escalated_at) if n.escalated_at else None,
            "first_sent_at": m.iso(n.first_sent_at) if n.first_sent_at else None,
            "sent": n.attempts,
            "state": n.state,
            "answer": n.answer,
            "refusal_reason": n.answer_reason if n.answer == "refused" else None,
        }
        for n in rows
    ]


def requests(
    s: Session,
    *,
    state: str | None = None,
    limit: int = 200,
    request_ids: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Requests for the case handler: ids, states, counts; no identity, no hashes."""
    q = select(VictimRequest)
    if state is not None:
        q = q.where(VictimRequest.state == state)
    if request_ids is not None:
        q = q.where(VictimRequest.request_id.in_(list(request_ids)))
    rows = s.scalars(q.order_by(VictimRequest.filed_at.desc()).limit(limit)).all()
    ids = [r.request_id for r in rows]
    counts: dict[str, dict[str, int]] = {
        i: {"matches": 0, "notices": 0, "open_notices": 0} for i in ids
    }
    for chunk in _chunks(ids):
        for rid, n in s.execute(
            select(VictimMatch.request_id, func.count())
            .where(VictimMatch.request_id.in_(list(chunk)))
            .group_by(VictimMatch.request_id)
        ):
            counts[rid]["matches"] = int(n)
        for rid, st, n in s.execute(
            select(VictimNotice.request_id, VictimNotice.state, func.count())
            .where(VictimNotice.request_id.in_(list(chunk)), VictimNotice.type == "removal")
            .group_by(VictimNotice.request_id, VictimNotice.state)
        ):
            counts[rid]["notices"] += int(n)
            if st in ("pending", "sent"):
                counts[rid]["open_notices"] += int(n)
    return [
        {
            "request_id": r.request_id,
            "state": r.state,
            "filed_at": m.iso(r.filed_at),
            "filed_by": r.filed_by,
            "items": r.items,
            **counts[r.request_id],
        }
        for r in rows
    ]


def removal_hours(
    rows: Iterable[tuple[str, dt.datetime | None, dt.datetime | None]],
) -> dict[str, dict[str, Any]]:
    """Per provider: removals, median and 90th percentile of hours from the first notice to
    the removal."""
    spans: dict[str, list[float]] = {}
    for pid, first, removed in rows:
        if first is None or removed is None:
            continue
        spans.setdefault(pid, []).append(
            max(0.0, (_aware(removed) - _aware(first)).total_seconds() / 3600)
        )
    out = {}
    for pid, v in sorted(spans.items()):
        v.sort()
        p90 = v[max(0, math.ceil(0.9 * len(v)) - 1)]  # nearest rank
        out[pid] = {
            "removals": len(v),
            "median_hours": round(statistics.median(v), 3),
            "p90_hours": round(p90, 3),
        }
    return out
