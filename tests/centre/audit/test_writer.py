"""The audit writer stage: batches from the runtime, malformed events, redelivery, and a
SIGKILL in the middle of a batch (the batch's entries inserted, not yet committed)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from centre.audit import AuditEvent
from centre.audit.tables import AuditEntry
from centre.audit.writer import AuditWriterStage
from centre.db import DeadLetter
from centre.runtime import Record
from tests.centre.audit.conftest import Env, events


def _records(values: list[bytes], first_offset: int = 0) -> list[Record]:
    return [
        Record("audit.events", 0, first_offset + i, b"k", v, {}, 0.0) for i, v in enumerate(values)
    ]


def _entries(env: Env) -> list[tuple[int, str, str]]:
    with env.log.engine.connect() as c:
        return [
            tuple(r)
            for r in c.execute(
                select(AuditEntry.seq, AuditEntry.event_id, AuditEntry.action).order_by(
                    AuditEntry.seq
                )
            )
        ]


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_batches_append_in_order_and_a_redelivered_batch_adds_nothing(env: Env) -> None:
    stage = AuditWriterStage(env.settings)
    evs = events(50)
    recs = _records([e.to_json() for e in evs])
    stage.process(recs[:30])
    stage.process(recs[20:])  # the runtime re-reads 20…29 after a crash
    stage.process(recs)
    rows = _entries(env)
    assert [r[0] for r in rows] == list(range(1, 51))
    assert [r[1] for r in rows] == [e.event_id for e in evs]
    assert env.log.verify().ok
    stage.close()


def test_malformed_events_go_to_the_dead_letter_store_and_the_writer_goes_on(env: Env) -> None:
    stage = AuditWriterStage(env.settings)
    good = [e.to_json() for e in events(8)]
    bad_subject = (
        AuditEvent(actor="intake", action="report.received", subject="report:x")
        .to_json()
        .replace(b"report:x", b"Jane Doe")
    )
    values = good[:4] + [b"{not json", bad_subject] + good[4:]
    dead_before = _sample("centre_dead_letters_total", stage="audit")
    alert_before = _sample("centre_errors_total", stage="audit", kind="malformed_event")
    stage.process(_records(values))
    with env.log.engine.connect() as c:
        dead = c.execute(
            select(DeadLetter.offset, DeadLetter.value, DeadLetter.reasons).order_by(
                DeadLetter.offset
            )
        ).all()
    assert [(d.offset, d.value) for d in dead] == [(4, b"{not json"), (5, bad_subject)]
    assert dead[0].reasons[0]["code"] == "invalid_json"
    assert {r["path"] for r in dead[1].reasons} == {"$.subject"}
    assert _sample("centre_dead_letters_total", stage="audit") == dead_before + 2
    assert _sample("centre_errors_total", stage="audit", kind="malformed_event") == alert_before + 2
    rows = _entries(env)
    assert len(rows) == 10 and [r[0] for r in rows] == list(range(1, 11))
    rejected = [r for r in rows if r[2] == "audit.event_rejected"]
    assert len(rejected) == 2
    shown = env.log.show("dead_letter:audit.events/0/5", role="auditor", reader="a")
    assert shown[0]["details"]["reasons"][0]["path"] == "$.subject"
    # The same batch read again: no second dead letter, no second entry.
    stage.process(_records(values))
    with env.log.engine.connect() as c:
        assert c.scalar(select(func.count()).select_from(DeadLetter)) == 2
    assert len(_entries(env)) == 11  # the 11th is the read by `show` above
    assert env.log.verify().ok
    stage.close()


_CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import centre.audit.store as audit
    from centre.audit.writer import AuditWriterStage
    from centre.settings import Settings
    from tests.centre.audit.test_writer import _records
    from tests.centre.audit.conftest import events

    home, url, kill_at, n, batch = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    settings = Settings(home=Path(home), kafka_bootstrap=None, database_url=url,
                        audit_checkpoint_every=64, audit_checkpoint_seconds=3600)
    real, calls = audit._insert_entries, [0]

    def insert_then_die(c, rows):
        real(c, rows)  # the batch's entries are in the open transaction, not committed
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    audit._insert_entries = insert_then_die
    stage = AuditWriterStage(settings)
    recs = _records([e.to_json() for e in events(n)])
    for i in range(0, n, batch):
        stage.process(recs[i:i + batch])
    print("never killed", flush=True)
""")


def test_a_sigkill_mid_batch_loses_and_duplicates_nothing(env: Env) -> None:
    n, batch, kill_at = 1000, 100, 4
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(env.settings.home),
            env.settings.database_url,
            str(kill_at),
            str(n),
            str(batch),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    # Batches 1…3 committed; the 4th was inserted but never committed: none of it is there.
    assert [r[0] for r in _entries(env)] == list(range(1, (kill_at - 1) * batch + 1))
    assert env.log.verify().ok
    # The restarted writer is handed what was not acknowledged. The 3rd batch too, as when a
    # worker dies after its commit and before the offsets are committed.
    stage = AuditWriterStage(env.settings)
    recs = _records([e.to_json() for e in events(n)])
    for i in range((kill_at - 2) * batch, n, batch):
        stage.process(recs[i : i + batch])
    stage.close()
    rows = _entries(env)
    assert [r[0] for r in rows] == list(range(1, n + 1)), "a gap or a duplicate"
    assert [r[1] for r in rows] == [e.event_id for e in events(n)]
    result = env.fresh_log().verify()
    assert result.ok and result.entries == n and result.checkpoints >= n // 64, result.summary()


@pytest.mark.parametrize("when", ["before_commit", "after_commit"])
def test_a_failure_inside_the_batch_transaction_leaves_the_head_consistent(
    env: Env, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """In-process twin of the SIGKILL test: an exception where the kill would land."""
    import centre.audit as audit

    stage = AuditWriterStage(env.settings)
    recs = _records([e.to_json() for e in events(30)])
    stage.process(recs[:10])
    real = audit.AuditLog._finish

    def boom(self: audit.AuditLog, *args: object, **kw: object) -> None:
        real(self, *args, **kw)  # type: ignore[arg-type]
        if when == "before_commit":
            raise RuntimeError("worker died")

    monkeypatch.setattr(audit.AuditLog, "_finish", boom)
    if when == "before_commit":
        with pytest.raises(RuntimeError):
            stage.process(recs[10:20])
        assert len(_entries(env)) == 10
    else:
        stage.process(recs[10:20])
    monkeypatch.setattr(audit.AuditLog, "_finish", real)
    stage.process(recs[10:])
    assert [r[0] for r in _entries(env)] == list(range(1, 31))
    assert env.log.verify().ok
    stage.close()
