"""Workers' SQLite engines leave checkpoints to a thread of their own, never to a commit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import text

from centre.db import make_engine
from centre.sqlite import Checkpointer
from tests.integration.helpers import wait_for


def _holder(path: Path) -> sqlite3.Connection:
    """A connection kept open, as the other workers' are: the last connection to close
    would checkpoint and remove the log."""
    c = sqlite3.connect(path)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, b BLOB)")
    c.commit()
    c.execute("SELECT count(*) FROM t").fetchall()  # attached to the log's index
    return c


def _fill(path: Path, rows: int) -> None:
    engine = make_engine(f"sqlite:///{path}", background_checkpoint=True)
    try:
        with engine.begin() as c:
            assert c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
            c.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, b BLOB)"))
        for _ in range(rows // 100):
            with engine.begin() as c:
                c.execute(text("INSERT INTO t (b) VALUES (randomblob(4000))"), [{}] * 100)
    finally:
        engine.dispose()  # stops the engine's own checkpointer (8 MB: not reached here)


def test_commits_do_not_checkpoint_and_the_thread_does(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    holder = _holder(db)
    _fill(db, 1500)  # ~6 MB of log, more than SQLite's own 1,000-page threshold
    wal = Path(f"{db}-wal")
    assert wal.stat().st_size > 5_000_000
    assert db.stat().st_size < 100_000, "a commit copied the log back itself"

    cp = Checkpointer(str(db), every_s=0.05, min_bytes=1 << 20)
    try:
        wait_for(
            "the log copied into the database file",
            lambda: db.stat().st_size > 5_000_000,
            timeout=30,
        )
    finally:
        cp.stop()
        holder.close()
    assert not cp._thread.is_alive()


def test_small_log_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    holder = _holder(db)
    _fill(db, 100)
    size = db.stat().st_size
    cp = Checkpointer(str(db), every_s=0.01, min_bytes=64 << 20)
    try:
        # Many rounds pass; none of them checkpoints a log below the threshold.
        wait_for("rounds of the checkpointer", lambda: cp._rounds >= 20, timeout=30)
    finally:
        cp.stop()
    assert db.stat().st_size == size
    holder.close()


def test_a_long_log_is_started_again_from_its_beginning(tmp_path: Path) -> None:
    """PASSIVE checkpoints alone leave a log that writers keep appending to; past
    `restart_frames` the thread checkpoints RESTART, and the next commit writes from the
    log's start: the file stops growing while the writes go on."""
    db = tmp_path / "r.db"
    holder = _holder(db)
    # A worker's engine: its commits never checkpoint (its own thread restarts past 20,000
    # frames, more than this test writes).
    engine = make_engine(f"sqlite:///{db}", background_checkpoint=True)
    wal = Path(f"{db}-wal")
    cp = Checkpointer(str(db), every_s=0.02, min_bytes=1 << 20, restart_frames=500)
    sizes = []
    try:
        for _ in range(60):  # ~24 MB written in all, 400 KB a commit
            with engine.begin() as c:
                c.execute(text("INSERT INTO t (b) VALUES (randomblob(4000))"), [{}] * 100)
            sizes.append(wal.stat().st_size)
        wait_for("a RESTART checkpoint", lambda: cp.restarts >= 1, timeout=30)
        with engine.begin() as c:  # written from the log's start, after the restart
            c.execute(text("INSERT INTO t (b) VALUES (randomblob(4000))"), [{}] * 100)
    finally:
        cp.stop()
        engine.dispose()
    frames = holder.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    holder.close()
    assert max(sizes) < 20_000_000, "the log grew with every write: never started again"
    assert frames < 2000


def test_a_reader_of_an_old_snapshot_makes_it_back_off(tmp_path: Path) -> None:
    """While a reader keeps an old snapshot, a RESTART cannot finish; the thread gives up
    after its short wait and tries again only after `restart_backoff_s`, so writers are not
    held up at every round."""
    db = tmp_path / "b.db"
    holder = _holder(db)
    engine = make_engine(f"sqlite:///{db}", background_checkpoint=True)
    reader = sqlite3.connect(db, isolation_level=None)
    cp = None
    try:
        with engine.begin() as c:
            c.execute(text("INSERT INTO t (b) VALUES (randomblob(4000))"), [{}] * 100)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchall()  # holds this snapshot
        for _ in range(30):  # ~12 MB after the reader's snapshot
            with engine.begin() as c:
                c.execute(text("INSERT INTO t (b) VALUES (randomblob(4000))"), [{}] * 100)
        cp = Checkpointer(
            str(db), every_s=0.02, min_bytes=1 << 20, restart_frames=500, restart_backoff_s=60
        )
        wait_for("a RESTART tried", lambda: cp is not None and cp.restart_attempts >= 1, timeout=30)
        rounds = cp._rounds
        wait_for("more rounds", lambda: cp is not None and cp._rounds >= rounds + 20, timeout=30)
        assert cp.restarts == 0 and cp.restart_attempts == 1
    finally:
        if cp is not None:
            cp.stop()
        reader.close()
        engine.dispose()
        holder.close()
