"""The liaison's side: read sealed cases from `le.<cc>`, check and open them, print, commit.

Cases are delivered at least once; a liaison sees each case_id once because this client keeps
the ids it has printed (a small SQLite file under CENTRE_HOME/liaison). Anything forged,
altered or sealed for someone else is refused on stderr and skipped.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from centre import messages as m
from centre.crypto import SealError, open_envelope
from centre.kafka import base_config, position
from centre.settings import Settings
from centre.topology import DELIVERY_ACKS, le_topic, urgent_topic


@dataclass(frozen=True, slots=True)
class Opened:
    document: dict[str, object]
    partition: int
    offset: int


class SeenStore:
    """Ids this liaison has already printed, so a case delivered twice is shown once."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY)")

    def add(self, ident: str) -> bool:
        """True when new."""
        cur = self.db.execute("INSERT OR IGNORE INTO seen (id) VALUES (?)", (ident,))
        return cur.rowcount == 1

    def commit(self) -> None:
        self.db.commit()

    def close(self) -> None:
        self.db.close()


class _Lane:
    """One topic read with manually assigned partitions from the group's committed offsets
    (no group join: a pull starts reading at once)."""

    def __init__(self, settings: Settings, topic: str, group: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                **base_config(settings),
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "fetch.max.bytes": 16 * 1024 * 1024,
                "fetch.wait.max.ms": 50,
            }
        )
        md = self.consumer.list_topics(topic, timeout=10)
        meta = md.topics.get(topic)
        parts = sorted(meta.partitions) if meta is not None and not meta.error else []
        self.partitions = [TopicPartition(topic, p) for p in parts]
        committed = self.consumer.committed(self.partitions, timeout=10) if parts else []
        self.consumer.assign(
            [
                TopicPartition(
                    topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                )
                for tp in committed
            ]
        )
        self.next = {tp.partition: tp.offset for tp in committed}

    def pending(self) -> bool:
        """Whether the broker holds messages past what this lane has read."""
        for tp in self.partitions:
            _lo, hi = self.consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            nxt = self.next.get(tp.partition, -1)
            if hi > 0 and (nxt < 0 or nxt < hi):
                if nxt < 0:  # nothing committed: compare with the earliest offset kept
                    lo, _hi = self.consumer.get_watermark_offsets(tp, timeout=5, cached=True)
                    if lo >= hi:
                        continue
                return True
        return False

    def close(self) -> None:
        self.consumer.close()


class _Acks:
    """Tells the centre which cases this liaison pulled and when (`delivery-ack/v1` on
    `le.acks`), so the Art. 45 record has delivered-at per recipient. Best effort: a lost ack
    leaves the case listed as overdue, never loses it."""

    def __init__(self, settings: Settings, recipient: str, group: str) -> None:
        from centre.kafka import BatchProducer

        self.producer = BatchProducer(settings)
        self.recipient, self.group = recipient, group
        self.pending: list[dict[str, object]] = []

    def add(self, doc: dict[str, object]) -> None:
        if doc.get("schema") == "case/v1" and isinstance(doc.get("case_id"), str):
            self.pending.append(
                {
                    "schema": "delivery-ack/v1",
                    "case_id": doc["case_id"],
                    "recipient": self.recipient,
                    "pulled_by": self.group,
                    "pulled_at": m.iso(m.now()),
                }
            )

    def send(self) -> None:
        for ack in self.pending:
            self.producer.send(DELIVERY_ACKS, m.dumps(ack), key=str(ack["case_id"]).encode())
        self.pending = []
        try:
            self.producer.flush_or_raise(timeout=10)
        except Exception as exc:  # the cases are printed and committed; say so, go on
            print(f"warning: delivery acknowledgements not sent: {exc}", file=sys.stderr)

    def close(self) -> None:
        self.producer.close()


def pull(
    settings: Settings,
    recipient: str,
    private_keys: Mapping[str, X25519PrivateKey],
    centre_keys: list[Ed25519PublicKey],
    *,
    max_messages: int | None = None,
    timeout: float = 10.0,
    on_refused: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
    group: str | None = None,
) -> Iterator[Opened]:
    """Yield opened documents, P1 lane first, then oldest first per partition; offsets are
    committed after each yielded batch is consumed by the caller. Stops after `max_messages`
    documents or when no message arrived for `timeout` seconds."""
    group = group or f"{settings.topic_prefix}liaison-{recipient}"
    # One store per consumer group: the group's committed offsets and its seen ids go together.
    seen = SeenStore(settings.home / "liaison" / f"{group}.seen.sqlite")
    urgent = _Lane(settings, settings.topic(urgent_topic(recipient)), group + "-urgent")
    regular = _Lane(settings, settings.topic(le_topic(recipient)), group)
    acks = _Acks(settings, recipient, group)
    printed = 0
    idle_since = time.monotonic()
    try:
        while max_messages is None or printed < max_messages:
            want = 500 if max_messages is None else min(500, max_messages - printed)
            # Urgent cases first: drain the P1 lane whenever it holds anything.
            lane = urgent if urgent.pending() else regular
            msgs = lane.consumer.consume(num_messages=want, timeout=0.5)
            if not msgs:
                if time.monotonic() - idle_since > timeout:
                    break
                continue
            idle_since = time.monotonic()
            topic = lane.topic
            last: dict[int, int] = {}
            for msg in msgs:
                err = msg.error()
                if err:
                    if err.code() != KafkaError._PARTITION_EOF:
                        on_refused(f"refused: broker error on {topic}: {err.str()}")
                    continue
                _topic, partition, offset = position(msg)
                last[partition] = offset
                where = f"{topic} partition {partition} offset {offset}"
                try:
                    plain = open_envelope(
                        msg.value() or b"",
                        recipient_id=recipient,
                        recipient_private=private_keys,
                        centre_public=centre_keys,
                    )
                    doc = m.loads(plain)
                except SealError as exc:
                    on_refused(f"refused: {where}: {type(exc).__name__}: {exc}")
                    continue
                except ValueError:
                    on_refused(f"refused: {where}: the opened content is not JSON")
                    continue
                ident = f"{doc.get('schema')}|{doc.get('case_id')}"
                if doc.get("supplement"):  # a case updated by a supplement is shown again
                    ident += f"|supplement/{doc['supplement']}"
                if seen.add(ident):
                    yield Opened(doc, partition, offset)
                    acks.add(doc)
                    printed += 1
                    if max_messages is not None and printed >= max_messages:
                        last[partition] = offset
                        _commit_upto(lane, last, (partition, offset))
                        seen.commit()
                        acks.send()
                        return
            seen.commit()
            _commit_upto(lane, last, None)
            acks.send()
    finally:
        acks.close()
        seen.close()
        urgent.close()
        regular.close()


def _commit_upto(lane: _Lane, last: dict[int, int], stop_at: tuple[int, int] | None) -> None:
    """Commit after `last` (partition -> offset); `stop_at` is the (partition, offset) of the
    last message printed when stopping early."""
    if stop_at is not None:
        # Stopping early at --max: commit only through the last printed message, and read on
        # from just after it next time (the rest of the fetched batch was not shown).
        part, off = stop_at
        last = {p: o for p, o in last.items() if p != part} | {part: off}
    if last:
        lane.consumer.commit(
            offsets=[TopicPartition(lane.topic, p, o + 1) for p, o in last.items()],
            asynchronous=False,
        )
        lane.next.update({p: o + 1 for p, o in last.items()})
