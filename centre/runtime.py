"""Running a stage (`centre/stage.py`) in a worker: the librdkafka loop (the default) or a
faust agent consumes a batch, hands it to the stage, and acknowledges after; the poison guard
(`centre/poison.py`) and the watchdog (`centre/watchdog.py`) keep one message or a stuck
client from stopping the stage.

A stage is plain code: `process(records)` makes every decision, writes the database in one
transaction, sends its outputs and flushes them. Only then does faust acknowledge the batch
(`take_events` acks after the loop body). A stage may instead return a `finish` callable
from `process`: what is left of the batch once its outputs are sent (waiting for the
broker's acknowledgements, the database record). The librdkafka loop runs it on a second
thread while the next batch is processed, and commits the batch's offsets after it; faust
runs it at once. faust's known faults shape this: concurrency stays
1, because with more it can commit past unfinished messages; and a failing batch stops the
worker process (a supervisor restarts it) instead of letting faust restart the agent past
messages it never finished, which would lose them until the next rebalance.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NoReturn

import faust

from centre import metrics
from centre.kafka import position
from centre.poison import PoisonGuard, transient
from centre.settings import Settings
from centre.stage import (
    QUIET_SOURCE,
    Finish,
    QuarantineNotice,
    Record,
    Stage,
    StageBase,
    _headers,
    load_stage,
    process_now,
    stage_batch_size,
)
from centre.topology import STAGES, group_id
from centre.watchdog import Watchdog

log = logging.getLogger(__name__)

# What stages and tests import from here (their home is centre/stage.py, centre/watchdog.py).
__all__ = [
    "QUIET_SOURCE",
    "Finish",
    "QuarantineNotice",
    "Record",
    "Stage",
    "StageBase",
    "Watchdog",
    "_headers",
    "load_stage",
    "process_now",
    "run_worker",
    "stage_batch_size",
]


def _fatal(
    what: str, stage_name: str, n: int | None = None, guard: PoisonGuard | None = None
) -> NoReturn:
    """A batch that failed is not acknowledged: the worker stops and the restarted one reads
    it again (faust would restart the agent past it). When the world failed (the database or
    the broker unreachable) the messages in flight are not counted as suspects of it."""
    exc = sys.exc_info()[1]
    world = exc is not None and transient(exc)
    if guard is not None and world:
        guard.excuse()
    cause = "the database or the broker failed" if world else "it may be the input"
    if n is None:
        log.exception("stage %s failed in %s (%s); stopping the worker", stage_name, what, cause)
    else:
        log.exception(
            "stage %s failed on a batch of %d (%s); stopping the worker", stage_name, n, cause
        )
    logging.shutdown()
    os._exit(70)


def poison_guard(settings: Settings, stage_name: str) -> PoisonGuard:
    """The worker's note of messages in flight: one file per worker slot that the supervisor
    names (CENTRE_WORKER_SLOT), kept across its restarts; in memory only for a worker started
    by hand without a slot, which then counts no crash of its own before (its messages are
    retried as before)."""
    slot = os.environ.get("CENTRE_WORKER_SLOT")
    path = None
    if slot:
        run = settings.home / "run"
        run.mkdir(parents=True, exist_ok=True)
        path = run / f"{stage_name}-{slot}.inflight"
    return PoisonGuard(path, settings.poison_attempts)


def take_suspects(
    stage: Stage,
    guard: PoisonGuard,
    records: list[Record],
    done: Callable[[list[Record]], None],
    stage_name: str,
) -> None:
    """A batch holding suspects, taken as `guard.plan` says: quarantined, alone, in small
    groups or as one batch, each completely (its finish too) before the next, and `done`
    (commit) called after each."""
    for kind, group in guard.plan(records):  # type: ignore[arg-type]
        recs: list[Record] = group  # type: ignore[assignment]
        if kind == "quarantine":
            try:
                stage.quarantine(recs[0], guard.attempts(recs[0]))
            except Exception as exc:
                if transient(exc):
                    _fatal("setting a message aside", stage_name, guard=guard)
                # Never a loop: what cannot even be set aside is passed over, its position
                # logged (the message itself stays on its topic for its retention).
                metrics.QUARANTINED.labels(stage_name).inc()
                log.exception(
                    "stage %s could not set the message at %s/%d/%d aside; passed over",
                    stage_name,
                    recs[0].topic,
                    recs[0].partition,
                    recs[0].offset,
                )
            guard.quarantined(recs[0])
        else:
            token = guard.begin(recs)
            try:
                process_now(stage, recs)
            except Exception:
                _fatal("a batch of suspects", stage_name, len(recs), guard)
            guard.end(token)
        done(recs)


class _IdleUnderLoad:
    """A stage's periodic work (`idle`) also runs between batches when messages never stop
    coming, at most every `stage.idle_under_load_s` seconds (stages without it: only when
    quiet)."""

    def __init__(self, stage: Stage) -> None:
        self.idle = getattr(stage, "idle", None)
        self.every = getattr(stage, "idle_under_load_s", None)
        self.last = time.monotonic()

    def due(self) -> bool:
        return (
            self.idle is not None
            and self.every is not None
            and time.monotonic() - self.last >= self.every
        )

    def run(self) -> None:
        self.last = time.monotonic()
        if self.idle is not None:
            self.idle()


def build_app(
    settings: Settings, stage_name: str, stage: Stage, watchdog: Watchdog | None = None
) -> faust.App:
    spec = STAGES[stage_name]
    datadir = settings.home / "faust" / stage_name
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        group_id(settings, stage_name),
        broker=f"kafka://{settings.bootstrap}",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_allow_declare=False,  # topics come from centre.topology via `centre up`
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        consumer_max_fetch_size=4 * 1024 * 1024,
        stream_buffer_maxsize=stage_batch_size(settings, stage) * 4,
        datadir=str(datadir),
    )
    source = app.topic(settings.topic(spec.source), key_type=bytes, value_type=bytes)
    batch, within = stage_batch_size(settings, stage), settings.batch_within_s

    # A stage's batches and its periodic work never run at the same time (one thread each).
    busy = asyncio.Lock()
    under_load = _IdleUnderLoad(stage)
    guard = poison_guard(settings, stage_name)

    def one_batch(records: list[Record]) -> None:
        if watchdog is not None:
            watchdog.consumed()
            watchdog.armed = True
        if guard.any_suspect(records):
            take_suspects(stage, guard, records, lambda _recs: None, stage_name)
        else:
            token = guard.begin(records)
            try:
                process_now(stage, records)
            except Exception:
                _fatal("a batch", stage_name, len(records), guard)
            guard.end(token)
        if under_load.due():
            under_load.run()

    @app.agent(source, name=f"centre.{stage_name}", concurrency=1)
    async def consume(stream: faust.StreamT[Any]) -> None:
        # take_events: faust's own batching that acks after the loop body (no stub for it)
        async for events in stream.take_events(batch, within=within):  # type: ignore[attr-defined]
            records = [
                Record(
                    e.message.topic,
                    e.message.partition,
                    e.message.offset,
                    e.message.key,
                    e.message.value,
                    _headers(e.message.headers),
                    e.message.timestamp,
                )
                for e in events
            ]
            started = time.perf_counter()
            try:
                async with busy:
                    await asyncio.to_thread(one_batch, records)
            except Exception:
                # Nothing of this batch is acknowledged; the restarted worker reads it again.
                _fatal("a batch", stage_name, len(records), guard)
            metrics.BATCH_SECONDS.labels(stage_name).observe(time.perf_counter() - started)

    idle = getattr(stage, "idle", None)
    if idle is not None:
        # The periodic work of a stage (reminders, answers read from a second topic, holds
        # ending, time-based checkpoints) runs when messages do not come; each stage's
        # `idle` limits its own rate, as under the librdkafka loop.
        @app.timer(interval=max(within, 0.05))  # type: ignore[untyped-decorator]  # faust's
        async def quiet_work() -> None:
            if busy.locked():
                return  # a batch is being processed; the stage does its idle work after it
            async with busy:
                try:
                    await asyncio.to_thread(under_load.run)
                except Exception:
                    _fatal("idle work", stage_name)

    return app


def run_faust(
    settings: Settings,
    stage_name: str,
    stage: Stage,
    loglevel: str,
    watchdog: Watchdog | None = None,
) -> None:
    app = build_app(settings, stage_name, stage, watchdog)
    worker = faust.Worker(
        app, loglevel=loglevel, quiet=True, redirect_stdouts=False, override_logging=True
    )
    worker.execute_from_commandline()


def run_confluent(
    settings: Settings, stage_name: str, stage: Stage, watchdog: Watchdog | None = None
) -> None:
    """The same contract as the faust agent, on librdkafka's consumer: take a batch, process
    it, commit its offsets, and on SIGTERM finish the batch in hand, commit and leave."""
    from confluent_kafka import Consumer, TopicPartition

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    topic = settings.topic(STAGES[stage_name].source)
    # A worker slot the supervisor names is a static member of its group (KIP-345): started
    # again after a crash, it takes its partitions back at once, instead of waiting for the
    # dead member's session to time out and the group to rebalance.
    slot = os.environ.get("CENTRE_WORKER_SLOT")
    static = {"group.instance.id": f"{group_id(settings, stage_name)}.{slot}"} if slot else {}
    # A fatal client error (a static member fenced after the broker restarted, for one) leaves
    # a consumer that never consumes again: the worker exits at once and is started again.
    fatal: list[str] = []  # read at the top of every round of the loop below

    def on_error(err: Any) -> None:
        if err.fatal():
            fatal.append(err.str())

    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap,
            "group.id": group_id(settings, stage_name),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # A static member that dies is replaced at once by its restart, so the session
            # only has to outlast what a live worker may not answer for: a broker paused or
            # restarted (a session that expires then gets the member fenced, a fatal error).
            "session.timeout.ms": 30000 if static else 10000,
            "heartbeat.interval.ms": 1000,
            "max.poll.interval.ms": 300000,
            "partition.assignment.strategy": "cooperative-sticky",
            # Fewer, fuller fetches: under load a fetch per few messages costs the broker more
            # CPU than all the stages' work; when idle a message waits at most 50 ms for company.
            "fetch.wait.max.ms": 50,
            "fetch.min.bytes": 65536,
            "queued.min.messages": stage_batch_size(settings, stage) * 4,
            "logger": log,
            "error_cb": on_error,
            **static,
            **getattr(stage, "consumer_options", {}),
        }
    )
    consumer.subscribe([topic])
    batch_size = stage_batch_size(settings, stage)
    under_load = _IdleUnderLoad(stage)
    # One batch's finish (broker acknowledgements, database record) runs here while the next
    # batch is processed; its offsets are committed once it is done. Never more than one.
    finisher = ThreadPoolExecutor(1, thread_name_prefix=f"{stage_name}-finish")
    pending: tuple[Future[None], list[TopicPartition], int] | None = None
    guard = poison_guard(settings, stage_name)
    watch = watchdog or Watchdog(settings, stage_name)
    watch.armed = True
    assignment_seen = 0.0

    def offsets_of(records: list[Record]) -> list[TopicPartition]:
        last: dict[int, int] = {}
        for r in records:
            last[r.partition] = max(last.get(r.partition, -1), r.offset)
        return [TopicPartition(topic, p, o + 1) for p, o in last.items()]

    def settle() -> None:
        nonlocal pending
        if pending is None:
            return
        done, offsets, token = pending
        pending = None
        try:
            done.result()
        except Exception:
            _fatal("a batch's finish", stage_name, guard=guard)
        guard.end(token)
        consumer.commit(offsets=offsets, asynchronous=True)

    def idle_work() -> None:
        settle()  # periodic work sees every batch before it finished
        try:
            under_load.run()
        except Exception:
            _fatal("idle work", stage_name)

    try:
        while not stop.is_set():
            if fatal:
                guard.excuse()  # the client failed, not the messages in flight
                log.error(
                    "stage %s: the Kafka client failed for good (%s); exiting so that "
                    "the worker is started again",
                    stage_name,
                    fatal[0],
                )
                logging.shutdown()
                os._exit(71)
            # Wait for the first message only, then take whatever else is already fetched: at
            # low load a report does not wait for a batch to fill, and under load the batch
            # is whatever queued up while the previous one was being processed.
            first = consumer.poll(settings.batch_within_s)
            if time.monotonic() - assignment_seen > 1.0:  # for the watchdog's judgement
                assignment_seen = time.monotonic()
                watch.assigned = {tp.partition for tp in consumer.assignment()}
            if first is None:
                idle_work()  # the stage's own rate limit applies
                continue
            msgs = [first] + consumer.consume(batch_size - 1, timeout=0)
            # A consumer hands its errors back as messages (error_cb sees the producer's).
            errors = [e for e in (m_.error() for m_ in msgs) if e is not None]
            fatal += [e.str() for e in errors if e.fatal()]
            records = [
                Record(
                    *position(msg),
                    msg.key(),
                    msg.value(),
                    _headers(msg.headers()),
                    msg.timestamp()[1] / 1000.0,
                )
                for msg in msgs
                if msg.error() is None
            ]
            if not records:
                continue
            watch.consumed()
            if guard.any_suspect(records):
                # What was in flight when the worker died: found out one by one, alone.
                settle()
                take_suspects(
                    stage,
                    guard,
                    records,
                    lambda recs: consumer.commit(offsets=offsets_of(recs), asynchronous=True),
                    stage_name,
                )
                continue
            started = time.perf_counter()
            token = guard.begin(records)
            watch.busy_since = time.monotonic()
            try:
                finish = stage.process(records)
            except Exception:
                _fatal("a batch", stage_name, len(records), guard)  # nothing of it committed
            watch.busy_since = None
            metrics.BATCH_SECONDS.labels(stage_name).observe(time.perf_counter() - started)
            settle()  # the batch before: its finish ran while this one was processed
            offsets = offsets_of(records)
            if finish is None:
                guard.end(token)
                consumer.commit(offsets=offsets, asynchronous=True)
            else:
                pending = (finisher.submit(finish), offsets, token)
            if under_load.due():
                idle_work()
    finally:
        settle()
        finisher.shutdown(wait=True)
        consumer.close()  # commits nothing more; leaves the group so partitions move at once


def _settle_heap() -> None:
    """Once a stage is loaded, its long-lived objects (modules, geolocation data, indexes)
    leave the cyclic garbage collector's view, and young collections come every 50,000
    allocations instead of 700. A batch allocates its messages' objects and keeps them to
    the end; at the default threshold the collector walked them again and again, which cost
    routing a fifth of its time (`centre bench routing`: 3,800 → 4,900 cases/s)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def run_worker(settings: Settings, stage_name: str, loglevel: str = "warn") -> None:
    """Run one stage until SIGTERM/SIGINT (blocks)."""
    if stage_name not in STAGES:
        raise SystemExit(f"unknown stage {stage_name!r}; stages are {', '.join(STAGES)}")
    # An abort or a crash inside a C library (librdkafka's assertions) cannot be caught; its
    # Python stack goes to the worker's log, the supervisor restarts it, and the messages in
    # flight become suspects (centre/poison.py).
    faulthandler.enable()
    metrics.serve(settings.metrics_port, stage_name)
    watchdog = Watchdog(settings, stage_name)
    watchdog.start()  # beats while the stage loads (indexes may take a while)
    stage = load_stage(stage_name, settings)
    _settle_heap()
    # A stage off the reports' critical path (the audit writer) yields the CPU to those on it:
    # it only has to keep up on average, while a P1 report waits for every core it shares.
    if getattr(stage, "niceness", 0):
        os.nice(int(stage.niceness))  # type: ignore[attr-defined]
    print(
        f"worker {stage_name} pid={os.getpid()} runtime={settings.runtime} consuming "
        f"{settings.topic(STAGES[stage_name].source)}",
        file=sys.stderr,
        flush=True,
    )
    try:
        if settings.runtime == "faust":
            run_faust(settings, stage_name, stage, loglevel, watchdog)
        else:
            run_confluent(settings, stage_name, stage, watchdog)
    finally:
        stage.close()
