"""The victims worker: files victim-request/v1 from `victims.requests`, matches every new
report (`reports.triaged`) against the open victims' banks, records providers'
notice-response/v1 from `notices.responses`, and sends the removal notices.

Requests: a batch is filed in one transaction (the request, its private bank, the search of
every stored report, the notices it queues); a message read again after a crash finds its
request id and changes nothing. A malformed message never stops the worker: it is kept whole
in the dead-letter store with its reasons, counted, and recorded in the audit trail.

New reports: the worker reads `reports.triaged` beside routing, with a consumer group of its
own (`centre-victims-match`, READERS in centre/topology.py), up to `match_batch` at a time
every `match_every_s` (at once again while it is behind), in its periodic work, which also
runs between batches of requests (`idle_under_load_s`). A batch is matched against the open
banks in one transaction that records the matches, queues their removal notices and audits
them; the notices are sent, and only then are the offsets committed. A report read again
finds its matches recorded (one per request, report and content item) and changes nothing.
While no request is open the reports are not even parsed. A malformed message is counted
and skipped. Triage knows nothing of this.

Answers: the worker reads `notices.responses` with a consumer of its own (group
`centre-victims-responses`), when its own topic is quiet and after each batch, and commits
those offsets after the database, as routing does with `le.acks`. An answer to a notice the
provider was not sent (or that does not exist) changes nothing: it is dead-lettered, audited,
and the provider, when the centre knows it, gets a notice/v1 `response_invalid` saying why.

Every second when quiet (`tick`): matches not decided yet are turned into notices, a
request's second search of stored reports runs when due, and notices due are sent: new
ones, and unanswered ones again every CENTRE_VICTIM_NOTICE_REPEAT_HOURS. `tick(now)` takes
the time, so tests move the clock instead of waiting a day.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from centre import messages as m
from centre import metrics
from centre.db import DeadLetter, Provider
from centre.kafka import ProviderTopics
from centre.keys import KeySet
from centre.runtime import QUIET_SOURCE, Record, StageBase, _headers
from centre.settings import Settings
from centre.topology import READERS, group_id, notices_topic
from victims import flow
from victims.bank import VictimBank
from victims.model import validate_request, validate_response

log = logging.getLogger(__name__)
STAGE = flow.STAGE
_NS_INVALID = uuid.uuid5(
    uuid.UUID("6f1c3c52-8a47-4f4e-9d0c-7d2b1f0e5a11"), "victims.response_invalid"
)


def _printable(headers: dict[str, bytes]) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in headers.items()}


class TopicReader:
    """A topic of READERS (centre/topology.py) through its consumer group of its own, read in
    the worker's periodic work; offsets committed after the database and the outputs
    (at-least-once: what is done twice changes nothing)."""

    def __init__(self, settings: Settings, reader: str, **options: object) -> None:
        from confluent_kafka import Consumer

        from centre.kafka import base_config

        spec = READERS[reader]
        self.topic = settings.topic(spec.source)
        self.consumer = Consumer(
            {
                **base_config(settings),
                "group.id": group_id(settings, spec.name),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                **options,
            }
        )
        self.consumer.subscribe([self.topic])

    def poll(self, max_messages: int = 500) -> list[Record]:
        from centre.kafka import position

        msgs = [x for x in self.consumer.consume(max_messages, timeout=0) if x.error() is None]
        return [
            Record(
                *position(x), x.key(), x.value(), _headers(x.headers()), x.timestamp()[1] / 1000.0
            )
            for x in msgs
        ]

    def commit(self) -> None:
        """Everything `poll` returned is done."""
        self.consumer.commit(asynchronous=False)

    def close(self) -> None:
        self.consumer.close()


class ResponseReader(TopicReader):
    """notices.responses (group centre-victims-responses): answering twice changes nothing."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "victims-responses")


class TriagedReader(TopicReader):
    """reports.triaged (group centre-victims-match): every new report, for live matching. A
    hot topic read a few times a second: fewer, fuller fetches, and a bounded prefetch."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings,
            "victims-match",
            **{
                "fetch.wait.max.ms": 100,
                "fetch.min.bytes": 65536,
                "queued.min.messages": 10000,
                "queued.max.messages.kbytes": 16384,
            },
        )


_REPORT_IDS = ("report_id", "case_id", "provider_id", "provider_report_id")


def triaged_report(value: bytes | None) -> dict[str, Any] | None:
    """A reports.triaged message as live matching needs it (the report's ids, when it was
    received, its content with hashes that are what they say), or None."""
    from triage.rules import media_items
    from triage.signals import SIGNAL_TYPES, content_signals

    try:
        doc = m.loads(value or b"")
        if not isinstance(doc, dict) or not all(
            isinstance(doc.get(k), str) and doc[k] for k in _REPORT_IDS
        ):
            return None
        m.parse_time(doc["received_at"])
        content = doc["report"].get("content") or []
        if not isinstance(content, list) or not all(isinstance(c, dict) for c in content):
            return None
        for item in media_items(doc["report"]):
            for kind, v in content_signals(item):
                SIGNAL_TYPES[kind].normalise(v)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return doc


@dataclass(slots=True)
class LiveMatched:
    """What a batch of reports.triaged came to."""

    read: int = 0
    malformed: int = 0
    found: int = 0  # matches found (a report read again finds its recorded ones again)
    decided: int = 0  # matches decided (new ones)
    notices: int = 0  # removal notices queued


class VictimStage(StageBase):
    name = STAGE
    consumer_options = QUIET_SOURCE
    tick_every_s = 1.0  # how often matches, rescans and due notices are looked at when quiet
    keep_alive_every_s = 3600.0
    # New reports are read this often (a report matched well within 2 s of being triaged at
    # 1,000 reports/s), up to `match_batch` at a time in one transaction.
    match_every_s = 0.25
    match_batch = 5000
    # Live matching and answers go on between batches of requests (filing one may be long).
    idle_under_load_s = 0.5

    def __init__(
        self, settings: Settings, *, read_responses: bool = True, read_triaged: bool = True
    ) -> None:
        super().__init__(settings)
        self.provider_topics = ProviderTopics(settings)
        self.keys = KeySet(settings.keys_dir)  # companies' public keys, for their answers
        self.responses: ResponseReader | None = ResponseReader(settings) if read_responses else None
        self.triaged: TriagedReader | None = TriagedReader(settings) if read_triaged else None
        # The open requests' banks, for new reports; reloaded when victim_bank_state's
        # version changes (read at most every 0.1 s).
        self.bank = VictimBank(recheck_s=0.1)
        self._matched_at = 0.0
        self._behind = False
        self.repeat = dt.timedelta(hours=settings.victim_notice_repeat_hours)
        self.escalate_after = settings.victim_notice_escalate_after
        self._ticked_at = 0.0
        self._kept_alive_at = 0.0

    def close(self) -> None:
        if self.responses is not None:
            self.responses.close()
        if self.triaged is not None:
            self.triaged.close()
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
                    flow._audit(
                        s,
                        STAGE,
                        "victim.request_invalid",
                        f"dead_letter:{position}",
                        {"codes": sorted({p["code"] for p in out.problems})},
                        at=now,
                        discriminator=position,
                    )
                    continue
                assert out.request is not None
                flow.file_request(s, out.request, out.items, source=position, now=now)
            if dead:
                s.execute(flow._insert_ignore(s, DeadLetter.__table__), dead)
                metrics.DEAD_LETTERS.labels(STAGE).inc(len(dead))
            audit.settle(s)
        self.bank.checked_at = 0.0  # the requests filed are matched from the next report on
        self.send_due(now)
        self.poll_responses()

    def _dead(
        self, rec: Record, provider_id: str | None, problems: list[dict[str, str]], now: dt.datetime
    ) -> dict[str, Any]:
        return dict(
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            key=rec.key,
            value=rec.value,
            headers=_printable(rec.headers),
            provider_id=provider_id,
            reasons=problems,
            received_at=now,
        )

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

        def refused(
            s: Any,
            action: str,
            position: str,
            problems: list[dict[str, str]],
            provider_id: str | None,
        ) -> None:
            flow._audit(
                s,
                STAGE,
                action,
                f"dead_letter:{position}",
                {"codes": sorted({p["code"] for p in problems}), "provider_id": provider_id},
                at=now,
                discriminator=position,
            )

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
                    refusals.append(
                        {
                            "schema": "notice/v1",
                            "notice_id": str(uuid.uuid5(_NS_INVALID, position)),
                            "type": "response_invalid",
                            "provider_id": out.provider_id,
                            "answering": out.notice_id,
                            "reasons": problems,
                            "at": m.iso(now),
                        }
                    )
            if dead:
                s.execute(flow._insert_ignore(s, DeadLetter.__table__), dead)
                metrics.DEAD_LETTERS.labels(STAGE).inc(len(dead))
            if refusals:  # only to companies the centre knows: no topic for any name sent
                known = set(
                    s.scalars(
                        select(Provider.provider_id).where(
                            Provider.provider_id.in_(sorted({n["provider_id"] for n in refusals}))
                        )
                    )
                )
                refusals = [n for n in refusals if n["provider_id"] in known]
            audit.settle(s)
        if refusals:
            self.provider_topics.ensure({n["provider_id"] for n in refusals})
            for n in refusals:
                self.producer.send(
                    notices_topic(n["provider_id"]), m.dumps(n), key=n["notice_id"].encode()
                )
            metrics.MESSAGES_OUT.labels(STAGE, "notice").inc(len(refusals))
            self.producer.flush_or_raise()

    def _signature_problems(self, rec: Record, provider_id: str | None) -> list[dict[str, str]]:
        """As for reports: the `signature` header must be the named company's Ed25519
        signature of the value when CENTRE_REQUIRE_SIGNATURES=1; without it, a signature
        that is present and does not verify against a registered key is still refused."""
        from intake.validation import check_signature

        sig = rec.headers.get("signature")
        key = self.keys.provider_public(provider_id) if provider_id else None
        _status, problems = check_signature(
            rec.value or b"",
            sig.decode("ascii", "replace") if sig else None,
            key,
            self.settings.require_signatures,
        )
        return [p.as_dict() for p in problems]

    # -- reports.triaged -----------------------------------------------------------------

    def poll_triaged(self) -> int:
        """Read and match the new reports, every `match_every_s` (at once again while a full
        batch came); the offsets are committed once their matches and notices are done."""
        if self.triaged is None:
            return 0
        clock = time.monotonic()
        if not self._behind and clock - self._matched_at < self.match_every_s:
            return 0
        self._matched_at = clock
        records = self.triaged.poll(self.match_batch)
        self._behind = len(records) >= self.match_batch
        if records:
            self.match_triaged(records)
            self.triaged.commit()
        return len(records)

    def match_triaged(self, records: list[Record], now: dt.datetime | None = None) -> LiveMatched:
        """Match a batch of reports.triaged against the open victims' banks, in one
        transaction: the matches recorded, their removal notices queued and audited as the
        tick would (`victim.matched`), then the notices sent. A report read again changes
        nothing; a malformed message is counted and skipped (its position logged, never its
        content)."""
        now = now or m.now()
        out = LiveMatched(read=len(records))
        audit = flow.AuditSink(producer=self.producer)
        with self.sessions.begin() as s:
            self.bank.refresh(s)
            if not len(self.bank):
                return out  # no open request: nothing to read the reports for
            envelopes = []
            for rec in records:
                env = triaged_report(rec.value)
                if env is None:
                    out.malformed += 1
                    log.warning(
                        "victims: unreadable message at %s/%d/%d skipped",
                        rec.topic,
                        rec.partition,
                        rec.offset,
                    )
                    continue
                envelopes.append(env)
            if out.malformed:
                metrics.ERRORS.labels(STAGE, "malformed_triaged_report").inc(out.malformed)
            out.found = flow.live_matches(s, self.bank, envelopes, now)
            if out.found:
                out.decided, out.notices = flow.notice_new_matches(s, now=now)
            audit.settle(s)
        if out.notices:
            self.send_due(now)
        if out.decided:
            log.info(
                "victims: %d new match(es) in %d new report(s), %d notice(s) queued",
                out.decided,
                len(envelopes),
                out.notices,
            )
        return out

    # -- periodic work -------------------------------------------------------------------

    def idle(self) -> None:
        self.poll_responses()
        self.poll_triaged()
        clock = time.monotonic()
        if clock - self._ticked_at < self.tick_every_s:
            return
        self._ticked_at = clock
        self.tick(m.now())

    def tick(self, now: dt.datetime) -> flow.Dispatched:
        """Notices for matches not decided yet, rescans due, and everything due sent."""
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
        done = flow.dispatch(
            self.sessions,
            self.producer,
            self.provider_topics,
            now=now,
            repeat=self.repeat,
            escalate_after=self.escalate_after,
            audit=flow.AuditSink(producer=self.producer),
        )
        if done.sent or done.repeats or done.cancellations:
            log.info(
                "victims: %d notice(s) sent, %d repeated, %d cancellation(s), %d escalated",
                done.sent,
                done.repeats,
                done.cancellations,
                done.escalated,
            )
        return done
