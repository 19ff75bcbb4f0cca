"""A worker's own liveness (`Watchdog`): it beats a file the supervisor watches, measures the
stage's consumer lag, and ends a worker that is stuck (exit code 75)."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from centre import metrics
from centre.settings import Settings
from centre.topology import STAGES

log = logging.getLogger("centre.runtime")


class Watchdog:
    """A worker's own liveness. It beats every 2 s: touches the file CENTRE_LIVENESS_FILE
    names, which the supervisor watches (a worker frozen so hard that it stops beating is
    killed and started again); and every few seconds it measures the stage's consumer lag
    (the lag metric). A worker whose input waits while it consumes nothing for
    `stuck_after_s` (for example one that never rejoined its group after the broker paused)
    is stuck: it says so and exits with code 75, and its supervisor starts it again.

    Whose input: the lag on the partitions assigned to this worker; with none assigned (or
    not known, under faust), the group's lag while the group's committed offsets stand still,
    so that a worker with nothing to do beside busy peers is not taken for stuck."""

    def __init__(self, settings: Settings, stage_name: str, every: float = 5.0) -> None:
        self.settings, self.stage_name, self.every = settings, stage_name, every
        beat = os.environ.get("CENTRE_LIVENESS_FILE")
        self.beat_path = Path(beat) if beat else None
        self.consumed_at = time.monotonic()
        self.busy_since: float | None = None
        self.assigned: set[int] | None = None
        self.armed = False  # judged only once the stage consumes
        self._stalled_since: float | None = None
        self._last_committed: int | None = None

    def start(self) -> None:
        self.beat()
        threading.Thread(
            target=self._beat_loop, name=f"beat-{self.stage_name}", daemon=True
        ).start()
        threading.Thread(target=self._run, name=f"watchdog-{self.stage_name}", daemon=True).start()

    def _beat_loop(self) -> None:
        # On a thread of its own: a probe waiting on an absent broker must not look like a
        # frozen worker. Only a process that runs no Python any more stops beating.
        while True:
            time.sleep(2.0)
            self.beat()

    def beat(self) -> None:
        if self.beat_path is not None:
            try:
                self.beat_path.touch()
            except OSError as exc:
                log.warning("cannot beat on %s: %s", self.beat_path, exc)

    def consumed(self) -> None:
        self.consumed_at = time.monotonic()

    def _run(self) -> None:
        consumer = metrics.lag_reader(self.settings, self.stage_name)
        topic = self.settings.topic(STAGES[self.stage_name].source)
        while True:
            try:
                offsets: dict[int, tuple[int, int]] | None = metrics.group_offsets(consumer, topic)
            except Exception as exc:  # the broker away: nothing to judge by
                log.debug("lag probe: %s", exc)
                offsets = None
            if offsets is not None:
                metrics.CONSUMER_LAG.labels(self.stage_name).set(
                    sum(max(0, hi - max(c, 0)) for c, hi in offsets.values())
                )
            if self.stuck(offsets, time.monotonic()):
                log.error(
                    "worker %s is stuck: its input has waited %.0fs and it consumed "
                    "nothing; exiting so that it is started again",
                    self.stage_name,
                    self.settings.stuck_after_s,
                )
                logging.shutdown()
                os._exit(75)
            time.sleep(self.every)

    def stuck(self, offsets: dict[int, tuple[int, int]] | None, now: float) -> bool:
        """One round of the judgement (pure but for the state it keeps)."""
        if offsets is None or not self.armed:
            self._stalled_since = None
            return False
        committed = sum(max(c, 0) for c, _hi in offsets.values())
        progressing = self._last_committed is not None and committed != self._last_committed
        self._last_committed = committed
        lag = {p: max(0, hi - max(c, 0)) for p, (c, hi) in offsets.items()}
        assigned = self.assigned
        waiting = (
            sum(lag.get(p, 0) for p in assigned)
            if assigned
            else (0 if progressing else sum(lag.values()))
        )
        busy = (
            self.busy_since is not None and now - self.busy_since < 5 * self.settings.stuck_after_s
        )
        idle = now - self.consumed_at >= self.every and not busy
        if waiting > 0 and idle:
            self._stalled_since = self._stalled_since or now
        else:
            self._stalled_since = None
        return (
            self._stalled_since is not None
            and now - self._stalled_since >= self.settings.stuck_after_s
        )
