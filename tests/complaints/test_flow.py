"""The complaint flow on a real database (SQLite, and PostgreSQL when available): filing,
unmatched, joining, assigning, notes, deciding, and each effect of a decision, with the
broker side replaced by a recorder (the integration tests use the real one)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update

from centre.crypto import open_envelope
from centre.db import make_engine, make_sessionmaker
from centre.keys import KeySet
from complaints import flow, states
from complaints.model import ComplaintV1
from complaints.tables import (
    Complaint,
    ComplaintEvent,
    ComplaintFiling,
    ComplaintMessage,
    ComplaintRelatedCase,
)
from routing.tables import Hold
from tests.complaints.seed import (
    NOW,
    FakeProducer,
    FakeTopics,
    add_hold,
    add_report,
    hashes,
    item,
)
from triage.tables import Indicator

SLA = 7


class World:
    def __init__(self, url: str, home: Path) -> None:
        self.engine = make_engine(url)
        self.sessions = make_sessionmaker(self.engine)
        self.keys = KeySet.init(home / "keys")
        self.producer = FakeProducer()
        self.topics = FakeTopics()

    def file(self, now: dt.datetime = NOW, **over: Any) -> flow.Filed:
        doc: dict[str, Any] = {
            "schema": "complaint/v1",
            "complaint_ref": "u-1",
            "channel": "provider",
            "provider_id": "acme",
            "concerns": {"provider_report_id": "r1"},
            "grounds": "wrongful_removal",
            "contact_ref": "ticket-1",
            "filed_at": "2026-11-23T10:00:00Z",
        }
        doc.update(over)
        with self.sessions.begin() as s:
            return flow.file_complaint(
                s,
                ComplaintV1.model_validate(doc),
                source="test",
                actor="tester",
                now=now,
                sla_days=SLA,
            )

    def step(self, fn: Any, *args: Any, **kw: Any) -> Any:
        with self.sessions.begin() as s:
            return fn(s, *args, **kw)

    def dispatch(self, now: dt.datetime = NOW, **kw: Any) -> flow.Dispatched:
        return flow.dispatch(self.sessions, self.producer, self.keys, self.topics, now=now, **kw)

    def rows(self, model: Any, *where: Any) -> list[Any]:
        with self.sessions() as s:
            return list(s.scalars(select(model).where(*where)))

    def complaint(self, cid: str) -> Complaint:
        return self.rows(Complaint, Complaint.complaint_id == cid)[0]

    def notices(self, provider: str) -> list[dict[str, Any]]:
        return [orjson.loads(v) for v, _k in self.producer.on(f"provider.{provider}.notices")]

    def opened(self, recipient: str) -> list[dict[str, Any]]:
        return [
            orjson.loads(
                open_envelope(
                    v,
                    recipient_id=recipient,
                    recipient_private=self.keys.recipient_private_keys(recipient),
                    centre_public=self.keys.centre_public_keys(),
                )
            )
            for v, _k in self.producer.on(f"le.{recipient}")
        ]


@pytest.fixture
def w(db_url: str, tmp_path: Path) -> Iterator[World]:
    world = World(db_url, tmp_path)
    yield world
    world.engine.dispose()


def decide(
    w: World,
    cid: str,
    uphold: bool,
    reason: str = "not CSAM: a beach photo",
    now: dt.datetime = NOW,
) -> flow.Decided:
    w.step(flow.assign, cid, "hanna", by="lead", now=now)
    return w.step(flow.decide, cid, uphold=uphold, reason=reason, by="hanna", now=now)


# ------------------------------------------------------------------------------- filing


def test_filing_matches_the_report_sets_the_deadline_and_acknowledges(w: World) -> None:
    rid, case = add_report(w.engine, "acme", "r1", items=[item("f1", "a")])
    f = w.file()
    assert (f.matched, f.joined, f.new, f.state) == (True, False, True, "received")
    assert f.case_id == case and f.due_at == NOW + dt.timedelta(days=SLA)
    c = w.complaint(f.complaint_id)
    assert (c.report_id, c.matched_by, c.provider_id) == (rid, "provider_report_id", "acme")
    assert [e.action for e in w.rows(ComplaintEvent)] == ["filed"]
    w.dispatch(complaint_ids=[f.complaint_id])
    (ack,) = w.notices("acme")
    assert ack["type"] == "complaint_received" and ack["complaint_id"] == f.complaint_id
    assert ack["complaint_ref"] == "u-1" and ack["matched"] is True
    assert "ticket-1" not in orjson.dumps(ack).decode()
    # the same filing again (a resend, a replay): nothing new, not acknowledged twice
    again = w.file()
    assert again.complaint_id == f.complaint_id and not again.new
    w.dispatch(complaint_ids=[f.complaint_id])
    assert len(w.notices("acme")) == 1
    assert len(w.rows(ComplaintFiling)) == 1


def test_a_complaint_naming_nothing_known_is_kept_unmatched(w: World) -> None:
    f = w.file(concerns={"report_id": "no-such-report"}, channel="centre")
    assert not f.matched and f.case_id is None
    c = w.complaint(f.complaint_id)
    assert c.state == "received" and c.matched_by is None
    decide_fn = w.step
    decide_fn(flow.assign, f.complaint_id, "hanna", by="lead", now=NOW)
    with pytest.raises(flow.ComplaintError, match="unmatched"):
        w.step(flow.decide, f.complaint_id, uphold=True, reason="x", by="hanna", now=NOW)
    # found later by the handler: linked, then it can be upheld
    _rid, case = add_report(w.engine, "blue", "b1", items=[item("f1", "b")])
    sub = w.step(
        flow.link,
        f.complaint_id,
        {"provider_id": "blue", "provider_report_id": "b1"},
        by="hanna",
        now=NOW,
    )
    assert sub.case_id == case
    d = w.step(flow.decide, f.complaint_id, uphold=True, reason="wrong", by="hanna", now=NOW)
    assert d.retractions == 2


def test_a_second_complaint_on_the_same_report_joins_the_open_one(w: World) -> None:
    add_report(w.engine, "acme", "r1", items=[item("f1", "a")])
    first = w.file()
    second = w.file(complaint_ref="u-2", contact_ref="ticket-2", grounds="wrongful_report")
    by_authority = w.file(
        complaint_ref="ca-9",
        channel="coordinating_authority",
        authority="fr",
        provider_id=None,
        concerns={"provider_id": "acme", "provider_report_id": "r1"},
    )
    assert second.joined and by_authority.joined
    assert second.complaint_id == by_authority.complaint_id == first.complaint_id
    assert len(w.rows(Complaint)) == 1 and len(w.rows(ComplaintFiling)) == 3
    # decided: every company that filed hears the decision on its own reference
    d = decide(w, first.complaint_id, False, "the material is CSAM")
    assert d.notices == 2
    w.dispatch(complaint_ids=[first.complaint_id])
    decided = [n for n in w.notices("acme") if n["type"] == "complaint_decided"]
    assert sorted(n["complaint_ref"] for n in decided) == ["u-1", "u-2"]
    # a complaint after the decision opens a new one
    later = w.file(complaint_ref="u-3")
    assert not later.joined and later.complaint_id != first.complaint_id


def test_a_complaint_by_hash_concerns_the_filers_own_report_of_that_content(w: World) -> None:
    add_report(
        w.engine,
        "blue",
        "b1",
        items=[item("f1", "x")],
        cluster="c1",
        received_at=NOW - dt.timedelta(days=3),
    )
    rid, _case = add_report(
        w.engine,
        "acme",
        "a1",
        items=[item("g7", "x")],
        cluster="c1",
        received_at=NOW - dt.timedelta(days=1),
    )
    f = w.file(concerns={"md5": hashes("x")["md5"].upper()})
    c = w.complaint(f.complaint_id)
    assert (c.report_id, c.matched_by) == (rid, "md5")
    # from a filer with no report of it: the earliest report of the cluster
    g = w.file(
        complaint_ref="ca-1",
        channel="coordinating_authority",
        authority="de",
        provider_id=None,
        concerns={"sha256": hashes("x")["sha256"]},
    )
    assert g.joined is False
    assert w.complaint(g.complaint_id).provider_id == "blue"


# ------------------------------------------------------------------------------- handling


def test_assign_note_and_the_state_machine(w: World) -> None:
    add_report(w.engine, "acme", "r1", items=[item("f1", "a")])
    cid = w.file().complaint_id
    with pytest.raises(states.TransitionError, match="assign"):
        w.step(flow.decide, cid, uphold=False, reason="x", by="hanna", now=NOW)
    c = w.step(flow.assign, cid, "hanna", by="lead", now=NOW)
    assert (c.state, c.assignee) == ("under_review", "hanna")
    c = w.step(flow.assign, cid, "omar", by="lead", now=NOW)
    assert (c.state, c.assignee) == ("under_review", "omar")
    w.step(flow.note, cid, "asked the provider for the original", by="omar", now=NOW)
    with pytest.raises(flow.ComplaintError, match="must not be empty"):
        w.step(flow.note, cid, "  ", by="omar", now=NOW)
    with pytest.raises(flow.ComplaintError, match="reason"):
        w.step(flow.decide, cid, uphold=False, reason=" ", by="omar", now=NOW)
    with pytest.raises(flow.NotFound):
        w.step(flow.assign, "nope", "x", by="lead", now=NOW)
    w.step(flow.decide, cid, uphold=False, reason="stands", by="omar", now=NOW)
    with pytest.raises(states.TransitionError, match="final"):
        w.step(flow.decide, cid, uphold=True, reason="changed my mind", by="omar", now=NOW)
    with pytest.raises(states.TransitionError, match="final"):
        w.step(flow.assign, cid, "hanna", by="lead", now=NOW)
    again = w.step(flow.decide, cid, uphold=False, reason="stands", by="omar", now=NOW)
    assert again.repeated
    actions = [(e.action, e.actor) for e in w.rows(ComplaintEvent)]
    assert actions == [
        ("filed", "tester"),
        ("assigned", "lead"),
        ("reassigned", "lead"),
        ("noted", "omar"),
        ("decided", "omar"),
    ]
    decided = w.rows(ComplaintEvent, ComplaintEvent.action == "decided")[0]
    assert decided.details["from"] == "under_review" and decided.details["to"] == "rejected"


# ------------------------------------------------------------------------------- effects


def test_upheld_retracts_everywhere_banks_the_content_and_lists_the_cluster(w: World) -> None:
    rid, case = add_report(
        w.engine,
        "acme",
        "r1",
        items=[
            item("f1", "a"),
            item("f2", "b", pdq_quality=30),
            {"content_id": "t", "media_type": "text", "text": "hi"},
        ],
        recipients=("de", "fr", "europol"),
        cluster="root",
    )
    others = [
        add_report(w.engine, "blue", f"b{i}", items=[item("f1", "a")], cluster="root")
        for i in range(3)
    ]
    merged = add_report(
        w.engine, "blue", "m1", items=[item("f9", "m")], cluster="old", merged_into="root"
    )
    add_report(w.engine, "blue", "elsewhere", items=[item("f1", "zz")], cluster="other")
    cid = w.file().complaint_id
    d = decide(w, cid, True)
    assert (d.retractions, d.notices) == (3, 2)  # reinstatement + complaint_decided
    assert d.related_cases == 4
    related = {r.case_id for r in w.rows(ComplaintRelatedCase)}
    assert related == {c for _r, c in others} | {merged[1]}
    # every hash of f1; f2's hashes except its low-quality PDQ, which triage does not use
    fp = w.rows(Indicator, Indicator.bank == "false_positive")
    assert sorted((i.kind, i.value) for i in fp) == sorted(
        [(k, hashes("a")[k]) for k in ("sha256", "md5", "pdq")]
        + [(k, hashes("b")[k]) for k in ("sha256", "md5")]
    )
    assert {i.source for i in fp} == {f"complaint:{cid}"}
    assert all(i.added_by == "hanna" and cid in (i.reason or "") for i in fp)
    assert d.banked == 5

    sent = w.dispatch(complaint_ids=[cid])  # the receipt had not gone yet: it goes too
    assert (sent.retractions, sent.notices, sent.held) == (3, 3, 0)
    for rcpt in ("de", "fr", "europol"):
        (doc,) = w.opened(rcpt)
        assert doc["schema"] == "retraction/v1" and doc["case_id"] == case
        assert doc["complaint_id"] == cid and "beach photo" in doc["reason"]
        assert set(doc) >= {"schema", "case_id", "reason", "at"}
    notices = {n["type"]: n for n in w.notices("acme")}
    r = notices["reinstatement"]
    assert (r["report_id"], r["provider_report_id"], r["content_ids"]) == (rid, "r1", ["f1", "f2"])
    assert notices["complaint_decided"]["decision"] == "upheld"
    assert w.complaint(cid).effects == "done"
    assert {m_.state for m_ in w.rows(ComplaintMessage)} == {"sent"}

    # nothing goes twice: not on another dispatch, not on a repeated decide
    n_sent = len(w.producer.sent)
    w.dispatch(complaint_ids=[cid])
    assert w.step(flow.decide, cid, uphold=True, reason="again", by="hanna", now=NOW).repeated
    w.dispatch(complaint_ids=[cid])
    assert len(w.producer.sent) == n_sent
    # a later complaint upheld about the same case: no second retraction to anyone
    later = w.file(complaint_ref="u-2")
    d2 = decide(w, later.complaint_id, True, "again wrong")
    assert d2.retractions == 0 and d2.banked == 0
    w.dispatch(complaint_ids=[later.complaint_id])
    assert sum(1 for t, _v, _k in w.producer.sent if t.startswith("le.")) == 3


def test_a_hash_complaint_banks_only_that_content(w: World) -> None:
    add_report(w.engine, "acme", "r1", items=[item("f1", "a"), item("f2", "b")], cluster="c")
    cid = w.file(concerns={"sha256": hashes("b")["sha256"]}).complaint_id
    decide(w, cid, True)
    fp = {i.value for i in w.rows(Indicator, Indicator.bank == "false_positive")}
    assert fp == set(hashes("b").values())


def test_a_disabled_false_positive_entry_is_enabled_again(w: World) -> None:
    add_report(
        w.engine,
        "acme",
        "r1",
        items=[{"content_id": "f", "media_type": "image", "sha256": hashes("a")["sha256"]}],
    )
    with w.sessions.begin() as s:
        s.add(
            Indicator(
                bank="false_positive",
                kind="sha256",
                value=hashes("a")["sha256"],
                source="import",
                added_by="x",
                added_at=NOW,
                enabled=False,
            )
        )
    d = decide(w, w.file().complaint_id, True)
    assert (d.bank_values, d.banked) == (1, 1)
    (e,) = w.rows(Indicator, Indicator.bank == "false_positive")
    assert e.enabled and e.source == "import" and e.changed_by == "hanna"


def test_rejected_sends_the_reasons_back_and_changes_nothing_else(w: World) -> None:
    add_report(w.engine, "acme", "r1", items=[item("f1", "a")], cluster="c")
    add_report(w.engine, "blue", "b1", items=[item("f1", "a")], cluster="c")
    cid = w.file().complaint_id
    d = decide(w, cid, False, "the material is what the report says")
    assert (d.retractions, d.notices, d.banked, d.related_cases) == (0, 1, 0, 0)
    w.dispatch(complaint_ids=[cid])
    assert not [t for t, _v, _k in w.producer.sent if t.startswith("le.")]
    assert w.rows(Indicator) == [] and w.rows(ComplaintRelatedCase) == []
    (n,) = [n for n in w.notices("acme") if n["type"] == "complaint_decided"]
    assert n["decision"] == "rejected"
    assert n["reasons"] == [
        {"code": "complaint_rejected", "message": "the material is what the report says"}
    ]
    assert w.complaint(cid).effects == "done"


def test_a_rejected_complaint_from_the_centre_channel_sends_nothing(w: World) -> None:
    add_report(w.engine, "acme", "r1", items=[item("f1", "a")])
    cid = w.file(
        channel="centre",
        provider_id=None,
        concerns={"provider_id": "acme", "provider_report_id": "r1"},
    ).complaint_id
    d = decide(w, cid, False, "stands")
    assert d.notices == 0 and w.complaint(cid).effects == "none"


def test_a_hold_delays_the_providers_notices_not_the_retractions(w: World) -> None:
    rid, case = add_report(w.engine, "acme", "r1", items=[item("f1", "a")])
    until = NOW + dt.timedelta(days=30)
    add_hold(w.engine, case, rid, "acme", until)
    cid = w.file().complaint_id
    w.dispatch(complaint_ids=[cid])  # the receipt is not held
    assert [n["type"] for n in w.notices("acme")] == ["complaint_received"]
    d = decide(w, cid, True)
    assert d.held_until == until
    sent = w.dispatch(complaint_ids=[cid])
    assert (sent.retractions, sent.notices, sent.held) == (2, 0, 2)
    c = w.complaint(cid)
    assert (c.effects, c.effects_held_until) == ("held", until)
    assert [n["type"] for n in w.notices("acme")] == ["complaint_received"]
    assert {
        m_.state
        for m_ in w.rows(
            ComplaintMessage, ComplaintMessage.kind == "notice", ComplaintMessage.body.is_not(None)
        )
    } >= {"held"}
    # the worker's pass while the hold lasts sends nothing
    w.dispatch(now=NOW + dt.timedelta(days=1), stale_before=NOW)
    assert [n["type"] for n in w.notices("acme")] == ["complaint_received"]
    # after the hold: the notices go
    after = w.dispatch(now=until + dt.timedelta(seconds=1), stale_before=until)
    assert after.notices == 2
    assert sorted(n["type"] for n in w.notices("acme")) == [
        "complaint_decided",
        "complaint_received",
        "reinstatement",
    ]
    assert w.complaint(cid).effects == "done"
    acts = [e.action for e in w.rows(ComplaintEvent)]
    assert "effects_held" in acts and acts[-1] == "effects_sent"


def test_a_hold_ended_early_releases_the_notices(w: World) -> None:
    rid, case = add_report(w.engine, "acme", "r1", items=[item("f1", "a")])
    add_hold(w.engine, case, rid, "acme", NOW + dt.timedelta(days=300))
    cid = w.file().complaint_id
    decide(w, cid, False, "stands")
    assert w.dispatch(complaint_ids=[cid]).held == 1
    with w.sessions.begin() as s:
        s.execute(update(Hold).values(until=NOW - dt.timedelta(minutes=1)))
    assert w.dispatch(stale_before=NOW).notices == 1


def test_effects_that_could_not_be_sent_stay_queued_for_the_worker(w: World) -> None:
    add_report(w.engine, "acme", "r1", items=[item("f1", "a")])
    cid = w.file().complaint_id
    decide(w, cid, True)
    w.producer.fail = True
    with pytest.raises(RuntimeError):
        w.dispatch(complaint_ids=[cid])
    assert {m_.state for m_ in w.rows(ComplaintMessage)} == {"pending"}
    assert w.complaint(cid).effects == "pending"
    w.producer.fail = False
    # the worker leaves fresh messages to the command that made them …
    assert w.dispatch(now=NOW, stale_before=NOW - dt.timedelta(seconds=15)).retractions == 0
    # … and sends them once they are stale
    later = NOW + dt.timedelta(seconds=20)
    done = w.dispatch(now=later, stale_before=later - dt.timedelta(seconds=15))
    assert (done.retractions, done.notices) == (2, 3)
    assert w.complaint(cid).effects == "done"


def test_a_retraction_for_a_recipient_without_a_key_waits(w: World, tmp_path: Path) -> None:
    add_report(w.engine, "acme", "r1", items=[item("f1", "a")], recipients=("de", "europol"))
    import shutil

    shutil.rmtree(tmp_path / "keys" / "recipients" / "de")
    w.keys.reload()
    cid = w.file().complaint_id
    decide(w, cid, True)
    out = w.dispatch(complaint_ids=[cid])
    assert (out.retractions, out.waiting_key) == (1, 1)
    assert w.complaint(cid).effects == "pending"


def test_listing_overdue_from_the_desk(w: World, tmp_path: Path) -> None:
    from centre.settings import Settings
    from complaints.service import Desk

    add_report(w.engine, "acme", "r1", items=[item("f1", "a")])
    add_report(w.engine, "acme", "r2", items=[item("f1", "b")])
    late = w.file(now=NOW - dt.timedelta(days=10)).complaint_id
    fresh = w.file(complaint_ref="u-2", concerns={"provider_report_id": "r2"}).complaint_id
    url = str(w.engine.url.render_as_string(hide_password=False))
    with Desk(Settings(home=tmp_path, kafka_bootstrap=None, database_url=url)) as desk:
        assert [r["complaint_id"] for r in desk.list(overdue=True, now=NOW)] == [late]
        assert [r["complaint_id"] for r in desk.list(now=NOW)] == [late, fresh]
        assert desk.list(state="upheld", now=NOW) == []
        with pytest.raises(flow.ComplaintError, match="unknown state"):
            desk.list(state="open")
        shown = desk.show(late, now=NOW)
        assert shown["overdue"] and shown["filings"][0]["contact_ref"] == "ticket-1"
        assert [h["action"] for h in shown["history"]] == ["filed"]
