"""Chaos on a stack of its own (its own broker, on PostgreSQL when the machine has it, which
is restarted mid-stream too): every worker SIGKILLed, the broker paused and crashed, while
reports keep coming. Nothing may be lost or shown twice, the audit trail must verify, and the
supervisor must outlive it all. `centre bench chaos` runs the same over 100,000 reports and
measures the time to recover."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.chaos import print_result, run_chaos
from centre.broker import free_port
from centre.pgserver import PrivatePostgres, private_postgres, server_bin
from centre.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres | None]:
    """A private PostgreSQL server to restart, where the machine has one (CI installs it)."""
    if server_bin() is None:
        yield None
        return
    pg = private_postgres()
    yield pg
    pg.remove()


def test_nothing_is_lost_or_shown_twice_under_faults(
    tmp_path: Path, postgres: PrivatePostgres | None
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        kafka_bootstrap=None,
        local_kafka_port=free_port(),
        partitions=3,
        batch_size=200,
        database_url=postgres.url if postgres else f"sqlite:///{tmp_path / 'centre.db'}",
    )
    said: list[str] = []
    r = run_chaos(
        settings, reports=4000, rate=200, pause_s=5, postgres=postgres, timeout=300, say=said.append
    )
    print_result(r, said.append)
    report = "\n".join(said)
    assert r.lost == [], report
    assert r.conflicting == [], report
    assert r.shown_twice == 0, report
    assert r.audit_ok, report
    assert r.supervisor_alive, report
    # Every fault happened, and each killed worker and the broker were started again.
    stages = {f.name.split(" ", 1)[1] for f in r.faults if f.name.startswith("SIGKILL ")}
    assert stages == {"intake", "triage", "routing", "audit", "complaints", "victims"}
    assert all(r.restarts.get(st, 0) >= 1 for st in stages | {"broker"}), report
    assert any(f.name == "PostgreSQL restart" for f in r.faults) == (postgres is not None)
