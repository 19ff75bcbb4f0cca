"""What a complaint is about: the report it names, found by report id, case id, the
provider's own report id, or a hash of the content through triage's clusters (the family of
clusters merged into one another counted as one).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from centre.db import Report
from complaints.model import HASH_KINDS
from triage.tables import Cluster, ClusterSignal, ReportCluster

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
        below = set(
            s.scalars(select(Cluster.cluster_id).where(Cluster.merged_into.in_(sorted(frontier))))
        )
        frontier = below - family
        family |= frontier
    return sorted(family)


def _by_hash(s: Session, kind: str, value: str, prefer_provider: str | None) -> Subject | None:
    """The report a complaint about content concerns: the earliest of the filing company's
    own reports holding it, else the earliest report of its cluster."""
    cid = s.scalar(
        select(ClusterSignal.cluster_id).where(
            ClusterSignal.value == value, ClusterSignal.kind == kind
        )
    )
    if cid is None:
        return None
    family = cluster_family(s, [cid])
    q = (
        select(Report.report_id, Report.case_id, Report.provider_id)
        .join(ReportCluster, ReportCluster.report_id == Report.report_id)
        .where(ReportCluster.cluster_id.in_(family))
    )
    row = None
    if prefer_provider:
        row = s.execute(
            q.where(Report.provider_id == prefer_provider)
            .order_by(Report.received_at, Report.report_id)
            .limit(1)
        ).first()
    if row is None:
        row = s.execute(q.order_by(Report.received_at, Report.report_id).limit(1)).first()
    return Subject(kind, *row) if row else None


def resolve(
    s: Session, concerns: dict[str, Any], channel_provider: str | None = None
) -> Subject | None:
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
        row = s.execute(
            select(*cols).where(Report.provider_id == pid, Report.provider_report_id == prid)
        ).first()
        if row:
            return Subject("provider_report_id", *row)
    for kind in HASH_KINDS:
        if concerns.get(kind):
            found = _by_hash(s, kind, str(concerns[kind]).lower(), channel_provider)
            if found:
                return found
    return None
