"""Art. 83 figures about complaints, counts only: no contact reference, statement, hash or
report id ever leaves here.

complaints filed (every filing) by grounds and by channel; complaints (one per report under
complaint, joined filings counted once) by state; decisions; decisions that reversed the
removal or report (upheld); the average time from arrival to decision; unmatched ones; open
ones past their deadline.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from complaints import states
from complaints.tables import Complaint, ComplaintFiling, ComplaintMessage


def complaint_figures(
    conn: Any,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The figures from a Session or Connection; the window applies to when complaints
    arrived (filings) and were opened (complaints)."""
    now = now or dt.datetime.now(dt.UTC)

    def window(q: Any, col: Any) -> Any:
        if since is not None:
            q = q.where(col >= since)
        if until is not None:
            q = q.where(col < until)
        return q

    by_grounds = dict(
        conn.execute(
            window(
                select(ComplaintFiling.grounds, func.count()).group_by(ComplaintFiling.grounds),
                ComplaintFiling.received_at,
            )
        ).all()
    )
    by_channel = dict(
        conn.execute(
            window(
                select(ComplaintFiling.channel, func.count()).group_by(ComplaintFiling.channel),
                ComplaintFiling.received_at,
            )
        ).all()
    )
    joined = conn.execute(
        window(
            select(func.count()).where(ComplaintFiling.joined.is_(True)),
            ComplaintFiling.received_at,
        )
    ).scalar_one()
    by_state = dict(
        conn.execute(
            window(
                select(Complaint.state, func.count()).group_by(Complaint.state), Complaint.opened_at
            )
        ).all()
    )
    unmatched = conn.execute(
        window(select(func.count()).where(Complaint.matched_by.is_(None)), Complaint.opened_at)
    ).scalar_one()
    overdue = conn.execute(
        window(
            select(func.count()).where(Complaint.state.in_(states.OPEN), Complaint.due_at < now),
            Complaint.opened_at,
        )
    ).scalar_one()
    late_decisions = 0
    spans: list[float] = []
    for opened, decided, due in conn.execute(
        window(
            select(Complaint.opened_at, Complaint.decided_at, Complaint.due_at).where(
                Complaint.decided_at.is_not(None)
            ),
            Complaint.opened_at,
        )
    ):
        opened, decided, due = (_aware(opened), _aware(decided), _aware(due))
        spans.append((decided - opened).total_seconds())
        late_decisions += decided > due
    retractions = conn.execute(
        window(
            select(func.count())
            .select_from(ComplaintMessage)
            .join(Complaint, Complaint.complaint_id == ComplaintMessage.complaint_id)
            .where(ComplaintMessage.kind == "retraction", ComplaintMessage.state == "sent"),
            Complaint.opened_at,
        )
    ).scalar_one()
    decisions = {st: int(by_state.get(st, 0)) for st in states.FINAL}
    return {
        "filed": int(sum(by_grounds.values())),
        "by_grounds": {g: int(n) for g, n in sorted(by_grounds.items())},
        "by_channel": {c: int(n) for c, n in sorted(by_channel.items())},
        "joined_open_complaint": int(joined),
        "complaints": int(sum(by_state.values())),
        "by_state": {st: int(by_state.get(st, 0)) for st in states.STATES},
        "unmatched": int(unmatched),
        "decisions": decisions,
        "reversed": decisions[states.UPHELD],
        "average_hours_to_decide": round(sum(spans) / len(spans) / 3600, 2) if spans else None,
        "decided_after_deadline": int(late_decisions),
        "open_overdue": int(overdue),
        "retractions_sent": int(retractions),
    }


def _aware(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def render(figures: dict[str, Any]) -> list[Any]:
    """rich Tables for `centre stats`."""
    from rich.table import Table

    t = Table(
        title=f"Complaints ({figures['filed']} filed, {figures['complaints']} "
        "complaints after joining those about the same report)"
    )
    t.add_column("figure")
    t.add_column("complaints", justify="right")
    for g, n in figures["by_grounds"].items():
        t.add_row(f"grounds: {g.replace('_', ' ')}", str(n))
    for ch, n in figures["by_channel"].items():
        t.add_row(f"channel: {ch.replace('_', ' ')}", str(n))
    t.add_row("joined an open complaint", str(figures["joined_open_complaint"]))
    for st, n in figures["by_state"].items():
        t.add_row(f"state: {st.replace('_', ' ')}", str(n))
    t.add_row("unmatched (name nothing the centre knows)", str(figures["unmatched"]))
    t.add_row("reversed (upheld)", str(figures["reversed"]))
    avg = figures["average_hours_to_decide"]
    t.add_row("average time to decide", "—" if avg is None else f"{avg:,.1f} h")
    t.add_row("decided after the deadline", str(figures["decided_after_deadline"]))
    t.add_row(
        "open and overdue",
        str(figures["open_overdue"]),
        style="red" if figures["open_overdue"] else None,
    )
    t.add_row("retractions sent to law enforcement", str(figures["retractions_sent"]))
    return [t]
