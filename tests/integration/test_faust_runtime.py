"""The same pipeline with every stage as a faust agent (CENTRE_RUNTIME=faust), including a
worker killed mid-stream, so the faust shell keeps its at-least-once promise too."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from centre import samples
from centre.broker import LocalBroker
from centre.settings import Settings
from centre.stack import Stack
from tests.integration.helpers import FeedbackReader, pull_cases, send_reports

pytestmark = pytest.mark.integration


@pytest.fixture
def faust_stack(broker: LocalBroker, tmp_path: Path) -> Iterator[Stack]:
    s = Settings(home=tmp_path, kafka_bootstrap=broker.bootstrap,
                 database_url=f"sqlite:///{tmp_path / 'centre.db'}",
                 topic_prefix=f"f{uuid.uuid4().hex[:6]}.", partitions=3, batch_size=100,
                 runtime="faust")
    st = Stack(s)
    st.start(ready_timeout=180)
    yield st
    st.stop()


def test_faust_agents_deliver_every_case_once_across_a_crash(faust_stack: Stack) -> None:
    s = faust_stack.settings
    run = uuid.uuid4().hex[:8]
    reports = [samples.report("faust-co", f"{run}-{i:03d}", media_seed=f"{run}-{i % 10}",
                              ip_country="fr") for i in range(200)]
    send_reports(s, reports[:100])
    fb = FeedbackReader(s, "faust-co")
    fb.until(lambda items: sum(f["status"] == "forwarded" for f in items) >= 10)
    worker = faust_stack.workers["triage"]
    old = worker.pid
    worker.kill()
    send_reports(s, reports[100:])
    prids = {r["provider_report_id"] for r in reports}
    final = fb.final_for(prids, timeout=240)
    fb.close()
    assert worker.pid != old
    assert {f["status"] for f in final.values()} == {"forwarded"}
    docs = pull_cases(s, "fr", lambda d: prids <= {x["provider_report_id"] for x in d}, timeout=120)
    per_case = Counter(d["case_id"] for d in docs if d["provider_report_id"] in prids)
    assert len(per_case) == 200 and set(per_case.values()) == {1}
