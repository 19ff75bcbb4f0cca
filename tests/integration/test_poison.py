"""The message that aborted routing (an unknown field nested 250 levels deep) through every
stage of the real stack, and a message no stage can get past, set aside so that the pipeline
goes on."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from centre import messages as m
from centre import samples
from centre.db import DeadLetter, Provider, Report, make_engine, make_sessionmaker
from centre.kafka import BatchProducer
from centre.stack import Stack
from centre.topology import ACCEPTED
from tests.integration.helpers import FeedbackReader, pull_cases, send_raw, send_reports, wait_for

pytestmark = pytest.mark.integration


def _deep_value(doc: dict[str, Any], depth: int) -> bytes:
    """`doc` as JSON, its member "x" (0) replaced by `depth` objects inside one another:
    written out by hand, as no serialiser here may nest that deep."""
    return orjson.dumps(doc).replace(b'"x":0', b'"x":' + b'{"k":' * depth + b"1" + b"}" * depth)


def _as_accepted(stack: Stack, provider: str, prid: str, depth: int) -> tuple[str, bytes]:
    """The report stored as intake stores it and its `reports.accepted` envelope, as an intake
    without today's limits would have passed it on."""
    received = m.now().replace(microsecond=0)
    rid = m.report_id_for(provider, prid, received)
    engine = make_engine(stack.settings.database_url)
    with make_sessionmaker(engine).begin() as s:
        if s.get(Provider, provider) is None:
            s.add(Provider(provider_id=provider, first_seen_at=received, reports_received=0))
        s.add(
            Report(
                report_id=rid,
                case_id=m.case_id_for(rid, received),
                provider_id=provider,
                provider_report_id=prid,
                received_at=received,
                submitted_at="x",
                signature="absent",
                status="received",
                reasons=[],
                supplements=0,
            )
        )
    engine.dispose()
    report = {**samples.report(provider, prid, ip_country="fr"), "x": 0}
    envelope = {
        "supplement": 0,
        "report_id": rid,
        "case_id": m.case_id_for(rid, received),
        "provider_id": provider,
        "provider_report_id": prid,
        "received_at": m.iso(received),
        "signature": "absent",
        "report": report,
    }
    return rid, _deep_value(envelope, depth)


def _put_on_accepted(stack: Stack, rid: str, value: bytes) -> None:
    p = BatchProducer(stack.settings)
    p.send(ACCEPTED, value, key=rid.encode())
    p.flush_or_raise()
    p.close()


def test_the_report_that_aborted_routing_is_refused_at_the_door(stack: Stack) -> None:
    s = stack.settings
    run = uuid.uuid4().hex[:6]
    deep = {**samples.report("deep-co", f"{run}-deep", ip_country="de"), "x": 0}
    after = samples.report("deep-co", f"{run}-after", ip_country="de")
    send_raw(s, [(f"deep-co/{run}-deep".encode(), _deep_value(deep, 250))])
    send_reports(s, [after])
    fb = FeedbackReader(s, "deep-co")
    final = fb.final_for({f"{run}-deep", f"{run}-after"})
    fb.close()
    assert final[f"{run}-deep"]["status"] == "rejected"
    assert [r["code"] for r in final[f"{run}-deep"]["reasons"]] == ["too_deep"]
    assert final[f"{run}-after"]["status"] == "forwarded"


def test_the_same_message_past_intake_goes_through_triage_and_routing(stack: Stack) -> None:
    """As an intake without limits would have passed it on: no stage may crash on it."""
    run = uuid.uuid4().hex[:6]
    restarts = {st: w.restarts for st, w in stack.workers.items()}
    pids = {st: w.pid for st, w in stack.workers.items()}
    rid, value = _as_accepted(stack, "deep-co", f"{run}-past", 250)
    _put_on_accepted(stack, rid, value)
    fb = FeedbackReader(stack.settings, "deep-co")
    assert fb.final_for({f"{run}-past"})[f"{run}-past"]["status"] == "forwarded"
    fb.close()
    cases = pull_cases(
        stack.settings, "fr", lambda d: f"{run}-past" in {x["provider_report_id"] for x in d}
    )
    case = next(c for c in cases if c["provider_report_id"] == f"{run}-past")
    depth, x = 0, case["report"]["x"]
    while isinstance(x, dict):
        depth, x = depth + 1, x["k"]
    assert depth == 250
    assert {st: w.pid for st, w in stack.workers.items()} == pids, "a worker restarted"
    assert {st: w.restarts for st, w in stack.workers.items()} == restarts


def test_a_message_no_stage_gets_past_is_set_aside_and_the_company_told(stack: Stack) -> None:
    """Nested past what the serialiser writes: triage fails on it every time. After a few
    restarts of triage it is quarantined, and the reports behind it are forwarded."""
    s = stack.settings
    run = uuid.uuid4().hex[:6]
    triage = stack.workers["triage"]
    before = triage.pid
    rid, value = _as_accepted(stack, "poison-co", f"{run}-poison", 300)
    _put_on_accepted(stack, rid, value)
    behind = [samples.report("poison-co", f"{run}-{i}", ip_country="de") for i in range(20)]
    send_reports(s, behind)
    fb = FeedbackReader(s, "poison-co")
    prids = {f"{run}-poison"} | {r["provider_report_id"] for r in behind}
    final = fb.final_for(prids, timeout=240)
    fb.close()
    poisoned = final[f"{run}-poison"]
    assert poisoned["status"] == "rejected" and poisoned["report_id"] == rid
    assert [r["code"] for r in poisoned["reasons"]] == ["quarantined"]
    assert {final[r["provider_report_id"]]["status"] for r in behind} == {"forwarded"}
    engine = make_engine(s.database_url)
    with make_sessionmaker(engine)() as db:
        assert db.scalar(select(Report.status).where(Report.report_id == rid)) == "quarantined"
        kept = db.scalars(
            select(DeadLetter).where(
                DeadLetter.topic == s.topic(ACCEPTED), DeadLetter.key == rid.encode()
            )
        ).all()
        assert len(kept) == 1 and kept[0].value == value  # kept whole
        assert kept[0].reasons[0]["code"] == "quarantined"
    engine.dispose()
    wait_for("triage running again", triage.alive, 60)
    assert triage.pid != before  # it did fail on the message, and was started again
