"""The victims worker's batches on a real database, the broker replaced by a recorder:
requests filed (malformed ones dead-lettered and audited), answers recorded or refused,
new reports read from reports.triaged matched and noticed (once, however often read),
matches left undecided turned into notices, notices repeated when the clock says so."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from centre.db import DeadLetter, make_engine
from centre.runtime import Record
from centre.settings import Settings
from tests.victims.seed import (
    NOW,
    FakeProducer,
    FakeTopics,
    add_report,
    hashes,
    near_pdq,
    public_item,
    request_doc,
    triaged,
)
from victims import flow
from victims.bank import VictimBank
from victims.model import Item
from victims.stage import VictimStage
from victims.tables import VictimMatch, VictimNotice, VictimRequest


def rec(topic: str, offset: int, value: Any) -> Record:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return Record(topic, 0, offset, None, raw, {}, 0.0)


@pytest.fixture
def stage(db_url: str, tmp_path: Path) -> Iterator[VictimStage]:
    s = Settings(
        home=tmp_path,
        kafka_bootstrap="127.0.0.1:1",
        database_url=db_url,
        victim_notice_repeat_hours=0.5,
        victim_notice_escalate_after=2,
    )
    st = VictimStage(s, read_responses=False, read_triaged=False)
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
    batch = [
        rec("victims.requests", 0, good),
        rec("victims.requests", 1, b"{broken"),
        rec(
            "victims.requests", 2, {**good, "request_id": str(uuid.uuid4()), "identity_ref": "H-1"}
        ),
    ]
    stage.process(batch)
    stage.process(batch)  # read again after a crash: nothing new
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(VictimRequest)).scalar() == 1
        dead = c.execute(
            select(DeadLetter.offset, DeadLetter.reasons, DeadLetter.value).order_by(
                DeadLetter.offset
            )
        ).all()
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
        rec(
            "notices.responses",
            0,
            {
                "schema": "notice-response/v1",
                "notice_id": notice_id,
                "provider_id": "beta",
                "status": "removed",
                "at": "2026-11-23T12:00:00Z",
            },
        ),  # not beta's notice
        rec("notices.responses", 1, b"nonsense"),
        rec(
            "notices.responses",
            2,
            {
                "schema": "notice-response/v1",
                "notice_id": notice_id,
                "provider_id": "nobody-knows-me",
                "status": "gone",
            },
        ),
        rec(
            "notices.responses",
            3,
            {
                "schema": "notice-response/v1",
                "notice_id": notice_id,
                "provider_id": "acme",
                "status": "removed",
                "at": "2026-11-23T12:00:00Z",
            },
        ),
    ]
    add_report(engine, "beta", "b1", items=[public_item("f1", "other")])  # beta is known
    stage.handle_responses(responses)
    with engine.connect() as c:
        (n,) = c.execute(select(VictimNotice.answer, VictimNotice.state)).all()
        dead = c.execute(
            select(DeadLetter.offset, DeadLetter.provider_id)
            .where(DeadLetter.topic == "notices.responses")
            .order_by(DeadLetter.offset)
        ).all()
    assert tuple(n) == ("removed", "answered")
    assert dead == [(0, "beta"), (1, None), (2, "nobody-knows-me")]
    refusals = sent(stage, "provider.beta.notices")
    assert [r["type"] for r in refusals] == ["response_invalid"]
    assert refusals[0]["reasons"][0]["code"] == "unknown_notice"
    assert sent(stage, "provider.nobody-knows-me.notices") == []  # no topic for strangers
    assert stage.tick(NOW.replace(year=2100)).repeats == 0  # answered: no more reminders
    engine.dispose()


def test_matches_left_undecided_become_notices_on_tick(stage: VictimStage, db_url: str) -> None:
    engine = make_engine(db_url)
    h = hashes("pic")
    rid = str(uuid.uuid4())
    stage.process(
        [
            rec(
                "victims.requests",
                0,
                request_doc(rid, [Item(1, "image", h["sha256"], None, None, None)]),
            )
        ]
    )
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


def test_answers_are_checked_against_the_companys_signing_key(
    stage: VictimStage, db_url: str
) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    engine = make_engine(db_url)
    add_report(engine, "acme", "a1", items=[public_item("f1", "pic")], cluster="c1")
    h = hashes("pic")
    rid = str(uuid.uuid4())
    stage.process(
        [
            rec(
                "victims.requests",
                0,
                request_doc(rid, [Item(1, "image", h["sha256"], h["md5"], h["pdq"], 100)]),
            )
        ]
    )
    (notice,) = sent(stage, "provider.acme.notices")
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (stage.settings.keys_dir / "providers").mkdir(parents=True, exist_ok=True)
    (stage.settings.keys_dir / "providers" / "acme.pub.pem").write_bytes(pem)
    value = orjson.dumps(
        {
            "schema": "notice-response/v1",
            "notice_id": notice["notice_id"],
            "provider_id": "acme",
            "status": "not_found",
            "at": "2026-11-23T12:00:00Z",
        }
    )

    def answer(offset: int, signature: bytes | None) -> str | None:
        headers = {"signature": base64.b64encode(signature)} if signature else {}
        stage.handle_responses(
            [Record("notices.responses", 0, offset, None, value, headers, 0.0)], now=NOW
        )
        with engine.connect() as c:
            return c.execute(
                select(VictimNotice.answer).where(VictimNotice.notice_id == notice["notice_id"])
            ).scalar()

    forger = Ed25519PrivateKey.generate()
    assert answer(1, forger.sign(value)) is None  # someone else in acme's name: refused
    with engine.connect() as c:
        codes = [
            r[0]["code"]
            for (r,) in c.execute(
                select(DeadLetter.reasons).where(DeadLetter.topic == "notices.responses")
            )
        ]
    assert codes == ["bad_signature"]
    assert not [
        n for n in sent(stage, "provider.acme.notices") if n.get("type") == "response_invalid"
    ]  # and acme is not bothered
    assert answer(2, key.sign(value)) == "not_found"  # acme itself
    engine.dispose()


def test_new_reports_from_reports_triaged_are_matched_once(stage: VictimStage, db_url: str) -> None:
    engine = make_engine(db_url)
    pic = hashes("pic")
    copy = public_item("f1", "re-encoded", pdq=near_pdq(pic["pdq"], 9))  # other bytes
    gone = {**public_item("f1", "pic"), "removed": True, "publicly_available": False}
    batch = [
        rec("reports.triaged", 0, triaged("acme", "late", [copy])),
        rec("reports.triaged", 1, triaged("beta", "gone", [gone])),
        rec("reports.triaged", 2, triaged("acme", "other", [public_item("f1", "else")])),
        rec("reports.triaged", 3, b"{broken"),
        rec("reports.triaged", 4, {**triaged("acme", "x", [copy]), "report_id": None}),
        rec("reports.triaged", 5, triaged("acme", "y", [{**copy, "pdq": "zz" * 32}])),
    ]
    # No request open: nothing is read for it (not even parsed).
    assert stage.match_triaged(batch, now=NOW).found == 0
    rid = str(uuid.uuid4())
    stage.process(
        [
            rec(
                "victims.requests",
                0,
                request_doc(rid, [Item(1, "image", pic["sha256"], pic["md5"], pic["pdq"], 100)]),
            )
        ]
    )

    out = stage.match_triaged(batch, now=NOW)
    assert (out.read, out.malformed, out.found, out.decided, out.notices) == (6, 3, 2, 2, 1)
    (n,) = sent(stage, "provider.acme.notices")
    assert (n["type"], n["provider_report_id"], n["attempt"]) == ("removal", "late", 1)
    assert n["content"]["pdq"] == copy["pdq"]  # the provider's own hashes, not the victim's
    with engine.connect() as c:
        rows = c.execute(
            select(
                VictimMatch.provider_report_id,
                VictimMatch.found_by,
                VictimMatch.signal,
                VictimMatch.distance,
                VictimMatch.state,
            )
        ).all()
    assert sorted(tuple(r) for r in rows) == [
        ("gone", "live", "sha256", 0, "no_notice"),
        ("late", "live", "pdq", 9, "noticed"),
    ]
    matched = [e for e in sent(stage, "audit.events") if e["action"] == "victim.matched"]
    assert len(matched) == 2 and {e["subject"] for e in matched} == {f"victim:{rid}"}

    # Read again (offsets not committed before a crash): nothing new, nothing sent again.
    again = stage.match_triaged(batch, now=NOW)
    assert (again.found, again.decided, again.notices) == (2, 0, 0)
    assert len(sent(stage, "provider.acme.notices")) == 1
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(VictimMatch)).scalar() == 2

    # Withdrawn: a later copy is no longer matched.
    with stage.sessions.begin() as s:
        flow.withdraw(s, rid, by="hanna", now=NOW)
    stage.bank.checked_at = 0.0  # (the worker looks again within 0.1 s)
    later = stage.match_triaged(
        [rec("reports.triaged", 6, triaged("acme", "after", [copy]))], now=NOW
    )
    assert later.found == 0
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(VictimMatch)).scalar() == 2
    engine.dispose()


class FakeReader:
    """reports.triaged: hands out what is not committed yet, as a restarted consumer would."""

    def __init__(self, records: list[Record], stage: VictimStage) -> None:
        self.records, self.stage = records, stage
        self.committed = 0
        self.sent_at_commit: list[int] = []

    def poll(self, max_messages: int = 500) -> list[Record]:
        return self.records[self.committed : self.committed + max_messages]

    def commit(self) -> None:
        self.sent_at_commit.append(len(sent(self.stage, "provider.acme.notices")))
        self.committed = len(self.records)

    def close(self) -> None:
        pass


def test_reports_triaged_are_committed_only_once_matched_and_noticed(stage: VictimStage) -> None:
    pic = hashes("pic")
    stage.process(
        [
            rec(
                "victims.requests",
                0,
                request_doc(str(uuid.uuid4()), [Item(1, "image", pic["sha256"], None, None, None)]),
            )
        ]
    )
    reader = FakeReader(
        [
            rec(
                "reports.triaged",
                i,
                triaged("acme", f"r{i}", [public_item("f1", "pic" if i == 3 else f"n{i}")]),
            )
            for i in range(5)
        ],
        stage,
    )
    stage.triaged = reader  # type: ignore[assignment]
    stage.producer.fail = True  # type: ignore[attr-defined]  # the broker does not take them
    with pytest.raises(RuntimeError):
        stage.poll_triaged()
    assert reader.committed == 0  # read again by the restarted worker
    stage.producer.fail = False  # type: ignore[attr-defined]
    stage._matched_at = 0.0
    assert stage.poll_triaged() == 5
    assert reader.committed == 5 and reader.sent_at_commit == [1]  # sent, then committed
    (n,) = sent(stage, "provider.acme.notices")
    assert n["provider_report_id"] == "r3"
    assert stage.poll_triaged() == 0  # not due again yet, and nothing new
