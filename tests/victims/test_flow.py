"""The victims' flow on a real database (SQLite, and PostgreSQL when configured): filing and
the search of stored reports, notices and their repetition on a moved clock, answers,
escalation, withdrawal, live matching, the victim's status, the figures."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import orjson
import pytest
from sqlalchemy import func, insert, select, update

from centre.audit.tables import AuditSubjectKey
from centre.db import make_engine, make_sessionmaker
from tests.victims.seed import (
    NOW,
    FakeProducer,
    FakeTopics,
    add_report,
    hashes,
    near_pdq,
    public_item,
    request_doc,
)
from triage.tables import Cluster, ClusterSignal
from victims import flow
from victims.bank import VictimBank
from victims.model import Item
from victims.stats import victim_figures
from victims.tables import VictimBankState, VictimHash, VictimMatch, VictimNotice, VictimRequest

DAY = dt.timedelta(hours=24)


class World:
    """A database with stored reports, and the broker's stand-ins."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = make_sessionmaker(self.engine)
        self.producer = FakeProducer()
        self.topics = FakeTopics()
        self.audit = flow.AuditSink(producer=self.producer)

    def file(self, items: list[Item], at: dt.datetime = NOW) -> flow.Filed:
        rid = str(uuid.uuid4())
        with self.sessions.begin() as s:
            filed = flow.file_request(s, request_doc(rid, items), items, source="t/0/1", now=at)
            self.audit.commit(s)
        self.flush()
        return filed

    def flush(self) -> None:
        if self.audit.flush():
            self.producer.flush_or_raise()

    def dispatch(self, at: dt.datetime, escalate_after: int = 3) -> flow.Dispatched:
        return flow.dispatch(
            self.sessions,
            self.producer,
            self.topics,
            now=at,
            repeat=DAY,
            escalate_after=escalate_after,
            audit=self.audit,
        )

    def sent(self, provider: str) -> list[dict[str, Any]]:
        return [orjson.loads(v) for v, _k in self.producer.on(f"provider.{provider}.notices")]

    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for v, _k in self.producer.on("audit.events")]

    def answer(self, doc: dict[str, Any], at: dt.datetime, source: str = "") -> flow.Answered:
        with self.sessions.begin() as s:
            out = flow.answer(
                s,
                {"schema": "notice-response/v1", "at": "2026-11-23T12:00:00Z", **doc},
                source=source or f"r/0/{uuid.uuid4().hex}",
                now=at,
            )
            self.audit.commit(s)
        self.flush()
        return out

    def notices(self, rid: str) -> list[VictimNotice]:
        with self.sessions() as s:
            return list(
                s.scalars(
                    select(VictimNotice)
                    .where(VictimNotice.request_id == rid)
                    .order_by(VictimNotice.provider_id, VictimNotice.report_id)
                )
            )


@pytest.fixture
def world(db_url: str) -> Any:
    w = World(db_url)
    yield w
    w.engine.dispose()


def item_of(seed: str, no: int = 1, **over: Any) -> Item:
    h = hashes(seed)
    return Item(no, "image", h["sha256"], h["md5"], h["pdq"], 100, **over)


def test_filing_searches_every_stored_report(world: World) -> None:
    e = world.engine
    pic = hashes("pic")
    add_report(e, "acme", "a1", items=[public_item("f1", "pic")], cluster="c-pic")
    # a re-encoded copy (new bytes, PDQ 12 bits away) in a cluster of its own
    add_report(
        e,
        "acme",
        "a2",
        items=[public_item("f2", "pic-re", pdq=near_pdq(pic["pdq"], 12))],
        cluster="c-re",
    )
    # the same picture in a cluster that was merged into another; its signals are the root's
    add_report(
        e, "beta", "b1", items=[public_item("f1", "pic")], cluster="c-old", merged_into="c-pic"
    )
    # removed and not public: matched, no notice; somebody else's picture: not matched
    add_report(
        e,
        "gamma",
        "g1",
        items=[public_item("f1", "pic", publicly_available=False, removed=True)],
        cluster="c-pic",
    )
    add_report(e, "delta", "d1", items=[public_item("f1", "other")], cluster="c-other")
    # a report with the victim's video by md5 only
    vid = hashes("vid")
    add_report(
        e,
        "delta",
        "d2",
        items=[
            {
                "content_id": "v",
                "media_type": "video",
                "md5": vid["md5"],
                "url": "https://v.example/1",
            }
        ],
        cluster="c-vid",
    )

    filed = world.file([item_of("pic", 1), Item(2, "video", None, vid["md5"])])
    assert filed.new and filed.searched.matches == 5 and filed.searched.notices == 4
    with world.sessions() as s:
        rows = s.execute(
            select(
                VictimMatch.provider_id,
                VictimMatch.provider_report_id,
                VictimMatch.item,
                VictimMatch.signal,
                VictimMatch.state,
                VictimMatch.found_by,
            )
        ).all()
        assert s.scalar(select(VictimBankState.version)) == 1
    got = {(p, r): (i, sig, st) for p, r, i, sig, st, _f in rows}
    assert got == {
        ("acme", "a1"): (1, "sha256", "noticed"),
        ("acme", "a2"): (1, "pdq", "noticed"),
        ("beta", "b1"): (1, "sha256", "noticed"),
        ("gamma", "g1"): (1, "sha256", "no_notice"),
        ("delta", "d2"): (2, "md5", "noticed"),
    }
    assert {f for *_x, f in rows} == {"past"}

    # a replay of the same message changes nothing
    with world.sessions.begin() as s:
        again = flow.file_request(
            s,
            request_doc(filed.request_id, [item_of("pic")]),
            [item_of("pic")],
            source="t/0/1",
            now=NOW,
        )
    assert not again.new
    with world.sessions() as s:
        assert s.scalar(select(func.count()).select_from(VictimMatch)) == 5
    actions = [e["action"] for e in world.events()]
    assert actions.count("victim.request_filed") == 1 and actions.count("victim.matched") == 5
    assert "victim.stored_reports_searched" in actions


def test_a_step_is_never_recorded_without_its_audit_entries(world: World) -> None:
    add_report(world.engine, "acme", "a1", items=[public_item("f1", "pic")], cluster="c1")
    rid = str(uuid.uuid4())
    world.producer.fail = True  # the broker does not take the audit events
    with pytest.raises(RuntimeError):
        with world.sessions.begin() as s:
            flow.file_request(
                s, request_doc(rid, [item_of("pic")]), [item_of("pic")], source="t/0/9", now=NOW
            )
            world.audit.settle(s)
    with world.sessions() as s:
        assert s.get(VictimRequest, rid) is None  # rolled back: read again, filed then
        assert s.scalar(select(func.count()).select_from(VictimMatch)) == 0
    world.producer.fail = False
    world.audit = flow.AuditSink(producer=world.producer)
    with world.sessions.begin() as s:  # the replay files it, and its entries go with it
        assert flow.file_request(
            s, request_doc(rid, [item_of("pic")]), [item_of("pic")], source="t/0/9", now=NOW
        ).new
        world.audit.settle(s)
    assert "victim.request_filed" in {e["action"] for e in world.events()}


def test_notices_repeat_daily_until_answered_and_escalate(world: World) -> None:
    e = world.engine
    add_report(e, "acme", "a1", items=[public_item("f1", "pic")], cluster="c1")
    add_report(e, "beta", "b1", items=[public_item("f1", "pic")], cluster="c1")
    rid = world.file([item_of("pic")]).request_id

    assert world.dispatch(NOW).sent == 2
    (first,) = world.sent("acme")
    assert first["type"] == "removal" and first["attempt"] == 1
    assert first["provider_report_id"] == "a1" and first["url"] == "https://host.example/pic.jpg"
    assert first["content"]["sha256"] == hashes("pic")["sha256"]
    assert first["request_ref"] != rid and rid not in json.dumps(first)  # never the request
    assert world.sent("beta")[0]["request_ref"] != first["request_ref"]  # per provider
    assert world.dispatch(NOW + dt.timedelta(hours=23)).sent == 0  # not due yet

    # acme answers: removed two hours after the notice
    out = world.answer(
        {
            "notice_id": first["notice_id"],
            "provider_id": "acme",
            "status": "removed",
            "removed_at": "2026-11-23T14:00:00Z",
        },
        NOW + dt.timedelta(hours=3),
    )
    assert out.accepted and out.changed
    # a day later only beta's notice goes again, same id, attempt 2
    d = world.dispatch(NOW + DAY)
    assert (d.sent, d.repeats) == (0, 1)
    assert [n["attempt"] for n in world.sent("acme")] == [1]
    beta = world.sent("beta")
    assert [n["attempt"] for n in beta] == [1, 2] and beta[0]["notice_id"] == beta[1]["notice_id"]
    assert beta[1]["first_sent_at"] == beta[0]["at"]
    world.dispatch(NOW + 2 * DAY)
    d = world.dispatch(NOW + 3 * DAY)  # sent three times without an answer: escalated
    assert d.escalated == 1 and d.repeats == 1
    with world.sessions() as s:
        esc = flow.escalations(s)
    assert [(x["provider_id"], x["why"], x["sent"]) for x in esc] == [("beta", "unanswered", 4)]
    assert rid not in json.dumps(esc)

    by = {n.provider_id: n for n in world.notices(rid)}
    assert by["acme"].state == "answered" and by["acme"].answer == "removed"
    assert by["acme"].removed_at is not None
    with world.sessions() as s:
        figures = victim_figures(s)
    assert figures["time_to_removal_by_provider"] == {
        "acme": {"removals": 1, "median_hours": 2.0, "p90_hours": 2.0}
    }
    assert figures["removal_notices"]["escalated_unanswered"] == 1
    assert figures["removal_notices"]["reminders"] == 3
    assert rid not in json.dumps(figures) and "pic" not in json.dumps(figures)


def test_answers_refusals_and_answers_that_are_not_yours(world: World) -> None:
    e = world.engine
    add_report(
        e, "acme", "a1", items=[public_item("f1", "pic"), public_item("f2", "pic2")], cluster="c1"
    )
    add_report(e, "beta", "b1", items=[public_item("f1", "pic")], cluster="c1")
    rid = world.file([item_of("pic", 1), item_of("pic2", 2)]).request_id
    world.dispatch(NOW)
    n1, n2 = sorted(world.sent("acme"), key=lambda n: n["content_id"])
    (nb,) = world.sent("beta")

    # beta answers acme's notice, and a notice that does not exist: refused, nothing changed
    wrong = world.answer(
        {"notice_id": n1["notice_id"], "provider_id": "beta", "status": "removed"}, NOW
    )
    unknown = world.answer(
        {"notice_id": str(uuid.uuid4()), "provider_id": "beta", "status": "removed"}, NOW
    )
    assert not wrong.accepted and not unknown.accepted
    assert (
        [p["code"] for p in wrong.problems]
        == [p["code"] for p in unknown.problems]
        == ["unknown_notice"]
    )
    assert all(n.answer is None for n in world.notices(rid))
    assert [e["action"] for e in world.events()].count("victim.response_refused") == 2

    refused = world.answer(
        {
            "notice_id": n2["notice_id"],
            "provider_id": "acme",
            "status": "refused",
            "reason": "lawful under our terms",
        },
        NOW,
    )
    assert refused.changed
    world.answer(
        {"notice_id": nb["notice_id"], "provider_id": "beta", "status": "not_found"},
        NOW + dt.timedelta(hours=1),
    )
    # the same answer again (a replay) changes nothing; a later removal after a refusal counts
    again = world.answer(
        {"notice_id": nb["notice_id"], "provider_id": "beta", "status": "removed"},
        NOW + dt.timedelta(hours=2),
    )
    assert again.accepted and not again.changed
    later = world.answer(
        {"notice_id": n2["notice_id"], "provider_id": "acme", "status": "removed"},
        NOW + dt.timedelta(hours=5),
    )
    assert later.changed
    by = {n.notice_id: n for n in world.notices(rid)}
    assert by[nb["notice_id"]].answer == "not_found"
    assert by[n2["notice_id"]].answer == "removed"
    assert by[n2["notice_id"]].escalation == "refused"  # the refusal stays on the list
    with world.sessions() as s:
        esc = flow.escalations(s)
    assert [(x["provider_id"], x["why"]) for x in esc] == [("acme", "refused")]
    assert world.dispatch(NOW + 2 * DAY).repeats == 1  # only n1 is still waiting


def test_a_no_removal_hold_makes_the_notice_wait_until_it_ends(world: World) -> None:
    from centre import messages as m
    from routing.tables import Hold

    e = world.engine
    add_report(e, "acme", "a1", items=[public_item("f1", "pic")], cluster="c1")
    add_report(e, "beta", "b1", items=[public_item("f1", "pic")], cluster="c1")
    add_report(e, "gamma", "g1", items=[public_item("f1", "pic")], cluster="c1")
    world.file([item_of("pic")])
    until = NOW + 10 * DAY

    def hold(provider: str, prid: str, no_removal: bool) -> None:
        report_id = m.report_id_for(provider, prid)
        with e.begin() as c:
            c.execute(
                insert(Hold),
                [
                    {
                        "hold_id": str(uuid.uuid4()),
                        "report_id": report_id,
                        "case_id": m.case_id_for(report_id),
                        "provider_id": provider,
                        "no_inform": not no_removal,
                        "no_removal": no_removal,
                        "reason": "investigation",
                        "requested_by": "de",
                        "created_at": NOW,
                        "until": until,
                    }
                ],
            )

    hold("acme", "a1", True)  # law enforcement: do not remove it yet
    hold("gamma", "g1", False)  # only: do not tell the user; removal may go ahead
    d = world.dispatch(NOW)
    assert (d.sent, d.held) == (2, 1)
    assert world.sent("acme") == [] and len(world.sent("gamma")) == 1
    d = world.dispatch(NOW + 2 * DAY)  # acme's is not looked at again before the end
    assert (d.held, d.repeats) == (0, 2)  # beta's and gamma's reminders
    hold("beta", "b1", True)  # a hold after the notice went: no reminders while it lasts
    d = world.dispatch(NOW + 9 * DAY)
    assert (d.sent, d.repeats, d.held) == (0, 1, 1)  # gamma's reminder; beta's waits
    d = world.dispatch(until + dt.timedelta(minutes=1))
    assert (d.sent, d.repeats) == (1, 2)  # acme's first, beta's and gamma's reminders
    assert world.sent("acme")[0]["attempt"] == 1
    assert [n["attempt"] for n in world.sent("beta")] == [1, 2, 3]  # none during the hold
    held = [x for x in world.events() if x["action"] == "victim.notice_held"]
    assert len(held) == 2 and {x["details"]["until"] for x in held} == {m.iso(until)}


def test_an_answer_to_a_notice_not_yet_marked_sent_counts_it_sent(world: World) -> None:
    add_report(world.engine, "acme", "a1", items=[public_item("f1", "pic")], cluster="c1")
    rid = world.file([item_of("pic")]).request_id
    (n,) = world.notices(rid)  # queued; the worker stopped after sending, before marking
    out = world.answer(
        {
            "notice_id": n.notice_id,
            "provider_id": "acme",
            "status": "removed",
            "removed_at": "2026-11-23T13:00:00Z",
        },
        NOW + dt.timedelta(hours=2),
    )
    assert out.changed
    (n,) = world.notices(rid)
    assert n.attempts == 1 and n.first_sent_at is not None and n.state == "answered"
    with world.sessions() as s:
        figures = victim_figures(s)
    assert figures["time_to_removal_by_provider"]["acme"]["removals"] == 1
    assert world.dispatch(NOW + 2 * DAY).sent == 0  # answered: never sent again


def test_withdrawal_removes_the_bank_and_cancels_notices(world: World) -> None:
    e = world.engine
    add_report(e, "acme", "a1", items=[public_item("f1", "pic")], cluster="c1")
    filed = world.file([item_of("pic")])
    rid = filed.request_id
    world.dispatch(NOW)
    add_report(e, "beta", "b1", items=[public_item("f1", "pic")], cluster="c1")
    with world.sessions.begin() as s:  # found again before the withdrawal, not yet sent
        flow.past_match(s, [rid], now=NOW)
    with world.sessions.begin() as s:
        w = flow.withdraw(s, rid, by="hanna", now=NOW + dt.timedelta(hours=1))
        world.audit.commit(s)
    world.flush()
    assert (w.hashes_removed, w.notices_cancelled, w.cancellations_queued) == (3, 2, 1)
    with world.sessions() as s:
        assert s.scalar(select(func.count()).select_from(VictimHash)) == 0
        assert s.scalar(select(VictimBankState.version)) == 2
        assert len(VictimBank.load(s)) == 0
    d = world.dispatch(NOW + dt.timedelta(hours=2))
    assert (d.sent, d.cancellations) == (0, 1)
    cancel = world.sent("acme")[-1]
    assert (
        cancel["type"] == "removal_cancelled"
        and cancel["cancels"] == world.sent("acme")[0]["notice_id"]
    )
    assert world.sent("beta") == []  # its notice was never sent: nothing to cancel
    assert world.dispatch(NOW + 3 * DAY).cancellations == 0  # once only
    assert {n.state for n in world.notices(rid)} == {"cancelled", "done"}
    ev = [x for x in world.events() if x["action"] == "victim.request_withdrawn"]
    assert ev and ev[0]["person"] == f"victim:{rid}" and ev[0]["actor"] == "staff:hanna"
    with world.sessions.begin() as s:
        assert flow.withdraw(s, rid, by="hanna", now=NOW).repeated
        with pytest.raises(flow.NotFoundOrWrongPin):
            flow.withdraw(s, str(uuid.uuid4()), by="hanna", now=NOW)


def test_a_withdrawal_while_a_notice_is_on_its_way_is_told_to_the_provider(world: World) -> None:
    add_report(world.engine, "acme", "a1", items=[public_item("f1", "pic")], cluster="c1")
    rid = world.file([item_of("pic")]).request_id
    real_send = world.producer.send

    def send_and_withdraw(topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> None:
        real_send(topic, value, key, **kw)
        if b'"removal"' in value:  # the victim withdraws just as the notice leaves
            world.producer.send = real_send  # type: ignore[method-assign]
            with world.sessions.begin() as s:
                assert flow.withdraw(s, rid, by="hanna", now=NOW).cancellations_queued == 0

    world.producer.send = send_and_withdraw  # type: ignore[method-assign]
    assert world.dispatch(NOW).sent == 1
    assert world.dispatch(NOW + dt.timedelta(minutes=1)).cancellations == 1
    removal, cancel = world.sent("acme")
    assert cancel["type"] == "removal_cancelled" and cancel["cancels"] == removal["notice_id"]
    # and a notice queued for a request withdrawn before it went is never sent
    add_report(world.engine, "beta", "b1", items=[public_item("f1", "pic2")], cluster="c2")
    rid2 = world.file([item_of("pic2")]).request_id
    with world.sessions.begin() as s:
        s.execute(
            update(VictimRequest).where(VictimRequest.request_id == rid2).values(state="withdrawn")
        )  # as a withdrawal racing the filing leaves it
    assert world.dispatch(NOW + dt.timedelta(minutes=2)).sent == 0
    assert world.sent("beta") == []
    assert {n.state for n in world.notices(rid2)} == {"cancelled"}


def envelope(provider: str, prid: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    from centre import messages as m

    rid = m.report_id_for(provider, prid)
    return {
        "report_id": rid,
        "case_id": m.case_id_for(rid),
        "provider_id": provider,
        "provider_report_id": prid,
        "received_at": "2026-11-24T08:00:00.000Z",
        "report": {
            "schema": "report/v1",
            "provider_id": provider,
            "provider_report_id": prid,
            "content": items,
        },
    }


def test_live_matching_as_the_victims_worker_calls_it(world: World) -> None:
    pic = hashes("pic")
    bank = VictimBank()
    with world.sessions.begin() as s:
        assert (
            flow.live_matches(s, bank, [envelope("acme", "x", [public_item("f1", "pic")])], NOW)
            == 0
        )  # no request yet
    rid = world.file([item_of("pic")]).request_id
    bank.checked_at = 0.0
    batch = [
        envelope(
            "acme",
            "late-1",
            [public_item("f1", "re", pdq=near_pdq(pic["pdq"], 9)), public_item("f2", "unrelated")],
        ),
        envelope(
            "beta",
            "late-2",
            [{**public_item("f1", "pic"), "removed": True, "publicly_available": False}],
        ),
        envelope(
            "gamma",
            "late-3",
            [{**public_item("f1", "pic"), "pdq_quality": 10, "sha256": "0" * 64, "md5": "0" * 32}],
        ),
    ]
    with world.sessions.begin() as s:
        assert flow.live_matches(s, bank, batch, NOW) == 2
        assert flow.live_matches(s, bank, batch[:1], NOW) == 1  # a replay: ignored in the db
    with world.sessions.begin() as s:
        assert flow.notice_new_matches(s, now=NOW) == (2, 1)
        rows = s.execute(
            select(
                VictimMatch.provider_id,
                VictimMatch.found_by,
                VictimMatch.distance,
                VictimMatch.state,
            )
        ).all()
    assert sorted(rows) == [("acme", "live", 9, "noticed"), ("beta", "live", 0, "no_notice")]
    world.dispatch(NOW)
    assert world.sent("acme")[0]["provider_report_id"] == "late-1"
    # withdrawn: the worker's copy reloads at once when asked and matches nothing more
    with world.sessions.begin() as s:
        flow.withdraw(s, rid, by="hanna", now=NOW)
    bank.checked_at = 0.0
    with world.sessions.begin() as s:
        assert (
            flow.live_matches(
                s, bank, [envelope("acme", "late-4", [public_item("f1", "pic")])], NOW
            )
            == 0
        )


def test_a_failure_in_live_matching_never_stops_the_worker(world: World) -> None:
    rid = world.file([item_of("pic")]).request_id
    bank = VictimBank()
    with world.sessions.begin() as s:
        s.execute(update(VictimRequest).values(rescan_at=None))
        n = flow.live_matches(
            s,
            bank,
            [{"report_id": "broken", "report": {"content": [public_item("f1", "pic")]}}],
            NOW,
        )  # no provider_id: a bug
    assert n == 0
    later = NOW + flow.RESCAN_AFTER_FAILURE
    with world.sessions.begin() as s:
        assert s.get(VictimRequest, rid).rescan_at == later  # searched again instead
        assert flow.rescan_due(s, NOW) == []
        assert flow.rescan_due(s, later) == [rid]
        assert s.get(VictimRequest, rid).rescan_at is None


def test_a_database_error_in_live_matching_leaves_the_transaction_usable(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy import text

    rid = world.file([item_of("pic")]).request_id
    bank = VictimBank()

    def broken(s: Any, rows: list[dict[str, Any]]) -> None:
        s.execute(text("INSERT INTO no_such_table VALUES (:url)"), {"url": rows[0]["url"]})

    monkeypatch.setattr(flow, "insert_matches", broken)
    with world.sessions.begin() as s:
        s.execute(update(VictimRequest).values(rescan_at=None))  # the batch's writes before
        n = flow.live_matches(s, bank, [envelope("acme", "x", [public_item("f1", "pic")])], NOW)
        assert n == 0
        s.execute(select(func.count()).select_from(VictimRequest))  # still usable (PostgreSQL)
    with world.sessions() as s:
        assert s.get(VictimRequest, rid).rescan_at == NOW + flow.RESCAN_AFTER_FAILURE
    assert "host.example" not in caplog.text and hashes("pic")["sha256"] not in caplog.text


def test_a_url_with_control_characters_is_stored_without_them() -> None:
    row = flow.match_row(
        "r",
        1,
        "sha256",
        0,
        report_id="x",
        case_id="y",
        provider_id="p",
        provider_report_id="a\x00b",
        reported_at=NOW,
        content={"content_id": "f\x001", "url": "https://h/\x00a\nb"},
        found_by="live",
        now=NOW,
    )
    assert (row["provider_report_id"], row["content_id"], row["url"]) == (
        "ab",
        "f1",
        "https://h/ab",
    )


def test_status_shows_the_victim_everything_and_nobody_else(world: World) -> None:
    e = world.engine
    add_report(
        e,
        "acme",
        "secret-ref-1",
        items=[public_item("f1", "pic"), public_item("f2", "someone-else")],
        cluster="c1",
        recipients=("nl", "europol"),
    )
    add_report(
        e,
        "beta",
        "secret-ref-2",
        items=[public_item("f1", "pic")],
        cluster="c1",
        recipients=(),
        received_at=NOW + DAY,
    )
    rid = world.file([item_of("pic"), item_of("never-seen", 2)]).request_id
    world.dispatch(NOW)
    n = world.sent("acme")[0]
    world.answer(
        {"notice_id": n["notice_id"], "provider_id": "acme", "status": "removed"},
        NOW + dt.timedelta(hours=4),
    )
    with world.sessions() as s:
        st = flow.status(s, rid)
    assert st["reports_holding_your_material"] == 2 and st["items_found"] == 1
    assert st["items_in_your_list"] == 2
    prov = {p["provider"]: p for p in st["providers"]}
    assert prov["acme"]["removed"] == 1 and prov["beta"]["waiting_for_answer"] == 1
    assert prov["beta"]["first_reported_at"] == "2026-11-24T12:00:00.000Z"
    assert {f["to"]: f["cases"] for f in st["forwarded_to_law_enforcement"]} == {
        "nl": 1,
        "europol": 1,
    }
    assert st["removal_notices"]["removed"] == 1 and st["removal_notices"]["sent"] == 2
    text = json.dumps(st)
    for other in (
        "secret-ref",
        "someone-else",
        hashes("someone-else")["sha256"],
        "host.example",
        "report_id",
        "case_id",
        hashes("pic")["sha256"],
    ):
        assert other not in text, other
    with world.sessions() as s, pytest.raises(flow.NotFoundOrWrongPin):
        flow.status(s, str(uuid.uuid4()))


def test_an_open_request_keeps_the_victims_key(world: World) -> None:
    rid = world.file([item_of("pic")]).request_id
    with world.sessions.begin() as s:
        s.execute(
            insert(AuditSubjectKey),
            [
                {
                    "person": f"victim:{rid}",
                    "kind": "victim",
                    "key_id": "k" * 16,
                    "kek_id": "e" * 16,
                    "wrapped": b"x",
                    "created_at": NOW - 10 * DAY,
                    "last_used_at": NOW - 8 * DAY,
                }
            ],
        )
        assert flow.keep_alive(s, NOW) == 1
        world.audit.commit(s)
    world.flush()
    ev = [x for x in world.events() if x["action"] == "victim.request_open"]
    assert ev[0]["person"] == f"victim:{rid}" and ev[0]["personal"]


def test_removal_hours() -> None:
    t0 = NOW
    rows = [("p", t0, t0 + dt.timedelta(hours=h)) for h in range(1, 11)] + [("q", t0, None)]
    assert flow.removal_hours(rows) == {
        "p": {"removals": 10, "median_hours": 5.5, "p90_hours": 9.0}
    }


def test_a_merged_chain_is_followed_up_and_down(world: World) -> None:
    e = world.engine
    add_report(e, "acme", "a1", items=[public_item("f1", "pic")], cluster="root")
    add_report(e, "acme", "a2", items=[public_item("f1", "pic")], cluster="mid", merged_into="root")
    add_report(e, "acme", "a3", items=[public_item("f1", "pic")], cluster="leaf", merged_into="mid")
    with world.sessions.begin() as s:  # the signal now belongs to the oldest leaf
        s.execute(update(ClusterSignal).values(cluster_id="leaf"))
        assert s.scalar(select(func.count()).select_from(Cluster)) == 3
    assert world.file([item_of("pic")]).searched.matches == 3
