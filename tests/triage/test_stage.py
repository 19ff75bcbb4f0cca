"""Triage's batches on a real database (SQLite, and PostgreSQL when available), the broker
replaced by a recorder. A batch is decided while the one before it is still to be written
(the worker's second thread runs `finish`): it must see that batch's clusters, counts and
results as if they were stored, and the rows both write must be those of one batch after
the other."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from centre import messages as m
from centre import samples
from centre.db import Provider, Report, make_engine, make_sessionmaker
from centre.runtime import Record
from centre.settings import Settings
from centre.topology import TRIAGED
from tests.complaints.seed import FakeProducer
from triage.stage import TriageStage
from triage.tables import Cluster, ReportCluster

NOW = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)


@pytest.fixture
def stage(db_url: str, tmp_path: Path) -> Iterator[TriageStage]:
    st = TriageStage(Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:1", database_url=db_url))
    st.producer = FakeProducer()  # type: ignore[assignment]
    yield st
    st.close()


class Intake:
    """Reports stored as intake stores them, and their `reports.accepted` messages."""

    def __init__(self, db_url: str) -> None:
        self.engine = make_engine(db_url)
        self.offset = 0
        with make_sessionmaker(self.engine).begin() as s:
            s.add(Provider(provider_id="acme", first_seen_at=NOW, reports_received=0))

    def __call__(self, ref: str, **kw: Any) -> Record:
        doc = samples.report("acme", ref, **kw)
        rid = m.report_id_for("acme", ref)
        with make_sessionmaker(self.engine).begin() as s:
            s.add(
                Report(
                    report_id=rid,
                    case_id=m.case_id_for(rid),
                    provider_id="acme",
                    provider_report_id=ref,
                    received_at=NOW,
                    submitted_at="x",
                    signature="absent",
                    status="received",
                    reasons=[],
                    supplements=0,
                )
            )
        env = {
            "supplement": 0,
            "report_id": rid,
            "case_id": m.case_id_for(rid),
            "provider_id": "acme",
            "provider_report_id": ref,
            "received_at": m.iso(NOW),
            "signature": "absent",
            "report": doc,
        }
        self.offset += 1
        return Record("reports.accepted", 0, self.offset, rid.encode(), orjson.dumps(env), {}, 0.0)


def triaged(stage: TriageStage) -> dict[str, dict[str, Any]]:
    out = {}
    for v, _k in stage.producer.on(stage.settings.topic(TRIAGED)):  # type: ignore[attr-defined]
        res = orjson.loads(v)
        out[res["provider_report_id"]] = res
    return out


def test_a_batch_decided_before_the_one_before_is_stored_sees_it(
    stage: TriageStage, db_url: str
) -> None:
    intake = Intake(db_url)
    first = [intake("a1", media_seed="pic"), intake("b1", media_seed="other")]
    finish_first = stage.process(first)
    # Nothing of the first batch is stored or sent yet.
    with make_sessionmaker(intake.engine)() as s:
        assert (
            s.scalar(select(Report.status).where(Report.report_id == m.report_id_for("acme", "a1")))
            == "received"
        )
        assert s.scalars(select(Cluster.cluster_id)).all() == []
    assert triaged(stage) == {}

    second = [
        intake("a2", media_seed="pic"),  # the same picture again
        intake("c1", near_copy_of="other"),  # a near copy (PDQ) of b1's
        first[0],
    ]  # a1 read again (as after a crash): its result, not counted again
    finish_second = stage.process(second)
    finish_first()
    finish_second()

    out = triaged(stage)
    assert set(out) == {"a1", "b1", "a2", "c1"}
    assert out["a1"]["duplicates"]["times_reported"] == 1
    assert out["a2"]["duplicates"]["times_reported"] == 2
    assert out["a2"]["duplicates"]["cluster_ids"] == out["a1"]["duplicates"]["cluster_ids"]
    assert out["a2"]["duplicates"]["related_case_ids"] == [out["a1"]["case_id"]]
    assert out["c1"]["duplicates"]["cluster_ids"] == out["b1"]["duplicates"]["cluster_ids"]
    assert any(r.startswith("near_duplicate:pdq_distance:") for r in out["c1"]["reasons"])
    sent_a1 = [
        orjson.loads(v)
        for v, _k in stage.producer.on(  # type: ignore[attr-defined]
            stage.settings.topic(TRIAGED)
        )
        if orjson.loads(v)["provider_report_id"] == "a1"
    ]
    assert len(sent_a1) == 2 and sent_a1[0]["duplicates"] == sent_a1[1]["duplicates"]

    # Stored as one batch after the other.
    with make_sessionmaker(intake.engine)() as s:
        cid = out["a1"]["duplicates"]["cluster_ids"][0]
        c = s.get(Cluster, cid)
        assert c is not None and c.times_reported == 2
        assert c.recent_cases == [out["a1"]["case_id"], out["a2"]["case_id"]]
        links = (
            s.execute(select(ReportCluster.report_id).where(ReportCluster.cluster_id == cid))
            .scalars()
            .all()
        )
        assert sorted(links) == sorted(m.report_id_for("acme", r) for r in ("a1", "a2"))
        statuses = dict(s.execute(select(Report.provider_report_id, Report.status)).all())
        assert statuses == {"a1": "triaged", "b1": "triaged", "a2": "triaged", "c1": "triaged"}
        stored = s.scalar(
            select(Report.triage).where(Report.report_id == m.report_id_for("acme", "a2"))
        )
        assert stored["duplicates"]["times_reported"] == 2


def _with_items(rec: Record, items: list[dict[str, Any]]) -> Record:
    env = orjson.loads(rec.value or b"")
    env["report"]["content"] = [
        {**env["report"]["content"][0], **it, "content_id": f"f{n}"}
        for n, it in enumerate(items, 1)
    ]
    return Record(rec.topic, 0, rec.offset, rec.key, orjson.dumps(env), {}, 0.0)


def test_a_merge_of_clusters_the_batch_before_linked_waits_for_its_links(
    stage: TriageStage, db_url: str
) -> None:
    """Clusters x and y, stored; the batch before (not yet written) has a report holding
    both pictures, counted in both. Then one picture links x and y: they merge, and that
    report must count once, which only the stored links can tell."""
    intake = Intake(db_url)
    x, y = samples.fake_hashes("x"), samples.fake_hashes("y")
    stage.process([intake("x1", media_seed="x"), intake("y1", media_seed="y")])()
    unwritten = stage.process([_with_items(intake("p", media_seed="x"), [x, y])])
    asked, ran = threading.Event(), threading.Event()

    class Watched(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            asked.set()
            return super().wait(timeout)

    assert stage._pending is not None
    stage._pending.clusters.written = Watched()

    def write_when_asked() -> None:  # the finish thread, once the next batch waits for it
        if asked.wait(30):
            unwritten()
            ran.set()

    t = threading.Thread(target=write_when_asked)
    t.start()
    # Its sha256 is x's, its md5 y's: one item in both clusters.
    finish = stage.process([_with_items(intake("xy", media_seed="x"), [{**x, "md5": y["md5"]}])])
    t.join(60)
    assert asked.is_set() and ran.is_set(), "the merge did not wait for the stored links"
    finish()
    out = triaged(stage)
    # x: x1, p; y: y1, p. Merged: x1, y1, p and xy itself.
    assert out["p"]["duplicates"]["times_reported"] == 2
    assert out["xy"]["duplicates"]["times_reported"] == 4
    assert len(out["xy"]["duplicates"]["cluster_ids"]) == 1
    assert any(r.startswith("cluster_merged:") for r in out["xy"]["reasons"])


def test_two_copies_of_one_report_in_a_batch_are_triaged_once(
    stage: TriageStage, db_url: str
) -> None:
    """Intake sends a report again after a crash, and both copies may land in one batch:
    the second is the first's replay, not a stored result (it crashed triage with a
    KeyError on `report_id` and stopped the stage)."""
    intake = Intake(db_url)
    a = intake("a1", media_seed="pic")
    again = Record(a.topic, a.partition, a.offset + 100, a.key, a.value, {}, 0.0)
    stage.process([a, intake("b1", media_seed="other"), again])()
    sent = [
        orjson.loads(v)
        for v, _k in stage.producer.on(  # type: ignore[attr-defined]
            stage.settings.topic(TRIAGED)
        )
    ]
    assert sorted(r["provider_report_id"] for r in sent) == ["a1", "b1"]
    assert all(r["report_id"] and r["case_id"] for r in sent)
    with make_sessionmaker(intake.engine)() as s:
        cid = sent[0]["duplicates"]["cluster_ids"][0]
        assert s.get(Cluster, cid).times_reported == 1  # type: ignore[union-attr]


def test_a_report_set_aside_is_kept_marked_and_its_company_told(
    stage: TriageStage, db_url: str
) -> None:
    from centre.db import DeadLetter
    from tests.complaints.seed import FakeTopics

    intake = Intake(db_url)
    poison = intake("p1", media_seed="pic")
    stage.provider_topics = FakeTopics()
    stage.quarantine(poison, 3)
    stage.quarantine(poison, 3)  # again, as after a crash before its commit: nothing doubles
    told = [
        orjson.loads(v)
        for v, _k in stage.producer.on(  # type: ignore[attr-defined]
            stage.settings.topic("provider.acme.feedback")
        )
    ]
    assert {f["feedback_id"] for f in told} == {told[0]["feedback_id"]}
    assert told[0]["status"] == "rejected" and told[0]["provider_report_id"] == "p1"
    assert [r["code"] for r in told[0]["reasons"]] == ["quarantined"]
    rid = m.report_id_for("acme", "p1")
    with make_sessionmaker(intake.engine)() as s:
        assert s.scalar(select(Report.status).where(Report.report_id == rid)) == "quarantined"
        kept = s.scalars(select(DeadLetter)).all()
        assert len(kept) == 1 and kept[0].value == poison.value
    # A report already forwarded keeps its status, and its company is not told again.
    with make_sessionmaker(intake.engine).begin() as s:
        s.get(Report, rid).status = "forwarded"  # type: ignore[union-attr]
    before = len(stage.producer.sent)  # type: ignore[attr-defined]
    later = Record(poison.topic, 0, poison.offset + 50, poison.key, poison.value, {}, 0.0)
    stage.quarantine(later, 3)
    sent = stage.producer.sent[before:]  # type: ignore[attr-defined]
    assert all(t != stage.settings.topic("provider.acme.feedback") for t, _v, _k in sent)
