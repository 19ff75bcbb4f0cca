"""Audit events of a case handler's flow (complaints, victims), kept with the transaction
that decides the step, and where they go when it ends.

A flow calls `queue(session, actor, action, subject, details, at=…)` for each step; an
`AuditSink` then either appends the events in that same transaction (`log`: an AuditLog, on
the command line, so a step and its entry commit together or not at all) or emits them on
`audit.events` after it (`producer`: a worker, flushed with its other outputs before its
input is acknowledged; event ids are deterministic, so a replay is appended once).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

_KEY = "centre.audit_events"  # where a session keeps the events of its transaction


def queue(
    s: Session,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any],
    *,
    at: dt.datetime,
    discriminator: str = "",
    person: str | None = None,
    personal: dict[str, Any] | None = None,
) -> None:
    """Keep an audit-event/v1 with the session's transaction. `personal` is sealed under
    the key of `person` (crypto-shredded at the end of its retention)."""
    from centre.audit import AuditEvent

    s.info.setdefault(_KEY, []).append(
        AuditEvent(
            actor=actor,
            action=action,
            subject=subject,
            discriminator=discriminator,
            details=details,
            person=person,
            personal=personal,
            at=at,
        )
    )


def drop(s: Session) -> list[Any]:
    """The session's queued events, taken away (a bench that writes no trail)."""
    events: list[Any] = s.info.pop(_KEY, [])
    return events


class AuditSink:
    """Where a transaction's audit events go: appended by `log` inside it, or emitted on
    `producer` after it (see the module's docstring). Neither: dropped."""

    def __init__(self, *, log: Any = None, producer: Any = None) -> None:
        self.log, self.producer = log, producer
        self._pending: list[Any] = []

    def commit(self, s: Session) -> None:
        """Call at the end of a transaction, inside it."""
        events = drop(s)
        if not events:
            return
        if self.log is not None:
            self.log.append(s, events)
        elif self.producer is not None:
            self._pending += events

    def settle(self, s: Session) -> None:
        """End a step inside its transaction: `commit`, and on a worker also send the events
        and wait for the broker before the transaction commits. A crash after that re-does
        the step, whose events come again with the same ids (appended once): never a step
        in the database without its entries, as emitting after the commit would risk."""
        self.commit(s)
        if self.flush():
            self.producer.flush_or_raise()

    def flush(self) -> bool:
        """Emit what waits (worker); True when something was queued on the producer."""
        if self.producer is None or not self._pending:
            return False
        from centre.audit import emit

        emit(self.producer, self._pending)
        self._pending = []
        return True


NO_AUDIT = AuditSink()


def staff(name: str) -> str:
    """The audit actor of a case handler (`staff:<login>`)."""
    from centre.audit import staff_actor

    return staff_actor(name)
