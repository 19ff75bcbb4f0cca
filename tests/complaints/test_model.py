"""complaint/v1 validation (one reason per problem, with paths, never quoting values), the
JSON Schema file, and the state machine."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest

from complaints import states
from complaints.model import GROUNDS, ComplaintV1, complaint_json_schema, validate_complaint
from complaints.schema_gen import SCHEMA_FILE, render
from complaints.schema_gen import main as schema_gen_main

SECRET = "call me on +33 6 12 34 56 78"  # stands for a complainant's personal data


def example(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": "complaint/v1",
        "complaint_ref": "u-778",
        "channel": "provider",
        "provider_id": "acme-social",
        "concerns": {"provider_report_id": "r-000123"},
        "grounds": "wrongful_removal",
        "statement": SECRET,
        "contact_ref": "ticket-4711",
        "filed_at": "2026-11-20T10:15:00Z",
        "x_unknown": {"kept": True},
    }
    doc.update(over)
    return doc


def problems(doc: Any, key: bytes | None = None) -> list[tuple[str, str]]:
    out = validate_complaint(orjson.dumps(doc) if not isinstance(doc, bytes) else doc, key)
    for p in out.problems:
        assert SECRET not in p.message and "ticket-4711" not in p.message
    return [(p.code, p.path) for p in out.problems]


def test_the_documented_example_is_valid_and_keeps_unknown_fields() -> None:
    out = validate_complaint(orjson.dumps(example()), b"acme-social/u-778")
    assert out.accepted, out.problems
    assert out.complaint is not None
    dumped = out.complaint.model_dump(by_alias=True, exclude_unset=True)
    assert dumped["x_unknown"] == {"kept": True}
    assert out.complaint.filer == "acme-social"
    assert out.provider_id == "acme-social" and out.complaint_ref == "u-778"


@pytest.mark.parametrize(
    "concerns",
    [
        {"report_id": "b9d1…"},
        {"case_id": "x"},
        {"provider_report_id": "r1"},
        {"provider_id": "blue", "provider_report_id": "r1"},
        {"sha256": "A" * 64},
        {"md5": "b" * 32},
        {"pdq": "c" * 64},
    ],
)
def test_each_way_of_naming_the_report_is_accepted(concerns: dict[str, str]) -> None:
    assert problems(example(concerns=concerns)) == []


def test_hashes_are_normalised_to_lower_case() -> None:
    c = ComplaintV1.model_validate(example(concerns={"sha256": "AB" * 32}))
    assert c.concerns.sha256 == "ab" * 32


@pytest.mark.parametrize("grounds", GROUNDS)
def test_every_grounds_value(grounds: str) -> None:
    assert problems(example(grounds=grounds)) == []


def test_every_problem_at_once_with_its_path() -> None:
    doc = example(
        channel="coordinating_authority",
        authority="US",
        concerns={},
        grounds="meh",
        contact_ref=" ",
        filed_at="2026-11-20",
    )
    del doc["complaint_ref"]
    assert sorted(problems(doc)) == sorted(
        [
            ("missing_field", "$.complaint_ref"),
            ("invalid_value", "$.authority"),
            ("invalid_value", "$.grounds"),
            ("invalid_value", "$.contact_ref"),
            ("invalid_value", "$.filed_at"),
            ("subject_required", "$.concerns"),
        ]
    )


def test_channel_rules() -> None:
    doc = example()
    del doc["provider_id"]
    assert ("missing_field", "$.provider_id") in problems(doc)
    assert ("missing_field", "$.authority") in problems(example(channel="coordinating_authority"))
    ok = example(channel="coordinating_authority", authority="DE", concerns={"report_id": "r"})
    assert problems(ok) == []
    assert ComplaintV1.model_validate(ok).filer == "de"
    assert problems(example(channel="centre")) == [("missing_field", "$.concerns.provider_id")]
    assert (
        problems(
            example(channel="centre", concerns={"provider_id": "acme", "provider_report_id": "r"})
        )
        == []
    )
    assert ("invalid_value", "$.channel") in problems(example(channel="email"))


def test_types_are_strict_and_hashes_checked() -> None:
    assert problems(example(concerns={"sha256": "zz"})) == [("invalid_hash", "$.concerns.sha256")]
    assert ("invalid_value", "$.grounds") in problems(example(grounds=3))
    assert ("invalid_type", "$.concerns") in problems(example(concerns="r1"))
    assert ("invalid_value", "$.complaint_ref") in problems(example(complaint_ref="x" * 201))
    assert ("invalid_value", "$.provider_id") in problems(example(provider_id="ACME!"))


@pytest.mark.parametrize(
    "raw,code",
    [
        (b"", "invalid_json"),
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_encoding"),
        (b"[1, 2]", "not_an_object"),
        (b"{" + b'"a": "' + b"x" * 300_000 + b'"}', "too_large"),
    ],
)
def test_unreadable_values(raw: bytes, code: str) -> None:
    out = validate_complaint(raw, b"acme-social/u-1")
    assert [p.code for p in out.problems] == [code]
    # the company is still told, through the key
    assert out.provider_id == "acme-social" and out.complaint_ref == "u-1"


def test_wrong_schema_name() -> None:
    assert ("invalid_value", "$.schema") in problems(example(schema="complaint/v2"))


def test_a_coordinating_authority_is_not_answered_on_a_provider_topic() -> None:
    out = validate_complaint(
        orjson.dumps(example(channel="coordinating_authority", authority="xx")), b"acme-social/u"
    )
    assert not out.accepted and out.provider_id is None


def test_schema_file_is_current_and_describes_the_contract() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render(), (
        "run: python -m complaints.schema_gen"
    )
    assert schema_gen_main(["--check"]) == 0
    s = complaint_json_schema()
    assert set(s["required"]) == {
        "schema",
        "complaint_ref",
        "channel",
        "concerns",
        "grounds",
        "contact_ref",
        "filed_at",
    }
    assert s["additionalProperties"] is True
    assert json.loads(render())["$id"].endswith("complaint-v1.json")


# ----------------------------------------------------------------------------- states


def test_the_state_machine() -> None:
    assert states.can("received", "under_review")
    assert states.can("under_review", "upheld") and states.can("under_review", "rejected")
    assert states.can("under_review", "under_review")  # handed to another handler
    assert not states.can("received", "upheld")
    for final in states.FINAL:
        for to in states.STATES:
            assert not states.can(final, to)
    with pytest.raises(states.TransitionError, match="assign it"):
        states.check("received", "rejected")
    with pytest.raises(states.TransitionError, match="final"):
        states.check("upheld", "rejected")
    with pytest.raises(states.TransitionError, match="unknown state"):
        states.check("received", "closed")
    states.check("received", "under_review")


def test_example_is_not_mutated() -> None:
    doc = example()
    before = copy.deepcopy(doc)
    validate_complaint(orjson.dumps(doc))
    assert doc == before
