"""Kafka clients outside faust (confluent-kafka): topic administration, the batch producer that
every stage sends its outputs with, and consumers for the command line."""

from __future__ import annotations

import logging
import threading
from typing import Iterable

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from centre.settings import Settings
from centre.topology import TopicSpec, provider_topics, static_topics

log = logging.getLogger(__name__)
_quiet = logging.getLogger("centre.kafka.librdkafka")


class DeliveryError(RuntimeError):
    """Some messages of a batch were not acknowledged by the broker; the batch is not done."""


def base_config(settings: Settings) -> dict[str, object]:
    return {"bootstrap.servers": settings.bootstrap, "logger": _quiet}


def admin(settings: Settings) -> AdminClient:
    return AdminClient(base_config(settings))


def ensure_topics(settings: Settings, specs: Iterable[TopicSpec], client: AdminClient | None = None,
                  timeout: float = 30.0) -> list[str]:
    """Create the topics that are missing; existing ones are left as they are. Returns created."""
    client = client or admin(settings)
    existing = set(client.list_topics(timeout=timeout).topics)
    wanted = [s for s in specs if settings.topic(s.name) not in existing]
    if not wanted:
        return []
    futures = client.create_topics(
        [NewTopic(settings.topic(s.name), num_partitions=s.partitions, replication_factor=-1,
                  config=s.config) for s in wanted],
        operation_timeout=timeout, request_timeout=timeout,
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


class BatchProducer:
    """An idempotent producer whose `flush_or_raise` makes a batch all-or-error.

    Stages call `send` for every output of a batch, then `flush_or_raise` before the input
    offsets may be acknowledged: at-least-once, with the downstream deduplicating on ids.
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
        self._producer = Producer(conf)
        self._settings = settings
        self._errors: list[str] = []

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self._errors.append(err.str())

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None, prefixed: bool = False) -> None:
        """Queue one message; `topic` is unprefixed unless `prefixed`."""
        name = topic if prefixed else self._settings.topic(topic)
        while True:
            try:
                self._producer.produce(name, value=value, key=key, headers=headers,
                                       on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain
        self._producer.poll(0)

    def flush_or_raise(self, timeout: float = 60.0) -> None:
        remaining = self._producer.flush(timeout)
        errors, self._errors = self._errors, []
        if remaining:
            raise DeliveryError(f"{remaining} messages not acknowledged within {timeout:.0f}s")
        if errors:
            raise DeliveryError(f"{len(errors)} messages failed: {sorted(set(errors))[:3]}")

    def close(self) -> None:
        self._producer.flush(10)
