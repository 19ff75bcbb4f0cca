"""report/v1 validation: each bad input of the contract, one reason per problem, with paths."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from centre import samples
from intake.schema_gen import SCHEMA_FILE, render
from intake.validation import MAX_REPORT_BYTES, parse_key, validate_report

SECRET = "a description that must never appear in an error message"


def full_report() -> dict[str, Any]:
    """The contract's example, with real-looking hashes and an unknown field at each level."""
    r = samples.report("acme-social", "r-000123", media_seed="x", suspect_country="FR",
                       victim_country="DE", classification="A1")
    r["incident"]["description"] = SECRET
    r["incident"]["annotations"] = ["sextortion"]
    r["content"][0]["url"] = "https://host.example/a.jpg"
    r["content"][0]["x_vendor"] = {"score": 0.97}
    r["x_top"] = 1
    r["incident"]["x_incident"] = True
    r["location"]["country_hint"] = "de"
    r["reported_elsewhere"] = [{"authority": "NCMEC", "country": "US", "reference": "CT-123"}]
    r["batch"] = {"reason": "viral_potential_meme", "user_count": 1234}
    return r


def enc(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def key_of(doc: dict[str, Any]) -> bytes:
    return f"{doc['provider_id']}/{doc['provider_report_id']}".encode()


def codes(doc: Any, **kw: Any) -> list[tuple[str, str]]:
    out = validate_report(enc(doc), **kw)
    return [(p.code, p.path) for p in out.problems]


def test_full_report_is_accepted_and_unknown_fields_are_kept() -> None:
    doc = full_report()
    out = validate_report(enc(doc), key_of(doc))
    assert out.accepted, out.problems
    assert out.report is not None
    assert out.report["x_top"] == 1 and out.report["incident"]["x_incident"] is True
    assert out.report["content"][0]["x_vendor"] == {"score": 0.97}
    assert out.report["location"]["country_hint"] == "DE"  # normalised
    assert (out.provider_id, out.provider_report_id) == ("acme-social", "r-000123")
    assert out.signature == "absent"


def test_hashes_are_normalised_to_lower_case() -> None:
    doc = full_report()
    doc["content"][0]["sha256"] = doc["content"][0]["sha256"].upper()
    out = validate_report(enc(doc))
    assert out.report is not None
    assert out.report["content"][0]["sha256"] == doc["content"][0]["sha256"].lower()


def test_description_alone_is_enough() -> None:
    doc = full_report()
    doc["content"] = []
    assert validate_report(enc(doc)).accepted


@pytest.mark.parametrize("value,code", [
    (b"", "invalid_json"),
    (b"{not json", "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'"a string"', "not_an_object"),
    ('{"a": "\xe9"}'.encode("latin-1"), "invalid_encoding"),
])
def test_unparseable_values(value: bytes, code: str) -> None:
    out = validate_report(value, b"acme-social/r-9")
    assert [p.code for p in out.problems] == [code]
    assert out.problems[0].path == "$"
    # The feedback can still reach the company: ids come from the Kafka key.
    assert (out.provider_id, out.provider_report_id) == ("acme-social", "r-9")


def test_over_one_mib_is_rejected_without_parsing() -> None:
    value = b"{" + b" " * MAX_REPORT_BYTES + b"}"
    out = validate_report(value, b"p/r")
    assert [p.code for p in out.problems] == ["too_large"]
    assert str(MAX_REPORT_BYTES) in out.problems[0].message


def test_exactly_one_mib_is_not_too_large() -> None:
    doc = full_report()
    doc["pad"] = ""
    doc["pad"] = "x" * (MAX_REPORT_BYTES - len(enc(doc)))
    assert len(enc(doc)) == MAX_REPORT_BYTES
    assert validate_report(enc(doc)).accepted


@pytest.mark.parametrize("field", ["schema", "provider_id", "provider_report_id", "submitted_at",
                                   "incident"])
def test_required_top_level_fields(field: str) -> None:
    doc = full_report()
    del doc[field]
    assert ("missing_field", f"$.{field}") in codes(doc)


@pytest.mark.parametrize("field", ["kind", "occurred_at"])
def test_required_incident_fields(field: str) -> None:
    doc = full_report()
    del doc["incident"][field]
    assert codes(doc) == [("missing_field", f"$.incident.{field}")]


@pytest.mark.parametrize("path,value,code", [
    (("schema",), "report/v2", "invalid_value"),
    (("incident", "kind"), "csam", "invalid_value"),
    (("incident", "detection"), "psychic", "invalid_value"),
    (("submitted_at",), "2026-11-20T10:15:00", "invalid_value"),  # no time zone
    (("submitted_at",), "yesterday", "invalid_value"),
    (("incident", "urgent"), "yes", "invalid_type"),
    (("content", 0, "sha256"), "abc", "invalid_hash"),
    (("content", 0, "md5"), "g" * 32, "invalid_hash"),
    (("content", 0, "pdq"), "0" * 63, "invalid_hash"),
    (("content", 0, "pdq_quality"), 101, "invalid_value"),
    (("content", 0, "media_type"), "audio", "invalid_value"),
    (("content", 0, "industry_classification"), "C3", "invalid_value"),
    (("users", 0, "role"), "bystander", "invalid_value"),
    (("users", 0, "country"), "FRA", "invalid_value"),
    (("location", "ip_events", 0, "ip"), 12345, "invalid_type"),
    (("provider_id", ), "Acme Social", "invalid_value"),
    (("provider_report_id", ), "", "invalid_value"),
    (("content",), {"not": "a list"}, "invalid_type"),
])
def test_field_rules(path: tuple[Any, ...], value: Any, code: str) -> None:
    doc = full_report()
    target: Any = doc
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    jpath = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    assert (code, jpath) in codes(doc)


def test_urgent_needs_a_reason() -> None:
    doc = full_report()
    doc["incident"]["urgent"] = True
    doc["incident"]["urgent_reason"] = "  "
    assert codes(doc) == [("urgent_reason_required", "$.incident.urgent_reason")]


def test_media_needs_a_hash_but_text_does_not() -> None:
    doc = full_report()
    doc["content"] = [{"content_id": "a", "media_type": "video"},
                      {"content_id": "b", "media_type": "text", "text": "hi"}]
    assert codes(doc) == [("missing_hash", "$.content[0]")]


def test_content_or_description_required() -> None:
    doc = full_report()
    doc["content"] = []
    doc["incident"]["description"] = ""
    assert codes(doc) == [("content_or_description_required", "$.content")]


def test_duplicate_content_ids() -> None:
    doc = full_report()
    doc["content"].append(copy.deepcopy(doc["content"][0]))
    assert codes(doc) == [("duplicate_content_id", "$.content[1].content_id")]


def test_several_problems_give_one_reason_each() -> None:
    doc = full_report()
    del doc["incident"]["occurred_at"]
    doc["content"][0]["sha256"] = "zz"
    doc["incident"]["urgent"] = True
    doc["incident"].pop("urgent_reason", None)
    doc["users"][0]["role"] = "x"
    got = codes(doc)
    assert sorted(got) == sorted([
        ("missing_field", "$.incident.occurred_at"),
        ("invalid_hash", "$.content[0].sha256"),
        ("urgent_reason_required", "$.incident.urgent_reason"),
        ("invalid_value", "$.users[0].role"),
    ])


def test_key_must_match_the_body() -> None:
    doc = full_report()
    assert codes(doc, key=b"acme-social/other") == [("key_mismatch", "$")]
    assert codes(doc, key=key_of(doc)) == []


def test_messages_never_carry_report_content() -> None:
    doc = full_report()
    doc["users"][0]["email"] = 42
    doc["incident"]["kind"] = SECRET
    for p in validate_report(enc(doc)).problems:
        assert SECRET not in p.message and "42" not in p.message


def test_parse_key() -> None:
    assert parse_key(b"acme/r-1/x") == ("acme", "r-1/x")
    assert parse_key(b"acme") == ("acme", None)
    assert parse_key(None) == (None, None)
    assert parse_key(b"\xff\xfe") == (None, None)


class TestSignatures:
    key = Ed25519PrivateKey.generate()

    def sig(self, value: bytes, key: Ed25519PrivateKey | None = None) -> str:
        return base64.b64encode((key or self.key).sign(value)).decode()

    def test_valid(self) -> None:
        v = enc(full_report())
        out = validate_report(v, signature_b64=self.sig(v), provider_key=self.key.public_key(),
                              require_signature=True)
        assert out.accepted and out.signature == "valid"

    def test_bad_signature_rejected_even_when_not_required(self) -> None:
        v = enc(full_report())
        other = Ed25519PrivateKey.generate()
        out = validate_report(v, signature_b64=self.sig(v, other), provider_key=self.key.public_key())
        assert [p.code for p in out.problems] == ["bad_signature"]
        out = validate_report(v, signature_b64="!!not base64", provider_key=self.key.public_key())
        assert [p.code for p in out.problems] == ["bad_signature"]

    def test_signature_over_other_bytes(self) -> None:
        v = enc(full_report())
        out = validate_report(v + b" ", signature_b64=self.sig(v), provider_key=self.key.public_key())
        assert [p.code for p in out.problems] == ["bad_signature"]

    def test_missing_when_required(self) -> None:
        out = validate_report(enc(full_report()), provider_key=self.key.public_key(),
                              require_signature=True)
        assert [p.code for p in out.problems] == ["missing_signature"]

    def test_unknown_key_when_required(self) -> None:
        v = enc(full_report())
        out = validate_report(v, signature_b64=self.sig(v), require_signature=True)
        assert [p.code for p in out.problems] == ["unknown_provider_key"]
        out = validate_report(v, signature_b64=self.sig(v))
        assert out.accepted and out.signature == "unchecked"


def test_schema_file_is_current() -> None:
    assert SCHEMA_FILE.read_text() == render(), "run: python -m intake.schema_gen"
