"""Matching the victims' banks against reports: the row of `victim_matches` a match
becomes, recording matches, checking stored reports (`past_match`: every stored report
searched at once for newly filed or rescanned requests, their notices queued) and the pure
matching of a batch of triaged reports (`live_rows`). The worker's step that records a batch's
matches, `live_matches`, is the flow's (victims/flow.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from centre import messages as m
from centre.db import Report, ReportContent
from victims.bank import VictimBank, cluster_families, reports_of, stored_candidates
from victims.common import STAGE, _audit, _bool, _chunks, _insert_ignore, _text, subject
from victims.notices import notice_new_matches
from victims.tables import VictimMatch, VictimRequest

# ------------------------------------------------------------------------------- matching


def match_row(
    request_id: str,
    item: int,
    signal: str,
    distance: int,
    *,
    report_id: str,
    case_id: str,
    provider_id: str,
    provider_report_id: str,
    reported_at: dt.datetime,
    content: dict[str, Any],
    found_by: str,
    now: dt.datetime,
) -> dict[str, Any]:
    """A row of victim_matches: what a notice needs, copied from the report's content item."""
    url = content.get("url")
    return {
        "request_id": request_id,
        "item": item,
        "report_id": report_id,
        "case_id": case_id,
        "provider_id": provider_id,
        "provider_report_id": _text(provider_report_id)[:200],
        "content_id": _text(content.get("content_id"))[:200],
        "reported_at": reported_at,
        "signal": signal,
        "distance": int(distance),
        "content": {
            k: content[k]
            for k in ("media_type", "sha256", "md5", "pdq")
            if isinstance(content.get(k), str)
        },
        "url": _text(url) if isinstance(url, str) else None,
        "publicly_available": _bool(content.get("publicly_available")),
        "removed": _bool(content.get("removed")),
        "found_by": found_by,
        "found_at": now,
        "state": "new",
    }


def insert_matches(s: Session, rows: list[dict[str, Any]]) -> None:
    for chunk in _chunks(rows, 1000):
        s.execute(_insert_ignore(s, VictimMatch.__table__), list(chunk))


def match_reports(
    s: Session, bank: VictimBank, report_ids: Sequence[str], *, found_by: str, now: dt.datetime
) -> list[dict[str, Any]]:
    """Check the media of these stored reports against the bank (each item directly: a
    cluster can hold near copies of near copies); rows for victim_matches."""
    from triage.rules import media_items
    from triage.signals import content_signals

    out: list[dict[str, Any]] = []
    for chunk in _chunks(list(report_ids)):
        meta: list[tuple[Any, dict[str, Any]]] = []
        sigs: list[list[tuple[str, str]]] = []
        for r in s.execute(
            select(
                Report.report_id,
                Report.case_id,
                Report.provider_id,
                Report.provider_report_id,
                Report.received_at,
                ReportContent.body,
            )
            .join(ReportContent, ReportContent.report_id == Report.report_id)
            .where(Report.report_id.in_(list(chunk)))
        ):
            for content in media_items(r.body or {}):
                meta.append((r, content))
                sigs.append(list(content_signals(content)))
        for (r, content), hits in zip(meta, bank.match(sigs)):
            for h in hits:
                out.append(
                    match_row(
                        h.request_id,
                        h.item,
                        h.signal,
                        h.distance,
                        report_id=r.report_id,
                        case_id=r.case_id,
                        provider_id=r.provider_id,
                        provider_report_id=r.provider_report_id,
                        reported_at=r.received_at,
                        content=content,
                        found_by=found_by,
                        now=now,
                    )
                )
    return out


@dataclass(slots=True)
class Searched:
    clusters: int = 0
    reports: int = 0
    matches: int = 0  # matches of the request after the search (earlier ones included)
    notices: int = 0  # notices queued by this search


def past_match(
    s: Session, request_ids: Sequence[str], *, now: dt.datetime, actor: str = STAGE
) -> Searched:
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
    counts = dict(
        s.execute(
            select(VictimMatch.request_id, func.count())
            .where(VictimMatch.request_id.in_(ids))
            .group_by(VictimMatch.request_id)
        ).all()
    )
    out.matches = int(sum(counts.values()))
    for rid in ids:
        r = s.get(VictimRequest, rid)
        if r is not None:
            r.past_matched_at = now
        _audit(
            s,
            actor,
            "victim.stored_reports_searched",
            subject(rid),
            {
                "clusters": out.clusters,
                "reports_checked": out.reports,
                "matches": int(counts.get(rid, 0)),
                "requests_searched_together": len(ids),
            },
            at=now,
            discriminator=m.iso(now),
        )
    return out


def live_rows(
    bank: VictimBank, envelopes: Sequence[dict[str, Any]], now: dt.datetime
) -> list[dict[str, Any]]:
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
            out.append(
                match_row(
                    h.request_id,
                    h.item,
                    h.signal,
                    h.distance,
                    report_id=e["report_id"],
                    case_id=e["case_id"],
                    provider_id=e["provider_id"],
                    provider_report_id=e["provider_report_id"],
                    reported_at=m.parse_time(e["received_at"]),
                    content=content,
                    found_by="live",
                    now=now,
                )
            )
    return out
