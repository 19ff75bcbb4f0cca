"""What every part of the victims' flow shares: the request states and timings, the errors
a case handler is shown, `_audit` (the one place the flow writes the audit trail) and the
audit subject of a request, the deterministic ids of notices and of a request as a provider
knows it, and small helpers (chunks, INSERT that skips rows already there, the banks' version,
reading a request, a provider's strings as a column holds them, aware times).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from centre.audit.sink import queue
from victims.tables import VictimBankState, VictimRequest

STAGE = "victims"
OPEN, WITHDRAWN = "open", "withdrawn"
RESCAN_AFTER = dt.timedelta(seconds=60)  # one more pass over stored reports after filing
RESCAN_AFTER_FAILURE = dt.timedelta(minutes=10)  # live matching failed: a pass, not a storm
KEEP_ALIVE = dt.timedelta(days=7)  # an open request's key is touched at least this often
_NS = uuid.uuid5(uuid.UUID("6f1c3c52-8a47-4f4e-9d0c-7d2b1f0e5a11"), "victims")
LEGAL_BASIS = (
    "CSA Regulation proposal, Art. 21: the EU Centre assists a victim, at their "
    "request, in the removal of material depicting them"
)
REFUSED = (
    "no request with this id and PIN: check both (the PIN was shown once, when the "
    "request was filed)"
)


class VictimError(ValueError):
    """Bad input from a case handler or an impossible step; the message says why."""


class NotFoundOrWrongPin(VictimError):
    """An unknown request id or a wrong PIN: one message for both, no hint which."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


# ------------------------------------------------------------------------------- audit

# The one place this flow writes the audit trail: `_audit` keeps an event with the session's
# transaction, an `AuditSink` appends or emits it (centre/audit/sink.py).
_audit = queue


def subject(request_id: str) -> str:
    return f"victim:{request_id}"


# ------------------------------------------------------------------------------- ids


def notice_id_for(request_id: str, report_id: str, content_id: str) -> str:
    return str(uuid.uuid5(_NS, f"removal|{request_id}|{report_id}|{content_id}"))


def cancel_id_for(notice_id: str) -> str:
    return str(uuid.uuid5(_NS, f"removal_cancelled|{notice_id}"))


def request_ref(request_id: str, provider_id: str) -> str:
    """The request as one provider knows it: the same for all its notices about the request,
    different for every provider, so providers cannot put their notices together, and
    neither names nor leads to the victim."""
    return str(uuid.uuid5(_NS, f"ref|{request_id}|{provider_id}"))


# ------------------------------------------------------------------------------- helpers


def _chunks(items: Sequence[Any], n: int = 500) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _insert_ignore(s: Session, table: Any) -> Any:
    """INSERT that skips rows already there (a replay; the search of stored reports and the
    live matching of new ones both finding the same match)."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return insert(table)


def bump_version(s: Session) -> None:
    """Tell every victims worker's live matching that the victims' banks changed."""
    s.execute(
        update(VictimBankState)
        .where(VictimBankState.id == 1)
        .values(version=VictimBankState.version + 1)
    )


def get(s: Session, request_id: str, *, lock: bool = False) -> VictimRequest | None:
    q = select(VictimRequest).where(VictimRequest.request_id == (request_id or "").strip())
    return s.scalars(q.with_for_update() if lock else q).one_or_none()


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _text(v: Any) -> str:
    """A provider's string as a text column can hold it: no NUL (PostgreSQL refuses it) or
    other control characters (they belong in no id or URL)."""
    return _CONTROL.sub("", str(v))


def _bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _aware(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t
