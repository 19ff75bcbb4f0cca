"""The pipeline end to end on a real broker and real databases, through the contract only."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from centre import samples
from centre.db import DeadLetter, Report, make_engine, make_sessionmaker
from centre.kafka import base_config
from centre.keys import KeySet
from centre.metrics import group_lag
from centre.stack import Stack
from centre.topology import STAGES
from routing.tables import Delivery
from tests.integration.helpers import (
    FeedbackReader,
    cli,
    ids_of,
    pull_cases,
    send_raw,
    send_reports,
    write_jsonl,
)

pytestmark = pytest.mark.integration


def _run() -> str:
    return uuid.uuid4().hex[:10]


def test_submitted_report_reaches_its_country_and_europol(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    run = _run()
    rep = samples.report(
        "acme-social", f"{run}-de", media_seed=f"de-{run}", ip_country="de", suspect_country="FR"
    )
    res = cli(s, "submit", str(write_jsonl(tmp_path / "r.jsonl", [rep])))
    assert res.returncode == 0, res.stderr
    assert "sent 1 report" in res.stdout

    fb = FeedbackReader(s, "acme-social")
    final = fb.final_for({rep["provider_report_id"]})
    assert final[rep["provider_report_id"]]["status"] == "forwarded"
    assert fb.statuses(rep["provider_report_id"]) == ["received", "forwarded"]
    fb.close()

    # The liaison's own command: one JSON object per line, opened with the local key set.
    got: list[dict] = []
    for _ in range(10):
        out = cli(s, "liaison", "pull", "--country", "de", "--timeout", "2")
        assert out.returncode == 0, out.stderr
        got += [json.loads(line) for line in out.stdout.splitlines()]
        if ids_of(got, {rep["provider_report_id"]}):
            break
    case = next(c for c in got if c.get("provider_report_id") == rep["provider_report_id"])
    assert case["schema"] == "case/v1"
    assert case["report"]["content"][0]["sha256"] == rep["content"][0]["sha256"]
    countries = {c["country"]: c["basis"] for c in case["jurisdiction"]["countries"]}
    assert countries == {"de": ["ip_geolocation"], "fr": ["suspect_country"]}
    assert case["jurisdiction"]["europol_only"] is False
    assert case["priority"] == "P2" and case["category"] == "new_material"

    for rcpt in ("fr", "europol"):
        docs = pull_cases(s, rcpt, lambda d: bool(ids_of(d, {rep["provider_report_id"]})))
        assert [
            d["case_id"] for d in docs if d["provider_report_id"] == rep["provider_report_id"]
        ] == [case["case_id"]]

    # Every worker commits what it took: once caught up, no stage has a message left.
    stack.wait_caught_up(120)
    for stage in stack.workers:
        c = Consumer({**base_config(s), "group.id": stack.group(stage)})
        try:
            assert group_lag(c, s.topic(STAGES[stage].source)) == 0, stage
        finally:
            c.close()


def test_no_member_state_goes_to_europol_alone(stack: Stack) -> None:
    s = stack.settings
    rep = samples.report("acme-social", f"{_run()}-us", media_seed=_run(), ip_country="us")
    send_reports(s, [rep])
    docs = pull_cases(s, "europol", lambda d: bool(ids_of(d, {rep["provider_report_id"]})))
    case = next(d for d in docs if d["provider_report_id"] == rep["provider_report_id"])
    assert case["jurisdiction"] == {"countries": [], "europol_only": True}


def test_bad_inputs_are_rejected_while_valid_reports_around_them_flow(stack: Stack) -> None:
    s = stack.settings
    run = _run()
    p = "blue-cloud"
    good = [samples.report(p, f"{run}-ok{i}", media_seed=f"{run}-{i}") for i in range(3)]
    missing = {
        "schema": "report/v1",
        "provider_id": p,
        "provider_report_id": f"{run}-missing",
        "submitted_at": "2026-11-20T10:15:00Z",
        "incident": {"kind": "new_material"},
        "content": [{"content_id": "x", "media_type": "image", "sha256": "zz"}],
    }
    big = samples.report(p, f"{run}-big", media_seed=run)
    big["incident"]["description"] = "x" * (1024 * 1024 + 10)
    messages = [
        (f"{p}/{good[0]['provider_report_id']}".encode(), json.dumps(good[0]).encode()),
        (f"{p}/{run}-notjson".encode(), b'{"schema": "report/v1", "provider_id": '),
        (f"{p}/{good[1]['provider_report_id']}".encode(), json.dumps(good[1]).encode()),
        (f"{p}/{run}-missing".encode(), json.dumps(missing).encode()),
        (f"{p}/{run}-big".encode(), json.dumps(big).encode()),
        (f"{p}/{run}-array".encode(), b"[1, 2, 3]"),
        (f"{p}/{run}-latin1".encode(), '{"x": "\xe9"}'.encode("latin-1")),
        (f"{p}/{good[2]['provider_report_id']}".encode(), json.dumps(good[2]).encode()),
    ]
    send_raw(s, messages)
    fb = FeedbackReader(s, p)
    bad_ids = {f"{run}-notjson", f"{run}-missing", f"{run}-big", f"{run}-array", f"{run}-latin1"}
    final = fb.final_for(bad_ids | {g["provider_report_id"] for g in good})
    for g in good:
        assert final[g["provider_report_id"]]["status"] == "forwarded"
    for b in bad_ids:
        assert final[b]["status"] == "rejected", b
        assert final[b]["report_id"] is None
        assert final[b]["reasons"], b
        assert all({"code", "message", "path"} <= set(r) for r in final[b]["reasons"])
    codes = {b: {r["code"] for r in final[b]["reasons"]} for b in bad_ids}
    assert codes[f"{run}-notjson"] == {"invalid_json"}
    assert codes[f"{run}-big"] == {"too_large"}
    assert codes[f"{run}-latin1"] == {"invalid_encoding"}
    paths = {r["path"] for r in final[f"{run}-missing"]["reasons"]}
    assert "$.incident.occurred_at" in paths and "$.content[0].sha256" in paths
    assert len(final[f"{run}-missing"]["reasons"]) >= 2  # one reason per problem
    fb.close()

    engine = make_engine(s.database_url)
    with make_sessionmaker(engine)() as db:
        kept = db.scalars(select(DeadLetter).where(DeadLetter.provider_id == p)).all()
        by_key = {d.key.decode(): d for d in kept if d.key}
        assert by_key[f"{p}/{run}-notjson"].value == b'{"schema": "report/v1", "provider_id": '
        assert len(by_key[f"{p}/{run}-big"].value) > 1024 * 1024  # kept whole
    engine.dispose()


def test_signed_reports_are_checked_against_the_registered_key(stack: Stack) -> None:
    s = stack.settings
    run = _run()
    provider = f"signer-{run[:6]}"
    key = Ed25519PrivateKey.generate()
    KeySet(s.keys_dir).add_provider(
        provider,
        key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
    )
    ok = samples.report(provider, f"{run}-signed", media_seed=f"{run}-a")
    bad = samples.report(provider, f"{run}-forged", media_seed=f"{run}-b")
    ok_v, bad_v = json.dumps(ok).encode(), json.dumps(bad).encode()
    sig_ok = base64.b64encode(key.sign(ok_v))
    sig_bad = base64.b64encode(Ed25519PrivateKey.generate().sign(bad_v))
    send_raw(
        s,
        [
            (f"{provider}/{ok['provider_report_id']}".encode(), ok_v),
            (f"{provider}/{bad['provider_report_id']}".encode(), bad_v),
        ],
        headers=[[("signature", sig_ok)], [("signature", sig_bad)]],
    )
    fb = FeedbackReader(s, provider)
    final = fb.final_for({ok["provider_report_id"], bad["provider_report_id"]})
    assert final[ok["provider_report_id"]]["status"] == "forwarded"
    assert [r["code"] for r in final[bad["provider_report_id"]]["reasons"]] == ["bad_signature"]
    fb.close()
    engine = make_engine(s.database_url)
    with make_sessionmaker(engine)() as db:
        rec = db.scalar(select(Report).where(Report.provider_report_id == ok["provider_report_id"]))
        assert rec is not None and rec.signature == "valid"
    engine.dispose()


def test_resubmission_creates_no_second_case(stack: Stack) -> None:
    s = stack.settings
    rep = samples.report("acme-social", f"{_run()}-dup", media_seed=_run(), ip_country="nl")
    send_reports(s, [rep])
    fb = FeedbackReader(s, "acme-social")
    fb.final_for({rep["provider_report_id"]})
    send_reports(s, [rep])
    fb.until(lambda items: "duplicate_submission" in fb.statuses(rep["provider_report_id"]))
    assert fb.statuses(rep["provider_report_id"]).count("forwarded") == 1
    fb.close()
    engine = make_engine(s.database_url)
    with make_sessionmaker(engine)() as db:
        n = db.scalar(
            select(func.count())
            .select_from(Report)
            .where(Report.provider_report_id == rep["provider_report_id"])
        )
        rid = db.scalar(
            select(Report.report_id).where(Report.provider_report_id == rep["provider_report_id"])
        )
        deliveries = db.scalars(select(Delivery.recipient).where(Delivery.report_id == rid)).all()
    engine.dispose()
    assert n == 1
    assert sorted(deliveries) == ["europol", "nl"]


def test_same_content_across_providers_forms_one_cluster(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    run = _run()
    reps = [
        samples.report(p, f"{run}-c{i}", media_seed=f"shared-{run}", ip_country="it")
        for i, p in enumerate(["acme-social", "blue-cloud", "chat-app"])
    ]
    for r in reps:  # one after the other, so the counts are in a known order
        send_reports(s, [r])
        fb = FeedbackReader(s, r["provider_id"])
        fb.final_for({r["provider_report_id"]})
        fb.close()
    prids = {r["provider_report_id"] for r in reps}
    docs = pull_cases(s, "it", lambda d: set(ids_of(d, prids)) == prids)
    cases = {d["provider_report_id"]: d for d in docs if d["provider_report_id"] in prids}
    times = [cases[r["provider_report_id"]]["duplicates"]["times_reported"] for r in reps]
    assert times == [1, 2, 3]
    clusters = {tuple(c["duplicates"]["cluster_ids"]) for c in cases.values()}
    assert len(clusters) == 1
    last = cases[reps[2]["provider_report_id"]]
    assert set(last["duplicates"]["related_case_ids"]) == {
        cases[reps[0]["provider_report_id"]]["case_id"],
        cases[reps[1]["provider_report_id"]]["case_id"],
    }


def test_indicator_banks_decide_known_material_and_manifestly_unfounded(
    stack: Stack, tmp_path: Path
) -> None:
    s = stack.settings
    run = _run()
    known, fp = samples.fake_hashes(f"k-{run}"), samples.fake_hashes(f"fp-{run}")
    for bank, h in (
        ("known_material", {"md5": known["md5"]}),
        ("false_positive", {"sha256": fp["sha256"]}),
    ):
        res = cli(
            s,
            "indicators",
            "import",
            "--bank",
            bank,
            str(write_jsonl(tmp_path / f"{bank}.jsonl", [h])),
        )
        assert res.returncode == 0, res.stderr
        assert "1 indicator(s) added" in res.stdout
    bad = cli(
        s,
        "indicators",
        "import",
        "--bank",
        "known_material",
        str(write_jsonl(tmp_path / "bad.jsonl", [{"sha256": "nothex"}])),
    )
    assert bad.returncode != 0 and "line 1: sha256" in bad.stderr

    k = samples.report("acme-social", f"{run}-known", media_seed=f"k-{run}", kind="known_material")
    claimed = samples.report(
        "acme-social", f"{run}-claimed", media_seed=f"new-{run}", kind="known_material"
    )
    f = samples.report("acme-social", f"{run}-fp", media_seed=f"fp-{run}")
    send_reports(s, [k, claimed, f])
    fb = FeedbackReader(s, "acme-social")
    final = fb.final_for(
        {k["provider_report_id"], claimed["provider_report_id"], f["provider_report_id"]}
    )
    assert final[f["provider_report_id"]]["status"] == "manifestly_unfounded"
    assert final[k["provider_report_id"]]["status"] == "forwarded"
    fb.close()
    prids = {k["provider_report_id"], claimed["provider_report_id"]}
    docs = pull_cases(s, "de", lambda d: set(ids_of(d, prids)) == prids)
    cases = {d["provider_report_id"]: d for d in docs}
    kc = cases[k["provider_report_id"]]
    assert kc["category"] == "known_material" and kc["priority"] == "P3"
    assert kc["indicator_matches"] == [
        {"content_id": "f1", "bank": "known_material", "signal": "md5", "distance": 0}
    ]
    cc = cases[claimed["provider_report_id"]]
    assert cc["category"] == "new_material"
    assert "claimed_known_not_in_database" in cc["reasons"]
    # The unfounded report was not forwarded anywhere.
    engine = make_engine(s.database_url)
    with make_sessionmaker(engine)() as db:
        rid = db.scalar(
            select(Report.report_id).where(Report.provider_report_id == f["provider_report_id"])
        )
        assert (
            db.scalar(select(func.count()).select_from(Delivery).where(Delivery.report_id == rid))
            == 0
        )
    engine.dispose()


def test_urgent_report_is_p1(stack: Stack) -> None:
    s = stack.settings
    rep = samples.report(
        "acme-social",
        f"{_run()}-p1",
        media_seed=_run(),
        urgent=True,
        live=True,
        ip_country="pl",
        classification="A1",
    )
    send_reports(s, [rep])
    docs = pull_cases(s, "pl", lambda d: bool(ids_of(d, {rep["provider_report_id"]})))
    case = next(d for d in docs if d["provider_report_id"] == rep["provider_report_id"])
    assert case["priority"] == "P1" and case["severity"] == "A1"
    assert "p1:urgent" in case["reasons"]


def _image_item(img: object, content_id: str = "f1") -> dict:
    import hashlib

    from tests.imagegen import png_bytes
    from triage.hashing import pdq_from_image

    data = png_bytes(img)  # type: ignore[arg-type]
    pdq, quality = pdq_from_image(img)  # type: ignore[arg-type]
    return {
        "content_id": content_id,
        "media_type": "image",
        "pdq": pdq,
        "pdq_quality": quality,
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
    }


def test_resized_recompressed_and_cropped_copies_join_one_cluster(stack: Stack) -> None:
    from tests.imagegen import cropped, recompressed, resized, structured_image

    s = stack.settings
    run = _run()
    seed = 102  # each variant checked to differ from the original (distance > 0) by PDQ
    original = structured_image(seed)
    variants = [
        original,
        resized(original, 0.5),
        recompressed(original, 45),
        cropped(original, 0.02),
        structured_image(seed + 1),
    ]  # the last is unrelated
    reps = []
    for i, img in enumerate(variants):
        r = samples.report(
            "acme-social" if i % 2 else "blue-cloud",
            f"{run}-v{i}",
            media_seed=f"unused-{run}-{i}",
            ip_country="nl",
        )
        r["content"] = [_image_item(img)]
        reps.append(r)
    for r in reps:  # one after another: counts in a known order
        send_reports(s, [r])
        fb = FeedbackReader(s, r["provider_id"])
        fb.final_for({r["provider_report_id"]})
        fb.close()
    prids = {r["provider_report_id"] for r in reps}
    docs = pull_cases(s, "nl", lambda d: set(ids_of(d, prids)) == prids)
    cases = [
        next(d for d in docs if d["provider_report_id"] == r["provider_report_id"]) for r in reps
    ]
    assert [c["duplicates"]["times_reported"] for c in cases] == [1, 2, 3, 4, 1]
    assert len({tuple(c["duplicates"]["cluster_ids"]) for c in cases[:4]}) == 1
    assert cases[4]["duplicates"]["cluster_ids"] != cases[0]["duplicates"]["cluster_ids"]
    for c in cases[1:4]:  # every byte differs, so they joined by PDQ, and say how near
        near = [r for r in c["reasons"] if r.startswith("near_duplicate:pdq_distance:")]
        assert near and 0 < int(near[0].split(":")[2]) <= 31, c["reasons"]


def test_pdq_indicator_matches_near_copies_with_distance_and_low_quality_is_not_matched(
    stack: Stack, tmp_path: Path
) -> None:
    from tests.imagegen import recompressed, structured_image
    from triage.hashing import pdq_distance

    s = stack.settings
    run = _run()
    img = structured_image(106)  # its recompressed copy is 4 bits away: near, not equal
    indicator = _image_item(img)
    res = cli(
        s,
        "indicators",
        "import",
        "--bank",
        "known_material",
        str(write_jsonl(tmp_path / "pdq.jsonl", [{"pdq": indicator["pdq"]}])),
    )
    assert res.returncode == 0, res.stderr
    copy = _image_item(recompressed(img, 45))
    distance = pdq_distance(copy["pdq"], indicator["pdq"])
    assert 0 < distance <= 31
    near = samples.report("chat-app", f"{run}-near", media_seed="x", ip_country="pl")
    near["content"] = [copy]
    weak = samples.report("chat-app", f"{run}-weak", media_seed="x", ip_country="pl")
    weak["content"] = [{**copy, "content_id": "w1", "pdq_quality": 30}]
    # The import bumped the banks' version; the worker checks it before every batch.
    send_reports(s, [near, weak])
    prids = {near["provider_report_id"], weak["provider_report_id"]}
    docs = pull_cases(s, "pl", lambda d: set(ids_of(d, prids)) == prids)
    got = {d["provider_report_id"]: d for d in docs if d["provider_report_id"] in prids}
    nc, wc = got[near["provider_report_id"]], got[weak["provider_report_id"]]
    assert nc["category"] == "known_material"
    assert nc["indicator_matches"] == [
        {"content_id": "f1", "bank": "known_material", "signal": "pdq", "distance": distance}
    ]
    assert wc["category"] == "new_material" and wc["indicator_matches"] == []
    assert "pdq_low_quality_not_matched:w1:30" in wc["reasons"]
