"""The victims' bank in memory: exact and PDQ matching like an indicator bank (checked
against brute force), the best signal per request, reloads on a version change."""

from __future__ import annotations

import random

import numpy as np

from tests.victims.seed import hashes, near_pdq
from victims.bank import VictimBank


def test_exact_beats_pdq_and_nearer_beats_farther() -> None:
    a, b = hashes("a"), hashes("b")
    bank = VictimBank.from_rows(
        [
            ("r1", 1, "sha256", a["sha256"], None),
            ("r1", 1, "pdq", a["pdq"], 100),
            ("r1", 2, "pdq", near_pdq(a["pdq"], 20, 3), 100),
            ("r2", 1, "pdq", near_pdq(a["pdq"], 5, 4), 90),
            ("r3", 1, "pdq", b["pdq"], 10),  # low quality: not matched
        ]
    )
    hits = bank.match(
        [
            [("sha256", a["sha256"]), ("pdq", a["pdq"])],  # the picture itself
            [("pdq", near_pdq(a["pdq"], 8, 9))],  # a re-encoded copy
            [("pdq", b["pdq"])],
            [("md5", a["md5"])],  # not in any bank
        ]
    )
    assert [(h.request_id, h.item, h.signal, h.distance) for h in hits[0]] == [
        ("r1", 1, "sha256", 0),
        ("r2", 1, "pdq", 5),
    ]
    near = {h.request_id: h for h in hits[1]}
    assert near["r1"].item == 1 and near["r1"].signal == "pdq" and near["r1"].distance <= 8
    assert near["r2"].distance <= 13
    assert hits[2] == [] and hits[3] == []


def test_pdq_matches_equal_brute_force() -> None:
    rng = np.random.default_rng(7)
    stored = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(2000)]
    bank = VictimBank.from_rows([("r", i, "pdq", v, None) for i, v in enumerate(stored)])
    pyrng = random.Random(1)
    queries = [near_pdq(pyrng.choice(stored), pyrng.randrange(0, 40), i) for i in range(300)]
    queries += [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(100)]
    got = bank.match([[("pdq", q)] for q in queries])
    for q, hits in zip(queries, got):
        dists = [(int(q, 16) ^ int(v, 16)).bit_count() for v in stored]
        best = min(dists)
        if best <= 31:
            assert len(hits) == 1 and hits[0].distance == best
            assert dists[hits[0].item] == best
        else:
            assert hits == []


def test_empty_bank_answers_nothing() -> None:
    bank = VictimBank()
    assert len(bank) == 0
    assert bank.match([[("sha256", "a" * 64)], []]) == [[], []]
