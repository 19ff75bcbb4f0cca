"""A supplement completes the stored report: it adds, and never rewrites what came first."""

from __future__ import annotations

from intake.supplements import merge_supplement
from tests.factories import make_report, random_hashes


def test_missing_parts_are_added_and_named_by_path() -> None:
    first = make_report(location={"ip_events": []}, users=[])
    sup = {
        **first,
        "supplement": True,
        "submitted_at": "2026-11-21T09:00:00Z",
        "location": {"ip_events": [{"ip": "2a00:1450::1", "event": "login"}]},
        "users": [{"role": "suspect", "account_id": "u-9", "country": "DE"}],
    }
    merged, added = merge_supplement(first, sup)
    assert merged["location"]["ip_events"] == [{"ip": "2a00:1450::1", "event": "login"}]
    assert merged["users"] == [{"role": "suspect", "account_id": "u-9", "country": "DE"}]
    assert added == ["$.location.ip_events", "$.users"]
    # The message's own envelope is not merged: the first submission's time stays.
    assert merged["submitted_at"] == first["submitted_at"]
    assert "supplement" not in merged or merged["supplement"] is False


def test_a_known_content_item_gains_the_hashes_it_lacked_and_keeps_its_own() -> None:
    first = make_report(content=[{"content_id": "f1", "media_type": "image", "md5": "ab" * 16}])
    h = random_hashes()
    sup = {
        "supplement": True,
        "content": [
            {"content_id": "f1", "media_type": "video", "md5": "cd" * 16, "sha256": h["sha256"]},
            {"content_id": "f2", "media_type": "image", "pdq": h["pdq"]},
        ],
    }
    merged, added = merge_supplement(first, sup)
    f1, f2 = merged["content"]
    assert f1 == {
        "content_id": "f1",
        "media_type": "image",
        "md5": "ab" * 16,
        "sha256": h["sha256"],
    }  # media_type and md5 as first said
    assert f2["pdq"] == h["pdq"]
    assert added == ["$.content[0].sha256", "$.content[1]"]


def test_repeated_entries_are_not_added_twice_and_the_original_is_untouched() -> None:
    first = make_report()
    before = repr(first)
    merged, added = merge_supplement(
        first, {"users": first["users"], "location": first["location"]}
    )
    assert added == [] and merged == first
    assert repr(first) == before


def test_unknown_fields_are_merged_like_known_ones() -> None:
    merged, added = merge_supplement({"x_extra": {"a": 1}}, {"x_extra": {"b": 2}, "y": [1]})
    assert merged == {"x_extra": {"a": 1, "b": 2}, "y": [1]}
    assert added == ["$.x_extra.b", "$.y"]
