"""The complaints worker: reads complaint/v1 from `complaints.intake`, files each one, and
sends what decisions left to send.

A batch is filed in one transaction; a message read again after a crash is the same filing
(its id comes from the filer and its `complaint_ref`) and changes nothing. A malformed
message never stops the worker: it is kept whole in the dead-letter store with one reason
per problem, counted (`centre_errors_total{stage="complaints",kind="malformed_complaint"}`),
and, when a company sent it, answered with a notice/v1 `complaint_invalid` on its notices
topic. A company that files gets a notice/v1 `complaint_received` with the complaint's id.
Every filing (and every refused message) is an audit-event/v1 on `audit.events`, flushed with
the batch's other outputs before the batch is acknowledged.

When the topic is quiet the worker sends queued effects that are still unsent: notices held
for an Art. 48(6) hold once it has ended, and anything a failed `centre complaints decide`
left behind.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite

from centre import messages as m
from centre import metrics
from centre.db import DeadLetter
from centre.kafka import ProviderTopics
from centre.keys import KeySet
from centre.runtime import QUIET_SOURCE, Record, StageBase
from centre.settings import Settings
from centre.topology import COMPLAINTS_INTAKE, notices_topic
from complaints import flow
from complaints.model import validate_complaint

log = logging.getLogger(__name__)
STAGE = flow.STAGE
NS_INVALID = "complaint_invalid"


def _printable(headers: dict[str, bytes]) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in headers.items()}


def invalid_notice(
    provider_id: str,
    complaint_ref: str | None,
    reasons: list[dict[str, str]],
    position: str,
    now: dt.datetime,
) -> dict[str, Any]:
    """notice/v1 `complaint_invalid`: the complaint was not accepted, one reason per problem."""
    return {
        "schema": "notice/v1",
        "notice_id": flow.notice_id_for(NS_INVALID, position, provider_id),
        "type": "complaint_invalid",
        "provider_id": provider_id,
        "complaint_ref": complaint_ref,
        "reasons": reasons,
        "at": m.iso(now),
    }


class ComplaintIntakeStage(StageBase):
    name = STAGE
    consumer_options = QUIET_SOURCE
    retry_every_s = 2.0  # how often queued effects are looked at when the topic is quiet
    stale_after_s = 15.0  # a pending message older than this was left by a failed command

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.provider_topics = ProviderTopics(settings)
        self.keys = KeySet(settings.keys_dir)
        self.source_topic = settings.topic(COMPLAINTS_INTAKE)
        self._dispatched_at = 0.0

    def process(self, records: list[Record]) -> None:
        metrics.MESSAGES_IN.labels(STAGE).inc(len(records))
        now = m.now()
        dead: list[dict[str, Any]] = []
        invalid: list[dict[str, Any]] = []
        filed: set[str] = set()
        audit = flow.AuditSink(producer=self.producer)
        with self.sessions.begin() as s:
            for rec in records:
                out = validate_complaint(rec.value, rec.key)
                position = f"{rec.topic}/{rec.partition}/{rec.offset}"
                if not out.accepted:
                    reasons = [p.as_dict() for p in out.problems]
                    dead.append(
                        dict(
                            topic=rec.topic,
                            partition=rec.partition,
                            offset=rec.offset,
                            key=rec.key,
                            value=rec.value,
                            headers=_printable(rec.headers),
                            provider_id=out.provider_id,
                            reasons=reasons,
                            received_at=now,
                        )
                    )
                    metrics.ERRORS.labels(STAGE, "malformed_complaint").inc()
                    metrics.OUTCOMES.labels(STAGE, "invalid").inc()
                    if out.provider_id:
                        invalid.append(
                            invalid_notice(
                                out.provider_id, out.complaint_ref, reasons, position, now
                            )
                        )
                    flow._audit(
                        s,
                        STAGE,
                        "complaint.invalid",
                        f"dead_letter:{position}",
                        {
                            "codes": sorted({r["code"] for r in reasons}),
                            "answered": bool(out.provider_id),
                        },
                        at=now,
                        discriminator=position,
                    )
                    continue
                assert out.complaint is not None
                f = flow.file_complaint(
                    s,
                    out.complaint,
                    source=position,
                    actor=out.complaint.filer,
                    now=now,
                    sla_days=self.settings.complaint_sla_days,
                )
                filed.add(f.complaint_id)
            if dead:
                s.execute(_insert_ignore(s, DeadLetter.__table__), dead)
                metrics.DEAD_LETTERS.labels(STAGE).inc(len(dead))
            audit.settle(s)
        if invalid:
            self.provider_topics.ensure({n["provider_id"] for n in invalid})
            for n in invalid:
                self.producer.send(
                    notices_topic(n["provider_id"]),
                    m.dumps(n),
                    key=(n["complaint_ref"] or n["notice_id"]).encode(),
                )
            metrics.MESSAGES_OUT.labels(STAGE, "notice").inc(len(invalid))
            self.producer.flush_or_raise()
        if filed:  # the receipts queued with the filings
            flow.dispatch(
                self.sessions,
                self.producer,
                self.keys,
                self.provider_topics,
                complaint_ids=filed,
                now=now,
                audit=audit,
            )

    def idle(self) -> None:
        clock = time.monotonic()
        if clock - self._dispatched_at < self.retry_every_s:
            return
        self._dispatched_at = clock
        now = m.now()
        self.keys.reload()  # a recipient key registered since is used
        done = flow.dispatch(
            self.sessions,
            self.producer,
            self.keys,
            self.provider_topics,
            stale_before=now - dt.timedelta(seconds=self.stale_after_s),
            now=now,
            audit=flow.AuditSink(producer=self.producer),
        )
        if done.retractions or done.notices:
            log.info(
                "sent %d retraction(s) and %d notice(s) left queued", done.retractions, done.notices
            )


def _insert_ignore(s: Any, table: Any) -> Any:
    """INSERT that skips rows already there (a batch read again after a crash)."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return insert(table)
