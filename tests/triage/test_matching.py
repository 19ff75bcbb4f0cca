"""Bank matching by every signal kind, with the distance of PDQ matches."""

from __future__ import annotations

from triage.rules import Match
from triage.stage import bank_matches, low_quality_pdq

PDQ_A = "a" * 64


def test_exact_hash_wins_over_pdq_and_nearer_pdq_wins() -> None:
    report = {
        "content": [
            {
                "content_id": "f1",
                "media_type": "image",
                "sha256": "1" * 64,
                "pdq": PDQ_A,
                "pdq_quality": 90,
            },
            {"content_id": "f2", "media_type": "image", "pdq": "b" * 64, "pdq_quality": 90},
        ]
    }
    hits = {("sha256", "1" * 64): {"known_material"}}
    near = {PDQ_A: [("known_material", 3), ("false_positive", 12)], "b" * 64: [("grooming", 31)]}
    assert bank_matches(report, hits, near) == [
        Match("f1", "false_positive", "pdq", 12),
        Match("f1", "known_material", "sha256", 0),
        Match("f2", "grooming", "pdq", 31),
    ]


def test_low_quality_pdq_is_not_matched_and_says_why() -> None:
    report = {
        "content": [{"content_id": "f1", "media_type": "image", "pdq": PDQ_A, "pdq_quality": 49}]
    }
    assert bank_matches(report, {}, {PDQ_A: [("known_material", 0)]}) == []
    assert low_quality_pdq(report) == ["pdq_low_quality_not_matched:f1:49"]
    report["content"][0]["pdq_quality"] = 50
    assert bank_matches(report, {}, {PDQ_A: [("known_material", 0)]}) == [
        Match("f1", "known_material", "pdq", 0)
    ]
    assert low_quality_pdq(report) == []


def test_every_signal_kind_says_how_it_is_searched() -> None:
    from triage.signals import SIGNAL_TYPES

    for name, kind in SIGNAL_TYPES.items():
        assert kind.name == name
        index = kind.new_index()
        if kind.max_distance == 0:
            assert index is None  # equal values only: looked up by value
            assert kind.distance(kind.normalise("A" * kind.length), "a" * kind.length) == 0
        else:
            a = kind.normalise("0" * 64)
            b = f"{(1 << kind.max_distance) - 1:064x}"  # max_distance bits set
            index.add([1], [b])
            assert index.query([a]) == [[(1, kind.max_distance)]]
            assert kind.distance(a, b) == kind.max_distance
