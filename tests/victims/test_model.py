"""The victim's hash list, victim-request/v1 and notice-response/v1: accepted as documented,
every problem named by line or path, never a value echoed."""

from __future__ import annotations

import json
import uuid

import orjson
import pytest

from tests.victims.seed import hashes, request_doc
from victims import pin as pins
from victims.model import (
    MAX_ITEMS,
    HashListError,
    Item,
    parse_hash_list,
    validate_request,
    validate_response,
)


def jsonl(*rows: object) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_the_list_of_victims_hash_is_read_and_file_names_stay_out() -> None:
    a, b = hashes("a"), hashes("b")
    items = parse_hash_list(
        jsonl(
            {"file": "me at the beach.jpg", "media_type": "image", **a, "pdq_quality": 100},
            {
                "file": "clip.mp4",
                "media_type": "video",
                "sha256": b["sha256"].upper(),
                "md5": b["md5"],
            },
            {"file": "again.jpg", "media_type": "image", **a, "pdq_quality": 100},
        )
    )  # a repeat
    assert [i.item for i in items] == [1, 2]
    assert items[1].sha256 == b["sha256"] and items[1].pdq is None
    assert "file" not in items[0].as_dict() and "beach" not in repr(items)
    # a JSON array works too
    assert len(parse_hash_list(json.dumps([{"sha256": a["sha256"]}]).encode())) == 1


def test_low_quality_pdq_is_kept_but_not_matched() -> None:
    a = hashes("a")
    it = parse_hash_list(jsonl({**a, "pdq_quality": 20}))[0]
    assert ("pdq", a["pdq"]) in it.hashes() and ("pdq", a["pdq"]) not in it.signals()
    assert ("sha256", a["sha256"]) in it.signals()


@pytest.mark.parametrize(
    "data, code, path",
    [
        (b"", "empty", "$"),
        (b"\n  \n", "empty", "$"),
        (b"{not json\n", "invalid_json", "line 1"),
        (jsonl({"sha256": "xyz"}), "invalid_hash", "line 1.sha256"),
        (jsonl({"sha256": "a" * 64}, {"md5": "b" * 31}), "invalid_hash", "line 2.md5"),
        (jsonl({"file": "x.jpg"}), "no_hash", "line 1"),
        (jsonl(5), "not_an_object", "line 1"),
        (jsonl(["a" * 64]), "not_an_object", "$[0]"),  # one JSON array
        (jsonl({"pdq": "a" * 64, "pdq_quality": 101}), "invalid_value", "line 1.pdq_quality"),
        (jsonl({"pdq": "a" * 64, "media_type": "video"}), "invalid_value", "line 1.pdq"),
        (b"\xff\xfe", "invalid_encoding", "$"),
    ],
)
def test_bad_lists_are_refused_naming_the_line(data: bytes, code: str, path: str) -> None:
    with pytest.raises(HashListError) as e:
        parse_hash_list(data)
    assert (code, path) in [(p["code"], p["path"]) for p in e.value.problems]
    assert "xyz" not in str(e.value)  # the value itself is never echoed


def test_too_many_items() -> None:
    rows = [{"sha256": f"{i:064x}"} for i in range(MAX_ITEMS + 1)]
    with pytest.raises(HashListError) as e:
        parse_hash_list(jsonl(*rows))
    assert e.value.codes == ["too_many"]


def test_a_request_message_round_trips_and_carries_no_identity() -> None:
    rid = str(uuid.uuid4())
    items = [Item(1, "image", **hashes("a"), pdq_quality=100)]  # type: ignore[arg-type]
    doc = request_doc(rid, items)
    out = validate_request(orjson.dumps(doc))
    assert out.accepted and out.items == items
    assert doc["pin"].startswith("scrypt$") and "AAAA" not in json.dumps(doc)
    for field, value in (("representative", "Mother"), ("identity_ref", "H-77")):
        bad = validate_request(orjson.dumps({**doc, field: value}))
        assert not bad.accepted
        assert [p["code"] for p in bad.problems] == ["identity_not_allowed"]
        assert value not in json.dumps(bad.problems)


@pytest.mark.parametrize(
    "change, path",
    [
        ({"schema": "victim-request/v2"}, "$.schema"),
        ({"request_id": "R-1"}, "$.request_id"),
        ({"pin": "1234"}, "$.pin"),
        ({"pin": "scrypt$20$8$1$AAAA$AAAA"}, "$.pin"),  # too costly to check: refused
        ({"items": []}, "$.items"),
        ({"items": [{"item": 1, "sha256": "zz"}]}, "$.items[0].sha256"),
        (
            {"items": [{"item": 1, "sha256": "a" * 64}, {"item": 1, "md5": "b" * 32}]},
            "$.items[1].item",
        ),
        ({"requested_at": "yesterday"}, "$.requested_at"),
        ({"filed_by": "a b"}, "$.filed_by"),
        ({"victim": "J. N."}, "$.victim"),  # no field but the known ones travels
        ({"items": [{"item": 1, "sha256": "a" * 64, "file": "jana_beach.jpg"}]}, "$.items[0].file"),
    ],
)
def test_bad_request_messages(change: dict[str, object], path: str) -> None:
    doc = {**request_doc(str(uuid.uuid4()), [Item(1, sha256="a" * 64)]), **change}
    out = validate_request(orjson.dumps(doc))
    assert not out.accepted and path in [p["path"] for p in out.problems], out.problems


@pytest.mark.parametrize("raw", [None, b"", b"[1]", b"{", b"x" * 5_000_000])
def test_unreadable_request_messages(raw: bytes | None) -> None:
    assert not validate_request(raw).accepted


def response(**over: object) -> bytes:
    doc = {
        "schema": "notice-response/v1",
        "notice_id": str(uuid.uuid4()),
        "provider_id": "acme",
        "status": "removed",
        "at": "2026-11-23T12:00:00Z",
    }
    doc.update(over)
    return orjson.dumps({k: v for k, v in doc.items() if v is not None})


def test_responses() -> None:
    assert validate_response(response()).accepted
    assert validate_response(response(removed_at="2026-11-23T11:00:00+01:00")).accepted
    ok = validate_response(response(status="refused", reason="legal review pending"))
    assert ok.accepted
    for over, path in (
        ({"status": "refused"}, "$.reason"),
        ({"status": "gone"}, "$.status"),
        ({"notice_id": "n-1"}, "$.notice_id"),
        ({"provider_id": "Not A Provider"}, "$.provider_id"),
        ({"at": None}, "$.at"),
        ({"removed_at": "soon"}, "$.removed_at"),
    ):
        out = validate_response(response(**over))
        assert not out.accepted and path in [p["path"] for p in out.problems], (over, out)
    bad = validate_response(response(notice_id="x"))
    assert bad.provider_id == "acme" and bad.notice_id is None


def test_pins() -> None:
    pin = pins.new_pin()
    assert len(pin) == 14 and pin.count("-") == 2
    stored = pins.hash_pin(pin, n_log2=14)
    assert pins.well_formed(stored) and pin not in stored
    assert pins.check_pin(pin, stored)
    assert pins.check_pin(pin.lower().replace("-", " "), stored)  # as typed by a person
    assert not pins.check_pin("0000-0000-0000", stored)
    assert not pins.check_pin(pin, None)  # no request: the dummy, never True
    assert not pins.check_pin("", pins.DUMMY)
    # look-alike letters read as the digits they resemble
    assert pins.check_pin("OIL0-ILOO-oooo", pins.hash_pin("0110-1100-0000", n_log2=14))


def test_items_are_numbered_by_their_line_in_the_list() -> None:
    from victims.model import parse_hash_list

    a, b = "a" * 64, "b" * 64
    items = parse_hash_list(f'{{"sha256": "{a}"}}\n\n{{"sha256": "{b}"}}\n'.encode())
    assert [i.item for i in items] == [1, 3]
