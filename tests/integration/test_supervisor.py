"""The supervisor of the local stack against a worker that is alive but frozen: it stops
beating, and is killed and started again, and reports flow once more."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from centre import samples
from centre.broker import LocalBroker
from centre.settings import Settings
from centre.stack import Stack
from tests.integration.helpers import FeedbackReader, send_reports, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def small_stack(broker: LocalBroker, tmp_path: Path) -> Iterator[Stack]:
    settings = Settings(
        home=tmp_path,
        kafka_bootstrap=broker.bootstrap,
        database_url=f"sqlite:///{tmp_path / 'centre.db'}",
        topic_prefix=f"sv{uuid.uuid4().hex[:6]}.",
        partitions=3,
        stuck_after_s=6.0,
    )
    st = Stack(settings, stages=("intake",))
    st.start(ready_timeout=180)
    yield st
    st.stop()


def test_a_frozen_worker_is_killed_and_started_again(small_stack: Stack) -> None:
    intake = small_stack.workers["intake"]
    frozen = intake.pid
    assert frozen is not None
    os.kill(frozen, signal.SIGSTOP)  # alive, but runs nothing: it stops beating
    wait_for(
        "the frozen worker replaced", lambda: intake.alive() and intake.pid != frozen, timeout=90
    )
    assert small_stack.exits.get("intake") == 1
    report = samples.report("frozen-co", f"f-{uuid.uuid4().hex[:6]}")
    send_reports(small_stack.settings, [report])
    fb = FeedbackReader(small_stack.settings, "frozen-co")
    fb.until(lambda items: any(f["status"] == "received" for f in items))
    fb.close()
