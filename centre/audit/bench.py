"""`centre bench audit`: the audit trail's figures on a scratch database and key set.

Never touches the centre's own database or keys: SQLite in a temporary directory, and on
PostgreSQL (when a URL is given) a temporary database created on that server and dropped
after. Per backend: the writer (the stage's `process` on batches of encoded events, as the
runtime calls it, without Kafka), verification of the database, export, and verification
of the export file; with each, the growth of the process's peak RSS during the phase, which
stays flat however long the log is (run with a larger --entries to see it).
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from centre.settings import Settings


def _anon_rss() -> int:
    """Anonymous resident memory (heap, SQLite's page cache), without file pages mapped from
    the database (SQLite's mmap), which the kernel may drop at will. Linux; else all RSS."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(psutil.Process().memory_info().rss)


class _Peak:
    """Peak RSS (all, and anonymous) of this process while a phase runs, sampled every 5 ms."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.start = self.peak = self._proc.memory_info().rss
        self.anon_start = self.anon_peak = _anon_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        self.peak = max(self.peak, self._proc.memory_info().rss)
        self.anon_peak = max(self.anon_peak, _anon_rss())

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self._sample()

    def __enter__(self) -> _Peak:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def __str__(self) -> str:
        return (
            f"peak RSS +{(self.peak - self.start) / 1e6:.0f} MB, of it anonymous "
            f"+{(self.anon_peak - self.anon_start) / 1e6:.0f} MB"
        )


def _records(start: int, n: int, run: str) -> list[Any]:
    """A batch of audit-event/v1 messages as the runtime hands them over; 1 in 100 carries
    data about a person (sealed under that person's key)."""
    from centre.audit import AuditEvent
    from centre.runtime import Record

    out = []
    at = dt.datetime.now(dt.UTC)
    for i in range(start, start + n):
        person = f"victim:{run}-{i % 200}" if i % 100 == 0 else None
        ev = AuditEvent(
            actor="triage",
            action="report.prioritised",
            subject=f"report:{run}-{i:09d}",
            details={
                "priority": "P2",
                "category": "new_material",
                "reasons": [
                    {
                        "code": "new_material",
                        "message": "media present, no match in the known_material bank",
                        "path": "$.content",
                    }
                ],
            },
            person=person,
            personal={"age_band": "child", "country": "de"} if person else None,
            at=at,
        )
        out.append(
            Record("audit.events", i % 12, i, ev.subject.encode(), ev.to_json(), {}, at.timestamp())
        )
    return out


def _bench_backend(
    label: str, url: str, home: Path, entries: int, batch: int, say: Callable[[str], None]
) -> dict[str, float]:
    from centre.audit import VerifyResult, verify_file
    from centre.audit.writer import AuditWriterStage
    from centre.db import upgrade
    from centre.keys import KeySet

    upgrade(url)
    settings = Settings(home=home, kafka_bootstrap=None, database_url=url, batch_size=batch)
    KeySet.init(settings.keys_dir)
    stage = AuditWriterStage(settings)
    run = uuid.uuid4().hex[:8]
    figures: dict[str, float] = {}
    try:
        spent = 0.0
        with _Peak() as mem:
            for start in range(0, entries, batch):
                records = _records(start, min(batch, entries - start), run)
                t = time.perf_counter()
                stage.process(records)
                spent += time.perf_counter() - t
        figures["writer"] = entries / spent
        say(
            f"{label:10} writer        {figures['writer']:>10,.0f} entries/s   "
            f"({entries:,} entries, batches of {batch}; {mem})"
        )

        names = {"verify_db": "verify (db)", "export": "export", "verify_file": "verify (file)"}
        phases: tuple[tuple[str, Callable[[], VerifyResult]], ...] = (
            ("verify_db", lambda: stage.log.verify()),
            ("export", lambda: stage.log.export(home / "audit.jsonl")),
            (
                "verify_file",
                lambda: verify_file(home / "audit.jsonl", stage.log.keys.centre_public_keys()),
            ),
        )
        for name, phase in phases:
            with _Peak() as mem:
                t = time.perf_counter()
                result = phase()
                spent = time.perf_counter() - t
            if not result.ok or result.entries != entries:
                raise RuntimeError(f"{label} {name}: {result.summary()}")
            figures[name] = entries / spent
            say(
                f"{label:10} {names[name]:13} {figures[name]:>10,.0f} entries/s   "
                f"({spent:.2f} s; {mem})"
            )
        size = (home / "audit.jsonl").stat().st_size
        say(f"{label:10} export file   {size / 1e6:>10,.1f} MB")
    finally:
        stage.close()
    return figures


def _pg_scratch(url: str) -> tuple[str, Callable[[], None]]:
    """A fresh database on the server of `url`, and how to drop it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"centre_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(url).set(database=name).render_as_string(hide_password=False), drop


def run_audit_bench(
    settings_or_db_url: Settings | str | None = None,
    *,
    entries: int = 100_000,
    batch: int = 500,
    say: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    """Measure and print the audit trail's figures; returns them per backend.

    SQLite always (a scratch file); PostgreSQL too when `settings_or_db_url` is, or has as
    its database, a postgresql URL (a scratch database is made on that server)."""
    url = (
        settings_or_db_url.database_url
        if isinstance(settings_or_db_url, Settings)
        else settings_or_db_url
    )
    pg_url = url if url and url.startswith("postgresql") else None
    tmp = Path(tempfile.mkdtemp(prefix="centre-audit-bench-"))
    results: dict[str, dict[str, float]] = {}
    try:
        say(
            f"audit trail, {entries:,} entries (targets: writer ≥ 20,000/s, verify ≥ "
            "100,000/s, export ≥ 50,000/s)"
        )
        results["sqlite"] = _bench_backend(
            "sqlite",
            f"sqlite:///{tmp / 'sqlite' / 'audit.db'}",
            tmp / "sqlite",
            entries,
            batch,
            say,
        )
        if pg_url:
            scratch, drop = _pg_scratch(pg_url)
            try:
                results["postgresql"] = _bench_backend(
                    "postgresql", scratch, tmp / "pg", entries, batch, say
                )
            finally:
                drop()
        say(f"RSS of this process at the end: {psutil.Process().memory_info().rss / 1e6:.0f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results
