"""SQLite as several processes' shared database: pragmas, one writer at a time queued on a
lock file ahead of SQLite's own busy loop (`WriterQueue`), and the write-ahead log copied back
by a thread of each long-running writer (`Checkpointer`) instead of by a commit.

Used by `centre.db.make_engine` for `sqlite:` URLs only; PostgreSQL needs none of it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from typing import Any

from centre.metrics import DB_WRITE_LOCK

log = logging.getLogger(__name__)


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the CLI read while workers write; NORMAL sync is durable across process crashes.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    # Lookups by random ids touch pages all over the file: keep them in memory, not re-read.
    cur.execute("PRAGMA cache_size=-65536")
    # Read through a mapping of up to 4 GB (address space, not memory): a worker's pages of
    # the file are not copied into its cache, which each commit of another connection
    # empties (triage reads on one connection while its second thread writes on another).
    cur.execute("PRAGMA mmap_size=4294967296")
    # A report's pages are written three times within a second (intake, triage, routing):
    # checkpointing every 40 MB of log instead of 4 MB copies each page back once, not thrice.
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def no_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


_LOCK_WAIT = DB_WRITE_LOCK.labels("wait")
_LOCK_HELD = DB_WRITE_LOCK.labels("held")


class WriterQueue(sqlite3.Connection):
    """An SQLite connection that queues for the database's single write lock in the kernel.

    SQLite lets one writer at a time; the others poll with sleeps that grow to 100 ms, so a
    worker waiting on another's commit oversleeps it, adding latency and idling a core. Here
    a connection takes an exclusive flock on `<db>.wlock` just before its first write and
    releases it right after commit or rollback: a waiter wakes the moment the lock is free.
    SQLite's own locking still guards correctness; the flock only orders the queue.
    """

    _lock_path: str | None = None
    _locked_at = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock_fd: int | None = None
        self._locked = False

    def take_write_lock(self) -> None:
        if self._locked or self._lock_path is None:
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        asked = time.perf_counter()
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._locked_at = time.perf_counter()
        self._locked = True
        _LOCK_WAIT.observe(self._locked_at - asked)

    def _release(self) -> None:
        if self._locked and self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            _LOCK_HELD.observe(time.perf_counter() - self._locked_at)
        self._locked = False

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def queue_for_writes(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    if statement.lstrip()[:7].upper().startswith(_WRITES):
        dbapi = conn.connection.dbapi_connection
        if isinstance(dbapi, WriterQueue):
            dbapi.take_write_lock()


class Checkpointer:
    """Copies an SQLite write-ahead log back into the database file from a thread of its own.

    Left to SQLite, the commit that fills the log to `wal_autocheckpoint` pages copies it back
    itself, tens of milliseconds while that worker still holds the database's one write
    lock, which every other writer is queued behind. A worker's connections do not
    checkpoint (`wal_autocheckpoint=0`); this thread does, PASSIVE (it never waits for or
    blocks a writer or reader), whenever the log has grown past `min_bytes`. Several workers
    may run one: only one checkpoints at a time, the others find it busy and skip.

    A PASSIVE checkpoint never starts the log again from its beginning: SQLite does that
    only when a writer finds every frame copied back, which under a steady load almost never
    happens. The log then grows for tens of seconds (600 MB at 1,000 reports/s), and every
    commit appends to new blocks of the file. So once the log holds more than
    `restart_frames` frames, the thread queues for the write lock as a writer does
    (`<db>.wlock`) and checkpoints RESTART: it copies the rest back, waits up to 100 ms for
    readers of older snapshots (writers wait meanwhile), and the next commit writes from the
    log's start, over blocks the file already has. A reader that keeps an old snapshot longer
    (a long export), or another worker's checkpoint, makes it give up, and it tries again
    `restart_backoff_s` later, not at every round (`centre bench`, 20,000 reports: P1 p99
    at 1,000/s went from 372–527 ms in five runs to 308–506, median 402, in seven)."""

    def __init__(
        self,
        path: str,
        every_s: float = 0.5,
        min_bytes: int = 8 << 20,
        restart_frames: int = 20_000,
        restart_backoff_s: float = 5.0,
    ) -> None:
        self.path, self.wal = path, f"{path}-wal"
        self.every_s, self.min_bytes, self.restart_frames = every_s, min_bytes, restart_frames
        self.restart_backoff_s = restart_backoff_s
        self._rounds = 0  # looks at the log so far
        self.restarts = self.restart_attempts = 0  # RESTART checkpoints done, tried
        self._restart_after = 0.0  # monotonic time before which none is tried
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.every_s):
                self._rounds += 1
                try:
                    if os.path.getsize(self.wal) < self.min_bytes:
                        continue
                    if conn is None:
                        conn = sqlite3.connect(self.path, timeout=0, check_same_thread=False)
                    _busy, frames, _copied = conn.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)"
                    ).fetchone()
                    if frames > self.restart_frames and time.monotonic() >= self._restart_after:
                        self._restart(conn)
                except (OSError, sqlite3.Error):
                    continue  # no log yet, or busy: the next round tries again
        finally:
            if conn is not None:
                conn.close()

    def _restart(self, conn: sqlite3.Connection) -> None:
        """A RESTART checkpoint, queued for the write lock like any writer's transaction."""
        self.restart_attempts += 1
        fd = os.open(f"{self.path}.wlock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            conn.execute("PRAGMA busy_timeout=100")
            try:
                busy, _frames, _copied = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            finally:
                conn.execute("PRAGMA busy_timeout=0")
            if busy:
                self._restart_after = time.monotonic() + self.restart_backoff_s
                log.warning(
                    "sqlite: the log could not be started again (a reader of an old "
                    "snapshot, or another worker's checkpoint); next try in %.0f s",
                    self.restart_backoff_s,
                )
            else:
                self.restarts += 1
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
