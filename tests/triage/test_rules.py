"""Classification rules exactly as CONTRACT.md states them."""

from __future__ import annotations

from typing import Any

import pytest

from triage.rules import Match, category, classify, manifestly_unfounded, priority, severity


def rep(
    *content: dict[str, Any], kind: str = "new_material", urgent: bool = False
) -> dict[str, Any]:
    return {"incident": {"kind": kind, "urgent": urgent}, "content": list(content)}


def img(cid: str = "f1", **kw: Any) -> dict[str, Any]:
    return {"content_id": cid, "media_type": "image", "sha256": "a" * 64, **kw}


def text(cid: str = "t1") -> dict[str, Any]:
    return {"content_id": cid, "media_type": "text", "text": "…"}


KNOWN = Match("f1", "known_material", "sha256")
FP1, FP2 = Match("f1", "false_positive", "md5"), Match("f2", "false_positive", "pdq", 4)


def test_known_material_only_with_a_bank_match() -> None:
    assert category(rep(img(), kind="known_material"), [KNOWN])[0] == "known_material"
    assert category(rep(img(), kind="new_material"), [KNOWN])[0] == "known_material"


def test_claimed_known_without_match_becomes_new_material_with_reason() -> None:
    cat, reasons = category(rep(img(), kind="known_material"), [])
    assert cat == "new_material"
    assert "claimed_known_not_in_database" in reasons


def test_claimed_known_without_media_is_solicitation() -> None:
    cat, reasons = category(rep(text(), kind="known_material"), [])
    assert cat == "solicitation" and "claimed_known_not_in_database" in reasons


@pytest.mark.parametrize(
    "content,expected",
    [
        ([img()], "new_material"),
        ([{"content_id": "v", "media_type": "video", "md5": "b" * 32}], "new_material"),
        ([text()], "solicitation"),
        ([{"content_id": "u", "media_type": "url", "url": "https://x.example"}], "solicitation"),
        ([], "solicitation"),
        ([text(), img("f2")], "new_material"),
    ],
)
def test_category_by_media(content: list[dict[str, Any]], expected: str) -> None:
    assert category(rep(*content, kind="solicitation"), [])[0] == expected


def test_a_match_in_another_bank_is_not_known_material() -> None:
    assert category(rep(img()), [FP1])[0] == "new_material"


@pytest.mark.parametrize(
    "levels,expected",
    [
        (["B2", "A2", None], "A2"),
        (["B1", "B2"], "B1"),
        (["A1", "B2"], "A1"),
        ([None], "unknown"),
        ([], "unknown"),
    ],
)
def test_severity_is_the_highest_present(levels: list[str | None], expected: str) -> None:
    items = [
        img(f"f{i}", industry_classification=lv) if lv else img(f"f{i}")
        for i, lv in enumerate(levels)
    ]
    assert severity(rep(*items))[0] == expected


def test_p1_when_urgent() -> None:
    assert priority(rep(img(), urgent=True), "known_material") == ("P1", ["p1:urgent"])


def test_p1_when_any_content_is_live_streaming() -> None:
    r = rep(img("a"), img("b", annotations=["viral", "live_streaming"]))
    assert priority(r, "known_material") == ("P1", ["p1:live_streaming:b"])


@pytest.mark.parametrize(
    "cat,expected", [("new_material", "P2"), ("solicitation", "P2"), ("known_material", "P3")]
)
def test_p2_p3_by_category(cat: str, expected: str) -> None:
    assert priority(rep(img()), cat)[0] == expected


def test_urgent_false_string_is_not_p1() -> None:
    r = rep(img())
    r["incident"]["urgent"] = "false"
    assert priority(r, "new_material")[0] == "P2"


def test_manifestly_unfounded_needs_every_media_item_in_false_positive_bank() -> None:
    r = rep(img("f1"), img("f2"), text())
    assert manifestly_unfounded(r, [FP1, FP2])[0] is True
    unfounded, reasons = manifestly_unfounded(r, [FP1])
    assert unfounded is False and reasons == ["false_positive_match:f1"]


def test_no_media_is_never_manifestly_unfounded() -> None:
    assert manifestly_unfounded(rep(text()), [Match("t1", "false_positive", "sha256")])[0] is False


def test_classify_collects_every_reason() -> None:
    c = classify(rep(img(industry_classification="A1"), kind="known_material", urgent=True), [])
    assert (c.category, c.severity, c.priority, c.manifestly_unfounded) == (
        "new_material",
        "A1",
        "P1",
        False,
    )
    assert c.reasons == [
        "claimed_known_not_in_database",
        "media_not_in_known_material_bank",
        "severity:A1:highest_industry_classification",
        "p1:urgent",
    ]


def _sextortion(age_band: str, role: str = "victim") -> dict[str, Any]:
    return {
        "incident": {"kind": "solicitation", "annotations": ["sextortion"]},
        "users": [{"role": "suspect", "age_band": "adult"}, {"role": role, "age_band": age_band}],
    }


def test_child_victim_of_sextortion_is_a_recorded_signal_by_default() -> None:
    pri, reasons = priority(_sextortion("child"), "solicitation")
    assert pri == "P2"  # CONTRACT.md's rule is exhaustive unless extended P1 is switched on
    assert "urgent_signal:sextortion_child_victim" in reasons


def test_extended_p1_for_child_victim_of_sextortion() -> None:
    pri, reasons = priority(_sextortion("child"), "solicitation", extended_p1=True)
    assert (pri, reasons) == ("P1", ["p1:sextortion_child_victim"])


@pytest.mark.parametrize(
    "report",
    [
        _sextortion("teen"),
        _sextortion("child", role="recipient"),
        {
            "incident": {"annotations": ["minor_to_minor"]},
            "users": [{"role": "victim", "age_band": "child"}],
        },
    ],
)
def test_no_extended_p1_without_a_child_victim_of_sextortion(report: dict[str, Any]) -> None:
    assert priority(report, "solicitation", extended_p1=True)[0] == "P2"


def test_extended_p1_for_infant_content() -> None:
    report = {
        "content": [
            {"content_id": "a", "media_type": "image"},
            {"content_id": "b", "media_type": "image", "annotations": ["infant"]},
        ]
    }
    assert priority(report, "known_material", extended_p1=True) == ("P1", ["p1:infant:b"])
    assert priority(report, "known_material") == (
        "P3",
        ["p3:known_material", "urgent_signal:infant:b"],
    )
