"""The whole local stack in one object: broker (unless a cluster is configured), keys,
database schema, topics, and one supervised worker process per stage.

Used by `centre up`, `centre demo`, `centre bench` and the integration tests, so that all of
them exercise the same start-up path.

The supervisor outlives what it supervises. It holds no Kafka client (its questions to the
broker are asked by child processes, `centre.isolated`), and once a second it restarts, and
says so on stderr: a worker that exited (with back-off while it keeps exiting), a worker whose
liveness file stopped beating (frozen: killed first), and the local broker if it died.
A worker also ends itself when stuck (`centre.runtime.Watchdog`, exit code 75).
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

from centre import db, isolated, kafka, metrics
from centre.broker import LocalBroker
from centre.keys import KeySet
from centre.settings import Settings
from centre.topology import STAGES, group_id

log = logging.getLogger(__name__)


# A worker that ran this long since its last start is healthy again: its next exit is
# restarted at once instead of after the back-off its earlier exits earned.
HEALTHY_AFTER_S = 60.0
# A worker starts beating once its imports are done: until then it is not taken for frozen.
START_GRACE_S = 120.0
# Exit codes a worker uses for what it found (centre/runtime.py).
_EXIT_CAUSES = {
    70: "a batch failed",
    71: "its Kafka client failed",
    75: "stuck",
    -9: "killed",
    -6: "aborted",
    -11: "crashed (segmentation fault)",
    -15: "terminated",
}


@dataclass
class WorkerProcess:
    stage: str
    settings: Settings
    log_path: Path
    slot: int = 0
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0  # exits in a row without a healthy run between them
    started_at: float = 0.0
    restart_at: float | None = None  # when the supervisor starts it again after an exit

    @property
    def liveness_file(self) -> Path:
        return self.settings.home / "run" / f"{self.stage}-{self.slot}.alive"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.liveness_file.parent.mkdir(parents=True, exist_ok=True)
        self.liveness_file.unlink(missing_ok=True)
        env = {
            **self.settings.child_env(),
            "CENTRE_WORKER_SLOT": str(self.slot),
            "CENTRE_LIVENESS_FILE": str(self.liveness_file),
        }
        out = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "centre.worker", self.stage],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our SIGTERM, not the terminal's SIGINT, stops it in order
        )
        out.close()
        self.started_at = time.monotonic()
        self.restart_at = None

    def silent_for(self, now_wall: float) -> float:
        """Seconds since the worker last beat; before its first beat, the time since it was
        started less START_GRACE_S (Python and the stage's imports come first)."""
        try:
            return now_wall - self.liveness_file.stat().st_mtime
        except OSError:
            return time.monotonic() - self.started_at - START_GRACE_S

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
        """SIGKILL, as a crash would; used by the tests and the supervisor."""
        p = self.process  # the supervisor may put a new process in its place meanwhile
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()


@dataclass
class Stack:
    settings: Settings
    stages: tuple[str, ...] = tuple(STAGES)
    broker: LocalBroker | None = None
    workers: dict[str, WorkerProcess] = field(default_factory=dict)
    supervise: bool = True
    exits: dict[str, int] = field(default_factory=dict)  # seen by the supervisor, per stage
    _stopping: threading.Event = field(default_factory=threading.Event)
    _supervisor: threading.Thread | None = None

    def start(self, ready_timeout: float = 120.0) -> None:
        s = self.settings
        s.home.mkdir(parents=True, exist_ok=True)
        KeySet.init(s.keys_dir)
        if s.kafka_bootstrap is None:
            self.broker = LocalBroker(s.kafka_dir, port=s.local_kafka_port, partitions=s.partitions)
            self.broker.start()
        try:
            db.upgrade(s.database_url)
            isolated.call(kafka.ensure_static_topics, s, timeout=120)
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
        groups = [self.group(st) for st in self.stages]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for w in self.workers.values():
                if not w.alive():
                    raise RuntimeError(f"worker {w.stage} exited while starting; see {w.log_path}")
            window = max(0.5, min(5.0, deadline - time.monotonic()))
            try:
                if isolated.call(groups_stable, self.settings, groups, window, timeout=window + 30):
                    return
            except (isolated.ChildDied, TimeoutError) as exc:
                log.debug("waiting for workers: %s", exc)
        raise TimeoutError(
            f"workers not ready within {timeout:.0f}s; see {self.settings.home}/logs"
        )

    def group(self, stage: str) -> str:
        return group_id(self.settings, stage)

    def wait_caught_up(self, timeout: float) -> None:
        """Until every worker has committed all of its source topic (a backlog is worked
        off), or TimeoutError. Asked from a child process, as every broker question here."""
        isolated.call(caught_up, self.settings, list(self.workers), timeout, timeout=timeout + 60)

    def _say(self, text: str) -> None:
        print(f"supervisor: {text}", file=sys.stderr, flush=True)

    def _watch(self) -> None:
        """Once a second: restart what died or froze. Nothing here may end the thread."""
        while not self._stopping.wait(1.0):
            try:
                self._watch_once()
            except Exception:  # the supervisor outlives its own mistakes too
                log.exception("supervisor round failed")

    def _watch_once(self) -> None:
        now = time.monotonic()
        if (
            self.broker is not None
            and self.broker.process is not None
            and self.broker.process.poll() is not None
            and not self._stopping.is_set()
        ):
            code = self.broker.process.returncode
            self.exits["broker"] = self.exits.get("broker", 0) + 1
            self._say(f"the local broker exited with code {code}; starting it again")
            self.broker.process = None
            began = time.monotonic()
            try:
                self.broker.start()
                self._say(
                    f"the local broker answers again after {time.monotonic() - began:.1f}s"
                    f" (pid {self.broker.process.pid if self.broker.process else '?'})"
                )
            except Exception as exc:
                self._say(f"the local broker did not start again ({exc}); trying again")
        for w in list(self.workers.values()):
            if self._stopping.is_set() or w.process is None:
                continue
            if w.alive():
                if now - w.started_at >= HEALTHY_AFTER_S:
                    w.restarts = 0
                silent = w.silent_for(time.time())
                if silent > self.settings.stuck_after_s:
                    self._say(
                        f"worker {w.stage} (pid {w.pid}) has not beaten for {silent:.0f}s; "
                        "killing it"
                    )
                    w.kill()
                continue
            if w.restart_at is None:
                code = w.process.returncode
                self.exits[w.stage] = self.exits.get(w.stage, 0) + 1
                metrics.RESTARTS.labels(w.stage, _EXIT_CAUSES.get(code, "exited")).inc()
                delay = 0.0 if w.restarts == 0 else min(30.0, 0.5 * 2 ** min(w.restarts, 6))
                w.restarts += 1
                w.restart_at = now + delay
                self._say(
                    f"worker {w.stage} (pid {w.pid}) exited with code {code} "
                    f"({_EXIT_CAUSES.get(code, 'exited')}); restarting "
                    f"{'now' if not delay else f'in {delay:.1f}s'} (restart {w.restarts} "
                    f"in a row); log: {w.log_path}"
                )
            if now >= w.restart_at:
                w.start()
                self._say(f"worker {w.stage} restarted (pid {w.pid})")

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

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def groups_stable(settings: Settings, groups: list[str], seconds: float) -> bool:
    """Whether every group is stable with a member within `seconds` (run in a child)."""
    from confluent_kafka import ConsumerGroupState

    client = kafka.admin(settings)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            futures = client.describe_consumer_groups(groups, request_timeout=5)
            states = [f.result() for f in futures.values()]
            if all(g.state == ConsumerGroupState.STABLE and g.members for g in states):
                return True
        except Exception as exc:
            log.debug("waiting for workers: %s", exc)
        time.sleep(0.25)
    return False


def caught_up(settings: Settings, stages: list[str], timeout: float) -> None:
    """Until every stage's group has committed all of its source topic (run in a child)."""
    from centre.metrics import group_lag, lag_reader

    consumers = {st: lag_reader(settings, st) for st in stages}
    deadline = time.monotonic() + timeout
    try:
        while True:
            lags = {
                st: group_lag(c, settings.topic(STAGES[st].source)) for st, c in consumers.items()
            }
            if not any(lags.values()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers still behind after {timeout:.0f}s: {lags}")
            time.sleep(0.2)
    finally:
        for c in consumers.values():
            c.close()


def pids(stack: Stack) -> dict[str, int | None]:
    out = {st: w.pid for st, w in stack.workers.items()}
    if stack.broker and stack.broker.process:
        out["broker"] = stack.broker.process.pid
    return out
