"""report/v1 validation: each bad input of the contract, one reason per problem, with paths."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from intake.model import SCHEMA_ID, ReportV1, report_json_schema
from intake.schema_gen import SCHEMA_FILE, render
from intake.schema_gen import main as schema_gen_main
from intake.validation import MAX_REPORT_BYTES, Problem, parse_key, validate_report
from tests.factories import REMOVE, make_report, report_bytes, report_key

SECRET = "she is 12 and lives at 4 Elm Street"  # stands for any value a report may carry


def contract_example() -> dict[str, Any]:
    """The example of CONTRACT.md with real hex hashes, every optional field, and an unknown
    field at every level."""
    return {
        "schema": "report/v1",
        "provider_id": "acme-social",
        "provider_report_id": "r-000123",
        "submitted_at": "2026-11-20T10:15:00Z",
        "x_top": 1,
        "incident": {
            "kind": "known_material",
            "occurred_at": "2026-11-19T22:01:00+01:00",
            "urgent": True,
            "urgent_reason": "ongoing abuse",
            "x_incident": True,
            "annotations": [
                "sextortion",
                "minor_to_minor",
                "sadistic_exploitation",
                "csam_solicitation",
            ],
            "detection": "user_flag",
            "description": SECRET,
            "service": {"type": "hosting", "url": "https://host.example/", "x_service": "s"},
        },
        "content": [
            {
                "content_id": "f1",
                "media_type": "image",
                "sha256": hashlib.sha256(b"f1").hexdigest().upper(),
                "md5": hashlib.md5(b"f1").hexdigest(),
                "pdq": hashlib.sha256(b"pdq").hexdigest(),
                "pdq_quality": 0,
                "url": "https://host.example/f1.jpg",
                "publicly_available": True,
                "removed": True,
                "annotations": [
                    "viral",
                    "potential_meme",
                    "generative_ai",
                    "possible_self_production",
                    "infant",
                    "live_streaming",
                    "physical_harm",
                    "animated",
                ],
                "industry_classification": "A1",
                "x_vendor": {"score": 0.97},
            },
            {"content_id": "m1", "media_type": "text", "text": "hi"},
            {"content_id": "u1", "media_type": "url", "url": "https://x.example/"},
        ],
        "location": {
            "ip_events": [
                {
                    "ip": "80.128.0.1",
                    "port": 443,
                    "at": "2026-11-19T22:00:00Z",
                    "event": "upload",
                    "x_asn": 3320,
                }
            ],
            "country_hint": "de",
            "x_location": [1],
        },
        "users": [
            {
                "role": "suspect",
                "account_id": "a",
                "username": "u",
                "email": "e@x",
                "phone": "+33",
                "country": "fr",
                "age_band": "adult",
                "account_action": "terminated",
                "x_user": None,
            }
        ],
        "reported_elsewhere": [
            {"authority": "NCMEC", "country": "us", "reference": "CT-123", "x_re": 1}
        ],
        "batch": {"reason": "viral_potential_meme", "user_count": 1234, "x_batch": "b"},
        "supplement": False,
    }


def problems(doc: Any, **kw: Any) -> list[tuple[str, str]]:
    return [(p.code, p.path) for p in validate_report(report_bytes(doc), **kw).problems]


def at(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """doc with the field at path set to value (or removed for REMOVE)."""
    target: Any = doc
    for p in path[:-1]:
        target = target[p]
    if value is REMOVE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


def jsonpath(path: tuple[Any, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


# -- accepted -------------------------------------------------------------------------------


def test_contract_example_is_accepted_with_unknown_fields_kept_at_every_level() -> None:
    doc = contract_example()
    out = validate_report(report_bytes(doc), report_key(doc))
    assert out.accepted, out.problems
    r = out.report
    assert r is not None
    assert r["x_top"] == 1 and r["incident"]["x_incident"] is True
    assert r["incident"]["service"]["x_service"] == "s"
    assert r["content"][0]["x_vendor"] == {"score": 0.97}
    assert r["location"]["x_location"] == [1] and r["location"]["ip_events"][0]["x_asn"] == 3320
    assert r["users"][0]["x_user"] is None and r["reported_elsewhere"][0]["x_re"] == 1
    assert r["batch"]["x_batch"] == "b"
    assert (out.provider_id, out.provider_report_id) == ("acme-social", "r-000123")
    assert out.signature == "absent"


def test_accepted_report_is_normalised_and_otherwise_as_sent() -> None:
    doc = contract_example()
    r = validate_report(report_bytes(doc)).report
    assert r is not None
    assert r["content"][0]["sha256"] == doc["content"][0]["sha256"].lower()
    assert r["location"]["country_hint"] == "DE" and r["users"][0]["country"] == "FR"
    assert r["reported_elsewhere"][0]["country"] == "US"
    assert r["incident"]["occurred_at"] == "2026-11-19T22:01:00+01:00"  # not re-formatted
    expected = copy.deepcopy(doc)
    expected["content"][0]["sha256"] = expected["content"][0]["sha256"].lower()
    expected["location"]["country_hint"] = "DE"
    expected["users"][0]["country"] = "FR"
    expected["reported_elsewhere"][0]["country"] = "US"
    assert r == expected
    json.dumps(r)  # plain JSON


def test_defaults_are_not_added_for_absent_fields() -> None:
    doc = make_report(incident={"urgent": REMOVE, "detection": REMOVE}, users=REMOVE)
    r = validate_report(report_bytes(doc)).report
    assert r is not None
    assert "supplement" not in r and "urgent" not in r["incident"]
    assert "users" not in r and "detection" not in r["incident"]
    assert "sha256" in r["content"][0] and "text" not in r["content"][0]


def test_factory_report_is_valid_and_unique() -> None:
    a, b = make_report(), make_report()
    assert validate_report(report_bytes(a), report_key(a)).accepted
    assert a["provider_report_id"] != b["provider_report_id"]
    assert a["content"][0]["sha256"] != b["content"][0]["sha256"]
    assert a["provider_id"] == "acme-social" and a["users"][0]["country"] == "FR"
    assert a["location"]["ip_events"][0]["ip"] == "80.128.0.1"


def test_factory_deep_merges() -> None:
    r = make_report(
        incident={"urgent": True, "urgent_reason": "r"},
        location={"x": 1},
        content=[],
        batch={"reason": "b", "user_count": REMOVE},
    )
    assert r["incident"]["kind"] == "new_material" and r["incident"]["urgent"] is True
    assert r["location"]["ip_events"] and r["location"]["x"] == 1
    assert r["content"] == [] and r["batch"] == {"reason": "b"}


@pytest.mark.parametrize(
    "overrides",
    [
        {"content": [], "incident": {"description": "text only"}},
        {"content": REMOVE},
        {"content": [{"content_id": "p", "media_type": "video", "pdq": "ab" * 32}]},
        {"content": [{"content_id": "t", "media_type": "text"}], "incident": {"description": None}},
        {"incident": {"urgent": True, "urgent_reason": "live abuse"}},
        {"supplement": True},
        {"location": {"ip_events": [{"ip": "999.1.1.1"}, {"ip": "not an ip"}, {}]}},
        {"users": [{}], "reported_elsewhere": [{}], "batch": {}},
        {
            "submitted_at": "2026-11-20T10:15:00.123456+05:30",
            "incident": {"occurred_at": "2026-11-20 10:15Z"},
        },
        {
            "content": [
                {
                    "content_id": "f1",
                    "media_type": "image",
                    "md5": "A" * 32,
                    "pdq_quality": 100,
                    "sha256": None,
                }
            ]
        },
        {"provider_id": "a", "provider_report_id": "x" * 200},
    ],
)
def test_variants_accepted(overrides: dict[str, Any]) -> None:
    out = validate_report(report_bytes(make_report(**overrides)))
    assert out.accepted, out.problems


# -- unparseable ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,code",
    [
        (b"", "invalid_json"),
        (None, "invalid_json"),
        (b"{not json", "invalid_json"),
        (b'{"a": 1,}', "invalid_json"),
        (b'{"a": NaN}', "invalid_json"),
        (b'{"a": "\\ud800"}', "invalid_json"),  # a lone surrogate could not be written out again
        (b"[" * 2000 + b"]" * 2000, "too_deep"),  # deeper than orjson parses
        (b"[1, 2]", "not_an_object"),
        (b'"a string"', "not_an_object"),
        (b"null", "not_an_object"),
        (b"42", "not_an_object"),
        ('{"a": "\xe9"}'.encode("latin-1"), "invalid_encoding"),
        (b'{"a": "\xed\xa0\x80"}', "invalid_encoding"),  # an encoded surrogate is not UTF-8
    ],
)
def test_unparseable_values_take_ids_from_the_key(value: bytes | None, code: str) -> None:
    out = validate_report(value, b"acme-social/r-9")
    assert [(p.code, p.path) for p in out.problems] == [(code, "$")]
    assert out.report is None and not out.accepted
    assert (out.provider_id, out.provider_report_id) == ("acme-social", "r-9")


def test_invalid_json_message_gives_line_and_column() -> None:
    out = validate_report(b'{\n  "schema": "report/v1",\n  "provider_id" "x"\n}')
    (p,) = out.problems
    assert p.code == "invalid_json" and "line 3 column 17" in p.message


def test_invalid_encoding_message_gives_the_offset_not_the_text() -> None:
    prefix = b'{"description": "' + SECRET.encode()
    (p,) = validate_report(prefix + b'\xff"}').problems
    assert p.code == "invalid_encoding" and SECRET not in p.message
    assert f"offset {len(prefix)}" in p.message


def test_over_one_mib_is_rejected_without_parsing() -> None:
    out = validate_report(b"not json" + b" " * MAX_REPORT_BYTES, b"acme-social/r-1")
    assert [(p.code, p.path) for p in out.problems] == [("too_large", "$")]
    assert str(MAX_REPORT_BYTES) in out.problems[0].message
    assert (out.provider_id, out.provider_report_id) == ("acme-social", "r-1")


def test_exactly_one_mib_is_not_too_large() -> None:
    doc = make_report(pad=["", "", "", "", ""])  # each string within MAX_STRING
    room = MAX_REPORT_BYTES - len(report_bytes(doc))
    doc["pad"] = ["x" * (room // 5)] * 4 + ["x" * (room - 4 * (room // 5))]
    assert len(report_bytes(doc)) == MAX_REPORT_BYTES
    assert validate_report(report_bytes(doc)).accepted


# -- schema ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ("schema",),
        ("provider_id",),
        ("provider_report_id",),
        ("submitted_at",),
        ("incident",),
        ("incident", "kind"),
        ("incident", "occurred_at"),
        ("content", 0, "content_id"),
        ("content", 0, "media_type"),
    ],
)
def test_required_fields(path: tuple[Any, ...]) -> None:
    doc = at(make_report(), path, REMOVE)
    assert problems(doc) == [("missing_field", jsonpath(path))]


@pytest.mark.parametrize(
    "path,value,code",
    [
        (("schema",), "report/v2", "invalid_value"),
        (("provider_id",), "Acme Social", "invalid_value"),
        (("provider_id",), "-acme", "invalid_value"),
        (("provider_id",), "a" * 101, "invalid_value"),
        (("provider_id",), "", "invalid_value"),
        (("provider_id",), 7, "invalid_type"),
        (("provider_report_id",), "", "invalid_value"),
        (("provider_report_id",), "   ", "invalid_value"),
        (("provider_report_id",), "x" * 201, "invalid_value"),
        (("submitted_at",), "2026-11-20T10:15:00", "invalid_value"),  # no time zone
        (("submitted_at",), "2026-11-20", "invalid_value"),
        (("submitted_at",), SECRET, "invalid_value"),
        (("submitted_at",), 1763633700, "invalid_type"),
        (("incident",), [], "invalid_type"),
        (("incident", "kind"), "csam", "invalid_value"),
        (("incident", "occurred_at"), "19/11/2026 22:01", "invalid_value"),
        (("incident", "urgent"), "yes", "invalid_type"),
        (("incident", "urgent"), 1, "invalid_type"),
        (("incident", "annotations"), ["sextortion", "other"], "invalid_value"),
        (("incident", "detection"), "psychic", "invalid_value"),
        (("incident", "service", "type"), "cloud", "invalid_value"),
        (("incident", "description"), 5, "invalid_type"),
        (("content",), {"not": "a list"}, "invalid_type"),
        (("content", 0), "f1", "invalid_type"),
        (("content", 0, "content_id"), "", "invalid_value"),
        (("content", 0, "content_id"), 1, "invalid_type"),
        (("content", 0, "media_type"), "audio", "invalid_value"),
        (("content", 0, "sha256"), "abc", "invalid_hash"),
        (("content", 0, "sha256"), "g" * 64, "invalid_hash"),
        (("content", 0, "sha256"), 12345, "invalid_hash"),
        (("content", 0, "md5"), "0" * 31, "invalid_hash"),
        (("content", 0, "md5"), "g" * 32, "invalid_hash"),
        (("content", 0, "pdq"), "0" * 63, "invalid_hash"),
        (("content", 0, "pdq"), "0" * 65, "invalid_hash"),
        (("content", 0, "pdq_quality"), 101, "invalid_value"),
        (("content", 0, "pdq_quality"), -1, "invalid_value"),
        (("content", 0, "pdq_quality"), 50.5, "invalid_type"),
        (("content", 0, "pdq_quality"), "50", "invalid_type"),
        (("content", 0, "pdq_quality"), True, "invalid_type"),
        (("content", 0, "publicly_available"), "true", "invalid_type"),
        (("content", 0, "annotations"), ["viral", "cute"], "invalid_value"),
        (("content", 0, "industry_classification"), "C3", "invalid_value"),
        (("location",), "DE", "invalid_type"),
        (("location", "ip_events", 0, "ip"), 12345, "invalid_type"),
        (("location", "ip_events", 0, "port"), 70000, "invalid_value"),
        (("location", "ip_events", 0, "at"), "yesterday", "invalid_value"),
        (("location", "ip_events", 0, "event"), "download", "invalid_value"),
        (("location", "country_hint"), "DEU", "invalid_value"),
        (("users", 0, "role"), "bystander", "invalid_value"),
        (("users", 0, "country"), "F1", "invalid_value"),
        (("users", 0, "age_band"), "toddler", "invalid_value"),
        (("users", 0, "account_action"), "banned", "invalid_value"),
        (("users", 0, "email"), ["a@b"], "invalid_type"),
        (("reported_elsewhere",), [{"country": "USA"}], "invalid_value"),
        (("batch",), {"user_count": -1}, "invalid_value"),
        (("supplement",), "true", "invalid_type"),
        (("supplement",), None, "invalid_type"),
    ],
)
def test_field_rules(path: tuple[Any, ...], value: Any, code: str) -> None:
    doc = at(make_report(), path, value)
    got = problems(doc)
    assert len(got) == 1, got
    code_got, path_got = got[0]
    assert code_got == code
    assert path_got.startswith(jsonpath(path))  # lists report the bad element: annotations[1]


def test_field_error_paths_point_at_the_element() -> None:
    doc = make_report(incident={"annotations": ["sextortion", "other"]})
    assert problems(doc) == [("invalid_value", "$.incident.annotations[1]")]


def test_provider_id_message_says_why() -> None:
    (p,) = validate_report(report_bytes(make_report(provider_id="Acme"))).problems
    assert "Kafka topic" in p.message and p.message.startswith("provider_id ")


def test_model_reports_rules_on_its_own() -> None:
    with pytest.raises(ValidationError) as exc:
        ReportV1.model_validate(make_report(incident={"urgent": True}))
    assert [e["type"] for e in exc.value.errors()] == ["urgent_reason_required"]


@pytest.mark.parametrize("reason", [REMOVE, None, "", "   "])
def test_urgent_needs_a_reason(reason: Any) -> None:
    doc = make_report(incident={"urgent": True, "urgent_reason": reason})
    assert problems(doc) == [("urgent_reason_required", "$.incident.urgent_reason")]


def test_urgent_reason_of_wrong_type_is_one_problem() -> None:
    doc = make_report(incident={"urgent": True, "urgent_reason": 5})
    assert problems(doc) == [("invalid_type", "$.incident.urgent_reason")]


@pytest.mark.parametrize("media_type", ["image", "video"])
def test_media_needs_a_hash(media_type: str) -> None:
    doc = make_report(
        content=[
            {"content_id": "a", "media_type": media_type, "sha256": None},
            {"content_id": "b", "media_type": "text", "text": "hi"},
            {"content_id": "c", "media_type": "url", "url": "https://x/"},
        ]
    )
    assert problems(doc) == [("missing_hash", "$.content[0]")]


@pytest.mark.parametrize(
    "content,description",
    [
        ([], ""),
        (REMOVE, REMOVE),
        (None, "  \n"),
        ([], None),
    ],
)
def test_content_or_description_required(content: Any, description: Any) -> None:
    doc = make_report(content=content, incident={"description": description})
    assert problems(doc) == [("content_or_description_required", "$.content")]


def test_duplicate_content_ids() -> None:
    doc = make_report()
    doc["content"] += [
        copy.deepcopy(doc["content"][0]),
        {"content_id": "t", "media_type": "text"},
        {"content_id": "f1", "media_type": "url"},
    ]
    assert problems(doc) == [
        ("duplicate_content_id", "$.content[1].content_id"),
        ("duplicate_content_id", "$.content[3].content_id"),
    ]


def test_several_problems_give_one_reason_each() -> None:
    doc = make_report(
        provider_report_id="", incident={"occurred_at": REMOVE, "urgent": True, "kind": "bad"}
    )
    doc["content"][0]["sha256"] = "zz"
    doc["content"].append({"content_id": "f1", "media_type": "video"})
    doc["users"][0]["role"] = "x"
    doc["supplement"] = "no"
    assert sorted(problems(doc)) == sorted(
        [
            ("invalid_value", "$.provider_report_id"),
            ("invalid_value", "$.incident.kind"),
            ("missing_field", "$.incident.occurred_at"),
            ("invalid_hash", "$.content[0].sha256"),
            ("invalid_value", "$.users[0].role"),
            ("invalid_type", "$.supplement"),
            ("urgent_reason_required", "$.incident.urgent_reason"),
            ("missing_hash", "$.content[1]"),
            ("duplicate_content_id", "$.content[1].content_id"),
        ]
    )


def test_messages_are_sentences_without_values() -> None:
    doc = make_report(
        provider_id=SECRET,
        provider_report_id=SECRET * 10,
        submitted_at=SECRET,
        incident={
            "kind": SECRET,
            "detection": SECRET,
            "description": SECRET,
            "urgent": True,
            "urgent_reason": " ",
            "annotations": [SECRET],
            "service": {"type": SECRET},
        },
        location={"country_hint": SECRET, "ip_events": [{"ip": 4.2, "at": SECRET}]},
        users=[{"role": SECRET, "email": 42, "country": SECRET}],
    )
    doc["content"][0].update(sha256=SECRET, md5=SECRET, pdq=SECRET, media_type=SECRET)
    doc["content"].append({"content_id": SECRET, "media_type": "image", "text": SECRET})
    out = validate_report(report_bytes(doc), b"acme-social/" + SECRET.encode())
    assert len(out.problems) >= 15
    for p in out.problems:
        for fragment in (SECRET, SECRET[:12], "Elm", "42", "4.2"):
            assert fragment not in p.message, p
        assert p.message[0].isalpha() and p.message.endswith("."), p
    assert out.provider_id == "acme-social"  # the body's is unusable; the key's is not


# -- Kafka key ------------------------------------------------------------------------------


def test_key_must_match_the_body() -> None:
    doc = make_report(provider_report_id="r-1")
    assert problems(doc, key=b"acme-social/r-1") == []
    assert problems(doc, key=b"acme-social/other") == [("key_mismatch", "$.provider_report_id")]
    assert problems(doc, key=b"other/r-1") == [("key_mismatch", "$.provider_id")]
    assert problems(doc, key=b"other/other") == [("key_mismatch", "$")]
    assert problems(doc, key=b"acme-social") == [("key_mismatch", "$")]
    assert problems(doc, key=b"\xff/r-1") == [("key_mismatch", "$")]
    assert problems(doc, key=b"") == []  # an empty key is no key


def test_key_is_not_compared_with_a_missing_field() -> None:
    doc = make_report(provider_report_id=REMOVE)
    out = validate_report(report_bytes(doc), b"acme-social/r-7")
    assert [(p.code, p.path) for p in out.problems] == [("missing_field", "$.provider_report_id")]
    assert (out.provider_id, out.provider_report_id) == ("acme-social", "r-7")


def test_key_is_not_compared_with_an_invalid_field() -> None:
    doc = make_report(provider_id="Acme-Social")
    assert problems(doc, key=b"acme-social/" + doc["provider_report_id"].encode()) == [
        ("invalid_value", "$.provider_id")
    ]


def test_ids_come_from_the_body_when_usable() -> None:
    doc = make_report(provider_id="beta", provider_report_id="b-1", incident={"kind": "x"})
    out = validate_report(report_bytes(doc), b"acme-social/r-1")
    assert (out.provider_id, out.provider_report_id) == ("beta", "b-1")
    out = validate_report(report_bytes(doc))
    assert (out.provider_id, out.provider_report_id) == ("beta", "b-1")


def test_ids_unusable_for_a_topic_are_dropped() -> None:
    out = validate_report(b"{", b"Not A Topic/r-1")
    assert (out.provider_id, out.provider_report_id) == (None, "r-1")
    out = validate_report(b"{", None)
    assert (out.provider_id, out.provider_report_id) == (None, None)


def test_parse_key() -> None:
    assert parse_key(b"acme/r-1/x") == ("acme", "r-1/x")
    assert parse_key(b"acme") == ("acme", None)
    assert parse_key(b"acme/") == ("acme", None)
    assert parse_key(b"/r-1") == (None, "r-1")
    assert parse_key(None) == (None, None)
    assert parse_key(b"") == (None, None)
    assert parse_key(b"\xff\xfe") == (None, None)


# -- signatures -----------------------------------------------------------------------------

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key()


def sign(value: bytes, key: Ed25519PrivateKey = KEY) -> str:
    return base64.b64encode(key.sign(value)).decode()


@pytest.mark.parametrize("required", [True, False])
def test_valid_signature(required: bool) -> None:
    v = report_bytes(make_report())
    out = validate_report(v, signature_b64=sign(v), provider_key=PUBLIC, require_signature=required)
    assert out.accepted and out.signature == "valid"


@pytest.mark.parametrize("required", [True, False])
def test_bad_signature_is_rejected_when_a_key_is_registered(required: bool) -> None:
    v = report_bytes(make_report())
    for sig in (
        sign(v, Ed25519PrivateKey.generate()),
        sign(v + b" "),
        "!!not base64",
        base64.b64encode(b"short").decode(),
        "é",
    ):
        out = validate_report(v, signature_b64=sig, provider_key=PUBLIC, require_signature=required)
        assert [(p.code, p.path) for p in out.problems] == [("bad_signature", "$")], sig
        assert out.signature == "invalid" and out.report is None


def test_missing_signature_when_required() -> None:
    v = report_bytes(make_report())
    for sig in (None, ""):
        out = validate_report(v, signature_b64=sig, provider_key=PUBLIC, require_signature=True)
        assert [p.code for p in out.problems] == ["missing_signature"]
        assert out.signature == "absent"


def test_missing_signature_and_unknown_key_when_required() -> None:
    out = validate_report(report_bytes(make_report()), require_signature=True)
    assert [p.code for p in out.problems] == ["missing_signature", "unknown_provider_key"]


def test_unknown_key() -> None:
    v = report_bytes(make_report())
    out = validate_report(v, signature_b64=sign(v), require_signature=True)
    assert [p.code for p in out.problems] == ["unknown_provider_key"]
    assert out.signature == "unchecked"
    out = validate_report(v, signature_b64=sign(v))
    assert out.accepted and out.signature == "unchecked"


def test_signature_optional_and_absent() -> None:
    out = validate_report(report_bytes(make_report()), provider_key=PUBLIC)
    assert out.accepted and out.signature == "absent"


def test_signature_problems_add_to_other_problems() -> None:
    out = validate_report(b"[1]", signature_b64=sign(b"[2]"), provider_key=PUBLIC)
    assert [p.code for p in out.problems] == ["not_an_object", "bad_signature"]
    doc = make_report(incident={"kind": "bad"})
    assert problems(doc, require_signature=True, provider_key=PUBLIC) == [
        ("invalid_value", "$.incident.kind"),
        ("missing_signature", "$"),
    ]


# -- the published schema -------------------------------------------------------------------


def test_problem_as_dict() -> None:
    p = Problem("missing_field", "incident.kind is required.", "$.incident.kind")
    assert p.as_dict() == {
        "code": "missing_field",
        "message": "incident.kind is required.",
        "path": "$.incident.kind",
    }


def test_schema_file_is_current() -> None:
    on_disk = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert on_disk == report_json_schema(), "run: python -m intake.schema_gen"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render()
    assert schema_gen_main(["--check"]) == 0


def test_schema_names_itself_and_the_rules() -> None:
    s = report_json_schema()
    assert s["$id"] == SCHEMA_ID and s["title"] == "report/v1"
    assert s["required"] == [
        "schema",
        "provider_id",
        "provider_report_id",
        "submitted_at",
        "incident",
    ]
    assert s["additionalProperties"] is True and "anyOf" in s
    assert s["$defs"]["Incident"]["then"]["required"] == ["urgent_reason"]
    assert "then" in s["$defs"]["ContentItem"]


def test_a_batch_bundle_keeps_every_user_it_names() -> None:
    # NCMEC-style bundle: one report for content shared by many accounts.
    users = [
        {
            "role": "suspect",
            "account_id": f"u-{i}",
            "username": f"name{i}",
            "country": ("DE", "FR", "NL")[i % 3],
            "age_band": "unknown",
        }
        for i in range(3000)
    ]
    doc = make_report(batch={"reason": "viral_potential_meme", "user_count": 3000}, users=users)
    out = validate_report(report_bytes(doc), report_key(doc))
    assert out.accepted, out.problems
    assert out.report is not None
    assert [u["account_id"] for u in out.report["users"]] == [f"u-{i}" for i in range(3000)]
    assert out.report["batch"] == {"reason": "viral_potential_meme", "user_count": 3000}
