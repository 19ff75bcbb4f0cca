"""What a stage is: the records it takes, the `Stage` protocol and `StageBase` (its settings,
database and producer, and how it sets a poison message aside), and how a worker loads one.

The runtime (`centre/runtime.py`) runs a stage; the domains write them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Optional, Protocol, cast

from centre import metrics
from centre.settings import Settings
from centre.topology import STAGES, feedback_topic

log = logging.getLogger("centre.runtime")


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed message, independent of the client library that read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp: float


Finish = Callable[[], None]


class Stage(Protocol):
    name: str

    def process(self, records: list[Record]) -> Optional[Finish]: ...

    def quarantine(self, record: Record, attempts: int) -> None: ...

    def close(self) -> None: ...


class StageBase:
    """What every stage holds: its settings, the database, and the producer of its outputs."""

    name = ""
    producer_options: dict[str, object] = {}  # librdkafka settings of its producer
    consumer_options: dict[str, object] = {}  # librdkafka settings of its source's consumer
    provider_topics: Any = None  # ProviderTopics, of the stages that tell companies

    def __init__(self, settings: Settings) -> None:
        from centre.db import make_engine, make_sessionmaker
        from centre.kafka import BatchProducer

        self.settings = settings
        self.engine = make_engine(settings.database_url, background_checkpoint=True)
        self.sessions = make_sessionmaker(self.engine)
        self.producer = BatchProducer(settings, **self.producer_options)

    def close(self) -> None:
        self.producer.close()
        self.engine.dispose()

    # -- poison messages (centre/poison.py) ---------------------------------------------------

    def quarantine_notice(
        self, s: Any, record: Record, reason: dict[str, str], at: Any
    ) -> Optional[QuarantineNotice]:
        """Who is to be told that `record` was set aside, recording it on the stage's own rows
        in session `s`; None: nobody outside (the default). Must not parse the value: it may
        be what made the stage fail."""
        return None

    def quarantine(self, record: Record, attempts: int) -> None:
        """Set `record` aside after it was in flight at `attempts` crashes: kept whole in the
        dead-letter store with its reason, its company told (`rejected`, code `quarantined`),
        audited, counted. Idempotent: done again, it changes nothing and says the same."""
        from centre import audit
        from centre import messages as m
        from centre.db import DeadLetter, insert_ignoring_conflicts

        at = m.now()
        where = f"{record.topic}/{record.partition}/{record.offset}"
        reason = m.reason(
            "quarantined",
            f"The centre could not process this message ({self.name} failed on it {attempts} "
            "times). It is kept whole and set aside for the centre's staff to examine; it need "
            "not be sent again.",
            "$",
        )
        with self.sessions.begin() as s:
            notice = self.quarantine_notice(s, record, reason, at)
            insert_ignoring_conflicts(
                s,
                DeadLetter.__table__,
                [
                    dict(
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        key=record.key,
                        value=record.value,
                        headers={
                            k: v.decode("utf-8", "replace") for k, v in record.headers.items()
                        },
                        provider_id=notice.provider_id if notice else None,
                        reasons=[reason],
                        received_at=at,
                    )
                ],
                ["topic", "partition", "offset"],
            )
        if notice is not None:
            if self.provider_topics is None:
                from centre.kafka import ProviderTopics

                self.provider_topics = ProviderTopics(self.settings)
            self.provider_topics.ensure([notice.provider_id])
            fb = m.feedback(
                provider_id=notice.provider_id,
                provider_report_id=notice.provider_report_id,
                report_id=notice.report_id,
                status="rejected",
                reasons=[reason],
                at=at,
                source=f"quarantine/{where}",
            )
            self.producer.send(
                feedback_topic(notice.provider_id),
                m.dumps(fb),
                key=(notice.provider_report_id or "").encode(),
            )
        audit.emit(
            self.producer,
            [
                audit.AuditEvent(
                    actor=self.name,
                    action="message.quarantined",
                    subject=f"report:{notice.report_id}"
                    if notice and notice.report_id
                    else f"message:{where}",
                    discriminator=where,
                    at=at,
                    details={
                        "message": where,
                        "attempts": attempts,
                        "provider_id": notice.provider_id if notice else None,
                        "feedback": "rejected" if notice else None,
                    },
                )
            ],
        )
        self.producer.flush_or_raise()
        metrics.QUARANTINED.labels(self.name).inc()
        metrics.DEAD_LETTERS.labels(self.name).inc()
        log.error(
            "stage %s set the message at %s aside after %d attempts (dead-lettered%s)",
            self.name,
            where,
            attempts,
            ", its company told" if notice else "",
        )


@dataclass(frozen=True, slots=True)
class QuarantineNotice:
    """Whom a quarantined message concerns: the company told, and its report if it has one."""

    provider_id: str
    provider_report_id: str | None
    report_id: str | None


# The consumer of a stage whose source sees a few messages a minute (complaints, victims'
# requests): the broker answers its fetch as soon as one message is there, and holds an empty
# one for 500 ms: two requests a second while quiet instead of the hot stages' twenty.
QUIET_SOURCE: dict[str, object] = {"fetch.min.bytes": 1, "fetch.wait.max.ms": 500}


def stage_batch_size(settings: Settings, stage: object) -> int:
    """At most this many messages per batch: CENTRE_BATCH_SIZE, times the stage's
    `batch_scale` (a stage whose cost is mostly per batch, not per message, takes more)."""
    return settings.batch_size * int(getattr(stage, "batch_scale", 1))


def process_now(stage: Stage, records: list[Record]) -> None:
    """Process a batch completely (its `finish` too), in the calling thread."""
    finish = stage.process(records)
    if finish is not None:
        finish()


def load_stage(name: str, settings: Settings) -> Stage:
    spec = STAGES[name]
    module_name, cls_name = spec.factory.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    stage: Stage = cls(settings)
    return stage


def _headers(raw: object) -> dict[str, bytes]:
    if not raw:
        return {}
    # confluent-kafka gives a list of (name, value) pairs, faust a dict.
    items = raw.items() if isinstance(raw, dict) else cast(Iterable[tuple[Any, Any]], raw)
    out: dict[str, bytes] = {}
    for k, v in items:
        key = k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
        out[key] = v if isinstance(v, bytes) else str(v).encode()
    return out
