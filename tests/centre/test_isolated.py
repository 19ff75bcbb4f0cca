"""Kafka questions asked from a child process (centre/isolated.py), so that the supervisor of
the local stack holds no client that a broker fault could abort."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from centre import isolated
from centre.broker import BrokerError, LocalBroker, free_port


def _add(a: int, b: int) -> int:
    return a + b


def _refuse(text: str) -> None:
    raise ValueError(text)


def _abort() -> None:
    os.abort()  # as librdkafka's failed assertions do


def _hang() -> None:
    import time

    time.sleep(60)


def test_the_answer_and_the_error_come_back() -> None:
    assert isolated.call(_add, 2, 3, timeout=60) == 5
    with pytest.raises(ValueError, match="no such thing"):
        isolated.call(_refuse, "no such thing", timeout=60)


def test_a_child_that_aborts_is_a_failed_question_not_a_dead_parent() -> None:
    with pytest.raises(isolated.ChildDied, match="exit -6"):
        isolated.call(_abort, timeout=60)


def test_a_child_that_does_not_answer_is_killed() -> None:
    with pytest.raises(TimeoutError):
        isolated.call(_hang, timeout=2)


def _kafka_clients() -> list[object]:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

    return [o for o in gc.get_objects() if isinstance(o, (AdminClient, Consumer, Producer))]


def test_waiting_for_a_broker_leaves_no_client_behind(tmp_path: Path) -> None:
    """It used to keep the last boot-time error, whose traceback held the admin client: the
    client that aborted `centre up` when the broker restarted later."""
    b = LocalBroker(tmp_path, port=free_port())  # nothing listens there
    before = len(_kafka_clients())
    with pytest.raises(BrokerError, match="did not answer"):
        b.wait_ready(timeout=3)
    assert len(_kafka_clients()) == before
