"""Complaints on the real broker with the whole stack: filed by a company on complaints.intake
and by a case handler with `centre complaints file`, decided with `centre complaints decide`,
and every effect seen from the outside: the liaison's `centre liaison pull`, the company's
notices and feedback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import select, update

from centre import samples
from centre.db import DeadLetter, make_engine
from centre.kafka import BatchProducer, base_config
from centre.settings import Settings
from centre.stack import Stack
from centre.topology import COMPLAINTS_INTAKE, le_topic, notices_topic
from complaints.tables import ComplaintMessage
from routing.tables import Hold
from tests.integration.helpers import FeedbackReader, cli, ids_of, pull_cases, send_reports
from triage.tables import Indicator

pytestmark = pytest.mark.integration


def complaints(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`centre complaints …` as a case handler runs it."""
    cmd = ["-m", "app", "complaints"]
    env = {**settings.child_env(), "USER": "hanna"}
    return subprocess.run(
        [sys.executable, *cmd, *args], env=env, capture_output=True, text=True, timeout=120
    )


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def send_complaints(settings: Settings, docs: list[dict[str, Any] | bytes], key: str = "") -> None:
    p = BatchProducer(settings)
    for d in docs:
        value = d if isinstance(d, bytes) else json.dumps(d).encode()
        k = key or (f"{d['provider_id']}/{d['complaint_ref']}" if isinstance(d, dict) else "")
        p.send(COMPLAINTS_INTAKE, value, key=k.encode() if k else None)
    p.flush_or_raise()
    p.close()


def complaint(provider: str, ref: str, **over: Any) -> dict[str, Any]:
    doc = {
        "schema": "complaint/v1",
        "complaint_ref": ref,
        "channel": "provider",
        "provider_id": provider,
        "concerns": {},
        "grounds": "not_child_sexual_abuse",
        "contact_ref": f"ticket-{ref}",
        "statement": "it is a photo of my own garden",
        "filed_at": "2026-11-23T09:00:00Z",
    }
    doc.update(over)
    return doc


class TopicReader:
    """Reads a topic from its beginning as an outsider would."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = settings.topic(topic)
        self.consumer = Consumer(
            {
                **base_config(settings),
                "group.id": f"t-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 500,
            }
        )
        self.consumer.subscribe([self.topic])
        self.items: list[tuple[bytes | None, bytes]] = []

    def _poll(self) -> None:
        for msg in self.consumer.consume(500, timeout=0.3):
            if not msg.error():
                self.items.append((msg.key(), msg.value() or b""))

    def until(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 60
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not done(self.docs()):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.topic}: condition not met in {timeout}s; got "
                    f"{[d.get('type') for d in self.docs()]}"
                )
            self._poll()
        return self.docs()

    def everything(self, timeout: float = 30) -> list[tuple[bytes | None, bytes]]:
        """All messages on the topic now: read up to its end (no waiting for silence)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._poll()
            parts = self.consumer.assignment()
            if not parts:
                continue
            done = True
            for tp in parts:
                _lo, hi = self.consumer.get_watermark_offsets(tp, timeout=5, cached=False)
                pos = self.consumer.position([TopicPartition(tp.topic, tp.partition)])[0]
                if hi > 0 and (pos.offset < 0 or pos.offset < hi):
                    done = False
            if done:
                return self.items
        raise AssertionError(f"{self.topic}: not read to its end in {timeout}s")

    def docs(self) -> list[dict[str, Any]]:
        return [json.loads(v) for _k, v in self.items]

    def close(self) -> None:
        self.consumer.close()


def _forwarded(s: Settings, provider: str, reports: list[dict[str, Any]]) -> None:
    send_reports(s, reports)
    fb = FeedbackReader(s, provider)
    final = fb.final_for({r["provider_report_id"] for r in reports})
    fb.close()
    assert {f["status"] for f in final.values()} == {"forwarded"}, final


def test_upheld_from_the_topic_to_the_liaison_the_company_and_the_bank(stack: Stack) -> None:
    s = stack.settings
    run = uuid.uuid4().hex[:8]
    provider = f"cx-{run}"
    rep = samples.report(
        provider, f"{run}-r", media_seed=f"garden-{run}", ip_country="nl", suspect_country="LU"
    )
    other = samples.report(f"cy-{run}", f"{run}-o", media_seed=f"garden-{run}", ip_country="nl")
    _forwarded(s, provider, [rep])
    _forwarded(s, f"cy-{run}", [other])  # the same picture from another company: its cluster
    eu_group = f"t-eu-{run}"
    case = next(
        d
        for d in pull_cases(
            s, "europol", lambda d: bool(ids_of(d, {rep["provider_report_id"]})), group=eu_group
        )
        if d.get("provider_report_id") == rep["provider_report_id"]
    )

    # the company forwards its user's complaint, next to a broken one
    notices = TopicReader(s, notices_topic(provider))
    send_complaints(
        s,
        [
            b'{"schema": "complaint/v1", "complaint_ref": ',
            complaint(
                provider, f"{run}-c1", concerns={"provider_report_id": rep["provider_report_id"]}
            ),
        ],
        key=f"{provider}/{run}-c1",
    )
    got = notices.until(
        lambda d: {"complaint_received", "complaint_invalid"} <= {x["type"] for x in d}
    )
    received = next(x for x in got if x["type"] == "complaint_received")
    assert received["matched"] is True and received["complaint_ref"] == f"{run}-c1"
    cid = received["complaint_id"]
    engine = make_engine(s.database_url)
    try:
        with engine.connect() as c:
            assert (
                c.execute(
                    select(DeadLetter.reasons).where(
                        DeadLetter.topic == s.topic(COMPLAINTS_INTAKE),
                        DeadLetter.provider_id == provider,
                    )
                ).first()
                is not None
            )

        shown = json.loads(ok(complaints(s, "show", cid, "--json")))
        assert shown["case_id"] == case["case_id"] and shown["state"] == "received"
        ok(complaints(s, "assign", cid, "hanna"))
        out = ok(
            complaints(
                s, "decide", cid, "--uphold", "--reason", "the picture shows a garden, no person"
            )
        )
        assert "upheld" in out and "3 retraction(s)" in out, out

        # the liaisons open the retraction: Luxembourg with its own command, Europol too
        lu: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while not any(d.get("schema") == "retraction/v1" for d in lu):
            assert time.monotonic() < deadline, lu
            lu += [
                json.loads(x)
                for x in ok(
                    cli(s, "liaison", "pull", "--country", "lu", "--timeout", "2")
                ).splitlines()
            ]
        retraction = next(d for d in lu if d["schema"] == "retraction/v1")
        assert retraction["case_id"] == case["case_id"]
        assert "garden" in retraction["reason"] and retraction["at"]
        eu = pull_cases(
            s,
            "europol",
            lambda d: any(
                x.get("schema") == "retraction/v1" and x["case_id"] == case["case_id"] for x in d
            ),
            group=eu_group,
            schemas=("case/v1", "retraction/v1"),
        )
        assert [d["schema"] for d in eu if d.get("case_id") == case["case_id"]] == ["retraction/v1"]
        # each retraction went once
        for rcpt in ("nl", "lu", "europol"):
            reader = TopicReader(s, le_topic(rcpt))
            keys = [k for k, _v in reader.everything()]
            reader.close()
            assert keys.count(case["case_id"].encode()) == 2, rcpt  # the case and its retraction

        # the company: reinstatement and the answer for its user
        got = notices.until(
            lambda d: {"reinstatement", "complaint_decided"} <= {x["type"] for x in d}
        )
        rein = next(x for x in got if x["type"] == "reinstatement")
        assert rein["provider_report_id"] == rep["provider_report_id"]
        assert rein["complaint_id"] == cid and rein["content_ids"] == ["f1"]
        answer = next(x for x in got if x["type"] == "complaint_decided")
        assert answer["decision"] == "upheld" and answer["complaint_ref"] == f"{run}-c1"
        notices.close()

        # the content is now a known false positive: a later report of it is unfounded
        with engine.connect() as c:
            sources = {
                src
                for (src,) in c.execute(
                    select(Indicator.source).where(
                        Indicator.bank == "false_positive",
                        Indicator.value == rep["content"][0]["sha256"],
                    )
                )
            }
        assert sources == {f"complaint:{cid}"}
        again = samples.report(
            f"cz-{run}", f"{run}-again", media_seed=f"garden-{run}", ip_country="de"
        )
        send_reports(s, [again])
        fb = FeedbackReader(s, f"cz-{run}")
        final = fb.final_for({again["provider_report_id"]})
        fb.close()
        assert final[again["provider_report_id"]]["status"] == "manifestly_unfounded"

        shown = json.loads(ok(complaints(s, "show", cid, "--json")))
        assert shown["state"] == "upheld" and shown["effects"] == "done"
        assert shown["related_cases"] == 1
        assert shown["related_cases_shown"][0]["report_id"] != shown["report_id"]
        assert [h["action"] for h in shown["history"]] == [
            "filed",
            "receipt_sent",
            "assigned",
            "decided",
            "effects_sent",
        ]
        # a repeated decide sends nothing again
        assert "already upheld" in ok(complaints(s, "decide", cid, "--uphold", "--reason", "x"))
        with engine.connect() as c:
            states = {
                st
                for (st,) in c.execute(
                    select(ComplaintMessage.state).where(ComplaintMessage.complaint_id == cid)
                )
            }
        assert states == {"sent"}
        figures = json.loads(ok(cli(s, "stats", "--json")))["complaints"]
        assert figures["reversed"] >= 1 and figures["retractions_sent"] >= 3
        assert "ticket-" not in json.dumps(figures)
    finally:
        engine.dispose()


def test_rejected_answers_the_company_and_changes_nothing_else(stack: Stack) -> None:
    s = stack.settings
    run = uuid.uuid4().hex[:8]
    provider = f"rx-{run}"
    rep = samples.report(provider, f"{run}-r", media_seed=f"rx-{run}", ip_country="de")
    _forwarded(s, provider, [rep])
    case = next(
        d
        for d in pull_cases(s, "de", lambda d: bool(ids_of(d, {rep["provider_report_id"]})))
        if d.get("provider_report_id") == rep["provider_report_id"]
    )
    filed = json.loads(
        ok(
            complaints(
                s,
                "file",
                "--provider-id",
                provider,
                "--provider-report-id",
                rep["provider_report_id"],
                "--grounds",
                "wrongful_removal",
                "--contact-ref",
                "letter-77",
                "--channel",
                f"provider:{provider}",
                "--json",
            )
        )
    )
    cid = filed["complaint_id"]
    assert filed["case_id"] == case["case_id"]
    ok(complaints(s, "assign", cid, "omar"))
    ok(
        complaints(
            s, "decide", cid, "--reject", "--reason", "the material is child sexual abuse material"
        )
    )
    notices = TopicReader(s, notices_topic(provider))
    got = notices.until(lambda d: any(x["type"] == "complaint_decided" for x in d))
    notices.close()
    answer = next(x for x in got if x["type"] == "complaint_decided")
    assert answer["decision"] == "rejected"
    assert answer["reasons"][0]["message"] == "the material is child sexual abuse material"
    assert "reinstatement" not in {x["type"] for x in got}
    # no retraction on the liaison's topic, no bank entry; the same content still goes
    for rcpt in ("de", "europol"):
        reader = TopicReader(s, le_topic(rcpt))
        keys = [k for k, _v in reader.everything()]
        reader.close()
        assert keys.count(case["case_id"].encode()) == 1, rcpt
    engine = make_engine(s.database_url)
    try:
        with engine.connect() as c:
            assert (
                c.execute(
                    select(Indicator.id).where(Indicator.source == f"complaint:{cid}")
                ).first()
                is None
            )
    finally:
        engine.dispose()
    again = samples.report(provider, f"{run}-again", media_seed=f"rx-{run}", ip_country="de")
    _forwarded(s, provider, [again])


def test_unmatched_and_joined_complaints_on_the_topic(stack: Stack) -> None:
    s = stack.settings
    run = uuid.uuid4().hex[:8]
    provider = f"jx-{run}"
    rep = samples.report(provider, f"{run}-r", media_seed=f"jx-{run}", ip_country="de")
    _forwarded(s, provider, [rep])
    notices = TopicReader(s, notices_topic(provider))
    send_complaints(
        s,
        [
            complaint(provider, f"{run}-u", concerns={"provider_report_id": "never-sent"}),
            complaint(provider, f"{run}-a", concerns={"sha256": rep["content"][0]["sha256"]}),
            complaint(
                provider,
                f"{run}-b",
                concerns={"report_id": stored_report_id(s, rep)},
                grounds="wrongful_report",
            ),
        ],
    )
    got = notices.until(lambda d: len([x for x in d if x["type"] == "complaint_received"]) == 3)
    notices.close()
    by_ref = {x["complaint_ref"]: x for x in got}
    assert by_ref[f"{run}-u"]["matched"] is False and by_ref[f"{run}-u"]["state"] == "received"
    # a and b name the same report; they sit on different partitions, so either may be
    # filed first: the other joins it.
    a, b = by_ref[f"{run}-a"], by_ref[f"{run}-b"]
    assert a["matched"] is True and b["matched"] is True
    assert sorted([a["joined"], b["joined"]]) == [False, True]
    assert a["complaint_id"] == b["complaint_id"]
    listed = [
        json.loads(x)
        for x in ok(complaints(s, "list", "--state", "received", "--json")).splitlines()
    ]
    mine = {r["complaint_id"]: r for r in listed}
    assert mine[by_ref[f"{run}-u"]["complaint_id"]]["matched"] is False
    assert mine[by_ref[f"{run}-a"]["complaint_id"]]["filings"] == 2


def stored_report_id(s: Settings, rep: dict[str, Any]) -> str:
    """The id intake gave the report (led by the time it was received)."""
    from centre.db import Report

    engine = make_engine(s.database_url)
    try:
        with engine.connect() as c:
            return str(
                c.execute(
                    select(Report.report_id).where(
                        Report.provider_id == rep["provider_id"],
                        Report.provider_report_id == rep["provider_report_id"],
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_a_hold_keeps_the_providers_notices_back_until_it_ends(stack: Stack) -> None:
    s = stack.settings
    run = uuid.uuid4().hex[:8]
    provider = f"hx-{run}"
    rep = samples.report(provider, f"{run}-r", media_seed=f"hx-{run}", ip_country="de")
    _forwarded(s, provider, [rep])
    eu_group = f"t-eu-{run}"
    case = next(
        d
        for d in pull_cases(
            s, "europol", lambda d: bool(ids_of(d, {rep["provider_report_id"]})), group=eu_group
        )
        if d.get("provider_report_id") == rep["provider_report_id"]
    )
    ok(
        cli(
            s,
            "liaison",
            "hold",
            case["case_id"],
            "--days",
            "30",
            "--no-inform",
            "--reason",
            "covert operation",
            "--by",
            "de",
        )
    )
    filed = json.loads(
        ok(
            complaints(
                s,
                "file",
                "--case-id",
                case["case_id"],
                "--grounds",
                "wrongful_removal",
                "--contact-ref",
                "t-9",
                "--channel",
                f"provider:{provider}",
                "--json",
            )
        )
    )
    cid = filed["complaint_id"]
    ok(complaints(s, "assign", cid, "hanna"))
    out = ok(complaints(s, "decide", cid, "--uphold", "--reason", "not CSAM"))
    assert "held by an Art. 48(6) hold" in out, out
    # law enforcement hears at once …
    pull_cases(
        s,
        "europol",
        lambda d: any(
            x.get("schema") == "retraction/v1" and x["case_id"] == case["case_id"] for x in d
        ),
        group=eu_group,
        schemas=("case/v1", "retraction/v1"),
    )
    # … the company does not, and the case handler sees why
    notices = TopicReader(s, notices_topic(provider))
    types = [json.loads(v)["type"] for _k, v in notices.everything()]
    assert "reinstatement" not in types and "complaint_decided" not in types
    assert "hold" in types and "complaint_received" in types
    (row,) = [
        json.loads(x)
        for x in ok(complaints(s, "list", "--state", "upheld", "--json")).splitlines()
        if json.loads(x)["complaint_id"] == cid
    ]
    assert row["effects"] == "held" and row["effects_held_until"]
    assert "Art. 48(6) hold" in ok(complaints(s, "show", cid))

    # the hold ends (here: shortened in the record); the worker sends what waited
    engine = make_engine(s.database_url)
    try:
        with engine.begin() as c:
            c.execute(
                update(Hold).where(Hold.case_id == case["case_id"]).values(until=Hold.created_at)
            )
    finally:
        engine.dispose()
    got = notices.until(
        lambda d: {"reinstatement", "complaint_decided"} <= {x["type"] for x in d}, timeout=60
    )
    notices.close()
    assert next(x for x in got if x["type"] == "reinstatement")["complaint_id"] == cid
    shown = json.loads(ok(complaints(s, "show", cid, "--json")))
    assert shown["effects"] == "done"
    assert "effects_held" in [h["action"] for h in shown["history"]]


def test_the_bench_upholds_in_a_big_cluster_and_retracts_once(broker: Any, tmp_path: Any) -> None:
    from complaints.bench import run_complaints_bench

    s = Settings(
        home=tmp_path,
        kafka_bootstrap=broker.bootstrap,
        database_url="sqlite:///unused.db",
        topic_prefix=f"tb{uuid.uuid4().hex[:6]}.",
        partitions=1,
    )
    assert run_complaints_bench(s, cluster_size=3000) == 0
    assert not (tmp_path / "bench").exists() or not any((tmp_path / "bench").iterdir())
