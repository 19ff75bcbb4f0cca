"""The same pipeline with every stage as a faust agent (CENTRE_RUNTIME=faust), including a
worker killed mid-stream, so the faust shell keeps its at-least-once promise too."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from centre import samples
from centre.broker import LocalBroker
from centre.settings import Settings
from centre.stack import Stack
from tests.integration.helpers import FeedbackReader, pull_cases, send_reports, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def faust_stack(broker: LocalBroker, tmp_path: Path) -> Iterator[Stack]:
    s = Settings(
        home=tmp_path,
        kafka_bootstrap=broker.bootstrap,
        database_url=f"sqlite:///{tmp_path / 'centre.db'}",
        topic_prefix=f"f{uuid.uuid4().hex[:6]}.",
        partitions=3,
        batch_size=100,
        runtime="faust",
    )
    st = Stack(s)
    st.start(ready_timeout=180)
    yield st
    st.stop()


def test_faust_agents_deliver_every_case_once_across_a_crash(faust_stack: Stack) -> None:
    s = faust_stack.settings
    run = uuid.uuid4().hex[:8]
    reports = [
        samples.report("faust-co", f"{run}-{i:03d}", media_seed=f"{run}-{i % 10}", ip_country="fr")
        for i in range(200)
    ]
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


def test_faust_workers_do_their_periodic_work_when_no_message_comes(faust_stack: Stack) -> None:
    """A provider's answer to a removal notice is read by the victims worker's idle work
    (its own topic, notices.responses, is not the agent's): under faust a timer runs it."""
    import json
    import time

    from confluent_kafka import Consumer
    from sqlalchemy import select

    from centre.db import make_engine
    from centre.kafka import BatchProducer, base_config
    from centre.topology import NOTICE_RESPONSES, notices_topic
    from victims.model import Item
    from victims.service import VictimDesk
    from victims.tables import VictimNotice

    s = faust_stack.settings
    run = uuid.uuid4().hex[:8]
    provider = f"faust-v-{run}"
    doc = samples.report(provider, f"{run}-pub", media_seed=f"victim-{run}", ip_country="fr")
    doc["content"][0].update(publicly_available=True, removed=False)
    fb = FeedbackReader(s, provider)
    send_reports(s, [doc])
    assert fb.final_for({doc["provider_report_id"]}, timeout=120)
    fb.close()
    h = samples.fake_hashes(f"victim-{run}")
    with VictimDesk(s) as desk:
        rid, _pin = desk.file([Item(1, "image", h["sha256"], h["md5"], h["pdq"], 90)], by="tester")
        assert desk.wait_filed(rid, 120), "the faust victims worker did not file the request"
    c = Consumer(
        {
            **base_config(s),
            "group.id": f"t-{run}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([s.topic(notices_topic(provider))])
    notice = None
    deadline = time.monotonic() + 60
    while notice is None and time.monotonic() < deadline:
        for msg in c.consume(10, timeout=0.5):
            if not msg.error() and json.loads(msg.value()).get("type") == "removal":
                notice = json.loads(msg.value())
    c.close()
    assert notice is not None, "no removal notice"
    p = BatchProducer(s)
    p.send(
        NOTICE_RESPONSES,
        json.dumps(
            {
                "schema": "notice-response/v1",
                "notice_id": notice["notice_id"],
                "provider_id": provider,
                "status": "removed",
                "at": notice["at"],
            }
        ).encode(),
        key=notice["notice_id"].encode(),
    )
    p.flush_or_raise()
    p.close()
    engine = make_engine(s.database_url)
    try:

        def answer() -> str | None:
            with engine.connect() as conn:
                return conn.execute(
                    select(VictimNotice.answer).where(VictimNotice.notice_id == notice["notice_id"])
                ).scalar()

        assert wait_for("the answer recorded", answer) == "removed"
    finally:
        engine.dispose()
