"""`centre victims …`: tools for case handlers working with a victim's own pictures, and a
victim's request to find and remove them (CSA Regulation proposal Art. 20, 21).

Mounted by the main command line as `app.add_typer(victims_app, name="victims")`.
Bad input exits 2, an unknown request id or a wrong PIN 3 (the same message for both),
trouble with the database, the audit trail or the broker 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from triage.hashing import HashingError, hash_paths

victims_app = typer.Typer(
    help="Help for victims: work out the fingerprints (hashes) of their pictures and videos "
    "on this computer, so that copies can be found without the pictures leaving it; "
    "file a request to find and remove them; tell the victim how it stands; withdraw it.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)


@victims_app.callback()
def _victims() -> None:
    """Help for victims: work out the fingerprints (hashes) of their pictures and videos on
    this computer, so that copies can be found without the pictures leaving it (`hash`);
    file a request to find and remove them (`request`); tell the victim what was found and
    done (`status`); withdraw it (`withdraw`); the requests and the escalated notices
    (`list`, `escalations`)."""


_HASH_HELP = """Work out the fingerprints (hashes) of pictures and videos, here on this computer.

The pictures and videos never leave this machine. They are only read: they are not copied,
uploaded, converted or changed in any way, and nothing is sent over the network. The only
thing written is a list of their hashes, and only where you say with --out (otherwise it is
shown on the screen).

Give one or more files or folders; folders are searched with all their subfolders. What a
file is comes from its content, not from its name, so a picture called "notes.txt" is still
hashed as a picture.

For each file you get one line with the file's name (without its folder), whether it is a
picture or a video, and its hashes: SHA-256 and MD5, which only match a copy that is exactly
the same file, and for pictures also PDQ, which also matches copies that were resized,
saved again at a different quality or very slightly cut at the edges. PDQ comes with a quality
from 0 to 100: below 50 the picture has too little detail (for example a single colour) for
its PDQ to be used for matching. Videos get SHA-256 and MD5 only.

The list contains the file names, so keep it with the case. Files that are neither a picture
nor a video, or cannot be read, are reported on the screen with their name and skipped; the
other files are still hashed, and the command then ends with exit code 1."""


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


@victims_app.command("hash", help=_HASH_HELP, no_args_is_help=True)
def hash_command(
    paths: Annotated[
        list[Path], typer.Argument(help="pictures, videos, or folders containing them")
    ],
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            metavar="FILE",
            help="write the list of hashes to this file instead of the screen",
        ),
    ] = None,
) -> None:
    skip: list[Path] = []
    if out is not None:
        out_real = Path(os.path.realpath(out))
        for p in paths:
            p_real = Path(os.path.realpath(p))
            if out_real == p_real or (out.exists() and p.is_dir() and _inside(out_real, p_real)):
                typer.echo(
                    f"error: --out {out} would overwrite a file that is to be hashed; "
                    "choose a new file name outside the folders given",
                    err=True,
                )
                raise typer.Exit(2)
        skip.append(out)  # a new output file inside a folder given is not hashed itself
        try:
            sink = open(out, "wb")
        except OSError as exc:
            typer.echo(f"error: cannot write --out {out}: {exc.strerror or exc}", err=True)
            raise typer.Exit(2) from None
    else:
        sink = None

    hashed = failed = 0
    try:
        for result in hash_paths(paths, skip=skip):
            if isinstance(result, HashingError):
                failed += 1
                typer.echo(f"error: {result.path}: {result.reason}", err=True)
                continue
            hashed += 1
            line = orjson.dumps(result) + b"\n"
            if sink is not None:
                sink.write(line)
                sink.flush()
            else:
                sys.stdout.write(line.decode())
                sys.stdout.flush()
    finally:
        if sink is not None:
            sink.close()

    if hashed == 0 and failed == 0:
        typer.echo("error: no files found in: " + ", ".join(str(p) for p in paths), err=True)
        raise typer.Exit(1)
    typer.echo(
        f"{hashed} file(s) hashed, {failed} could not be"
        + (f"; hashes written to {out}" if out is not None else ""),
        err=True,
    )
    if failed:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------- requests

_err = Console(stderr=True)
REFUSED_EXIT = 3  # an unknown request id or a wrong PIN: the same code for both


from centre.cli_errors import load_settings, me

_settings, _me = load_settings, me  # (centre/cli_errors.py)


def _desk_run(fn: Callable[[Any], T]) -> T:
    """Run one step on a desk: bad input exits 2, an unknown id or wrong PIN 3 (one message
    for both), trouble with the database, the audit trail or the broker 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from centre.audit import AuditError
    from centre.kafka import DeliveryError
    from centre.keys import KeySetError, UnknownKeyError
    from victims.common import NotFoundOrWrongPin, VictimError
    from victims.service import VictimDesk

    desk = VictimDesk(_settings())
    try:
        return fn(desk)
    except NotFoundOrWrongPin as exc:
        _err.print(f"[red]{escape(str(exc))}[/]", soft_wrap=True)
        raise typer.Exit(REFUSED_EXIT) from None
    except VictimError as exc:
        _err.print(f"[red]{escape(str(exc))}[/]", soft_wrap=True)
        raise typer.Exit(2) from None
    except (AuditError, KeySetError, UnknownKeyError) as exc:
        _err.print(
            "[red]the audit trail cannot record this step, so nothing was done:[/] "
            f"{escape(str(exc))}",
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    except DeliveryError as exc:
        _err.print(
            f"[red]the broker did not take the request, so it was not filed:[/] "
            f"{escape(str(exc))}; try again when the stack runs (`centre up`)",
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        _err.print(
            f"[red]database error:[/] {escape(detail)} (is the database at the newest "
            "migration? `centre db upgrade` brings it there)",
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    finally:
        desk.close()


T = TypeVar("T")

_REQUEST_HELP = """File a victim's request to find and remove their pictures and videos
(CSA Regulation proposal Art. 21).

Give the list made with `centre victims hash … --out FILE` on the victim's own machine: only
the hashes are sent (the file names in the list are not). The centre keeps them in a private
bank of this request, searches every report it holds for them at once, and every new report
from now on; for each copy still online it asks the provider to remove it, again every day
until the provider answers.

You get a request id and a PIN for the victim: with both, `centre victims status ID` shows
what was found and done. The PIN is shown only now; the centre keeps only a slow hash of it.

--representative and --identity-ref (who the victim is, who acts for them) are sealed in the
audit trail under the victim's own key and destroyed with it when the request is withdrawn
and its retention has ended; they never go to a provider, to law enforcement or on a topic."""


@victims_app.command("request", help=_REQUEST_HELP, no_args_is_help=True)
def request_command(
    hashes: Annotated[
        Path, typer.Option("--hashes", metavar="FILE", help="the list from `centre victims hash`")
    ],
    representative: Annotated[
        Optional[str],
        typer.Option(
            help="who acts for the victim (a parent, a lawyer, a helpline), as you record it"
        ),
    ] = None,
    identity_ref: Annotated[
        Optional[str],
        typer.Option(
            help="your reference to the victim's identity (a file number at the helpline; "
            "better than a name)"
        ),
    ] = None,
    by: Annotated[Optional[str], typer.Option(help="your login (default: $USER)")] = None,
    wait: Annotated[
        float,
        typer.Option(help="seconds to wait for the search of the stored reports (0: do not wait)"),
    ] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    from victims.common import VictimError
    from victims.model import HashListError, parse_hash_list
    from victims.service import VictimDesk

    me = by or _me()
    try:
        data = hashes.read_bytes()
        items = parse_hash_list(data)
        VictimDesk.check_identity("--representative", representative)
        VictimDesk.check_identity("--identity-ref", identity_ref)
    except OSError as exc:
        _refused(
            me,
            "hash_list",
            ["unreadable_file"],
            f"cannot read --hashes {hashes}: {exc.strerror or exc}",
        )
    except HashListError as exc:
        _refused(me, "hash_list", exc.codes, f"{hashes}: {exc}")
    except VictimError as exc:
        _refused(me, "identity", ["invalid_identity"], str(exc))

    def go(desk: Any) -> tuple[str, str, Any]:
        rid, pin = desk.file(items, by=me, representative=representative, identity_ref=identity_ref)
        filed = desk.wait_filed(rid, wait) if wait > 0 else None
        return rid, pin, filed

    rid, pin, filed = _desk_run(go)
    low = [i.item for i in items if i.pdq and i.pdq_quality is not None and i.pdq_quality < 50]
    if as_json:
        sys.stdout.write(
            orjson.dumps(
                {
                    "request_id": rid,
                    "pin": pin,
                    "items": len(items),
                    "pdq_low_quality_items": low,
                    "filed": filed,
                }
            ).decode()
            + "\n"
        )
        return
    out = Console()
    out.print(f"request id: [bold]{rid}[/]")
    out.print(f"PIN:        [bold]{pin}[/]")
    out.print(
        "Give both to the victim (or their representative). The PIN is shown only "
        "now: the centre keeps only a slow hash of it.",
        soft_wrap=True,
    )
    out.print(f"{len(items)} item(s) sent.")
    if low:
        out.print(
            f"items {', '.join(map(str, low))}: PDQ quality below 50, so only exact "
            "copies of these are found (re-encoded copies are not).",
            soft_wrap=True,
        )
    if filed is None:
        out.print(
            "The victims worker has not filed it yet; it will search the stored "
            "reports when it does (`centre victims list` shows it then).",
            soft_wrap=True,
        )
    else:
        out.print(
            f"Filed and searched: {filed['matches']} stored item(s) matched, "
            f"{filed['notices']} removal notice(s) queued."
        )


def _refused(by: str, what: str, codes: list[str], message: str) -> None:
    """Bad input: say what is wrong, send nothing, record the refusal; exit 2."""
    _err.print(f"[red]{escape(message)}[/]", soft_wrap=True)
    _err.print("Nothing was sent.")
    _desk_run(lambda d: d.refuse_input(what, codes, by=by))
    raise typer.Exit(2)


def _pin(pin: Optional[str]) -> str:
    return pin if pin is not None else typer.prompt("PIN", hide_input=True)


@victims_app.command("status", no_args_is_help=True)
def status_command(
    request_id: Annotated[str, typer.Argument(help="the request id")],
    pin: Annotated[
        Optional[str], typer.Option(help="the request's PIN (asked for, hidden, when not given)")
    ] = None,
    by: Annotated[Optional[str], typer.Option(help="your login (default: $USER)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """What the centre found and did for a victim's request (Art. 20): how many reports held
    their material, which providers reported it and when, whether it went to law
    enforcement and to whom, the removal notices sent, the answers, the removals. Nothing
    about anybody else. An unknown id and a wrong PIN get the same answer (exit 3)."""
    me = by or _me()
    secret = _pin(pin)
    st = _desk_run(lambda d: d.status(request_id, secret, by=me))
    if as_json:
        sys.stdout.write(orjson.dumps(st).decode() + "\n")
        return
    out = Console()
    out.print(
        f"request {st['request_id']}: {st['state']}"
        + (f" (withdrawn {st['withdrawn_at']})" if st["withdrawn_at"] else "")
        + f", filed {st['filed_at']}"
    )
    out.print(
        f"{st['items_found']} of the {st['items_in_your_list']} item(s) in the list "
        f"found in {st['reports_holding_your_material']} report(s)."
    )
    t = Table(title="Who reported it, and removal")
    for col in (
        "provider",
        "reports",
        "first reported",
        "last reported",
        "notices",
        "removed",
        "not found",
        "refused",
        "waiting",
    ):
        t.add_column(col)
    for p in st["providers"]:
        t.add_row(
            p["provider"],
            str(p.get("reports", 0)),
            p.get("first_reported_at") or "—",
            p.get("last_reported_at") or "—",
            str(p.get("notices", 0)),
            str(p.get("removed", 0)),
            str(p.get("not_found", 0)),
            str(p.get("refused", 0)),
            str(p.get("waiting_for_answer", 0)),
        )
    out.print(t)
    t = Table(title="Forwarded to law enforcement")
    for col in ("to", "cases", "first forwarded"):
        t.add_column(col)
    for f in st["forwarded_to_law_enforcement"]:
        t.add_row(f["to"], str(f["cases"]), f["first_forwarded_at"] or "not yet")
    out.print(t)
    n = st["removal_notices"]
    out.print(
        f"removal notices: {n['notices']} ({n['sent']} sent, {n['repeats']} reminders), "
        f"{n['removed']} removed, {n['not_found']} not found, {n['refused']} refused, "
        f"{n['waiting_for_answer']} waiting for an answer, {n['cancelled']} cancelled"
    )


@victims_app.command("withdraw", no_args_is_help=True)
def withdraw_command(
    request_id: Annotated[str, typer.Argument(help="the request id")],
    pin: Annotated[
        Optional[str], typer.Option(help="the request's PIN (asked for, hidden, when not given)")
    ] = None,
    by: Annotated[Optional[str], typer.Option(help="your login (default: $USER)")] = None,
) -> None:
    """Withdraw a request at the victim's wish: their hashes are deleted (no report is
    matched any more), notices not answered are cancelled (providers that had one are told),
    and the data about who they are is destroyed when its retention ends
    (CENTRE_AUDIT_RETENTION, kind `victim`). An unknown id and a wrong PIN get the same
    answer (exit 3)."""
    me = by or _me()
    secret = _pin(pin)
    w = _desk_run(lambda d: d.withdraw(request_id, secret, by=me))
    if w.repeated:
        print(f"request {w.request_id} was already withdrawn; nothing changed")
        return
    print(
        f"request {w.request_id} withdrawn: {w.hashes_removed} hash(es) deleted, "
        f"{w.notices_cancelled} notice(s) cancelled ({w.cancellations_queued} provider "
        "notice(s) of the cancellation queued for the victims worker)"
    )


@victims_app.command("list")
def list_command(
    state: Annotated[Optional[str], typer.Option(help="open or withdrawn")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Requests, newest first: id, state, when and by whom filed, items, matches, notices.
    Nothing about who the victims are."""
    rows = _desk_run(lambda d: d.list(state))
    if as_json:
        for r in rows:
            sys.stdout.write(orjson.dumps(r).decode() + "\n")
        return
    t = Table(title=f"{len(rows)} victims' request(s)")
    for col in ("request", "state", "filed", "by", "items", "matches", "notices", "open"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["request_id"],
            r["state"],
            r["filed_at"],
            r["filed_by"],
            str(r["items"]),
            str(r["matches"]),
            str(r["notices"]),
            str(r["open_notices"]),
        )
    Console().print(t)


@victims_app.command("escalations")
def escalations_command(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """The list for the coordinating authority: removal notices a provider refused, or left
    unanswered after CENTRE_VICTIM_NOTICE_ESCALATE_AFTER sends (one a day by default).
    References only, never the victim's identity."""
    rows = _desk_run(lambda d: d.escalations())
    if as_json:
        for r in rows:
            sys.stdout.write(orjson.dumps(r).decode() + "\n")
        return
    t = Table(title=f"{len(rows)} escalated removal notice(s)")
    for col in ("provider", "provider report", "why", "since", "sent", "state", "reason"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["provider_id"],
            str(r["provider_report_id"]),
            r["why"],
            r["escalated_at"] or "",
            str(r["sent"]),
            r["state"],
            r["refusal_reason"] or "",
        )
    Console().print(t)
