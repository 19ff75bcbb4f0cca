"""The victims worker's batches on a real database, the broker replaced by a recorder:
requests filed (malformed ones dead-lettered and audited), answers recorded or refused,
matches triage left turned into notices, notices repeated when the clock says so."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest
from sqlalchemy import func, select

from centre.db import DeadLetter, VictimMatch, VictimNotice, VictimRequest, make_engine
from centre.runtime import Record
from centre.settings import Settings
from tests.victims.seed import (
    NOW,
    FakeProducer,
    FakeTopics,
    add_report,
    hashes,
    public_item,
    request_doc,
)
from victims import flow
from victims.bank import VictimBank
from victims.model import Item
from victims.stage import VictimStage


def rec(topic: str, offset: int, value: Any) -> Record:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return Record(topic, 0, offset, None, raw, {}, 0.0)


@pytest.fixture
def stage(db_url: str, tmp_path: Path) -> Iterator[VictimStage]:
    s = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:1", database_url=db_url,
                 victim_notice_repeat_hours=0.5, victim_notice_escalate_after=2)
    st = VictimStage(s, read_responses=False)
    st.producer = FakeProducer()  # type: ignore[assignment]
    st.provider_topics = FakeTopics()  # type: ignore[assignment]
    yield st
    st.engine.dispose()


def sent(stage: VictimStage, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(v) for v, _k in stage.producer.on(topic)]  # type: ignore[attr-defined]


def test_requests_answers_and_the_clock(stage: VictimStage, db_url: str) -> None:
    engine = make_engine(db_url)
    add_report(engine, "acme", "a1", items=[public_item("f1", "pic")], cluster="c1")
    h = hashes("pic")
    rid = str(uuid.uuid4())
    good = request_doc(rid, [Item(1, "image", h["sha256"], h["md5"], h["pdq"], 100)])
    batch = [rec("victims.requests", 0, good), rec("victims.requests", 1, b"{broken"),
             rec("victims.requests", 2, {**good, "request_id": str(uuid.uuid4()),
                                         "identity_ref": "H-1"})]
    stage.process(batch)
    stage.process(batch)  # read again after a crash: nothing new
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(VictimRequest)).scalar() == 1
        dead = c.execute(select(DeadLetter.offset, DeadLetter.reasons, DeadLetter.value)
                         .order_by(DeadLetter.offset)).all()
    assert [d[0] for d in dead] == [1, 2]
    assert dead[1][1][0]["code"] == "identity_not_allowed" and "H-1" not in str(dead[1][1])
    assert dead[0][2] is None and dead[1][2] is None  # a victim's request is never kept
    notices = sent(stage, "provider.acme.notices")
    assert [n["attempt"] for n in notices] == [1]  # filed, searched, sent in one go
    events = sent(stage, "audit.events")
    invalid = {e["event_id"] for e in events if e["action"] == "victim.request_invalid"}
    assert len(invalid) == 2  # the replay sent them again with the same ids
    assert "H-1" not in str(events)

    # half an hour later (CENTRE_VICTIM_NOTICE_REPEAT_HOURS=0.5) it goes again; later escalated
    assert stage.tick(NOW.replace(year=2099)).repeats == 1
    assert stage.tick(NOW.replace(year=2099) + dt.timedelta(hours=1)).escalated == 1
    notice_id = notices[0]["notice_id"]

    responses = [
        rec("notices.responses", 0, {"schema": "notice-response/v1", "notice_id": notice_id,
                                     "provider_id": "beta", "status": "removed",
                                     "at": "2026-11-23T12:00:00Z"}),  # not beta's notice
        rec("notices.responses", 1, b"nonsense"),
        rec("notices.responses", 2, {"schema": "notice-response/v1", "notice_id": notice_id,
                                     "provider_id": "nobody-knows-me", "status": "gone"}),
        rec("notices.responses", 3, {"schema": "notice-response/v1", "notice_id": notice_id,
                                     "provider_id": "acme", "status": "removed",
                                     "at": "2026-11-23T12:00:00Z"}),
    ]
    add_report(engine, "beta", "b1", items=[public_item("f1", "other")])  # beta is known
    stage.handle_responses(responses)
    with engine.connect() as c:
        (n,) = c.execute(select(VictimNotice.answer, VictimNotice.state)).all()
        dead = c.execute(select(DeadLetter.offset, DeadLetter.provider_id).where(
            DeadLetter.topic == "notices.responses").order_by(DeadLetter.offset)).all()
    assert tuple(n) == ("removed", "answered")
    assert dead == [(0, "beta"), (1, None), (2, "nobody-knows-me")]
    refusals = sent(stage, "provider.beta.notices")
    assert [r["type"] for r in refusals] == ["response_invalid"]
    assert refusals[0]["reasons"][0]["code"] == "unknown_notice"
    assert sent(stage, "provider.nobody-knows-me.notices") == []  # no topic for strangers
    assert stage.tick(NOW.replace(year=2100)).repeats == 0  # answered: no more reminders
    engine.dispose()


def test_matches_left_by_triage_become_notices_on_tick(stage: VictimStage, db_url: str) -> None:
    engine = make_engine(db_url)
    h = hashes("pic")
    rid = str(uuid.uuid4())
    stage.process([rec("victims.requests", 0,
                       request_doc(rid, [Item(1, "image", h["sha256"], None, None, None)]))])
    bank = VictimBank()
    with stage.sessions.begin() as s:
        from tests.victims.test_flow import envelope

        flow.live_matches(s, bank, [envelope("acme", "late", [public_item("f1", "pic")])], NOW)
    stage.tick(NOW)
    (n,) = sent(stage, "provider.acme.notices")
    assert n["provider_report_id"] == "late" and n["type"] == "removal"
    with engine.connect() as c:
        assert c.execute(select(VictimMatch.state)).scalar() == "noticed"
    engine.dispose()


def test_answers_are_checked_against_the_companys_signing_key(stage: VictimStage,
                                                              db_url: str) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    engine = make_engine(db_url)
    add_report(engine, "acme", "a1", items=[public_item("f1", "pic")], cluster="c1")
    h = hashes("pic")
    rid = str(uuid.uuid4())
    stage.process([rec("victims.requests", 0, request_doc(
        rid, [Item(1, "image", h["sha256"], h["md5"], h["pdq"], 100)]))])
    (notice,) = sent(stage, "provider.acme.notices")
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    (stage.settings.keys_dir / "providers").mkdir(parents=True, exist_ok=True)
    (stage.settings.keys_dir / "providers" / "acme.pub.pem").write_bytes(pem)
    value = orjson.dumps({"schema": "notice-response/v1", "notice_id": notice["notice_id"],
                          "provider_id": "acme", "status": "not_found",
                          "at": "2026-11-23T12:00:00Z"})

    def answer(offset: int, signature: bytes | None) -> str | None:
        headers = {"signature": base64.b64encode(signature)} if signature else {}
        stage.handle_responses([Record("notices.responses", 0, offset, None, value, headers,
                                       0.0)], now=NOW)
        with engine.connect() as c:
            return c.execute(select(VictimNotice.answer).where(
                VictimNotice.notice_id == notice["notice_id"])).scalar()

    forger = Ed25519PrivateKey.generate()
    assert answer(1, forger.sign(value)) is None  # someone else in acme's name: refused
    with engine.connect() as c:
        codes = [r[0]["code"] for (r,) in c.execute(select(DeadLetter.reasons).where(
            DeadLetter.topic == "notices.responses"))]
    assert codes == ["bad_signature"]
    assert not [n for n in sent(stage, "provider.acme.notices")
                if n.get("type") == "response_invalid"]  # and acme is not bothered
    assert answer(2, key.sign(value)) == "not_found"  # acme itself
    engine.dispose()
