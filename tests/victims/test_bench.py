"""`centre bench victims` on small numbers against the session's broker: the past matching
finds exactly what was seeded and sends every notice once; the triage comparison runs and
the victims worker beside triage records the victims' matches. (The figures themselves are
the bench's to print.)"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from centre.settings import Settings

pytestmark = pytest.mark.integration


def settings_for(broker: Any, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path,
        kafka_bootstrap=broker.bootstrap,
        database_url="sqlite:///unused.db",
        topic_prefix=f"tv{uuid.uuid4().hex[:6]}.",
        partitions=1,
        batch_size=200,
    )


def text(table: Any) -> str:
    c = Console(record=True, width=200)
    c.print(table)
    return c.export_text()


def test_past_matching_finds_what_was_seeded(broker: Any, tmp_path: Path) -> None:
    from victims.bench import run_past_bench

    ok, table = run_past_bench(settings_for(broker, tmp_path), stored=5000, hashes=300)
    out = text(table)
    assert ok, out
    assert "matches found / seeded" in out
    assert not any((tmp_path / "bench").iterdir())  # cleaned up


def test_triage_with_and_without_the_victims_hashes(broker: Any, tmp_path: Path) -> None:
    from victims.bench import run_live_bench

    _ok, table = run_live_bench(
        settings_for(broker, tmp_path), reports=600, victim_hashes=2000, rounds=1
    )
    out = text(table)
    row = next(
        line for line in out.splitlines() if "matches recorded by the victims worker" in line
    )
    assert int(row.strip("│ ").split()[-1].replace(",", "")) > 0, out
    assert "throughput lost" in out
