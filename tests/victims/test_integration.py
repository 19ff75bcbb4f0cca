"""A victim's request on the real broker with the whole stack: pictures hashed on the
victim's side with `centre victims hash`, the request filed with `centre victims request`,
an earlier report of the picture and a later report of a re-encoded copy both matched (the
later one by the victims worker reading reports.triaged, beside triage),
removal notices sent and repeated, a provider answering `removed` (and another answering a
notice that is not theirs), the victim's `centre victims status` showing it all, and a
withdrawal that cancels what is open and stops the matching."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer
from sqlalchemy import select, update

from centre import samples
from centre.db import make_engine
from centre.kafka import BatchProducer, base_config
from centre.settings import Settings
from centre.stack import Stack
from centre.topology import (
    AUDIT_EVENTS,
    NOTICE_RESPONSES,
    READERS,
    TRIAGED,
    VICTIMS_REQUESTS,
    notices_topic,
)
from tests.imagegen import jpeg_bytes, png_bytes, recompressed, resized, structured_image
from tests.integration.helpers import FeedbackReader, send_reports, wait_for
from triage.hashing import hash_file
from victims.tables import VictimMatch, VictimNotice

pytestmark = pytest.mark.integration

NAME, REF = "Jana Novak-Testperson", "helpline-file-4711"


def victims(
    settings: Settings, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`centre victims …` as a case handler runs it."""
    return subprocess.run(
        [sys.executable, "-m", "app", "victims", *args],
        env={**settings.child_env(), "USER": "hanna"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def centre(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env={**settings.child_env(), "USER": "dora"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


class Reader:
    """A topic read from its beginning, as an outsider would."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = Consumer(
            {
                **base_config(settings),
                "group.id": f"t-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 500,
            }
        )
        self.consumer.subscribe([settings.topic(topic)])
        self.raw: list[bytes] = []

    def until(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 90
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not done(self.docs()):
            assert time.monotonic() < deadline, [
                (d.get("type"), d.get("attempt")) for d in self.docs()
            ]
            for msg in self.consumer.consume(500, timeout=0.3):
                if not msg.error():
                    self.raw.append(msg.value() or b"")
        return self.docs()

    def everything(self, timeout: float = 60) -> bytes:
        """All the topic holds now, read up to its end offsets."""
        from confluent_kafka import TopicPartition

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.consumer.consume(2000, timeout=0.3):
                if not msg.error():
                    self.raw.append(msg.value() or b"")
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
                return b"".join(self.raw)
        raise AssertionError("topic not read to its end in time")

    def docs(self) -> list[dict[str, Any]]:
        out = []
        for v in self.raw:
            try:
                out.append(json.loads(v))
            except ValueError:
                pass
        return out

    def close(self) -> None:
        self.consumer.close()


def report_of(provider: str, prid: str, item: dict[str, Any], url: str) -> dict[str, Any]:
    doc = samples.report(provider, prid, ip_country="de")
    doc["content"] = [
        {
            "content_id": "img-1",
            "media_type": "image",
            **{k: item[k] for k in ("sha256", "md5", "pdq", "pdq_quality")},
            "url": url,
            "publicly_available": True,
            "removed": False,
        }
    ]
    doc["users"] = [{"role": "suspect", "account_id": "u-9", "account_action": "suspended"}]
    return doc


def forwarded(s: Settings, provider: str, reports: list[dict[str, Any]]) -> None:
    fb = FeedbackReader(s, provider)
    send_reports(s, reports)
    final = fb.final_for({r["provider_report_id"] for r in reports})
    fb.close()
    assert {f["status"] for f in final.values()} == {"forwarded"}, final


def answer(s: Settings, **doc: Any) -> None:
    p = BatchProducer(s)
    p.send(
        NOTICE_RESPONSES,
        orjson.dumps({"schema": "notice-response/v1", "at": "2026-11-23T12:00:00Z", **doc}),
        key=str(doc.get("notice_id", "")).encode(),
    )
    p.flush_or_raise()
    p.close()


def matched_all(s: Settings) -> None:
    """Until the victims worker has read (matched, committed) all of reports.triaged."""
    from centre.metrics import group_lag, lag_reader

    c = lag_reader(s, READERS["victims-match"].name)
    try:
        wait_for(
            "the victims worker's live matching caught up",
            lambda: group_lag(c, s.topic(TRIAGED)) == 0,
            every=0.5,
        )
    finally:
        c.close()


def test_a_victims_request_from_the_pictures_to_the_removal(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    run = uuid.uuid4().hex[:8]
    seed = int(run[:6], 16)
    # The victim's own pictures, on "their" machine: hashed there, never sent anywhere.
    mine = tmp_path / "victim-device"
    mine.mkdir()
    picture = structured_image(seed)
    (mine / "IMG_0001.jpg").write_bytes(jpeg_bytes(picture, 92))
    (mine / "IMG_0002.png").write_bytes(png_bytes(structured_image(seed + 1)))
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in mine.iterdir()}
    out = tmp_path / "hashes.jsonl"
    res = victims(s, "hash", str(mine), "--out", str(out))
    assert res.returncode == 0 and "2 file(s) hashed" in res.stderr, res.stderr
    listed = [json.loads(x) for x in out.read_text().splitlines()]
    assert {x["file"] for x in listed} == {"IMG_0001.jpg", "IMG_0002.png"}
    assert all(x["pdq_quality"] >= 50 for x in listed)
    assert before == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in mine.iterdir()
    }  # only read

    # Earlier: a company reported the very file, still online.
    acme, other = f"acme-{run}", f"other-{run}"
    exact = hash_file(mine / "IMG_0001.jpg")
    earlier = report_of(acme, f"{run}-early", exact, f"https://acme.example/p/{run}")
    forwarded(s, acme, [earlier])
    forwarded(s, other, [samples.report(other, f"{run}-x", media_seed=f"x-{run}")])
    notices = Reader(s, notices_topic(acme))

    # The case handler files the request.
    res = victims(
        s,
        "request",
        "--hashes",
        str(out),
        "--representative",
        NAME,
        "--identity-ref",
        REF,
        "--wait",
        "120",
        "--json",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    filed = json.loads(res.stdout)
    rid, pin = filed["request_id"], filed["pin"]
    assert filed["filed"]["matches"] == 1 and filed["filed"]["notices"] == 1
    got = notices.until(lambda d: any(x.get("type") == "removal" for x in d))
    first = next(x for x in got if x["type"] == "removal")
    assert first["provider_report_id"] == earlier["provider_report_id"]
    assert first["url"] == earlier["content"][0]["url"] and first["attempt"] == 1
    assert first["content"]["sha256"] == exact["sha256"]
    for secret in (NAME, REF, rid, pin):
        assert secret not in json.dumps(got)

    # Later: another report, of a re-encoded copy (resized and recompressed): other bytes.
    copy_path = tmp_path / "reencoded.jpg"
    copy_path.write_bytes(jpeg_bytes(recompressed(resized(picture, 0.6), 60), 70))
    copy = hash_file(copy_path)
    assert copy["sha256"] != exact["sha256"]
    later = report_of(acme, f"{run}-late", copy, f"https://acme.example/q/{run}")
    forwarded(s, acme, [later])
    got = notices.until(
        lambda d: any(
            x.get("type") == "removal" and x["provider_report_id"] == later["provider_report_id"]
            for x in d
        )
    )
    second = next(x for x in got if x.get("provider_report_id") == later["provider_report_id"])
    assert second["notice_id"] != first["notice_id"]
    assert second["request_ref"] == first["request_ref"]  # one request, as acme knows it
    engine = make_engine(s.database_url)
    try:
        with engine.connect() as c:
            found = dict(
                c.execute(
                    select(VictimMatch.provider_report_id, VictimMatch.found_by).where(
                        VictimMatch.request_id == rid
                    )
                ).all()
            )
        assert found == {earlier["provider_report_id"]: "past", later["provider_report_id"]: "live"}

        # A day passes without an answer (here: the due time moved): the notice goes again.
        with engine.begin() as c:
            c.execute(
                update(VictimNotice)
                .where(VictimNotice.notice_id == first["notice_id"])
                .values(next_due_at=VictimNotice.created_at)
            )
        got = notices.until(
            lambda d: any(
                x.get("notice_id") == first["notice_id"] and x.get("attempt") == 2 for x in d
            )
        )

        # Another company answers acme's notice: refused, nothing changed. acme answers.
        strangers = Reader(s, notices_topic(other))
        answer(s, notice_id=first["notice_id"], provider_id=other, status="removed")
        refusal = strangers.until(lambda d: any(x.get("type") == "response_invalid" for x in d))
        strangers.close()
        assert [x for x in refusal if x.get("type") == "response_invalid"][0]["reasons"][0][
            "code"
        ] == "unknown_notice"
        answer(s, notice_id=first["notice_id"], provider_id=acme, status="removed")

        def removed() -> bool:
            with engine.connect() as c:
                return (
                    c.execute(
                        select(VictimNotice.answer).where(
                            VictimNotice.notice_id == first["notice_id"]
                        )
                    ).scalar()
                    == "removed"
                )

        wait_for("the removal recorded", removed)
    finally:
        engine.dispose()

    # The victim's status: everything about their material, nothing about anyone else.
    wrong = victims(s, "status", rid, "--pin", "0000-0000-0000")
    unknown = victims(s, "status", str(uuid.uuid4()), "--pin", pin)
    assert wrong.returncode == unknown.returncode == 3 and wrong.stderr == unknown.stderr
    st = json.loads(ok(victims(s, "status", rid, "--pin", pin, "--json")))
    assert st["reports_holding_your_material"] == 2 and st["items_found"] == 1
    (prov,) = st["providers"]
    assert prov["provider"] == acme and prov["reports"] == 2
    assert prov["removed"] == 1 and prov["waiting_for_answer"] == 1
    assert {f["to"] for f in st["forwarded_to_law_enforcement"]} >= {"de", "europol"}
    notes = st["removal_notices"]
    assert (notes["sent"], notes["removed"], notes["repeats"]) == (2, 1, 1)
    text = json.dumps(st)
    assert earlier["provider_report_id"] not in text and "acme.example" not in text
    figures = json.loads(ok(centre(s, "stats", "--json")))["victims"]
    assert acme in figures["time_to_removal_by_provider"]
    assert rid not in json.dumps(figures)

    # Who the victim is: sealed in the audit trail, on no topic.
    for topic in (VICTIMS_REQUESTS, AUDIT_EVENTS):
        r = Reader(s, topic)
        everything = r.everything()
        r.close()
        assert everything and NAME.encode() not in everything and REF.encode() not in everything
    shown = [
        json.loads(x)
        for x in ok(
            centre(s, "audit", "show", "--subject", f"victim:{rid}", "--role", "dpo")
        ).splitlines()
    ]
    ident = [e for e in shown if e["action"] == "victim.identity_recorded"]
    assert ident and ident[0]["personal"] == {"representative": NAME, "identity_ref": REF}
    actions = {e["action"] for e in shown}
    assert {
        "victim.request_filed",
        "victim.matched",
        "victim.notice_sent",
        "victim.notice_answered",
        "victim.status_shown",
        "victim.access_refused",
    } <= actions

    # Withdrawn: the open notice is cancelled at acme, and a new copy is no longer matched.
    out_w = ok(victims(s, "withdraw", rid, "--pin", pin))
    assert "1 notice(s) cancelled" in out_w, out_w
    got = notices.until(lambda d: any(x.get("type") == "removal_cancelled" for x in d))
    cancel = next(x for x in got if x["type"] == "removal_cancelled")
    assert cancel["cancels"] == second["notice_id"]
    again = report_of(acme, f"{run}-after", copy, f"https://acme.example/r/{run}")
    forwarded(s, acme, [again])
    matched_all(s)
    engine = make_engine(s.database_url)
    try:

        def decided() -> list[str] | None:  # the worker may still have held the old bank
            with engine.connect() as c:
                states = list(
                    c.execute(
                        select(VictimMatch.state).where(
                            VictimMatch.provider_report_id == again["provider_report_id"]
                        )
                    ).scalars()
                )
            return None if "new" in states else (states or ["none"])

        assert wait_for("the new copy decided", decided) in (["none"], ["withdrawn"])
    finally:
        engine.dispose()
    notices.close()
