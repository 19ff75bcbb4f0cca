"""`centre audit …`: export and verify the audit trail, read it, erase what outlived retention.

Mounted by the main command line as `app.add_typer(audit_app, name="audit")`;
`centre keys rotate-audit` calls `rotate_audit_kek`.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
from pathlib import Path
from typing import Annotated, Optional

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from centre import settings as settings_mod
from centre.cli_errors import failed

audit_app = typer.Typer(
    help="The audit trail: every step taken on a report, complaint or victim's request, and "
    "every access by staff, kept so that no change goes unnoticed.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)
err = Console(stderr=True)


@audit_app.callback()
def _audit() -> None:
    """The audit trail: every step taken on a report, complaint or victim's request, and every
    access by staff, kept so that no change goes unnoticed. Export it for an auditor, verify
    it, read what it holds about one subject, and erase the data about people whose retention
    has ended."""


def _settings() -> settings_mod.Settings:
    try:
        return settings_mod.load()
    except settings_mod.SettingsError as exc:
        err.print(f"[red]configuration error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "operator")


def _errors() -> tuple[type[Exception], ...]:
    from sqlalchemy.exc import SQLAlchemyError

    from centre.audit import AuditError
    from centre.keys import KeySetError, UnknownKeyError

    return (AuditError, KeySetError, UnknownKeyError, SQLAlchemyError, OSError)


@audit_app.command("export")
def export(
    file: Annotated[Path, typer.Argument(help="the file to write (replaced if it exists)")],
) -> None:
    """Write the whole audit trail to FILE for an auditor, as JSON lines.

    The file holds every entry as stored (its content stays encrypted), the signed
    checkpoints, and a head signed now with the centre's key. The trail is checked while it
    is written. When it is broken the file is still written, as evidence, but without a new
    signed head; the first broken entry is named and the exit status is 1.

    Check the file with `centre audit verify --file FILE`: only the centre's public key is
    needed for that.
    """
    from centre.audit import AuditLog

    s = _settings()
    log = AuditLog(s)
    try:
        result = log.export(file)
    except _errors() as exc:
        raise failed(exc) from None
    finally:
        log.close()
    if not result.ok:
        err.print(f"[red]{escape(result.summary())}[/]", soft_wrap=True)
        print(f"written to {file}, without a new signed head")
        raise typer.Exit(1)
    print(
        f"{result.entries} entries and {result.checkpoints} checkpoints written to {file}; "
        f"head {result.head_seq} {result.head_hash}"
    )


def _known_head(text: str) -> tuple[int, bytes]:
    seq, sep, digest = text.partition(":")
    try:
        value = (int(seq), bytes.fromhex(digest))
    except ValueError:
        value = (0, b"")
    if not sep or value[0] < 1 or len(value[1]) != 32:
        raise typer.BadParameter(
            "give it as SEQ:HASH, the hash in 64 hex digits, as "
            "printed by an earlier verify or export"
        )
    return value


@audit_app.command("verify")
def verify(
    file: Annotated[
        Optional[Path],
        typer.Option(
            "--file",
            help="an export written by `centre audit export` (default: the trail in the database)",
        ),
    ] = None,
    public_key: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--public-key",
            help="the centre's Ed25519 public key (PEM or 32 raw bytes); give it "
            "again for each older key (default: the keys under "
            "CENTRE_HOME)",
        ),
    ] = None,
    known_head: Annotated[
        Optional[str],
        typer.Option(
            "--known-head",
            help="a head seen before, as SEQ:HASH: the trail must still contain "
            "it, which also catches a log rolled back to an older copy",
        ),
    ] = None,
) -> None:
    """Check that the audit trail is intact: no entry changed, removed, inserted, moved, and
    nothing cut off at the end.

    Every hash is computed again in order and every signature is checked, with the centre's
    public key alone: no secret key is needed, so an auditor can run this on an export away
    from the centre. Exit status 0 when the trail is intact; 1 when it is not, and the first
    broken entry is named; 2 when the file or a key cannot be read.
    """
    from centre.audit import AuditLog, verify_file
    from centre.keys import KeySet, _ed25519_public

    heads = [_known_head(known_head)] if known_head else []
    errors: tuple[type[Exception], ...] = (ValueError, *_errors())
    try:
        if public_key:
            keys = [_ed25519_public(p.read_bytes()) for p in public_key]
        else:
            keys = KeySet(_settings().keys_dir).centre_public_keys()
        if file is not None:
            if not file.is_file():
                err.print(f"[red]no such file: {escape(str(file))}[/]")
                raise typer.Exit(2)
            result = verify_file(file, keys, heads)
        else:
            log = AuditLog(_settings())
            try:
                result = log.verify(public_keys=keys, known_heads=heads)
            finally:
                log.close()
    except errors as exc:
        raise failed(exc) from None
    print(result.summary())
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("show")
def show(
    subject: Annotated[
        str,
        typer.Option(
            help="what to read about, e.g. report:<report id>, "
            "case:<case id> or victim:<request id>"
        ),
    ],
    role: Annotated[
        str,
        typer.Option(
            help="the role you read in; only the roles in "
            "CENTRE_AUDIT_READER_ROLES may (default: auditor, "
            "dpo)"
        ),
    ],
    by: Annotated[Optional[str], typer.Option(help="who reads (default: your user name)")] = None,
) -> None:
    """Print, decrypted, every entry of the audit trail about one subject, oldest first, one
    JSON object per line.

    The read itself is recorded in the trail first (who, in which role, about what), and so
    is a refused attempt. Data about a person whose key was erased after its retention shows
    as erased. Each entry says whether its hash still matches it (`intact`).
    Exit status 1 when the role may not read the trail.
    """
    from centre.audit import AuditAccessDenied, AuditLog

    s = _settings()
    log = AuditLog(s)
    try:
        entries = log.show(subject, role=role, reader=by or _user())
    except AuditAccessDenied as exc:
        err.print(f"[red]{escape(str(exc))}[/]", soft_wrap=True)
        raise typer.Exit(1) from None
    except _errors() as exc:
        raise failed(exc) from None
    finally:
        log.close()
    for entry in entries:
        print(orjson.dumps(entry).decode())


def _when(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter("give a time like 2027-01-31T00:00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


@audit_app.command("purge")
def purge(
    now: Annotated[
        Optional[str],
        typer.Option(
            "--now",
            help="judge retention as of this time (ISO 8601, UTC unless a zone is given; "
            "default: the current time)",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only list who would be erased; change nothing")
    ] = False,
) -> None:
    """Erase the data about people whose retention has ended, and record that it was done.

    The data about each person in the trail is encrypted under that person's own key; this
    destroys the keys of everyone whose data was last recorded longer ago than the retention
    for their kind (CENTRE_AUDIT_RETENTION, e.g. victim=730,default=365 days). The entries
    stay, and the trail still verifies, but that data can no longer be read by anyone. Each
    erasure is itself an entry of the trail. The audit writer also runs this every hour.
    Prints the references of the people erased, never their data.
    """
    from centre.audit import AuditLog

    s = _settings()
    log = AuditLog(s)
    try:
        done = log.purge(now=_when(now), dry_run=dry_run)
    except _errors() as exc:
        raise failed(exc) from None
    finally:
        log.close()
    for d in done:
        print(
            f"{d['person']}\t{d['kind']}\tlast used {d['last_used_at']}\t"
            f"retention {d['retention_days']} days"
        )
    verb = "would be erased" if dry_run else "erased"
    print(f"{len(done)} person key(s) {verb}")


def rotate_audit_kek(settings: settings_mod.Settings, *, by: str | None = None) -> str:
    """Make a new audit key-encryption key and make it current; returns its id.

    New data keys and person keys are wrapped by it from the next batch on; older keys stay
    wrapped by the older KEKs, which are kept, so nothing in the trail is rewritten and all
    of it stays readable. The rotation is recorded in the trail (before the switch).
    """
    from centre.audit import AuditLog

    log = AuditLog(settings)
    try:
        return log.rotate_kek(by=by or _user())
    finally:
        log.close()
