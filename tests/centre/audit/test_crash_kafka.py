"""The real audit worker (`centre worker audit`) on the real broker, killed with SIGKILL while
it works through a backlog and restarted: every event ends up in the trail exactly once, the
sequence has no gap, and the trail verifies."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from centre.audit import AUDIT_EVENTS, AuditEvent, AuditLog, emit
from centre.audit.tables import AuditEntry
from centre.broker import LocalBroker
from centre.db import make_engine, upgrade
from centre.kafka import BatchProducer, ensure_topics
from centre.keys import KeySet
from centre.settings import Settings
from centre.stack import WorkerProcess
from centre.topology import static_topics
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration


def test_sigkill_of_the_audit_worker_loses_and_duplicates_nothing(
    broker: LocalBroker, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    url = f"sqlite:///{home / 'centre.db'}"
    s = Settings(
        home=home,
        kafka_bootstrap=broker.bootstrap,
        database_url=url,
        topic_prefix=f"a{uuid.uuid4().hex[:6]}.",
        partitions=3,
        batch_size=200,
        audit_checkpoint_every=500,
    )
    KeySet.init(s.keys_dir)
    upgrade(url)
    ensure_topics(s, [t for t in static_topics(s) if t.name == AUDIT_EVENTS])

    n = 20_000
    run = uuid.uuid4().hex[:6]
    evs = [
        AuditEvent(
            actor="triage",
            action="report.prioritised",
            subject=f"report:{run}-{i}",
            details={"priority": "P2"},
            person=f"victim:{run}-{i % 50}" if i % 100 == 0 else None,
            personal={"age_band": "child"} if i % 100 == 0 else None,
        )
        for i in range(n)
    ]
    producer = BatchProducer(s)
    emit(producer, evs)
    emit(producer, evs[:500])  # a producer retry after a timeout: the same events again
    producer.flush_or_raise()
    producer.close()

    engine = make_engine(url)

    def count() -> int:
        with engine.connect() as c:
            return int(c.scalar(select(func.count()).select_from(AuditEntry)) or 0)

    worker = WorkerProcess("audit", s, home / "logs" / "worker-audit.log")
    worker.start()
    try:
        wait_for("the first entries", lambda: count() >= 3000, 120, worker.alive, 0.05)
        worker.kill()  # mid-stream: the worker is always inside a batch by now
        at_kill = count()
        assert at_kill < n, "the worker finished before it could be killed; raise n"
        worker.start()
        wait_for("every event", lambda: count() >= n, 180, worker.alive, 0.05)
    finally:
        worker.stop()

    with engine.connect() as c:
        rows = c.execute(select(AuditEntry.seq, AuditEntry.event_id).order_by(AuditEntry.seq)).all()
    engine.dispose()
    assert [r.seq for r in rows] == list(range(1, n + 1)), "a gap or a duplicate"
    assert sorted(r.event_id for r in rows) == sorted(e.event_id for e in evs)
    log = AuditLog(s)
    result = log.verify()
    log.close()
    assert result.ok and result.entries == n, result.summary()
    assert "report:" not in (home / "logs" / "worker-audit.log").read_text()  # no payloads
