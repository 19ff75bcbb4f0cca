"""The faust shell around a stage: consume a batch, hand it to the stage, acknowledge after.

A stage is plain code: `process(records)` makes every decision, writes the database in one
transaction, sends its outputs and flushes them. Only then does faust acknowledge the batch
(`take_events` acks after the loop body). faust's known faults shape this: concurrency stays
1, because with more it can commit past unfinished messages; and a failing batch stops the
worker process (a supervisor restarts it) instead of letting faust restart the agent past
messages it never finished, which would lose them until the next rebalance.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Protocol

import faust

from centre import metrics
from centre.settings import Settings
from centre.topology import STAGES

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


class Stage(Protocol):
    name: str

    def process(self, records: list[Record]) -> None: ...

    def close(self) -> None: ...


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
        f"{settings.topic_prefix}centre-{stage_name}",
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
        stream_buffer_maxsize=settings.batch_size * 4,
        datadir=str(datadir),
    )
    source = app.topic(settings.topic(spec.source), key_type=bytes, value_type=bytes)
    batch, within = settings.batch_size, settings.batch_within_s

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
                await asyncio.to_thread(stage.process, records)
            except Exception:
                # Nothing of this batch is acknowledged; the restarted worker reads it again.
                log.exception("stage %s failed on a batch of %d; stopping the worker",
                              stage_name, len(records))
                logging.shutdown()
                os._exit(70)
            metrics.BATCH_SECONDS.labels(stage_name).observe(time.perf_counter() - started)

    return app


def run_worker(settings: Settings, stage_name: str, loglevel: str = "warn") -> None:
    """Run one stage until SIGTERM/SIGINT (blocks)."""
    if stage_name not in STAGES:
        raise SystemExit(f"unknown stage {stage_name!r}; stages are {', '.join(STAGES)}")
    metrics.serve(settings.metrics_port, stage_name)
    stage = load_stage(stage_name, settings)
    app = build_app(settings, stage_name, stage)
    metrics.start_lag_probe(settings, stage_name)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False,
                          override_logging=True)
    print(f"worker {stage_name} pid={os.getpid()} consuming "
          f"{settings.topic(STAGES[stage_name].source)}", file=sys.stderr, flush=True)
    try:
        worker.execute_from_commandline()
    finally:
        stage.close()

