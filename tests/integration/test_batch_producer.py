"""The batch producer on the real broker: a batch handed over with `detach` is waited for on
its own (what a stage's finish does while the next batch is sent), and a message the broker
refuses fails its own batch, not the next one."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from centre.broker import LocalBroker
from centre.kafka import BatchProducer, DeliveryError, ensure_topics
from centre.settings import Settings
from centre.topology import TopicSpec

pytestmark = pytest.mark.integration


def _settings(broker: LocalBroker, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path,
        kafka_bootstrap=broker.bootstrap,
        database_url=f"sqlite:///{tmp_path / 'c.db'}",
        topic_prefix=f"bp{uuid.uuid4().hex[:6]}.",
        partitions=1,
    )


def test_a_detached_batch_is_waited_for_while_the_next_is_sent(
    broker: LocalBroker, tmp_path: Path
) -> None:
    s = _settings(broker, tmp_path)
    ensure_topics(s, [TopicSpec("out", 1, "test")])
    p = BatchProducer(s)
    for i in range(2000):
        p.send("out", b"first-%d" % i)
    first = p.detach()
    assert first.pending > 0  # not acknowledged yet: nothing was waited for

    # The next batch is sent from this thread while another waits for the first.
    waited: list[BaseException | None] = []

    def finish() -> None:
        try:
            p.wait_or_raise(first, timeout=60)
            waited.append(None)
        except BaseException as exc:  # reported to the test thread
            waited.append(exc)

    t = threading.Thread(target=finish)
    t.start()
    for i in range(2000):
        p.send("out", b"second-%d" % i)
    second = p.detach()
    t.join(60)
    assert waited == [None]
    assert first.pending == 0 and first.errors == []
    p.wait_or_raise(second, timeout=60)
    assert second.pending == 0
    p.close()


def test_a_refused_message_fails_its_own_batch_only(broker: LocalBroker, tmp_path: Path) -> None:
    s = _settings(broker, tmp_path)
    # The broker refuses messages over 1,000 bytes on this topic.
    ensure_topics(s, [TopicSpec("small", 1, "test", {"max.message.bytes": "1000"})])
    p = BatchProducer(s, **{"message.timeout.ms": 20000})
    p.send("small", b"x" * 10)
    p.send("small", b"x" * 5000)
    bad = p.detach()
    with pytest.raises(DeliveryError, match="messages failed.*too large"):
        p.wait_or_raise(bad, timeout=30)
    p.send("small", b"y" * 10)
    good = p.detach()
    p.wait_or_raise(good, timeout=30)
    assert good.errors == []
    p.close()


def test_told_of_errors_only_a_flush_still_fails_on_a_refused_message(
    broker: LocalBroker, tmp_path: Path
) -> None:
    s = _settings(broker, tmp_path)
    ensure_topics(
        s,
        [TopicSpec("out", 1, "test"), TopicSpec("small", 1, "test", {"max.message.bytes": "1000"})],
    )
    p = BatchProducer(s, **{"message.timeout.ms": 20000, "delivery.report.only.error": True})
    for i in range(500):
        p.send("out", b"ok-%d" % i)
    p.flush_or_raise(30)  # all acknowledged, none reported one by one
    p.send("small", b"x" * 10)
    p.send("small", b"x" * 5000)
    with pytest.raises(DeliveryError, match="messages failed.*too large"):
        p.flush_or_raise(30)
    p.send("small", b"y" * 10)
    with pytest.raises(TypeError, match="flush_or_raise"):
        p.wait_or_raise(p.detach(), timeout=5)
    p.flush_or_raise(30)
    p.close()
