"""Routing's part of the command line: `centre cases overdue` and `centre liaison hold`
(the shell mounts both)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from centre.cli_errors import err
from centre.cli_errors import load_settings as _settings


def liaison_hold(
    case_id: Annotated[str, typer.Argument(help="the case's case_id")],
    days: Annotated[int, typer.Option(help="how long, at most 548 days (18 months)")],
    reason: Annotated[str, typer.Option(help="why (kept by the centre, not sent to the provider)")],
    no_inform: Annotated[
        bool, typer.Option("--no-inform", help="the provider must not tell the user")
    ] = False,
    no_removal: Annotated[
        bool, typer.Option("--no-removal", help="the provider must not remove the content")
    ] = False,
    by: Annotated[str, typer.Option(help="who asks (your member state or Europol)")] = "liaison",
) -> None:
    """Ask, under Art. 48(6), that the provider not inform the user and/or not remove the
    content while you investigate, for at most 18 months. The centre records it and sends
    the provider a notice saying what not to do and until when (not your reason)."""
    from routing.holds import HoldError, place_hold

    try:
        notice = place_hold(
            _settings(),
            case_id,
            days=days,
            no_inform=no_inform,
            no_removal=no_removal,
            reason=reason,
            requested_by=by,
        )
    except HoldError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    print(
        f"hold {notice['notice_id']} until {notice['hold']['until']}; "
        f"{notice['provider_id']} notified"
    )


cases_app = typer.Typer(
    help="Cases as the centre recorded them (Art. 45): where they went, "
    "when, and whether the liaison pulled them.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


@cases_app.command("overdue")
def cases_overdue(
    hours: float = typer.Option(
        24.0, "--hours", help="a case not pulled this many hours after it was forwarded is overdue"
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table"),
) -> None:
    """List cases forwarded to a liaison that its `centre liaison pull` has not acknowledged
    within --hours (default 24): case, recipient, priority, when forwarded, how long ago. P1
    first. Exit status 0 either way."""
    import datetime as dt

    from rich.table import Table
    from sqlalchemy import select

    from centre.db import make_engine
    from routing.tables import Delivery

    if hours < 0:
        err.print("[red]--hours must not be negative[/]")
        raise typer.Exit(2)
    now = dt.datetime.now(dt.UTC)
    engine = make_engine(_settings().database_url)
    try:
        with engine.connect() as c:
            rows = c.execute(
                select(
                    Delivery.case_id, Delivery.recipient, Delivery.priority, Delivery.forwarded_at
                )
                .where(
                    Delivery.state == "forwarded",
                    Delivery.delivered_at.is_(None),
                    Delivery.forwarded_at <= now - dt.timedelta(hours=hours),
                )
                .order_by(Delivery.priority, Delivery.forwarded_at)
            ).all()
    finally:
        engine.dispose()
    if as_json:
        for case_id, rcpt, prio, at in rows:
            assert at is not None  # selected by forwarded_at <= …, so never NULL
            print(
                json.dumps(
                    {
                        "case_id": case_id,
                        "recipient": rcpt,
                        "priority": prio,
                        "forwarded_at": at.isoformat(),
                    }
                )
            )
        return
    t = Table(title=f"{len(rows)} case deliveries not pulled within {hours:g} h")
    for col in ("case", "recipient", "priority", "forwarded at (UTC)", "waiting"):
        t.add_column(col)
    for case_id, rcpt, prio, at in rows:
        assert at is not None  # selected by forwarded_at <= …, so never NULL
        t.add_row(
            case_id,
            rcpt,
            prio,
            at.strftime("%Y-%m-%d %H:%M"),
            f"{(now - at).total_seconds() / 3600:.1f} h",
        )
    Console().print(t)
