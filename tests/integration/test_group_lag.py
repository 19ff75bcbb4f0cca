"""Consumer lag from the broker's view (`centre.metrics.group_lag`), which the lag metric
and `Stack.wait_caught_up` (the bench's steady state) rely on: the end offsets minus what
the group has committed, over every partition."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from centre.broker import LocalBroker
from centre.kafka import BatchProducer, base_config, ensure_topics
from centre.metrics import group_lag
from centre.settings import Settings
from centre.topology import TopicSpec

pytestmark = pytest.mark.integration


def test_lag_is_what_the_group_has_not_committed(broker: LocalBroker, tmp_path: Path) -> None:
    s = Settings(
        home=tmp_path,
        kafka_bootstrap=broker.bootstrap,
        database_url=f"sqlite:///{tmp_path / 'c.db'}",
        topic_prefix=f"lag{uuid.uuid4().hex[:6]}.",
        partitions=2,
    )
    ensure_topics(s, [TopicSpec("src", 2, "test")])
    topic = s.topic("src")
    p = BatchProducer(s)
    for i in range(7):
        p.send("src", b"m%d" % i, key=b"k%d" % i)
    p.flush_or_raise()
    p.close()

    c = Consumer({**base_config(s), "group.id": f"g-{uuid.uuid4()}", "enable.auto.commit": False})
    try:
        assert group_lag(c, topic) == 7  # nothing committed: every message
        ends = {
            part: c.get_watermark_offsets(TopicPartition(topic, part), timeout=10)[1]
            for part in (0, 1)
        }
        assert sum(ends.values()) == 7
        # Committed: all of partition 0, one message of partition 1.
        c.commit(
            offsets=[TopicPartition(topic, 0, ends[0]), TopicPartition(topic, 1, 1)],
            asynchronous=False,
        )
        assert group_lag(c, topic) == ends[1] - 1
        c.commit(offsets=[TopicPartition(topic, 1, ends[1])], asynchronous=False)
        assert group_lag(c, topic) == 0
    finally:
        c.close()
