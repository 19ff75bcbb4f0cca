"""`centre stats`: the figures of Art. 83 of the CSA Regulation proposal, without personal data.

Counts only: reports by provider and outcome, by member state (and Europol) forwarded to, by
category, manifestly unfounded, and how often the same item was reported (the distribution
of `times_reported` over clusters). Nothing here names a user, a hash or a report.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from centre.db import Report
from routing.tables import Delivery
from triage.tables import Cluster

# Buckets of the times-reported distribution: exact up to 5, then ranges.
_BUCKETS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 10), (11, 100), (101, 1000), (1001, None))


def _bucket(n: int) -> str:
    for lo, hi in _BUCKETS:
        if hi is None and n >= lo:
            return f"{lo}+"
        if hi is not None and lo <= n <= hi:
            return str(lo) if lo == hi else f"{lo}–{hi}"
    return "0"


def collect(
    engine: Engine, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> dict[str, Any]:
    """All figures as plain data (for `--json` and for tests)."""

    def window(q: Any, col: Any) -> Any:
        if since is not None:
            q = q.where(col >= since)
        if until is not None:
            q = q.where(col < until)
        return q

    with engine.connect() as c:
        by_provider: dict[str, dict[str, int]] = {}
        for pid, status, n in c.execute(
            window(
                select(Report.provider_id, Report.status, func.count()).group_by(
                    Report.provider_id, Report.status
                ),
                Report.received_at,
            )
        ):
            row = by_provider.setdefault(pid, {"reports": 0})
            row["reports"] += n
            row[status] = row.get(status, 0) + n
        categories = Counter(
            {
                cat or "not_triaged": n
                for cat, n in c.execute(
                    window(
                        select(Report.category, func.count()).group_by(Report.category),
                        Report.received_at,
                    )
                )
            }
        )
        unfounded = c.execute(
            window(
                select(func.count()).where(Report.manifestly_unfounded.is_(True)),
                Report.received_at,
            )
        ).scalar_one()
        by_recipient = {
            r: n
            for r, n in c.execute(
                window(
                    select(Delivery.recipient, func.count())
                    .where(Delivery.state == "forwarded")
                    .group_by(Delivery.recipient),
                    Delivery.forwarded_at,
                )
            )
        }
        awaiting = {
            r: n
            for r, n in c.execute(
                select(Delivery.recipient, func.count())
                .where(Delivery.state == "awaiting_key")
                .group_by(Delivery.recipient)
            )
        }
        times: Counter[str] = Counter()
        for t, n in c.execute(
            window(
                select(Cluster.times_reported, func.count())
                .where(Cluster.merged_into.is_(None))
                .group_by(Cluster.times_reported),
                Cluster.created_at,
            )
        ):
            times[_bucket(int(t))] += n
        from complaints.stats import complaint_figures  # Art. 83 figures about complaints

        complaints = complaint_figures(c, since, until)
        from victims.stats import victim_figures  # victims' removal requests (issue 8)

        victims = victim_figures(c, since, until)
    order = [_bucket(lo) for lo, _hi in _BUCKETS]
    return {
        "window": {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        },
        "reports_total": sum(r["reports"] for r in by_provider.values()),
        "by_provider": dict(sorted(by_provider.items())),
        "by_category": dict(sorted(categories.items())),
        "manifestly_unfounded": unfounded,
        "forwarded_to": dict(sorted(by_recipient.items())),
        "awaiting_recipient_key": dict(sorted(awaiting.items())),
        "times_reported_distribution": {b: times[b] for b in order if times.get(b)},
        "items_reported_more_than_once": sum(n for b, n in times.items() if b != "1"),
        "complaints": complaints,
        "victims": victims,
    }


def _counts(title: str, what: str, unit: str) -> Any:
    from rich.table import Table

    t = Table(title=title)
    t.add_column(what)
    t.add_column(unit, justify="right")
    return t


def render(figures: dict[str, Any]) -> list[Any]:
    """rich Tables for the terminal."""
    from rich.table import Table

    tables = []
    t = Table(title=f"Reports by provider ({figures['reports_total']} in all)")
    statuses = sorted({k for r in figures["by_provider"].values() for k in r if k != "reports"})
    t.add_column("provider")
    t.add_column("reports", justify="right")
    for st in statuses:
        t.add_column(st.replace("_", " "), justify="right")
    for pid, row in figures["by_provider"].items():
        t.add_row(pid, str(row["reports"]), *[str(row.get(st, 0)) for st in statuses])
    tables.append(t)

    t = _counts("Reports by category", "category", "reports")
    for cat, n in figures["by_category"].items():
        t.add_row(cat.replace("_", " "), str(n))
    t.add_row("manifestly unfounded", str(figures["manifestly_unfounded"]))
    tables.append(t)

    t = _counts("Cases forwarded, by recipient", "recipient", "cases")
    for r, n in figures["forwarded_to"].items():
        t.add_row(r, str(n))
    for r, n in figures["awaiting_recipient_key"].items():
        t.add_row(f"{r} (waiting for its key)", str(n), style="red")
    tables.append(t)

    t = _counts("How many times the same item was reported (clusters)", "times reported", "items")
    for b, n in figures["times_reported_distribution"].items():
        t.add_row(b, str(n))
    tables.append(t)
    if "complaints" in figures:
        from complaints.stats import render as render_complaints

        tables += render_complaints(figures["complaints"])
    if "victims" in figures:
        from victims.stats import render as render_victims

        tables += render_victims(figures["victims"])
    return tables
