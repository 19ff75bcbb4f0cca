"""`centre complaints …` (over 500 lines: one typer command per step of the flow, each with
its own help text): the case handler's commands for complaints about wrongful removal or
reporting (CSA Regulation proposal Art. 10(4)(d), 12, 15, 34).

Mounted by the main command line as `app.add_typer(complaints_app, name="complaints")`.
Bad input exits with status 2 and a message saying what to give instead; a database that
cannot be reached or is not migrated exits with 1.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from centre.topology import MEMBER_STATES

complaints_app = typer.Typer(
    help="Complaints about a wrongful removal or report: file them, assign them to a case "
    "handler, take notes, decide. An upheld complaint retracts the case from every "
    "law-enforcement recipient, tells the reporting company it may reinstate the "
    "content, puts the content into the false_positive bank and lists the other cases "
    "of its cluster for review; a rejected one sends the reasons back to the complainant."
    "\n\nStates: received → under_review (when assigned) → upheld | rejected. A "
    "complaint is due CENTRE_COMPLAINT_SLA_DAYS days (default 7) after it arrives; "
    "`list --overdue` shows the late ones.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)

err = Console(stderr=True)
T = TypeVar("T")
_STAMP = "%Y-%m-%d %H:%M"


@complaints_app.callback()
def _complaints() -> None:
    """Complaints about a wrongful removal or report: file, list, show, assign, note, decide.

    States: received → under_review (when assigned) → upheld | rejected. A complaint must be
    decided within CENTRE_COMPLAINT_SLA_DAYS days (default 7) of its arrival; `list
    --overdue` shows those that are late."""


from centre.cli_errors import load_settings, me

_settings, _me = load_settings, me  # (centre/cli_errors.py)


def _run(fn: Callable[[Any], T]) -> T:
    """Run one step on a desk; bad input exits 2 with its message, database trouble 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from centre.audit import AuditError
    from centre.keys import KeySetError, UnknownKeyError
    from complaints.common import ComplaintError
    from complaints.service import Desk
    from complaints.states import TransitionError

    desk = Desk(_settings())
    try:
        return fn(desk)
    except (ComplaintError, TransitionError) as exc:
        err.print(f"[red]{escape(str(exc))}[/]", soft_wrap=True)
        raise typer.Exit(2) from None
    except (AuditError, KeySetError, UnknownKeyError) as exc:
        err.print(
            f"[red]the audit trail cannot record this step, so nothing was changed:[/] "
            f"{escape(str(exc))}",
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        err.print(
            f"[red]database error:[/] {escape(detail)} (is the database at the newest "
            "migration? `centre db upgrade` brings it there)",
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    finally:
        desk.close()


def _bad(message: str) -> typer.Exit:
    err.print(f"[red]{escape(message)}[/]", soft_wrap=True)
    return typer.Exit(2)


def _channel(raw: str) -> dict[str, Any]:
    """`centre`, `provider:<provider_id>` or `coordinating_authority:<cc>` (or `authority:`)."""
    kind, _sep, ident = raw.strip().partition(":")
    kind = kind.lower()
    if kind == "centre" and not ident:
        return {"channel": "centre"}
    if kind == "provider" and ident:
        return {"channel": "provider", "provider_id": ident}
    if kind in ("coordinating_authority", "authority") and ident:
        if ident.lower() not in MEMBER_STATES:
            raise _bad(
                f"--channel {raw}: {ident!r} is not an EU member state; use one of "
                f"{' '.join(MEMBER_STATES)}"
            )
        return {"channel": "coordinating_authority", "authority": ident.lower()}
    raise _bad(
        f"--channel must be centre, provider:<provider_id> or "
        f"coordinating_authority:<member state>, not {raw!r}"
    )


_GROUNDS_HELP = (
    "why the removal or report was wrong: not_child_sexual_abuse, "
    "wrongful_removal, wrongful_report, wrong_account or other"
)


@complaints_app.command("file")
def file_cmd(
    grounds: Annotated[str, typer.Option(help=_GROUNDS_HELP)],
    contact_ref: Annotated[
        str,
        typer.Option(
            help="a pseudonymous reference through which the complainant is answered (a "
            "ticket number, never a name or an e-mail address)"
        ),
    ],
    report_id: Annotated[Optional[str], typer.Option(help="the centre's report_id")] = None,
    case_id: Annotated[Optional[str], typer.Option(help="the centre's case_id")] = None,
    provider_id: Annotated[
        Optional[str], typer.Option(help="the reporting company, with --provider-report-id")
    ] = None,
    provider_report_id: Annotated[
        Optional[str], typer.Option(help="the company's own id of the report")
    ] = None,
    sha256: Annotated[Optional[str], typer.Option(help="a SHA-256 of the content")] = None,
    md5: Annotated[Optional[str], typer.Option(help="an MD5 of the content")] = None,
    pdq: Annotated[Optional[str], typer.Option(help="a PDQ hash of the content")] = None,
    channel: Annotated[
        str,
        typer.Option(
            help="who brought the complaint and where answers go: centre (to the centre "
            "directly), provider:<provider_id> (a company for its user; answers as notices "
            "on its topic), coordinating_authority:<member state>"
        ),
    ] = "centre",
    statement: Annotated[Optional[str], typer.Option(help="the complainant's words")] = None,
    ref: Annotated[
        Optional[str],
        typer.Option(
            help="the complainant's or filer's own reference (default: a new one); filing the "
            "same reference again changes nothing"
        ),
    ] = None,
    filed_at: Annotated[
        Optional[str],
        typer.Option(help="when the complaint was made, ISO 8601 with a time zone (default: now)"),
    ] = None,
    by: Annotated[
        Optional[str], typer.Option(help="who files it (default: your user name)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """File a complaint about a report, named by its report_id or case_id, by the company's
    provider_id and provider_report_id, or by a hash of the content.

    A complaint that names nothing the centre knows is kept as **unmatched** (link it later
    with `centre complaints link`). A complaint about a report that already has an open
    complaint joins it. Prints the complaint's id, its state and when it must be decided."""
    from pydantic import ValidationError

    from centre import messages as m
    from complaints.model import ComplaintV1, problems_of

    concerns = {
        k: v
        for k, v in dict(
            report_id=report_id,
            case_id=case_id,
            provider_id=provider_id,
            provider_report_id=provider_report_id,
            sha256=sha256,
            md5=md5,
            pdq=pdq,
        ).items()
        if v
    }
    doc: dict[str, Any] = {
        "schema": "complaint/v1",
        "complaint_ref": ref or f"cli-{uuid.uuid4()}",
        **_channel(channel),
        "concerns": concerns,
        "grounds": grounds,
        "contact_ref": contact_ref,
        "filed_at": filed_at or m.iso(m.now()),
    }
    if statement:
        doc["statement"] = statement
    try:
        complaint = ComplaintV1.model_validate(doc)
    except ValidationError as exc:
        opts = {
            "concerns": "give --report-id, --case-id, --provider-id with "
            "--provider-report-id, or --sha256/--md5/--pdq"
        }
        lines = []
        for p in problems_of(exc):
            field = p.path[2:].split(".")[-1]
            hint = opts.get(field)
            name = "--" + field.replace("_", "-") if field and field != "concerns" else ""
            lines.append(f"{name or p.path}: {p.message}" + (f" ({hint})" if hint else ""))
        raise _bad("the complaint cannot be filed:\n  " + "\n  ".join(lines)) from None
    filed = _run(lambda d: d.file(complaint, by=by or _me()))
    result = {
        "complaint_id": filed.complaint_id,
        "state": filed.state,
        "matched": filed.matched,
        "joined": filed.joined,
        "new": filed.new,
        "case_id": filed.case_id,
        "due_at": m.iso(filed.due_at),
    }
    if as_json:
        print(json.dumps(result))
        return
    what = (
        "joined the open complaint"
        if filed.joined
        else "filed"
        if filed.new
        else "already filed with this reference:"
    )
    about = (
        f"case {filed.case_id}" if filed.case_id else "unmatched (names nothing the centre knows)"
    )
    print(
        f"{what} {filed.complaint_id}: {filed.state}, {about}; "
        f"decide by {filed.due_at.strftime(_STAMP)} UTC"
    )


@complaints_app.command("list")
def list_cmd(
    state: Annotated[
        Optional[str],
        typer.Option(
            help="only complaints in this state: received, under_review, upheld or rejected"
        ),
    ] = None,
    overdue: Annotated[
        bool, typer.Option("--overdue", help="only open complaints past their decision deadline")
    ] = False,
    assignee: Annotated[
        Optional[str], typer.Option(help="only complaints assigned to this case handler")
    ] = None,
    limit: Annotated[
        int, typer.Option(help="show at most this many, earliest deadline first")
    ] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """List complaints, earliest deadline first: state, grounds, whether the report was
    found, who has it, its deadline (late ones in red) and the state of its effects."""
    if limit < 1:
        raise _bad("--limit must be at least 1")
    rows = _run(lambda d: d.list(state=state, overdue=overdue, assignee=assignee, limit=limit))
    if as_json:
        for r in rows:
            print(json.dumps(r))
        return
    title = (
        f"{len(rows)} complaint(s)"
        + (f" {state}" if state else "")
        + (" overdue" if overdue else "")
    )
    t = Table(title=title)
    for col in (
        "complaint",
        "state",
        "grounds",
        "case",
        "assignee",
        "due (UTC)",
        "effects",
        "related",
    ):
        t.add_column(col, no_wrap=col == "complaint")
    for r in rows:
        due = _when(r["due_at"])
        t.add_row(
            r["complaint_id"],
            r["state"].replace("_", " ")
            + (f" (+{r['filings'] - 1} joined)" if r["filings"] > 1 else ""),
            ", ".join(r["grounds"]),
            r["case_id"] or "[yellow]unmatched[/]",
            escape(r["assignee"] or "—"),
            f"[red]{due} overdue[/]" if r["overdue"] else due,
            _effects(r),
            str(r["related_cases"]) if r["related_cases"] else "",
        )
    Console(width=None if sys.stdout.isatty() else 200).print(t)


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).strftime(_STAMP)


def _effects(r: dict[str, Any]) -> str:
    if r["effects"] == "held":
        return f"[yellow]held until {_when(r['effects_held_until'])} (Art. 48(6) hold)[/]"
    return {"none": "", "pending": "[yellow]pending[/]", "done": "sent"}.get(
        r["effects"], r["effects"]
    )


@complaints_app.command("show")
def show_cmd(
    complaint_id: Annotated[str, typer.Argument(help="the complaint's id")],
    related: Annotated[int, typer.Option(help="list at most this many related cases")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show one complaint: what it is about, every filing with its channel and contact
    reference, its history (who did what, when), what its decision sent or holds back, and
    the other cases of the same cluster to review."""
    if related < 0:
        raise _bad("--related must not be negative")
    c = _run(lambda d: d.show(complaint_id, related=related))
    if as_json:
        print(json.dumps(c, indent=2))
        return
    out = Console(width=None if sys.stdout.isatty() else 200)
    out.print(
        f"[bold]complaint {c['complaint_id']}[/]: {c['state'].replace('_', ' ')}"
        + (f", assigned to {escape(c['assignee'])}" if c["assignee"] else "")
    )
    if c["case_id"]:
        out.print(
            f"about case {c['case_id']} (report {c['report_id']} of {c['provider_id']}, "
            f"found by {c['matched_by']})"
        )
    else:
        out.print(
            "[yellow]unmatched: names nothing the centre knows[/] "
            "(centre complaints link ID --report-id …)"
        )
    out.print(
        f"opened {_when(c['opened_at'])} UTC, decide by {_when(c['due_at'])} UTC"
        + (" [red]overdue[/]" if c["overdue"] else "")
    )
    if c["case_under_hold_until"]:
        out.print(
            f"[yellow]the case is under an Art. 48(6) hold until "
            f"{_when(c['case_under_hold_until'])} UTC: notices to the provider about the "
            f"decision wait for its end[/]"
        )
    if c["decided_at"]:
        out.print(
            f"{c['state']} {_when(c['decided_at'])} UTC by {escape(c['decided_by'])}: "
            f"{escape(c['decision_reason'] or '')}"
        )
    if c["effects"] != "none":
        out.print(f"effects: {_effects(c)}")
    t = Table(title="filings")
    for col in ("channel", "filer", "reference", "grounds", "contact", "received (UTC)", "answer"):
        t.add_column(col)
    for f in c["filings"]:
        t.add_row(
            f["channel"],
            escape(f["filer"]),
            escape(f["complaint_ref"]),
            f["grounds"],
            escape(f["contact_ref"]),
            _when(f["received_at"]),
            escape(f["answer"]),
        )
    out.print(t)
    for f in c["filings"]:
        if f["statement"]:
            out.print(f"statement ({escape(f['complaint_ref'])}): {escape(f['statement'])}")
    t = Table(title="history")
    for col in ("at (UTC)", "by", "action", "details"):
        t.add_column(col)
    for e in c["history"]:
        d = {k: v for k, v in e["details"].items() if k not in ("source", "filing_id")}
        t.add_row(
            _when(e["at"]),
            escape(e["actor"]),
            e["action"],
            escape(", ".join(f"{k}={v}" for k, v in d.items())),
        )
    out.print(t)
    if c["messages"]:
        t = Table(title="messages")
        for col in ("kind", "type", "to", "state", "sent / held until (UTC)"):
            t.add_column(col)
        for x in c["messages"]:
            t.add_row(
                x["kind"],
                x["type"],
                x["recipient"],
                x["state"],
                _when(x["sent_at"] or x["not_before"]),
            )
        out.print(t)
    if c["related_cases"]:
        out.print(
            f"{c['related_cases']} other case(s) of the same cluster to review"
            + (f"; the first {len(c['related_cases_shown'])}:" if c["related_cases_shown"] else "")
        )
        for r in c["related_cases_shown"]:
            out.print(f"  case {r['case_id']} (report {r['report_id']})")


@complaints_app.command("assign")
def assign_cmd(
    complaint_id: Annotated[str, typer.Argument(help="the complaint's id")],
    handler: Annotated[str, typer.Argument(help="the case handler who reviews it")],
    by: Annotated[
        Optional[str], typer.Option(help="who assigns it (default: your user name)")
    ] = None,
) -> None:
    """Give a complaint to a case handler: a received complaint goes under review; one under
    review changes hands."""
    c = _run(lambda d: d.assign(complaint_id, handler, by=by or _me()))
    print(f"complaint {c.complaint_id}: {c.state.replace('_', ' ')}, assigned to {c.assignee}")


@complaints_app.command("note")
def note_cmd(
    complaint_id: Annotated[str, typer.Argument(help="the complaint's id")],
    text: Annotated[str, typer.Argument(help="the note")],
    by: Annotated[
        Optional[str], typer.Option(help="who writes it (default: your user name)")
    ] = None,
) -> None:
    """Add a note to a complaint's history (in any state)."""
    c = _run(lambda d: d.note(complaint_id, text, by=by or _me()))
    print(f"note added to complaint {c.complaint_id}")


@complaints_app.command("link")
def link_cmd(
    complaint_id: Annotated[str, typer.Argument(help="the unmatched complaint's id")],
    report_id: Annotated[Optional[str], typer.Option(help="the centre's report_id")] = None,
    case_id: Annotated[Optional[str], typer.Option(help="the centre's case_id")] = None,
    provider_id: Annotated[
        Optional[str], typer.Option(help="the reporting company, with --provider-report-id")
    ] = None,
    provider_report_id: Annotated[
        Optional[str], typer.Option(help="the company's own id of the report")
    ] = None,
    by: Annotated[
        Optional[str], typer.Option(help="who links it (default: your user name)")
    ] = None,
) -> None:
    """Tie an unmatched complaint to the report you found it is about."""
    concerns = {
        k: v
        for k, v in dict(
            report_id=report_id,
            case_id=case_id,
            provider_id=provider_id,
            provider_report_id=provider_report_id,
        ).items()
        if v
    }
    if not (report_id or case_id or (provider_id and provider_report_id)):
        raise _bad("give --report-id, --case-id, or --provider-id with --provider-report-id")
    sub = _run(lambda d: d.link(complaint_id, concerns, by=by or _me()))
    print(f"complaint {complaint_id} is about case {sub.case_id}")


@complaints_app.command("decide")
def decide_cmd(
    complaint_id: Annotated[str, typer.Argument(help="the complaint's id")],
    reason: Annotated[
        str,
        typer.Option(
            help="why: sent to the complainant's channel and, when upheld, with the retraction"
        ),
    ],
    uphold: Annotated[
        bool, typer.Option("--uphold", help="the removal or report was wrong")
    ] = False,
    reject: Annotated[bool, typer.Option("--reject", help="the removal or report stands")] = False,
    by: Annotated[Optional[str], typer.Option(help="who decides (default: your user name)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Decide a complaint under review, with --uphold or --reject and a --reason.

    Upheld: a retraction/v1 goes to every law-enforcement recipient that received the case,
    the reporting company gets a `reinstatement` notice, the content's hashes go into the
    false_positive bank (later reports of it are manifestly unfounded), and the other cases
    of its cluster are listed for review (`show`). Rejected: the reasons go back to the
    complainant's channel; nothing else changes. Under an Art. 48(6) hold on the case, the
    notices to the provider wait for the hold's end. A decision is final; deciding the same
    way again only sends what has not gone yet."""
    if uphold == reject:
        raise _bad("give exactly one of --uphold or --reject")
    decided, sent, failure = _run(
        lambda d: d.decide(complaint_id, uphold=uphold, reason=reason, by=by or _me())
    )
    from centre import messages as m

    if as_json:
        print(
            json.dumps(
                {
                    "complaint_id": decided.complaint_id,
                    "decision": decided.decision,
                    "repeated": decided.repeated,
                    "retractions": decided.retractions,
                    "notices": decided.notices,
                    "banked": decided.banked,
                    "bank_values": decided.bank_values,
                    "related_cases": decided.related_cases,
                    "held_until": m.iso(decided.held_until) if decided.held_until else None,
                    "sent": {
                        "retractions": sent.retractions,
                        "notices": sent.notices,
                        "held": sent.held,
                        "waiting_key": sent.waiting_key,
                    }
                    if sent
                    else None,
                    "send_error": failure,
                }
            )
        )
        return
    head = (
        f"complaint {decided.complaint_id} already {decided.decision}"
        if decided.repeated
        else f"complaint {decided.complaint_id} {decided.decision}"
    )
    print(head)
    if not decided.repeated and decided.decision == "upheld":
        print(
            f"  {decided.retractions} retraction(s) queued, {decided.bank_values} hash(es) "
            f"in the false_positive bank ({decided.banked} new), "
            f"{decided.related_cases} related case(s) listed for review"
        )
    if sent is not None and (sent.retractions or sent.notices):
        print(f"  sent now: {sent.retractions} retraction(s), {sent.notices} notice(s)")
        if sent.waiting_key:
            print(f"  {sent.waiting_key} retraction(s) wait for the recipient's key")
    if decided.held_until is not None or (sent is not None and sent.held):
        until = decided.held_until
        print(
            "  notices to the provider are held by an Art. 48(6) hold on the case"
            + (f" until {until.strftime(_STAMP)} UTC" if until else "")
            + "; they go when it ends"
        )
    if failure:
        err.print(
            f"[yellow]effects not sent now ({escape(failure)}); they stay queued and "
            "the complaints worker sends them[/]",
            soft_wrap=True,
        )
