"""Prometheus metrics: one /metrics endpoint per worker process.

Labels carry stage, outcome, priority, recipient and topic names only: never a provider's
report id, a hash, an address or anything else from inside a report.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from centre.settings import Settings

log = logging.getLogger(__name__)

MESSAGES_IN = Counter("centre_messages_in_total", "Messages consumed", ["stage"])
OUTCOMES = Counter("centre_outcomes_total", "Decisions taken per stage", ["stage", "outcome"])
MESSAGES_OUT = Counter("centre_messages_out_total", "Messages produced", ["stage", "kind"])
ERRORS = Counter("centre_errors_total", "Errors per stage and kind", ["stage", "kind"])
BATCH_SECONDS = Histogram(
    "centre_batch_seconds",
    "Time to process one batch",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LATENCY = Histogram(
    "centre_report_latency_seconds",
    "Time from the report's arrival on reports.intake to the case's forwarding, per priority",
    ["priority"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
AWAITING_KEY = Gauge(
    "centre_deliveries_awaiting_key",
    "Case deliveries waiting for a recipient's key to be registered (alert > 0)",
)
CONSUMER_LAG = Gauge("centre_consumer_lag_messages", "Messages not yet consumed", ["stage"])
DB_WRITE_LOCK = Histogram(
    "centre_db_write_lock_seconds",
    "SQLite: per write transaction, time queued for the database's single write lock "
    "(phase=wait) and time holding it (phase=held)",
    ["phase"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
QUARANTINED = Counter(
    "centre_quarantined_total",
    "Messages set aside after failing a stage again and again (alert > 0)",
    ["stage"],
)
RESTARTS = Counter(
    "centre_worker_exits_total",
    "Worker exits seen by this supervisor, per stage and cause",
    ["stage", "cause"],
)
DEAD_LETTERS = Counter(
    "centre_dead_letters_total", "Rejected messages kept in the dead-letter store", ["stage"]
)


def serve(port: int, stage: str) -> int:
    """Start the /metrics endpoint; port 0 picks a free one. Returns the port."""
    server, _thread = start_http_server(port, addr="127.0.0.1")
    bound = int(server.server_port)
    print(f"metrics for {stage} on http://127.0.0.1:{bound}/metrics", file=sys.stderr, flush=True)
    return bound


def group_lag(consumer: Any, topic: str, timeout: float = 5.0) -> int:
    """Messages of `topic` not yet committed by `consumer`'s group (end offsets minus the
    group's committed offsets, from the broker's view). On a broker that has just started,
    the group's coordinator may not be ready yet (not coordinator, loading): asked again until
    `timeout`."""
    return sum(
        hi - max(c, 0)
        for c, hi in group_offsets(consumer, topic, timeout).values()
        if hi > max(c, 0)
    )


def group_offsets(consumer: Any, topic: str, timeout: float = 5.0) -> dict[int, tuple[int, int]]:
    """Per partition of `topic`: (the group's committed offset, -1 when none; the end)."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    not_ready = {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }

    md = consumer.list_topics(topic, timeout=timeout)
    parts = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
    deadline = time.monotonic() + timeout
    while True:
        try:
            committed = consumer.committed(parts, timeout=timeout)
            break
        except KafkaException as exc:
            err = exc.args[0]
            if not (err.retriable() or err.code() in not_ready) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    out: dict[int, tuple[int, int]] = {}
    for tp in committed:
        _lo, hi = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
        out[tp.partition] = (tp.offset, hi)
    return out


def lag_reader(settings: Settings, stage: str) -> Any:
    """A consumer in `stage`'s group that only reads its committed offsets (for `group_lag`;
    it never subscribes, so it never joins the group or moves its partitions)."""
    from confluent_kafka import Consumer

    from centre.kafka import base_config
    from centre.topology import group_id

    return Consumer(
        {
            **base_config(settings),
            "group.id": group_id(settings, stage),
            "enable.auto.commit": False,
        }
    )
