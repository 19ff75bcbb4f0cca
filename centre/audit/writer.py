"""The audit writer: consumes `audit.events` and appends each batch to the audit trail.

A single writer process (`centre worker audit`, one per deployment; `centre up` starts one):
the trail is one chain, so its appends are serialised anyway (a row lock on `audit_head`,
which the CLI's own appends queue on too). A second writer process would be correct but
only wait on that lock.

Each batch is one transaction: malformed events go to the dead-letter store, every other
event is appended with its data key, checkpoints and the newly signed head, and only after
the commit does the runtime acknowledge the batch. Killed at any point (SIGKILL included),
either the batch committed and its events are skipped as duplicates (by event id) when they
are read again, or nothing of it is in the database and it is appended whole on restart,
from the stored head: no gap, no duplicate.

When idle it writes a time-based checkpoint for entries that have waited T seconds, and once
an hour it runs the retention purge (crypto-shredding of expired persons).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

from centre import metrics
from centre.audit import AuditEvent, AuditEventError, AuditLog, count_committed
from centre.db import DeadLetter, make_engine, make_sessionmaker
from centre.runtime import Record, StageBase
from centre.settings import Settings

log = logging.getLogger(__name__)
STAGE = "audit"
ACTOR = "audit-writer"
PURGE_EVERY_S = 3600.0
_IDLE_EVERY_S = 1.0


def _printable(headers: dict[str, bytes]) -> dict[str, Any]:
    return {k[:100]: v.decode("utf-8", "replace")[:200] for k, v in headers.items()}


class AuditWriterStage(StageBase):
    name = STAGE
    # Not niced: on SQLite the writer holds the database's single write lock while it
    # appends, and a niced holder is preempted by the very stages that wait for that lock
    # (`centre bench` at 1,000 reports/s: its mean hold 51 → 42 ms, the stages' waits
    # 54-67 → 38-42 ms).
    niceness = 0

    def __init__(self, settings: Settings) -> None:
        # Not StageBase.__init__: the writer sends nothing, so it opens no Kafka producer.
        self.settings = settings
        self.engine = make_engine(settings.database_url, background_checkpoint=True)
        self.sessions = make_sessionmaker(self.engine)
        self.log = AuditLog(settings, engine=self.engine)
        # Fail at start, not in the middle of the first batch, when a key is unusable; the
        # first KEK is made here when there is none yet.
        self.log.keyring.kek(self.log.keyring.current_id())
        self.log.keys.centre_signer()
        self._next_idle = 0.0
        self._next_purge = time.monotonic() + PURGE_EVERY_S

    def process(self, records: list[Record]) -> None:
        metrics.MESSAGES_IN.labels(STAGE).inc(len(records))
        events: list[AuditEvent] = []
        dead: list[dict[str, Any]] = []
        rejected: list[AuditEvent] = []
        now = dt.datetime.now(dt.UTC)
        for r in records:
            try:
                events.append(AuditEvent.from_json(r.value))
            except AuditEventError as exc:
                where = f"{r.topic}/{r.partition}/{r.offset}"
                dead.append(
                    dict(
                        topic=r.topic,
                        partition=r.partition,
                        offset=r.offset,
                        key=r.key,
                        value=r.value,
                        headers=_printable(r.headers),
                        provider_id=None,
                        reasons=exc.reasons,
                        received_at=now,
                    )
                )
                # The rejection is itself in the trail; its id comes from the message's
                # position, so a batch read again records it once.
                rejected.append(
                    AuditEvent(
                        actor=ACTOR,
                        action="audit.event_rejected",
                        subject=f"dead_letter:{where}",
                        details={
                            "topic": r.topic,
                            "partition": r.partition,
                            "offset": r.offset,
                            "reasons": exc.reasons,
                        },
                        at=now,
                    )
                )
        with self.sessions.begin() as s:
            if dead:
                dialect = s.bind.dialect.name
                ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(
                    cast(Table, DeadLetter.__table__)
                )
                s.execute(
                    ins.on_conflict_do_nothing(index_elements=["topic", "partition", "offset"]),
                    dead,
                )
            result = self.log.append(s, events + rejected, now=now)
        count_committed(result)
        if dead:
            metrics.DEAD_LETTERS.labels(STAGE).inc(len(dead))
            metrics.ERRORS.labels(STAGE, "malformed_event").inc(len(dead))
            log.warning("audit: %d malformed event(s) kept in the dead-letter store", len(dead))
        metrics.OUTCOMES.labels(STAGE, "appended").inc(result.appended)
        metrics.OUTCOMES.labels(STAGE, "duplicate").inc(result.duplicates)
        self._maybe_purge()

    def idle(self) -> None:
        """Called by the runtime when no message came: time-based checkpoints, the purge."""
        t = time.monotonic()
        if t >= self._next_idle:
            self._next_idle = t + _IDLE_EVERY_S
            self.log.checkpoint_if_due()
        self._maybe_purge()

    def _maybe_purge(self) -> None:
        t = time.monotonic()
        if t < self._next_purge:
            return
        self._next_purge = t + PURGE_EVERY_S
        shredded = self.log.purge()
        if shredded:
            log.info("audit: retention purge shredded %d person key(s)", len(shredded))

    def close(self) -> None:
        self.log.close()
        self.engine.dispose()
