"""Art. 48(5): what a report lacks for jurisdiction or assessment, one reason per field."""

from __future__ import annotations

from routing.information import missing_information
from tests.factories import REMOVE, make_report


def _codes(report: dict) -> list[tuple[str, str]]:
    return [(r["code"], r["path"]) for r in missing_information(report)]


def test_a_complete_report_lacks_nothing() -> None:
    assert missing_information(make_report()) == []


def test_each_missing_field_is_named_with_its_path() -> None:
    bare = make_report(
        location=REMOVE,
        users=REMOVE,
        content=[{"content_id": "u1", "media_type": "url", "url": "https://x.example/"}],
    )
    assert _codes(bare) == [
        ("missing_ip_events", "$.location.ip_events"),
        ("missing_users", "$.users"),
        ("missing_content_hash", "$.content"),
    ]
    assert all(r["message"] for r in missing_information(bare))


def test_empty_lists_count_as_missing() -> None:
    assert _codes(make_report(location={"ip_events": []}, users=[])) == [
        ("missing_ip_events", "$.location.ip_events"),
        ("missing_users", "$.users"),
    ]


def test_solicitation_needs_no_content_hash() -> None:
    r = make_report(
        incident={"kind": "solicitation"},
        content=[{"content_id": "t1", "media_type": "text", "text": "…"}],
    )
    assert _codes(r) == []


def test_a_country_hint_does_not_replace_ip_events() -> None:
    r = make_report(location={"ip_events": REMOVE, "country_hint": "DE"})
    assert _codes(r) == [("missing_ip_events", "$.location.ip_events")]
