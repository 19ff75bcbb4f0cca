"""The faust shell around a stage: consume a batch, hand it to the stage, acknowledge after.

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
import gc
import importlib
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, NoReturn, Optional, Protocol

import faust

from centre import metrics
from centre.settings import Settings
from centre.topology import STAGES, group_id

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed message, independent of the client library that read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp: float


Finish = Callable[[], None]


class Stage(Protocol):
    name: str

    def process(self, records: list[Record]) -> Optional[Finish]: ...

    def close(self) -> None: ...


class StageBase:
    """What every stage holds: its settings, the database, and the producer of its outputs."""

    name = ""
    producer_options: dict[str, object] = {}  # librdkafka settings of its producer
    consumer_options: dict[str, object] = {}  # librdkafka settings of its source's consumer

    def __init__(self, settings: Settings) -> None:
        from centre.db import make_engine, make_sessionmaker
        from centre.kafka import BatchProducer

        self.settings = settings
        self.engine = make_engine(settings.database_url, background_checkpoint=True)
        self.sessions = make_sessionmaker(self.engine)
        self.producer = BatchProducer(settings, **self.producer_options)

    def close(self) -> None:
        self.producer.close()
        self.engine.dispose()


# The consumer of a stage whose source sees a few messages a minute (complaints, victims'
# requests): the broker answers its fetch as soon as one message is there, and holds an empty
# one for 500 ms: two requests a second while quiet instead of the hot stages' twenty.
QUIET_SOURCE: dict[str, object] = {"fetch.min.bytes": 1, "fetch.wait.max.ms": 500}


def stage_batch_size(settings: Settings, stage: object) -> int:
    """At most this many messages per batch: CENTRE_BATCH_SIZE, times the stage's
    `batch_scale` (a stage whose cost is mostly per batch, not per message, takes more)."""
    return settings.batch_size * int(getattr(stage, "batch_scale", 1))


def _fatal(what: str, stage_name: str, n: int | None = None) -> NoReturn:
    """A batch that failed is not acknowledged: the worker stops and the restarted one reads
    it again (faust would restart the agent past it)."""
    if n is None:
        log.exception("stage %s failed in %s; stopping the worker", stage_name, what)
    else:
        log.exception("stage %s failed on a batch of %d; stopping the worker", stage_name, n)
    logging.shutdown()
    os._exit(70)


class _IdleUnderLoad:
    """A stage's periodic work (`idle`) also runs between batches when messages never stop
    coming, at most every `stage.idle_under_load_s` seconds (stages without it: only when
    quiet)."""

    def __init__(self, stage: Stage) -> None:
        self.idle = getattr(stage, "idle", None)
        self.every = getattr(stage, "idle_under_load_s", None)
        self.last = time.monotonic()

    def due(self) -> bool:
        return (self.idle is not None and self.every is not None
                and time.monotonic() - self.last >= self.every)

    def run(self) -> None:
        self.last = time.monotonic()
        if self.idle is not None:
            self.idle()


def process_now(stage: Stage, records: list[Record]) -> None:
    """Process a batch completely (its `finish` too), in the calling thread."""
    finish = stage.process(records)
    if finish is not None:
        finish()


def load_stage(name: str, settings: Settings) -> Stage:
    spec = STAGES[name]
    module_name, cls_name = spec.factory.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    stage: Stage = cls(settings)
    return stage


def _headers(raw: object) -> dict[str, bytes]:
    if not raw:
        return {}
    items = raw.items() if isinstance(raw, dict) else raw
    out: dict[str, bytes] = {}
    for k, v in items:  # type: ignore[union-attr]
        key = k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
        out[key] = v if isinstance(v, bytes) else str(v).encode()
    return out


def build_app(settings: Settings, stage_name: str, stage: Stage) -> faust.App:
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

    def one_batch(records: list[Record]) -> None:
        process_now(stage, records)
        if under_load.due():
            under_load.run()

    @app.agent(source, name=f"centre.{stage_name}", concurrency=1)
    async def consume(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch, within=within):
            records = [
                Record(e.message.topic, e.message.partition, e.message.offset, e.message.key,
                       e.message.value, _headers(e.message.headers), e.message.timestamp)
                for e in events
            ]
            started = time.perf_counter()
            try:
                async with busy:
                    await asyncio.to_thread(one_batch, records)
            except Exception:
                # Nothing of this batch is acknowledged; the restarted worker reads it again.
                _fatal("a batch", stage_name, len(records))
            metrics.BATCH_SECONDS.labels(stage_name).observe(time.perf_counter() - started)

    idle = getattr(stage, "idle", None)
    if idle is not None:
        # The periodic work of a stage (reminders, answers read from a second topic, holds
        # ending, time-based checkpoints) runs when messages do not come; each stage's
        # `idle` limits its own rate, as under the librdkafka loop.
        @app.timer(interval=max(within, 0.05))
        async def quiet_work() -> None:
            if busy.locked():
                return  # a batch is being processed; the stage does its idle work after it
            async with busy:
                try:
                    await asyncio.to_thread(under_load.run)
                except Exception:
                    _fatal("idle work", stage_name)

    return app


def run_faust(settings: Settings, stage_name: str, stage: Stage, loglevel: str) -> None:
    app = build_app(settings, stage_name, stage)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False,
                          override_logging=True)
    worker.execute_from_commandline()


def run_confluent(settings: Settings, stage_name: str, stage: Stage) -> None:
    """The same contract as the faust agent, on librdkafka's consumer: take a batch, process
    it, commit its offsets, and on SIGTERM finish the batch in hand, commit and leave."""
    from confluent_kafka import Consumer, TopicPartition

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    topic = settings.topic(STAGES[stage_name].source)
    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap,
        "group.id": group_id(settings, stage_name),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "max.poll.interval.ms": 300000,
        "partition.assignment.strategy": "cooperative-sticky",
        # Fewer, fuller fetches: under load a fetch per few messages costs the broker more
        # CPU than all the stages' work; when idle a message waits at most 50 ms for company.
        "fetch.wait.max.ms": 50,
        "fetch.min.bytes": 65536,
        "queued.min.messages": stage_batch_size(settings, stage) * 4,
        "logger": log,
        **getattr(stage, "consumer_options", {}),
    })
    consumer.subscribe([topic])
    batch_size = stage_batch_size(settings, stage)
    under_load = _IdleUnderLoad(stage)
    # One batch's finish (broker acknowledgements, database record) runs here while the next
    # batch is processed; its offsets are committed once it is done. Never more than one.
    finisher = ThreadPoolExecutor(1, thread_name_prefix=f"{stage_name}-finish")
    pending: tuple[Future[None], list[TopicPartition]] | None = None

    def settle() -> None:
        nonlocal pending
        if pending is None:
            return
        done, offsets = pending
        pending = None
        try:
            done.result()
        except Exception:
            _fatal("a batch's finish", stage_name)
        consumer.commit(offsets=offsets, asynchronous=True)

    def idle_work() -> None:
        settle()  # periodic work sees every batch before it finished
        try:
            under_load.run()
        except Exception:
            _fatal("idle work", stage_name)

    try:
        while not stop.is_set():
            # Wait for the first message only, then take whatever else is already fetched: at
            # low load a report does not wait for a batch to fill, and under load the batch
            # is whatever queued up while the previous one was being processed.
            first = consumer.poll(settings.batch_within_s)
            if first is None:
                idle_work()  # the stage's own rate limit applies
                continue
            msgs = [first] + consumer.consume(batch_size - 1, timeout=0)
            records = [
                Record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                       _headers(msg.headers()), msg.timestamp()[1] / 1000.0)
                for msg in msgs if msg.error() is None
            ]
            if not records:
                continue
            started = time.perf_counter()
            try:
                finish = stage.process(records)
            except Exception:
                _fatal("a batch", stage_name, len(records))  # nothing of it is committed
            metrics.BATCH_SECONDS.labels(stage_name).observe(time.perf_counter() - started)
            settle()  # the batch before: its finish ran while this one was processed
            last: dict[int, int] = {}
            for r in records:
                last[r.partition] = max(last.get(r.partition, -1), r.offset)
            offsets = [TopicPartition(topic, p, o + 1) for p, o in last.items()]
            if finish is None:
                consumer.commit(offsets=offsets, asynchronous=True)
            else:
                pending = (finisher.submit(finish), offsets)
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
    metrics.serve(settings.metrics_port, stage_name)
    stage = load_stage(stage_name, settings)
    _settle_heap()
    # A stage off the reports' critical path (the audit writer) yields the CPU to those on it:
    # it only has to keep up on average, while a P1 report waits for every core it shares.
    if getattr(stage, "niceness", 0):
        os.nice(int(stage.niceness))  # type: ignore[attr-defined]
    metrics.start_lag_probe(settings, stage_name)
    print(f"worker {stage_name} pid={os.getpid()} runtime={settings.runtime} consuming "
          f"{settings.topic(STAGES[stage_name].source)}", file=sys.stderr, flush=True)
    try:
        if settings.runtime == "faust":
            run_faust(settings, stage_name, stage, loglevel)
        else:
            run_confluent(settings, stage_name, stage)
    finally:
        stage.close()
