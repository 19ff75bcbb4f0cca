"""Kafka clients outside faust (confluent-kafka): topic administration, the batch producer that
every stage sends its outputs with, and consumers for the command line."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from centre.settings import Settings
from centre.topology import TopicSpec, provider_topics, static_topics

log = logging.getLogger(__name__)
_quiet = logging.getLogger("centre.kafka.librdkafka")


class DeliveryError(RuntimeError):
    """Some messages of a batch were not acknowledged by the broker; the batch is not done."""


def base_config(settings: Settings) -> dict[str, object]:
    return {"bootstrap.servers": settings.bootstrap, "logger": _quiet}


def position(msg: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a message a consumer read without error. confluent-kafka
    types each as optional (a message made by hand has none); a consumed one has all three."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None, "not consumed"
    return topic, partition, offset


def admin(settings: Settings) -> AdminClient:
    # confluent-kafka's stub wants scalar values only; librdkafka's "logger" is a Logger.
    return AdminClient(base_config(settings))  # type: ignore[arg-type]


def ensure_topics(
    settings: Settings,
    specs: Iterable[TopicSpec],
    client: AdminClient | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Create the topics that are missing; existing ones are left as they are. Returns created."""
    client = client or admin(settings)
    existing = set(client.list_topics(timeout=timeout).topics)
    wanted = [s for s in specs if settings.topic(s.name) not in existing]
    if not wanted:
        return []
    futures = client.create_topics(
        [
            NewTopic(
                settings.topic(s.name),
                num_partitions=s.partitions,
                replication_factor=-1,
                config=s.config,
            )
            for s in wanted
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


def ensure_static_topics(settings: Settings) -> list[str]:
    return ensure_topics(settings, static_topics(settings))


class ProviderTopics:
    """Creates a provider's feedback and notices topics on first sight, once per process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin = admin(settings)
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, provider_ids: Iterable[str]) -> None:
        new = {p for p in provider_ids if p not in self._known}
        if not new:
            return
        with self._lock:
            specs = [t for p in sorted(new) for t in provider_topics(p)]
            ensure_topics(self._settings, specs, self._admin)
            self._known |= new


class Deliveries:
    """The delivery reports of one batch's messages: how many are still unacknowledged and
    the errors of those that failed. Callbacks may run on any thread that polls."""

    __slots__ = ("pending", "errors", "_lock")

    def __init__(self) -> None:
        self.pending = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def sent(self, n: int = 1) -> None:
        with self._lock:
            self.pending += n

    def on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        with self._lock:
            self.pending -= 1
            if err is not None:
                self.errors.append(err.str())


class BatchProducer:
    """An idempotent producer whose `flush_or_raise` makes a batch all-or-error.

    Stages call `send` for every output of a batch, then `flush_or_raise` before the input
    offsets may be acknowledged: at-least-once, with the downstream deduplicating on ids.
    A stage that overlaps a batch's broker round trip with its next batch calls `detach`
    instead, which hands over the batch's deliveries, and later `wait_or_raise` on them
    (from another thread, while the next batch is being sent).

    With the override `"delivery.report.only.error": True` the broker's acknowledgements
    cost no Python call per message (a stage that sends thousands a second feels them), but
    only `flush_or_raise` can then tell that a batch is done.
    """

    def __init__(self, settings: Settings, **overrides: object) -> None:
        conf: dict[str, object] = {
            **base_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            # Same partition for the same key as faust/aiokafka (Java's murmur2).
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "batch.num.messages": 10000,
            "message.max.bytes": 8 * 1024 * 1024,
            "queue.buffering.max.messages": 500000,
        }
        conf.update(overrides)
        self._errors_only = bool(conf.get("delivery.report.only.error"))
        self._producer = Producer(conf)
        self._settings = settings
        self._batch = Deliveries()
        self._unpolled = 0

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        prefixed: bool = False,
    ) -> None:
        """Queue one message; `topic` is unprefixed unless `prefixed`."""
        name = topic if prefixed else self._settings.topic(topic)
        batch = self._batch
        batch.sent()
        while True:
            try:
                # confluent-kafka's stub types headers as an invariant list of str | bytes |
                # None values, which a list of bytes values is not (it only reads them).
                self._producer.produce(
                    name,
                    value=value,
                    key=key,
                    headers=headers,  # type: ignore[arg-type]
                    on_delivery=batch.on_delivery,
                )
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain
            except BaseException:
                batch.sent(-1)
                raise
        self._unpolled += 1
        if self._unpolled >= 256:  # serve delivery reports now and then, not per message
            self._unpolled = 0
            self._producer.poll(0)

    def detach(self) -> Deliveries:
        """The deliveries of everything sent since the last `detach`/`flush_or_raise`; what is
        sent from now on belongs to the next batch."""
        batch, self._batch = self._batch, Deliveries()
        return batch

    def wait_or_raise(self, batch: Deliveries, timeout: float = 60.0) -> None:
        """Block until every message of `batch` is acknowledged; DeliveryError otherwise."""
        if self._errors_only:
            raise TypeError(
                "a producer told of errors only cannot wait for one batch: flush_or_raise"
            )
        deadline = time.monotonic() + timeout
        while batch.pending > 0:
            if time.monotonic() > deadline:
                raise DeliveryError(
                    f"{batch.pending} messages not acknowledged within {timeout:.0f}s"
                )
            self._producer.poll(0.005)
        if batch.errors:
            raise DeliveryError(
                f"{len(batch.errors)} messages failed: {sorted(set(batch.errors))[:3]}"
            )

    def flush_or_raise(self, timeout: float = 60.0) -> None:
        remaining = self._producer.flush(timeout)
        batch = self.detach()
        if remaining:
            raise DeliveryError(f"{remaining} messages not acknowledged within {timeout:.0f}s")
        if batch.errors:
            raise DeliveryError(
                f"{len(batch.errors)} messages failed: {sorted(set(batch.errors))[:3]}"
            )

    def close(self) -> None:
        self._producer.flush(10)
