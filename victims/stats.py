"""Figures about victims' removal requests for `centre stats`, counts only: no request id,
hash, URL or anything about a victim leaves here.

requests filed, open and withdrawn; hashes banked; matches (found when a request was filed
or by triage later) and reports matched; removal notices: sent, reminders, answers by kind,
waiting, cancelled, escalated; and per provider the time from the first notice to the
removal (median and 90th percentile, in hours), as Project Arachnid measures it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from victims.reading import removal_hours
from victims.tables import VictimHash, VictimMatch, VictimNotice, VictimRequest


def victim_figures(
    conn: Any, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> dict[str, Any]:
    """The figures from a Session or Connection; the window applies to when requests were
    filed, matches found and notices first queued."""

    def window(q: Any, col: Any) -> Any:
        if since is not None:
            q = q.where(col >= since)
        if until is not None:
            q = q.where(col < until)
        return q

    by_state = dict(
        conn.execute(
            window(
                select(VictimRequest.state, func.count()).group_by(VictimRequest.state),
                VictimRequest.filed_at,
            )
        ).all()
    )
    banked = conn.execute(select(func.count()).select_from(VictimHash)).scalar_one()
    found_by = dict(
        conn.execute(
            window(
                select(VictimMatch.found_by, func.count()).group_by(VictimMatch.found_by),
                VictimMatch.found_at,
            )
        ).all()
    )
    reports = conn.execute(
        window(select(func.count(func.distinct(VictimMatch.report_id))), VictimMatch.found_at)
    ).scalar_one()
    removal = window(
        select(
            VictimNotice.state,
            VictimNotice.answer,
            VictimNotice.escalation,
            VictimNotice.attempts,
            VictimNotice.provider_id,
            VictimNotice.first_sent_at,
            VictimNotice.removed_at,
        ).where(VictimNotice.type == "removal"),
        VictimNotice.created_at,
    )
    notices = {
        "queued": 0,
        "sent": 0,
        "reminders": 0,
        "removed": 0,
        "not_found": 0,
        "refused": 0,
        "waiting_for_answer": 0,
        "cancelled": 0,
        "escalated_refused": 0,
        "escalated_unanswered": 0,
    }
    spans = []
    for st, ans, esc, attempts, pid, first, removed in conn.execute(removal):
        notices["queued"] += 1
        if attempts:
            notices["sent"] += 1
            notices["reminders"] += attempts - 1
        if ans in ("removed", "not_found", "refused"):
            notices[ans] += 1
        elif st == "sent":
            notices["waiting_for_answer"] += 1
        elif st == "cancelled":
            notices["cancelled"] += 1
        if esc in ("refused", "unanswered"):
            notices[f"escalated_{esc}"] += 1
        if ans == "removed":
            spans.append((pid, first, removed))
    return {
        "requests_filed": int(sum(by_state.values())),
        "requests_open": int(by_state.get("open", 0)),
        "requests_withdrawn": int(by_state.get("withdrawn", 0)),
        "hashes_banked": int(banked),
        "matches": {
            "when_filed": int(found_by.get("past", 0)),
            "by_triage_later": int(found_by.get("live", 0)),
        },
        "reports_matched": int(reports),
        "removal_notices": notices,
        "time_to_removal_by_provider": removal_hours(spans),
    }


def render(figures: dict[str, Any]) -> list[Any]:
    """rich Tables for `centre stats`."""
    from rich.table import Table

    t = Table(title=f"Victims' removal requests ({figures['requests_filed']} filed)")
    t.add_column("figure")
    t.add_column("count", justify="right")
    t.add_row("open", str(figures["requests_open"]))
    t.add_row("withdrawn", str(figures["requests_withdrawn"]))
    t.add_row("hashes in the victims' banks", str(figures["hashes_banked"]))
    t.add_row("items matched when a request was filed", str(figures["matches"]["when_filed"]))
    t.add_row("items matched later, as reports arrived", str(figures["matches"]["by_triage_later"]))
    t.add_row("reports holding victims' material", str(figures["reports_matched"]))
    for k, v in figures["removal_notices"].items():
        t.add_row(
            f"removal notices: {k.replace('_', ' ')}",
            str(v),
            style="red" if k.startswith("escalated") and v else None,
        )
    tables = [t]
    per = figures["time_to_removal_by_provider"]
    if per:
        t = Table(title="Time from the first removal notice to removal, per provider")
        for col in ("provider", "removals", "median", "90th percentile"):
            t.add_column(col, justify="left" if col == "provider" else "right")
        for pid, row in per.items():
            t.add_row(
                pid,
                str(row["removals"]),
                f"{row['median_hours']:,.1f} h",
                f"{row['p90_hours']:,.1f} h",
            )
        tables.append(t)
    return tables
