"""The victims worker: files victim-request/v1 from `victims.requests`, records providers'
notice-response/v1 from `notices.responses`, and sends the removal notices.

Requests: a batch is filed in one transaction (the request, its private bank, the search of
every stored report, the notices it queues); a message read again after a crash finds its
request id and changes nothing. A malformed message never stops the worker: it is kept whole
in the dead-letter store with its reasons, counted, and recorded in the audit trail.

Answers: the worker reads `notices.responses` with a consumer of its own (group
`centre-victims-responses`), when its own topic is quiet and after each batch, and commits
those offsets after the database, as routing does with `le.acks`. An answer to a notice the
provider was not sent (or that does not exist) changes nothing: it is dead-lettered, audited,
and the provider, when the centre knows it, gets a notice/v1 `response_invalid` saying why.

Every second when quiet (`tick`): matches that triage recorded are turned into notices, a
request's second search of stored reports runs when due, and notices due are sent: new
ones, and unanswered ones again every CENTRE_VICTIM_NOTICE_REPEAT_HOURS. `tick(now)` takes
the time, so tests move the clock instead of waiting a day.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from typing import Any

from sqlalchemy import select

from centre import messages as m
from centre import metrics
from centre.db import DeadLetter, Provider
from centre.kafka import ProviderTopics
from centre.keys import KeySet
from centre.runtime import QUIET_SOURCE, Record, StageBase, _headers
from centre.settings import Settings
from centre.topology import NOTICE_RESPONSES, notices_topic
from victims import flow
from victims.model import validate_request, validate_response

log = logging.getLogger(__name__)
STAGE = flow.STAGE
_NS_INVALID = uuid.uuid5(uuid.UUID("6f1c3c52-8a47-4f4e-9d0c-7d2b1f0e5a11"),
                         "victims.response_invalid")


def _printable(headers: dict[str, bytes]) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in headers.items()}


class ResponseReader:
    """notices.responses through a consumer group of its own; offsets committed after the
    database (at-least-once; answering twice changes nothing)."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import Consumer

        from centre.kafka import base_config

        self.topic = settings.topic(NOTICE_RESPONSES)
        self.consumer = Consumer({**base_config(settings),
                                  "group.id": f"{settings.topic_prefix}centre-victims-responses",
                                  "enable.auto.commit": False,
                                  "auto.offset.reset": "earliest"})
        self.consumer.subscribe([self.topic])

    def poll(self, max_messages: int = 500) -> list[Record]:
        msgs = [x for x in self.consumer.consume(max_messages, timeout=0) if x.error() is None]
        return [Record(x.topic(), x.partition(), x.offset(), x.key(), x.value(),
                       _headers(x.headers()), x.timestamp()[1] / 1000.0) for x in msgs]

    def commit(self) -> None:
        self.consumer.commit(asynchronous=False)

    def close(self) -> None:
        self.consumer.close()


class VictimStage(StageBase):
    name = STAGE
    consumer_options = QUIET_SOURCE
    tick_every_s = 1.0  # how often matches, rescans and due notices are looked at when quiet
    keep_alive_every_s = 3600.0

    def __init__(self, settings: Settings, *, read_responses: bool = True) -> None:
        super().__init__(settings)
        self.provider_topics = ProviderTopics(settings)
        self.keys = KeySet(settings.keys_dir)  # companies' public keys, for their answers
        self.responses: ResponseReader | None = (ResponseReader(settings) if read_responses
                                                 else None)
        self.repeat = dt.timedelta(hours=settings.victim_notice_repeat_hours)
        self.escalate_after = settings.victim_notice_escalate_after
        self._ticked_at = 0.0
        self._kept_alive_at = 0.0

    def close(self) -> None:
        if self.responses is not None:
            self.responses.close()
        super().close()

    # -- victims.requests ----------------------------------------------------------------

    def process(self, records: list[Record]) -> None:
        metrics.MESSAGES_IN.labels(STAGE).inc(len(records))
        now = m.now()
        dead: list[dict[str, Any]] = []
        audit = flow.AuditSink(producer=self.producer)
        with self.sessions.begin() as s:
            for rec in records:
                position = f"{rec.topic}/{rec.partition}/{rec.offset}"
                out = validate_request(rec.value)
                if not out.accepted:
                    row = self._dead(rec, None, out.problems, now)
                    # Never kept: a victim's hashes (and whatever a bad message carried) stay
                    # out of the dead-letter store, which a withdrawal cannot reach. The
                    # reasons say what was wrong; the topic keeps the message for 7 days.
                    row["value"] = None
                    dead.append(row)
                    metrics.ERRORS.labels(STAGE, "malformed_request").inc()
                    metrics.OUTCOMES.labels(STAGE, "invalid").inc()
                    flow._audit(s, STAGE, "victim.request_invalid", f"dead_letter:{position}",
                                {"codes": sorted({p["code"] for p in out.problems})}, at=now,
                                discriminator=position)
                    continue
                assert out.request is not None
                flow.file_request(s, out.request, out.items, source=position, now=now)
            if dead:
                s.execute(flow._insert_ignore(s, DeadLetter.__table__), dead)
                metrics.DEAD_LETTERS.labels(STAGE).inc(len(dead))
            audit.settle(s)
        self.send_due(now)
        self.poll_responses()

    def _dead(self, rec: Record, provider_id: str | None, problems: list[dict[str, str]],
              now: dt.datetime) -> dict[str, Any]:
        return dict(topic=rec.topic, partition=rec.partition, offset=rec.offset, key=rec.key,
                    value=rec.value, headers=_printable(rec.headers), provider_id=provider_id,
                    reasons=problems, received_at=now)

    # -- notices.responses ---------------------------------------------------------------

    def poll_responses(self) -> int:
        if self.responses is None:
            return 0
        records = self.responses.poll()
        if records:
            self.handle_responses(records)
            self.responses.commit()
        return len(records)

    def handle_responses(self, records: list[Record], now: dt.datetime | None = None) -> None:
        """Record each answer; refuse (dead letter, audit, `response_invalid` to a known
        provider) what is malformed or answers a notice the provider was not sent."""
        now = now or m.now()
        dead: list[dict[str, Any]] = []
        refusals: list[dict[str, Any]] = []
        audit = flow.AuditSink(producer=self.producer)

        def refused(s: Any, action: str, position: str, problems: list[dict[str, str]],
                    provider_id: str | None) -> None:
            flow._audit(s, STAGE, action, f"dead_letter:{position}",
                        {"codes": sorted({p["code"] for p in problems}),
                         "provider_id": provider_id}, at=now, discriminator=position)

        with self.sessions.begin() as s:
            for rec in records:
                position = f"{rec.topic}/{rec.partition}/{rec.offset}"
                out = validate_response(rec.value)
                forged = self._signature_problems(rec, out.provider_id)
                if forged:  # not provably from that company: changes nothing, tells no one
                    refused(s, "victim.response_refused", position, forged, out.provider_id)
                    metrics.ERRORS.labels(STAGE, "invalid_response").inc()
                    dead.append(self._dead(rec, out.provider_id, forged, now))
                    continue
                problems = out.problems
                if out.accepted:
                    assert out.response is not None
                    answered = flow.answer(s, out.response, source=position, now=now)
                    if answered.accepted:
                        continue
                    problems = answered.problems
                else:
                    refused(s, "victim.response_invalid", position, problems, out.provider_id)
                metrics.ERRORS.labels(STAGE, "invalid_response").inc()
                dead.append(self._dead(rec, out.provider_id, problems, now))
                if out.provider_id:
                    refusals.append({
                        "schema": "notice/v1",
                        "notice_id": str(uuid.uuid5(_NS_INVALID, position)),
                        "type": "response_invalid", "provider_id": out.provider_id,
                        "answering": out.notice_id, "reasons": problems, "at": m.iso(now)})
            if dead:
                s.execute(flow._insert_ignore(s, DeadLetter.__table__), dead)
                metrics.DEAD_LETTERS.labels(STAGE).inc(len(dead))
            if refusals:  # only to companies the centre knows: no topic for any name sent
                known = set(s.scalars(select(Provider.provider_id).where(
                    Provider.provider_id.in_(sorted({n["provider_id"] for n in refusals})))))
                refusals = [n for n in refusals if n["provider_id"] in known]
            audit.settle(s)
        if refusals:
            self.provider_topics.ensure({n["provider_id"] for n in refusals})
            for n in refusals:
                self.producer.send(notices_topic(n["provider_id"]), m.dumps(n),
                                   key=n["notice_id"].encode())
            metrics.MESSAGES_OUT.labels(STAGE, "notice").inc(len(refusals))
            self.producer.flush_or_raise()

    def _signature_problems(self, rec: Record, provider_id: str | None) -> list[dict[str, str]]:
        """As for reports: the `signature` header must be the named company's Ed25519
        signature of the value when CENTRE_REQUIRE_SIGNATURES=1; without it, a signature
        that is present and does not verify against a registered key is still refused."""
        from intake.validation import check_signature

        sig = rec.headers.get("signature")
        key = self.keys.provider_public(provider_id) if provider_id else None
        _status, problems = check_signature(rec.value or b"",
                                            sig.decode("ascii", "replace") if sig else None,
                                            key, self.settings.require_signatures)
        return [p.as_dict() for p in problems]

    # -- periodic work -------------------------------------------------------------------

    def idle(self) -> None:
        self.poll_responses()
        clock = time.monotonic()
        if clock - self._ticked_at < self.tick_every_s:
            return
        self._ticked_at = clock
        self.tick(m.now())

    def tick(self, now: dt.datetime) -> flow.Dispatched:
        """Notices for the matches triage found, rescans due, and everything due sent."""
        audit = flow.AuditSink(producer=self.producer)
        with self.sessions.begin() as s:
            flow.rescan_due(s, now)
            flow.notice_new_matches(s, now=now)
            clock = time.monotonic()
            if clock - self._kept_alive_at >= self.keep_alive_every_s:
                self._kept_alive_at = clock
                flow.keep_alive(s, now)
            audit.settle(s)
        return self.send_due(now)

    def send_due(self, now: dt.datetime) -> flow.Dispatched:
        done = flow.dispatch(self.sessions, self.producer, self.provider_topics, now=now,
                             repeat=self.repeat, escalate_after=self.escalate_after,
                             audit=flow.AuditSink(producer=self.producer))
        if done.sent or done.repeats or done.cancellations:
            log.info("victims: %d notice(s) sent, %d repeated, %d cancellation(s), "
                     "%d escalated", done.sent, done.repeats, done.cancellations,
                     done.escalated)
        return done
