"""The whole local stack in one object: broker (unless a cluster is configured), keys,
database schema, topics, and one supervised worker process per stage.

Used by `centre up`, `centre demo`, `centre bench` and the integration tests, so that all of
them exercise the same start-up path.
"""

from __future__ import annotations

import gc
import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from centre import db, kafka
from centre.broker import LocalBroker
from centre.keys import KeySet
from centre.settings import Settings
from centre.topology import STAGES, group_id

log = logging.getLogger(__name__)


@dataclass
class WorkerProcess:
    stage: str
    settings: Settings
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "centre", "worker", self.stage],
            env=self.settings.child_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # our SIGTERM, not the terminal's SIGINT, stops it in order
        )
        out.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        p = self.process
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash would; used by the tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@dataclass
class Stack:
    settings: Settings
    stages: tuple[str, ...] = tuple(STAGES)
    broker: LocalBroker | None = None
    workers: dict[str, WorkerProcess] = field(default_factory=dict)
    supervise: bool = True
    _stopping: threading.Event = field(default_factory=threading.Event)
    _supervisor: threading.Thread | None = None

    def start(self, ready_timeout: float = 120.0) -> None:
        s = self.settings
        s.home.mkdir(parents=True, exist_ok=True)
        KeySet.init(s.keys_dir)
        if s.kafka_bootstrap is None:
            self.broker = LocalBroker(s.kafka_dir, port=s.local_kafka_port,
                                      partitions=s.partitions)
            self.broker.start()
        try:
            db.upgrade(s.database_url)
            kafka.ensure_static_topics(s)
            for stage in self.stages:
                w = WorkerProcess(stage, s, s.home / "logs" / f"worker-{stage}.log")
                w.start()
                self.workers[stage] = w
            self.wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise
        if self.supervise:
            self._supervisor = threading.Thread(target=self._watch, name="supervisor", daemon=True)
            self._supervisor.start()

    def wait_ready(self, timeout: float) -> None:
        """Ready when every stage's consumer group is stable with a member: reports flow."""
        client = AdminClient(kafka.base_config(self.settings))
        groups = [self.group(st) for st in self.stages]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for w in self.workers.values():
                if not w.alive():
                    raise RuntimeError(f"worker {w.stage} exited while starting; see {w.log_path}")
            try:
                futures = client.describe_consumer_groups(groups, request_timeout=5)
                states = [f.result() for f in futures.values()]
                if all(g.state == ConsumerGroupState.STABLE and g.members for g in states):
                    return
            except Exception as exc:
                log.debug("waiting for workers: %s", exc)
            time.sleep(0.25)
        raise TimeoutError(f"workers not ready within {timeout:.0f}s; see {self.settings.home}/logs")

    def group(self, stage: str) -> str:
        return group_id(self.settings, stage)

    def wait_caught_up(self, timeout: float) -> None:
        """Until every worker has committed all of its source topic (a backlog is worked
        off), or TimeoutError."""
        from centre.metrics import group_lag, lag_reader

        consumers = {st: lag_reader(self.settings, st) for st in self.workers}
        deadline = time.monotonic() + timeout
        try:
            while True:
                lags = {st: group_lag(c, self.settings.topic(STAGES[st].source))
                        for st, c in consumers.items()}
                if not any(lags.values()):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"workers still behind after {timeout:.0f}s: {lags}")
                time.sleep(0.2)
        finally:
            for c in consumers.values():
                c.close()

    def _watch(self) -> None:
        """Restart a worker that died (a crash, or a failing batch): it resumes where it was."""
        while not self._stopping.wait(1.0):
            for w in list(self.workers.values()):
                if w.process is not None and not w.alive() and not self._stopping.is_set():
                    code = w.process.returncode
                    w.restarts += 1
                    print(f"worker {w.stage} exited with {code}; restarting "
                          f"(restart {w.restarts}); log: {w.log_path}", file=sys.stderr, flush=True)
                    time.sleep(min(30.0, 0.5 * 2 ** min(w.restarts, 6)))
                    if not self._stopping.is_set():
                        w.start()

    def stop(self) -> None:
        self._stopping.set()
        for w in self.workers.values():
            w.stop()
        # Kafka clients left for the garbage collector would be destroyed after the broker is
        # gone, and librdkafka's destroy then waits for it: collect them while it is up.
        gc.collect()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> "Stack":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pids(stack: Stack) -> dict[str, int | None]:
    out = {st: w.pid for st, w in stack.workers.items()}
    if stack.broker and stack.broker.process:
        out["broker"] = stack.broker.process.pid
    return out
