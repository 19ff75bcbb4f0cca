"""Limits at the door: depth, values, string and name lengths, list sizes, the Kafka key.
Each violation is one reason with its code and path; ids are never echoed whole."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from intake import limits
from intake.limits import structure_problems
from intake.validation import validate_report
from tests.factories import make_report, report_bytes, report_key


def nested(depth: int, leaf: Any = "leaf") -> Any:
    """`depth` objects inside one another around `leaf`."""
    for _ in range(depth):
        leaf = {"k": leaf}
    return leaf


def codes(doc: dict[str, Any], key: bytes | None = None) -> list[tuple[str, str]]:
    out = validate_report(report_bytes(doc), key if key is not None else report_key(doc))
    return [(p.code, p.path) for p in out.problems]


def test_an_unknown_field_nested_deep_is_refused_with_its_path() -> None:
    # The report is level 1, so `x` may hold 31 levels more and no deeper.
    assert codes(make_report(x=nested(limits.MAX_DEPTH - 1))) == []
    deep = codes(make_report(x=nested(limits.MAX_DEPTH)))
    assert deep == [("too_deep", "$.x" + ".k" * (limits.MAX_DEPTH - 1))]


@pytest.mark.parametrize("depth", [200, 250, 253, 254, 300, 1000])
def test_the_depths_that_crashed_stages_are_refused(depth: int) -> None:
    doc = make_report(x=0)
    # Written out by hand: no serialiser in the test may nest that deep either.
    value = report_bytes(doc).replace(b'"x": 0', b'"x": ' + b'{"k":' * depth + b"1" + b"}" * depth)
    out = validate_report(value, report_key(doc))
    assert not out.accepted
    assert [p.code for p in out.problems] == ["too_deep"]


def test_arrays_count_as_levels_too() -> None:
    x: Any = 1
    for _ in range(limits.MAX_DEPTH):
        x = [x]
    assert [c for c, _ in codes(make_report(x=x))] == ["too_deep"]


def test_a_long_string_anywhere_is_refused() -> None:
    long = "x" * (limits.MAX_STRING + 1)
    assert codes(make_report(x={"note": long})) == [("too_long", "$.x.note")]
    assert codes(make_report(x={"note": long[:-1]})) == []


def test_a_long_member_name_is_refused_and_not_echoed_whole() -> None:
    name = "n" * 5000
    doc = make_report(x={name: 1})
    out = validate_report(report_bytes(doc), report_key(doc))
    (p,) = out.problems
    assert p.code == "too_long" and name not in p.path and len(p.path) < 100


def test_too_many_values_is_one_reason() -> None:
    assert codes(make_report(x=[0] * limits.MAX_VALUES)) == [("too_many_values", "$")]


def test_known_fields_have_their_own_bounds() -> None:
    doc = make_report()
    doc["incident"]["service"] = {"url": "https://x.example/" + "a" * limits.MAX_URL}
    doc["users"] = [{"email": "e" * (limits.MAX_EMAIL + 1)}]
    doc["content"][0]["annotations"] = ["viral"] * (limits.MAX_ANNOTATIONS + 1)
    assert sorted(codes(doc)) == [
        ("invalid_value", "$.incident.service.url"),
        ("invalid_value", "$.users[0].email"),
        ("too_many_items", "$.content[0].annotations"),
    ]


def test_too_many_content_items() -> None:
    doc = make_report()
    doc["content"] = [
        {"content_id": f"c{i}", "media_type": "text"} for i in range(limits.MAX_CONTENT_ITEMS + 1)
    ]
    assert codes(doc) == [("too_many_items", "$.content")]


def test_problems_are_bounded() -> None:
    doc = make_report(x=[nested(limits.MAX_DEPTH) for _ in range(100)])
    assert len(codes(doc)) == limits.MAX_PROBLEMS


def test_a_long_key_is_refused_and_the_company_still_named() -> None:
    doc = make_report()
    key = f"{doc['provider_id']}/{'k' * 5000}".encode()
    out = validate_report(report_bytes(doc), key)
    assert ("key_too_long", "$") in [(p.code, p.path) for p in out.problems]
    assert out.provider_id == doc["provider_id"] and not out.accepted


def test_a_100_kb_provider_report_id_is_named_cut_short_in_the_feedback() -> None:
    long_id = "r" * 100_000
    doc = make_report(provider_report_id=long_id)
    out = validate_report(report_bytes(doc), f"{doc['provider_id']}/{long_id}".encode())
    assert not out.accepted
    assert ("invalid_value", "$.provider_report_id") in [(p.code, p.path) for p in out.problems]
    assert out.provider_report_id is not None
    assert len(out.provider_report_id) == 200 and out.provider_report_id.endswith("…")
    assert out.provider_report_id.startswith("r" * 199)
    # Unparseable, the key's id is the one named, cut short the same way.
    out = validate_report(b"{broken", f"{doc['provider_id']}/{long_id}".encode())
    assert out.provider_report_id == "r" * 199 + "…"


def test_structure_problems_of_a_deep_document_cost_no_recursion() -> None:
    doc = orjson.loads(b"[" * 1000 + b"]" * 1000)
    (p,) = structure_problems({"x": doc})
    assert p.code == "too_deep"


def test_a_rejection_lists_at_most_max_reasons() -> None:
    doc = make_report(users=[{"role": 1, "country": 2, "age_band": 3}] * 3000)
    out = validate_report(report_bytes(doc), report_key(doc))
    assert len(out.problems) == limits.MAX_REASONS
    last = out.problems[-1]
    assert last.code == "too_many_problems" and last.path == "$"
    assert f"{9000 - (limits.MAX_REASONS - 1)} more problems" in last.message
