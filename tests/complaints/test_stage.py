"""The complaints worker's batch on a real database, its outputs recorded: filings,
receipts, malformed messages kept in the dead-letter store and answered, replays changing
nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from centre.db import DeadLetter, make_engine
from centre.runtime import Record
from centre.settings import Settings
from complaints.stage import ComplaintIntakeStage
from complaints.tables import Complaint, ComplaintFiling
from tests.complaints.seed import FakeProducer, FakeTopics, add_report, item

TOPIC = "complaints.intake"


def rec(offset: int, value: Any, key: bytes | None = b"acme/u-1") -> Record:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return Record(TOPIC, 0, offset, key, raw, {"h": b"v"}, 0.0)


def complaint(ref: str = "u-1", **over: Any) -> dict[str, Any]:
    return {
        "schema": "complaint/v1",
        "complaint_ref": ref,
        "channel": "provider",
        "provider_id": "acme",
        "concerns": {"provider_report_id": "r1"},
        "grounds": "wrongful_removal",
        "contact_ref": "ticket-1",
        "filed_at": "2026-11-23T10:00:00Z",
        **over,
    }


@pytest.fixture
def stage(db_url: str, tmp_path: Path) -> Iterator[ComplaintIntakeStage]:
    s = Settings(
        home=tmp_path, kafka_bootstrap="127.0.0.1:1", database_url=db_url, complaint_sla_days=3
    )
    st = ComplaintIntakeStage(s)
    st.producer = FakeProducer()  # type: ignore[assignment]
    st.provider_topics = FakeTopics()  # type: ignore[assignment]
    yield st
    st.engine.dispose()


def notices(stage: ComplaintIntakeStage) -> list[dict[str, Any]]:
    return [orjson.loads(v) for v, _k in stage.producer.on("provider.acme.notices")]  # type: ignore[attr-defined]


def test_a_batch_files_answers_and_keeps_going(stage: ComplaintIntakeStage, db_url: str) -> None:
    engine = make_engine(db_url)
    add_report(engine, "acme", "r1", items=[item("f1", "a")])
    batch = [
        rec(0, complaint()),
        rec(1, b"{broken", key=b"acme/u-2"),
        rec(2, complaint("u-3", concerns={})),
        rec(3, complaint("u-4", concerns={"report_id": "unknown"})),
        rec(4, complaint("u-5", grounds="wrongful_report")),
        rec(5, complaint("u-6", channel="coordinating_authority", authority="xx")),
    ]
    stage.process(batch)
    with engine.connect() as c:
        dead = c.execute(
            select(DeadLetter.offset, DeadLetter.provider_id, DeadLetter.reasons).order_by(
                DeadLetter.offset
            )
        ).all()
        complaints = c.execute(
            select(
                Complaint.complaint_id, Complaint.matched_by, Complaint.due_at, Complaint.opened_at
            )
        ).all()
        filings = c.execute(
            select(ComplaintFiling.complaint_ref, ComplaintFiling.joined, ComplaintFiling.source)
        ).all()
    assert [(o, p) for o, p, _r in dead] == [(1, "acme"), (2, "acme"), (5, None)]
    assert dead[1][2][0]["path"] == "$.concerns"
    assert sorted(f[0] for f in filings) == ["u-1", "u-4", "u-5"]
    assert {f[0]: f[1] for f in filings} == {"u-1": False, "u-4": False, "u-5": True}
    assert {f[2] for f in filings} >= {"complaints.intake/0/0"}
    assert sorted(str(m) for _c, m, _d, _o in complaints) == ["None", "provider_report_id"]
    assert all((d - o).days == 3 for _c, _m, d, o in complaints)  # CENTRE_COMPLAINT_SLA_DAYS
    got = notices(stage)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for n in got:
        by_type.setdefault(n["type"], []).append(n)
    assert sorted(n["complaint_ref"] for n in by_type["complaint_invalid"]) == ["u-2", "u-3"]
    assert sorted(n["complaint_ref"] for n in by_type["complaint_received"]) == [
        "u-1",
        "u-4",
        "u-5",
    ]
    joined = [n for n in by_type["complaint_received"] if n["complaint_ref"] == "u-5"][0]
    assert joined["joined"] is True
    unmatched = [n for n in by_type["complaint_received"] if n["complaint_ref"] == "u-4"][0]
    assert unmatched["matched"] is False
    assert all("ticket-1" not in orjson.dumps(n).decode() for n in got)
    # every filing and every refused message is an audit event, flushed with the batch
    events = [orjson.loads(v) for v, _k in stage.producer.on("audit.events")]  # type: ignore[attr-defined]
    actions = sorted(e["action"] for e in events)
    assert actions.count("complaint.filed") == 2 and actions.count("complaint.joined") == 1
    assert actions.count("complaint.invalid") == 3
    assert actions.count("complaint.receipt_sent") == 2
    assert all(e["actor"] == "complaints" for e in events)
    assert "ticket-1" not in orjson.dumps(events).decode()

    # the same batch read again after a crash: nothing new, no second receipt
    before = len(got)
    stage.process(batch)
    with engine.connect() as c:
        assert len(c.execute(select(ComplaintFiling.filing_id)).all()) == 3
        assert len(c.execute(select(DeadLetter.id)).all()) == 3
    after = notices(stage)
    assert [n for n in after if n["type"] == "complaint_received"] == [
        n for n in got if n["type"] == "complaint_received"
    ]
    # invalid answers are re-sent with the same notice_id (the company drops repeats)
    assert len({n["notice_id"] for n in after}) == before
    engine.dispose()
