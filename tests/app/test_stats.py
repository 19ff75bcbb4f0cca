"""`centre stats` counts from the database, with no personal data in its output."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert

from app import stats
from centre import messages as m
from centre.db import Provider, Report, make_engine
from routing.tables import Delivery
from triage.tables import Cluster

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def _fill(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        c.execute(
            insert(Provider),
            [
                {"provider_id": p, "first_seen_at": NOW, "reports_received": 0}
                for p in ("acme", "blue")
            ],
        )
        rows, deliveries = [], []
        plan = [
            ("acme", "forwarded", "known_material", False, ["de", "europol"]),
            ("acme", "forwarded", "new_material", False, ["europol"]),
            ("acme", "manifestly_unfounded", "new_material", True, []),
            ("blue", "forwarded", "solicitation", False, ["fr", "de", "europol"]),
            ("blue", "received", None, None, []),
        ]
        for i, (pid, status, cat, unfounded, to) in enumerate(plan):
            rid = m.report_id_for(pid, f"r{i}")
            rows.append(
                {
                    "report_id": rid,
                    "case_id": m.case_id_for(rid),
                    "provider_id": pid,
                    "provider_report_id": f"r{i}",
                    "received_at": NOW,
                    "submitted_at": "x",
                    "signature": "absent",
                    "status": status,
                    "category": cat,
                    "manifestly_unfounded": unfounded,
                    "reasons": [],
                    "supplements": 0,
                    "triage": None,
                    "jurisdiction": None,
                }
            )
            deliveries += [
                {
                    "case_id": m.case_id_for(rid),
                    "recipient": r,
                    "report_id": rid,
                    "priority": "P2",
                    "key_id": "k" * 16,
                    "topic": f"le.{r}",
                    "forwarded_at": NOW,
                    "delivered_at": None,
                }
                for r in to
            ]
        c.execute(insert(Report), rows)
        c.execute(insert(Delivery), deliveries)
        c.execute(
            insert(Cluster),
            [
                {
                    "cluster_id": f"c{i}",
                    "created_at": NOW,
                    "times_reported": t,
                    "recent_cases": [],
                    "merged_into": "c0" if merged else None,
                }
                for i, (t, merged) in enumerate(
                    [(1, False), (1, False), (3, False), (7, False), (250, False), (9, True)]
                )
            ],
        )


def test_figures(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        _fill(engine)
        f = stats.collect(engine)
        later = stats.collect(engine, since=NOW + dt.timedelta(days=1))
    finally:
        engine.dispose()
    assert f["reports_total"] == 5
    assert f["by_provider"]["acme"] == {"reports": 3, "forwarded": 2, "manifestly_unfounded": 1}
    assert f["by_provider"]["blue"] == {"reports": 2, "forwarded": 1, "received": 1}
    assert f["by_category"] == {
        "known_material": 1,
        "new_material": 2,
        "solicitation": 1,
        "not_triaged": 1,
    }
    assert f["manifestly_unfounded"] == 1
    assert f["forwarded_to"] == {"de": 2, "europol": 3, "fr": 1}
    assert f["awaiting_recipient_key"] == {}
    # merged clusters are not counted twice
    assert f["times_reported_distribution"] == {"1": 2, "3": 1, "6–10": 1, "101–1000": 1}
    assert f["items_reported_more_than_once"] == 3
    assert later["reports_total"] == 0 and later["forwarded_to"] == {}
    text = str(f)
    for personal in ("r0", "r1", m.report_id_for("acme", "r0")):
        assert personal not in text
