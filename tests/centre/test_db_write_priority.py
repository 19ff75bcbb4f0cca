"""The SQLite write queue: a priority writer (intake's engine) goes before writers that were
queued earlier, and a writer holding the lock is never made to give it up."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import text

from centre.db import make_engine


def _blocked_on(*files: Path) -> int:
    """Lock requests the kernel has queued behind a held lock on these files (lines with
    `->` in /proc/locks, whose device:inode field ends in one of theirs)."""
    inodes = {str(f.stat().st_ino) for f in files}
    return sum(1 for line in Path("/proc/locks").read_text().splitlines()
               if "->" in line and line.split()[6].rsplit(":", 1)[-1] in inodes)


def _until(cond: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_a_priority_writer_goes_before_writers_queued_earlier(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    normal = make_engine(url)
    first = make_engine(url, write_priority=True)
    with normal.begin() as c:
        c.execute(text("CREATE TABLE t (who TEXT)"))
    order: list[str] = []

    def write(engine: object, who: str) -> None:
        with engine.begin() as c:  # type: ignore[attr-defined]
            c.execute(text("INSERT INTO t VALUES (:w)"), {"w": who})
            order.append(who)

    holder = normal.connect()
    tx = holder.begin()
    holder.execute(text("INSERT INTO t VALUES ('holder')"))  # holds the write lock
    files = (tmp_path / "q.db.wlock", tmp_path / "q.db.wlock.ahead")
    late = threading.Thread(target=write, args=(normal, "queued first"))
    late.start()
    _until(lambda: _blocked_on(*files) == 1, "the first writer to queue")
    urgent = threading.Thread(target=write, args=(first, "priority"))
    urgent.start()
    _until(lambda: _blocked_on(*files) == 2, "the priority writer to queue")
    assert order == []  # the holder kept the lock
    tx.commit()
    holder.close()
    late.join(10)
    urgent.join(10)
    assert order == ["priority", "queued first"]
    with normal.connect() as c:
        assert c.execute(text("SELECT count(*) FROM t")).scalar() == 3
    normal.dispose()
    first.dispose()
