"""The poison guard's bookkeeping (centre/poison.py) and the watchdog's judgement of a stuck
worker (centre/runtime.py), without a broker: positions in, plans and verdicts out."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from centre.kafka import DeliveryError
from centre.poison import PoisonGuard, transient
from centre.runtime import Record, Watchdog
from centre.settings import Settings


def rec(offset: int, partition: int = 0) -> Record:
    return Record("t", partition, offset, None, b"{}", {}, 0.0)


def batch(lo: int, hi: int, partition: int = 0) -> list[Record]:
    return [rec(o, partition) for o in range(lo, hi + 1)]


def crash(path: Path, *in_flight: list[Record], attempts: int = 3) -> PoisonGuard:
    """A worker that began these batches and died; the guard of its next life."""
    g = PoisonGuard(path, attempts)
    for b in in_flight:
        g.begin(b)
    return PoisonGuard(path, attempts)


def test_nothing_is_suspect_without_a_crash(tmp_path: Path) -> None:
    g = PoisonGuard(tmp_path / "w.inflight")
    t = g.begin(batch(0, 9))
    g.end(t)
    again = PoisonGuard(tmp_path / "w.inflight")
    assert not again.any_suspect(batch(0, 20))


def test_a_crash_makes_the_batch_in_flight_suspect(tmp_path: Path) -> None:
    g = crash(tmp_path / "w.inflight", batch(10, 19), batch(0, 3, partition=1))
    assert [g.attempts(r) for r in batch(9, 20)] == [0] + [1] * 10 + [0]
    assert g.attempts(rec(2, partition=1)) == 1
    # Planned: the innocent as a batch, suspects at their first crash in small groups.
    plan = g.plan(batch(5, 12))
    assert [(k, [r.offset for r in rs]) for k, rs in plan] == [
        ("batch", [5, 6, 7, 8, 9]),
        ("group", [10, 11, 12]),
    ]


def test_groups_are_small() -> None:
    g = PoisonGuard(None, 3, group=4)
    g.suspects = {("t", 0, o): 1 for o in range(10)}
    assert [len(rs) for _k, rs in g.plan(batch(0, 9))] == [4, 4, 2]


def test_the_message_that_kills_alone_at_the_limit_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "w.inflight"
    g = crash(path, batch(0, 99))  # first crash: the whole batch
    (kind, group), *_ = g.plan(batch(40, 47))
    assert kind == "group"
    g.begin(group)  # second crash: in its group of suspects
    g = PoisonGuard(path)
    assert g.plan(batch(40, 41)) == [("alone", [rec(40)]), ("alone", [rec(41)])]
    t = g.begin([rec(40)])  # 40 is innocent: done, no longer a suspect
    g.end(t)
    g.begin([rec(41)])  # third crash: 41 alone
    g = PoisonGuard(path)
    assert g.attempts(rec(40)) == 0
    assert g.plan([rec(41), rec(42)]) == [("quarantine", [rec(41)]), ("alone", [rec(42)])]
    g.quarantined(rec(41))
    assert PoisonGuard(path).attempts(rec(41)) == 0


def test_an_excused_crash_counts_against_nothing(tmp_path: Path) -> None:
    g = PoisonGuard(tmp_path / "w.inflight")
    g.begin(batch(0, 9))
    g.excuse()  # the database was unreachable: not the messages' fault
    assert not PoisonGuard(tmp_path / "w.inflight").any_suspect(batch(0, 9))


def test_a_damaged_note_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "w.inflight"
    path.write_text("{not json")
    assert not PoisonGuard(path).any_suspect(batch(0, 9))


def test_the_world_failing_is_told_from_the_input_failing() -> None:
    op = OperationalError("select 1", {}, Exception("server closed the connection"))
    assert transient(op)
    assert transient(DeliveryError("3 messages not acknowledged"))
    try:
        try:
            raise ConnectionResetError()
        except ConnectionResetError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert transient(outer)
    assert not transient(KeyError("report_id"))
    assert not transient(IntegrityError("insert", {}, Exception("unique")))
    assert not transient(RecursionError())


@pytest.fixture
def watchdog(tmp_path: Path) -> Watchdog:
    w = Watchdog(
        Settings(
            home=tmp_path, kafka_bootstrap="127.0.0.1:1", database_url="sqlite://", stuck_after_s=60
        ),
        "intake",
        every=5,
    )
    w.armed = True
    return w


def test_a_worker_whose_partitions_wait_and_that_consumes_nothing_is_stuck(
    watchdog: Watchdog,
) -> None:
    watchdog.assigned = {0, 1}
    watchdog.consumed_at = 0.0
    offsets = {0: (100, 150), 1: (10, 10), 2: (0, 500)}
    assert not watchdog.stuck(offsets, 10.0)
    assert not watchdog.stuck(offsets, 69.0)
    assert watchdog.stuck(offsets, 70.5)


def test_consuming_or_no_waiting_input_is_not_stuck(watchdog: Watchdog) -> None:
    watchdog.assigned = {1}  # partition 2's backlog belongs to another worker
    watchdog.consumed_at = 0.0
    offsets = {0: (100, 100), 1: (10, 10), 2: (0, 500)}
    assert not any(watchdog.stuck(offsets, t) for t in (10.0, 100.0, 1000.0))
    watchdog.assigned = {0}
    busy = {0: (100, 200)}
    for t in (10.0, 40.0, 80.0, 120.0):
        watchdog.consumed_at = t - 1  # it keeps consuming
        assert not watchdog.stuck(busy, t)


def test_a_worker_without_partitions_is_stuck_only_if_the_group_stands_still(
    watchdog: Watchdog,
) -> None:
    watchdog.assigned = set()  # never rejoined its group
    watchdog.consumed_at = 0.0
    moving = [{0: (c, 1000)} for c in range(100, 1000, 50)]
    assert not any(watchdog.stuck(o, 10.0 + 5 * i) for i, o in enumerate(moving))
    still = {0: (500, 1000)}
    verdicts = [watchdog.stuck(still, 200.0 + 5 * i) for i in range(15)]
    assert verdicts[0] is False and verdicts[-1] is True


def test_the_broker_away_judges_nothing(watchdog: Watchdog) -> None:
    watchdog.assigned = {0}
    watchdog.consumed_at = 0.0
    assert not watchdog.stuck({0: (0, 10)}, 10.0)
    assert not watchdog.stuck(None, 50.0)  # unknown: the stall starts again afterwards
    assert not watchdog.stuck({0: (0, 10)}, 75.0)
    assert watchdog.stuck({0: (0, 10)}, 140.0)
