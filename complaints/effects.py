"""What a decision queues, in the decision's transaction: the retraction/v1 to each
recipient of the case, the content's hashes into the false_positive bank with the complaint
as provenance, the other cases of its clusters listed for review, and the notices to
providers (`reinstatement`, `complaint_decided`), each a row of `complaint_messages` that
`dispatch` sends.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.orm import Session

from centre import messages as m
from centre.db import Report, ReportContent
from centre.topology import le_topic, notices_topic
from complaints.common import FALSE_POSITIVE, notice_id_for, retraction_id_for
from complaints.model import HASH_KINDS
from complaints.subject import cluster_family
from complaints.tables import (
    Complaint,
    ComplaintFiling,
    ComplaintMessage,
    ComplaintRelatedCase,
)
from routing.tables import Delivery
from triage.tables import Indicator, ReportCluster


def _retractions(s: Session, c: Complaint, reason: str, now: dt.datetime) -> list[dict[str, Any]]:
    """One retraction/v1 per recipient the case went to (or waits to go to); none for a
    (case, recipient) that was retracted before."""
    assert c.case_id is not None
    rcpts = sorted(set(s.scalars(select(Delivery.recipient).where(Delivery.case_id == c.case_id))))
    ids = {retraction_id_for(c.case_id, r): r for r in rcpts}
    done = set(
        s.scalars(
            select(ComplaintMessage.message_id).where(ComplaintMessage.message_id.in_(list(ids)))
        )
    )
    rows = []
    for rid, rcpt in ids.items():
        if rid in done:
            continue
        body = {
            "schema": "retraction/v1",
            "case_id": c.case_id,
            "reason": f"complaint upheld: {reason}",
            "at": m.iso(now),
            "retraction_id": rid,
            "complaint_id": c.complaint_id,
        }
        rows.append(
            {
                "message_id": rid,
                "complaint_id": c.complaint_id,
                "kind": "retraction",
                "recipient": rcpt,
                "case_id": c.case_id,
                "topic": le_topic(rcpt),
                "key": c.case_id,
                "body": body,
                "state": "pending",
                "not_before": None,
                "created_at": now,
                "sent_at": None,
            }
        )
    return rows


def _notice_row(
    c: Complaint, notice: dict[str, Any], provider_id: str, now: dt.datetime, *, case_id: str | None
) -> dict[str, Any]:
    return {
        "message_id": notice["notice_id"],
        "complaint_id": c.complaint_id,
        "kind": "notice",
        "recipient": provider_id,
        "case_id": case_id,
        "topic": notices_topic(provider_id),
        "key": str(
            notice.get("provider_report_id") or notice.get("complaint_ref") or c.complaint_id
        )[:255],
        "body": notice,
        "state": "pending",
        "not_before": None,
        "created_at": now,
        "sent_at": None,
    }


def _queue(s: Session, rows: list[dict[str, Any]]) -> None:
    """Insert messages whose id is not queued yet (an id is sent at most once)."""
    if not rows:
        return
    have = set(
        s.scalars(
            select(ComplaintMessage.message_id).where(
                ComplaintMessage.message_id.in_([r["message_id"] for r in rows])
            )
        )
    )
    new = [r for r in rows if r["message_id"] not in have]
    if new:
        s.execute(insert(ComplaintMessage), new)


def _report_body(s: Session, report_id: str) -> dict[str, Any]:
    return s.scalar(select(ReportContent.body).where(ReportContent.report_id == report_id)) or {}


def content_signals_of(
    c_matched_by: str | None, concerns: dict[str, Any], report: dict[str, Any]
) -> tuple[list[str], list[tuple[str, str]]]:
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
    return (
        s.scalar(
            select(ComplaintFiling.concerns)
            .where(
                ComplaintFiling.complaint_id == c.complaint_id, ComplaintFiling.joined.is_(False)
            )
            .limit(1)
        )
        or {}
    )


def _bank(s: Session, c: Complaint, reason: str, by: str, now: dt.datetime) -> tuple[int, int]:
    """The content's hashes into the false_positive bank, with the complaint as provenance,
    so that later reports of it are manifestly unfounded. Returns (hashes, new or
    re-enabled entries)."""
    assert c.report_id is not None
    _ids, signals = content_signals_of(
        c.matched_by, _first_concerns(s, c), _report_body(s, c.report_id)
    )
    if not signals:
        return 0, 0
    values = sorted({v for _k, v in signals})
    existing = {
        (k, v): enabled
        for k, v, enabled in s.execute(
            select(Indicator.kind, Indicator.value, Indicator.enabled).where(
                Indicator.bank == FALSE_POSITIVE, Indicator.value.in_(values)
            )
        )
    }
    source = f"complaint:{c.complaint_id}"
    why = f"complaint {c.complaint_id} upheld: {reason}"
    new = [
        {
            "bank": FALSE_POSITIVE,
            "kind": k,
            "value": v,
            "source": source[:200],
            "added_by": by,
            "added_at": now,
            "reason": why,
            "enabled": True,
        }
        for k, v in signals
        if (k, v) not in existing
    ]
    if new:
        s.execute(insert(Indicator), new)
    off = [(k, v) for (k, v), enabled in existing.items() if not enabled]
    for k, v in off:  # disabled before: the upheld complaint is the newer decision
        s.execute(
            update(Indicator)
            .where(Indicator.bank == FALSE_POSITIVE, Indicator.kind == k, Indicator.value == v)
            .values(enabled=True, changed_at=now, changed_by=by, change_reason=why)
        )
    return len(signals), len(new) + len(off)


def _list_related(s: Session, c: Complaint) -> int:
    """List the other cases of the report's clusters for review, in one INSERT … SELECT."""
    assert c.report_id is not None
    own = list(
        s.scalars(select(ReportCluster.cluster_id).where(ReportCluster.report_id == c.report_id))
    )
    if not own:
        return 0
    family = cluster_family(s, own)
    sel = (
        select(literal(c.complaint_id), Report.case_id, Report.report_id)
        .join(ReportCluster, ReportCluster.report_id == Report.report_id)
        .where(ReportCluster.cluster_id.in_(family), Report.report_id != c.report_id)
        .distinct()
    )
    s.execute(
        insert(ComplaintRelatedCase).from_select(["complaint_id", "case_id", "report_id"], sel)
    )
    return int(
        s.scalar(
            select(func.count())
            .select_from(ComplaintRelatedCase)
            .where(ComplaintRelatedCase.complaint_id == c.complaint_id)
        )
        or 0
    )


def _reinstatement(s: Session, c: Complaint, reason: str, now: dt.datetime) -> dict[str, Any]:
    """notice/v1 `reinstatement` to the company that reported: the report was wrongful, the
    content may be restored and the user's account action undone."""
    assert c.report_id is not None and c.provider_id is not None
    prid = s.scalar(select(Report.provider_report_id).where(Report.report_id == c.report_id))
    content_ids, _sigs = content_signals_of(
        c.matched_by, _first_concerns(s, c), _report_body(s, c.report_id)
    )
    return {
        "schema": "notice/v1",
        "notice_id": notice_id_for("reinstatement", c.complaint_id, c.report_id),
        "type": "reinstatement",
        "provider_id": c.provider_id,
        "provider_report_id": prid,
        "report_id": c.report_id,
        "complaint_id": c.complaint_id,
        "content_ids": content_ids,
        "reason": reason,
        "at": m.iso(now),
    }


def _decided_notice(c: Complaint, f: ComplaintFiling, now: dt.datetime) -> dict[str, Any]:
    """notice/v1 `complaint_decided` to the company that filed, for its user."""
    return {
        "schema": "notice/v1",
        "notice_id": notice_id_for("complaint_decided", c.complaint_id, f.filing_id),
        "type": "complaint_decided",
        "provider_id": f.filer,
        "complaint_id": c.complaint_id,
        "complaint_ref": f.complaint_ref,
        "decision": c.state,
        "reasons": [{"code": f"complaint_{c.state}", "message": c.decision_reason or ""}],
        "at": m.iso(now),
    }
