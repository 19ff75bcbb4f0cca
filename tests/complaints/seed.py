"""Rows a complaint needs around it (reports, their content, clusters, deliveries, holds),
written straight into the database, and stand-ins for the broker side of `dispatch`."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from centre import messages as m
from centre.db import Provider, Report, ReportContent
from routing.tables import Delivery, Hold
from triage.tables import Cluster, ClusterSignal, ReportCluster

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def hashes(seed: str) -> dict[str, str]:
    return {
        "sha256": hashlib.sha256(seed.encode()).hexdigest(),
        "md5": hashlib.md5(seed.encode()).hexdigest(),
        "pdq": hashlib.sha256(b"pdq" + seed.encode()).hexdigest(),
    }


def item(content_id: str, seed: str, **extra: Any) -> dict[str, Any]:
    return {"content_id": content_id, "media_type": "image", **hashes(seed), **extra}


def add_report(
    engine: Engine,
    provider: str,
    prid: str,
    *,
    items: list[dict[str, Any]],
    recipients: tuple[str, ...] = ("de", "europol"),
    cluster: str | None = None,
    merged_into: str | None = None,
    received_at: dt.datetime = NOW,
    status: str = "forwarded",
) -> tuple[str, str]:
    """One forwarded report; its media in `cluster` (made when new); returns ids."""
    rid = m.report_id_for(provider, prid)
    cid = m.case_id_for(rid)
    with engine.begin() as c:
        if (
            c.execute(select(Provider.provider_id).where(Provider.provider_id == provider)).first()
            is None
        ):
            c.execute(
                insert(Provider),
                [{"provider_id": provider, "first_seen_at": NOW, "reports_received": 0}],
            )
        c.execute(
            insert(Report),
            [
                {
                    "report_id": rid,
                    "case_id": cid,
                    "provider_id": provider,
                    "provider_report_id": prid,
                    "received_at": received_at,
                    "submitted_at": "x",
                    "signature": "absent",
                    "status": status,
                    "reasons": [],
                    "supplements": 0,
                    "routed_supplements": 0,
                }
            ],
        )
        c.execute(
            insert(ReportContent),
            [
                {
                    "report_id": rid,
                    "body": {
                        "schema": "report/v1",
                        "provider_id": provider,
                        "provider_report_id": prid,
                        "content": items,
                    },
                }
            ],
        )
        if recipients:
            c.execute(
                insert(Delivery),
                [
                    {
                        "case_id": cid,
                        "recipient": r,
                        "report_id": rid,
                        "priority": "P2",
                        "key_id": "k" * 16,
                        "topic": f"le.{r}",
                        "state": "forwarded",
                        "forwarded_at": received_at,
                        "delivered_at": None,
                    }
                    for r in recipients
                ],
            )
        if cluster is not None:
            if (
                c.execute(select(Cluster.cluster_id).where(Cluster.cluster_id == cluster)).first()
                is None
            ):
                c.execute(
                    insert(Cluster),
                    [
                        {
                            "cluster_id": cluster,
                            "created_at": received_at,
                            "merged_into": merged_into,
                            "times_reported": 0,
                            "recent_cases": [],
                        }
                    ],
                )
            c.execute(insert(ReportCluster), [{"report_id": rid, "cluster_id": cluster}])
            have = {(k, v) for k, v in c.execute(select(ClusterSignal.kind, ClusterSignal.value))}
            sigs = [
                {"kind": k, "value": it[k], "cluster_id": cluster}
                for it in items
                for k in ("sha256", "md5", "pdq")
                if it.get(k) and (k, it[k]) not in have
            ]
            if sigs:
                c.execute(insert(ClusterSignal), sigs)
    return rid, cid


def add_hold(
    engine: Engine, case_id: str, report_id: str, provider: str, until: dt.datetime
) -> None:
    with engine.begin() as c:
        c.execute(
            insert(Hold),
            [
                {
                    "hold_id": f"h-{case_id[:8]}-{until.timestamp():.0f}",
                    "case_id": case_id,
                    "report_id": report_id,
                    "provider_id": provider,
                    "no_inform": True,
                    "no_removal": False,
                    "reason": "investigation",
                    "requested_by": "de",
                    "created_at": NOW,
                    "until": until,
                }
            ],
        )


@dataclass
class FakeProducer:
    """Collects what would be sent; `fail` makes the flush fail like an unreachable broker."""

    sent: list[tuple[str, bytes, bytes | None]] = field(default_factory=list)
    fail: bool = False
    _queued: list[tuple[str, bytes, bytes | None]] = field(default_factory=list)

    def send(self, topic: str, value: bytes, key: bytes | None = None, **_: Any) -> None:
        self._queued.append((topic, value, key))

    def flush_or_raise(self, timeout: float = 60.0) -> None:
        queued, self._queued = self._queued, []
        if self.fail:
            raise RuntimeError("broker unreachable")
        self.sent += queued

    def close(self) -> None:
        pass

    def on(self, topic: str) -> list[tuple[bytes, bytes | None]]:
        return [(v, k) for t, v, k in self.sent if t == topic]


class FakeTopics:
    def __init__(self) -> None:
        self.ensured: set[str] = set()

    def ensure(self, providers: Any) -> None:
        self.ensured |= set(providers)
