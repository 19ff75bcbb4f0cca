"""PDQIndex against a brute-force oracle: exact recall and precision at distance <= 31."""

from __future__ import annotations

import numpy as np
import pytest

from triage import pdq_index
from triage.pdq_index import PDQIndex, pdq_to_bytes

POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)  # not bitwise_count


def brute(
    codes: np.ndarray, ids: np.ndarray, queries: np.ndarray, max_distance: int = 31
) -> list[list[tuple[int, int]]]:
    """The oracle: every stored hash against every query, by byte popcount table."""
    out: list[list[tuple[int, int]]] = []
    for lo in range(0, len(queries), 32):
        q = queries[lo : lo + 32]
        d = POP8[q[:, None, :] ^ codes[None, :, :]].sum(axis=2, dtype=np.int64)
        for row in d:
            j = np.flatnonzero(row <= max_distance)
            out.append(sorted(zip(ids[j].tolist(), row[j].tolist()), key=lambda p: (p[1], p[0])))
    return out


def brute_model(model: dict[int, np.ndarray], queries: np.ndarray) -> list[list[tuple[int, int]]]:
    if not model:
        return [[] for _ in range(len(queries))]
    ids = np.array(list(model), dtype=np.int64)
    return brute(np.stack(list(model.values())), ids, queries)


def flip(code: np.ndarray, bits: np.ndarray | list[int]) -> np.ndarray:
    """`code` with the given bit positions (0..255, bit b in byte b // 8) inverted."""
    c = code.copy()
    for b in bits:
        c[b // 8] ^= np.uint8(1 << (b % 8))
    return c


def near(rng: np.random.Generator, code: np.ndarray, k: int) -> np.ndarray:
    return flip(code, rng.choice(256, size=k, replace=False))


def random_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 32), dtype=np.uint8)


def hexes(codes: np.ndarray) -> list[str]:
    return [bytes(c).hex() for c in codes]


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def scan(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on both candidate scans: the C one (triage/_pdqscan.c, built when the
    package is installed; its absence fails here) and the numpy one it replaces."""
    if request.param == "compiled":
        assert pdq_index._pdqscan is not None, "triage._pdqscan was not built: pip install -e ."
    monkeypatch.setattr(PDQIndex, "compiled", request.param == "compiled")
    return str(request.param)


@pytest.fixture(scope="module")
def stored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20261120)
    codes = random_codes(rng, 20_000)
    ids = rng.choice(2**40, size=20_000, replace=False).astype(np.int64) - 2**39  # any int64
    return ids, codes


@pytest.fixture(scope="module")
def mixed_queries(stored: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Stored hashes with exactly k bits flipped for k in 0..40, plus random hashes."""
    _ids, codes = stored
    rng = np.random.default_rng(7)
    qs = [near(rng, codes[rng.integers(len(codes))], k) for k in range(41) for _ in range(25)]
    qs += list(random_codes(rng, 200))
    return np.stack(qs)


def test_equals_brute_force(
    stored: tuple[np.ndarray, np.ndarray], mixed_queries: np.ndarray
) -> None:
    ids, codes = stored
    index = PDQIndex.build(ids, codes)
    got = index.query(mixed_queries)
    want = brute(codes, ids, mixed_queries)
    assert got == want
    # Every query at 0..31 flips finds its source; the data holds both kinds of answer.
    assert all(got[i] for i in range(32 * 25))
    assert sum(1 for r in got if r) < len(got)


def test_hex_and_array_input_agree(
    stored: tuple[np.ndarray, np.ndarray], mixed_queries: np.ndarray
) -> None:
    ids, codes = stored
    index = PDQIndex.build(ids[:2000].tolist(), hexes(codes[:2000]))
    assert index.query(hexes(mixed_queries[:300])) == index.query(mixed_queries[:300])
    assert index.query(mixed_queries[:300]) == brute(codes[:2000], ids[:2000], mixed_queries[:300])


def test_distance_31_matches_and_32_does_not() -> None:
    rng = np.random.default_rng(3)
    base = random_codes(rng, 1)[0]
    index = PDQIndex.build([42], base[None, :])
    two_per_chunk = [16 * t + b for t in range(16) for b in (3, 11)]  # 32 bits, 2 in each chunk
    at_32 = flip(base, two_per_chunk)
    at_31 = [
        flip(base, two_per_chunk[1:]),  # one chunk off by 1, fifteen off by 2: worst case
        flip(base, two_per_chunk[:-1]),
        flip(base, list(range(31))),  # packed into the first chunks
        flip(base, list(range(225, 256))),
        near(rng, base, 31),
    ]
    assert index.query(np.stack(at_31)) == [[(42, 31)]] * len(at_31)
    assert index.query(at_32[None, :]) == [[]]
    assert index.query(np.stack([near(rng, base, 32) for _ in range(50)])) == [[]] * 50
    assert index.query((~base)[None, :]) == [[]]  # distance 256 (no overflow to a match)
    assert index.query(base[None, :]) == [[(42, 0)]]


def test_worst_case_31_every_bit_position() -> None:
    """Distance 31 with fifteen 16-bit chunks off by exactly 2 bits and the remaining chunk off
    by 1 at bit j: only the one probe flipping bit j finds it. Every j in 0..255."""
    rng = np.random.default_rng(21)
    base = random_codes(rng, 1)[0]
    index = PDQIndex.build([1], base[None, :])
    others = random_codes(rng, 3)
    queries = []
    for j in range(256):
        chunk = j // 16
        bits = [j]
        for t in range(16):
            if t != chunk:
                bits += (16 * t + rng.choice(16, size=2, replace=False)).tolist()
        queries.append(flip(base, bits))
    assert index.query(np.stack(queries)) == [[(1, 31)]] * 256
    index.add([2, 3, 4], others)  # the same through the delta
    index.remove([1])
    index.add([1], base[None, :])
    assert index.query(np.stack(queries)) == [[(1, 31)]] * 256
    index.compact()
    assert index.query(np.stack(queries)) == [[(1, 31)]] * 256


def test_batch_of_one_equals_batch(
    stored: tuple[np.ndarray, np.ndarray], mixed_queries: np.ndarray
) -> None:
    ids, codes = stored
    index = PDQIndex.build(ids, codes)
    index.add([1, 2, 3], random_codes(np.random.default_rng(1), 3))  # delta searched too
    rng = np.random.default_rng(11)
    batch = np.concatenate([mixed_queries, mixed_queries[rng.permutation(len(mixed_queries))]])
    assert len(batch) > 2000
    whole = index.query(batch)
    singles = [index.query(batch[i : i + 1])[0] for i in range(len(batch))]
    assert whole == singles
    index.CANDIDATE_BUDGET = 3000  # many small groups of queries
    index.QUERY_BLOCK = 97
    assert index.query(batch) == whole


def test_add_after_build_delta_and_merge(
    stored: tuple[np.ndarray, np.ndarray], mixed_queries: np.ndarray
) -> None:
    ids, codes = stored
    for threshold in (10**6, 500):  # delta only; merges every 500 adds
        index = PDQIndex.build(ids[:10_000], codes[:10_000], delta_threshold=threshold)
        for lo in range(10_000, 20_000, 1700):
            index.add(ids[lo : lo + 1700], codes[lo : lo + 1700])
        assert len(index) == 20_000
        if threshold == 500:
            assert index._dn < 500 and index._n > 10_000  # merged into the tables
        else:
            assert index._dn == 10_000
        assert index.query(mixed_queries) == brute(codes, ids, mixed_queries)


def test_bulk_add_to_empty_then_single_adds(
    stored: tuple[np.ndarray, np.ndarray], mixed_queries: np.ndarray
) -> None:
    ids, codes = stored
    index = PDQIndex(delta_threshold=64)
    index.add(ids[:15_000], codes[:15_000])  # one merge of everything
    for i in range(15_000, 15_300):
        index.add([int(ids[i])], hexes(codes[i : i + 1]))
    assert len(index) == 15_300
    assert index.query(mixed_queries) == brute(codes[:15_300], ids[:15_300], mixed_queries)


def test_remove(stored: tuple[np.ndarray, np.ndarray], mixed_queries: np.ndarray) -> None:
    ids, codes = stored
    index = PDQIndex.build(ids[:5000], codes[:5000], delta_threshold=300)
    index.add(ids[5000:5200], codes[5000:5200])  # in the delta
    gone = np.concatenate([ids[:2500:2], ids[5000:5200:3]])
    assert index.remove(gone) == len(gone)
    assert index.remove(gone) == 0
    assert index.remove([int(gone[0]), int(gone[0]), -5]) == 0
    assert len(index) == 5200 - len(gone)
    assert int(gone[0]) not in index and int(ids[1]) in index
    queries = np.concatenate([codes[:5200], mixed_queries])
    keep = ~np.isin(ids[:5200], gone)
    want = brute(codes[:5200][keep], ids[:5200][keep], queries)
    assert index.query(queries) == want
    returned = {i for r in index.query(queries) for i, _d in r}
    assert returned.isdisjoint(gone.tolist())
    index.compact()  # tombstones dropped, delta merged
    assert index._ndead == 0 and index._dn == 0 and index._n == 5200 - len(gone)
    assert index.query(queries) == want
    # Re-adding a removed id works, with its new hash.
    fresh = random_codes(np.random.default_rng(5), 1)
    index.add([int(gone[0])], fresh)
    assert int(gone[0]) in index
    assert index.query(fresh) == [[(int(gone[0]), 0)]]


def test_random_operations_against_model() -> None:
    """Adds, replacements and removals in random order with frequent merges; the index always
    answers as brute force over what should be in it."""
    rng = np.random.default_rng(99)
    pool = random_codes(rng, 3000)
    index = PDQIndex(delta_threshold=150)
    model: dict[int, np.ndarray] = {}
    next_id = 0
    for step in range(60):
        op = rng.integers(3)
        if op == 0 or not model:
            k = int(rng.integers(1, 120))
            new_ids = list(range(next_id, next_id + k))
            next_id += k
            if model and rng.random() < 0.5:  # some replace existing ids
                new_ids[: k // 3] = rng.choice(
                    list(model), size=min(k // 3, len(model)), replace=False
                ).tolist()
            new_codes = np.stack(
                [
                    near(rng, pool[rng.integers(len(pool))], int(rng.integers(0, 40)))
                    for _ in new_ids
                ]
            )
            index.add(new_ids, new_codes)
            for i, c in zip(new_ids, new_codes):
                model[i] = c
        elif op == 1:
            victims = rng.choice(list(model), size=int(rng.integers(1, 1 + len(model) // 4)))
            assert index.remove(victims) == len(set(victims.tolist()))
            for v in victims.tolist():
                model.pop(v, None)
        else:
            index.remove([next_id + 10**6])  # absent: no effect
        assert len(index) == len(model)
        if step % 6 == 5:
            queries = np.concatenate(
                [
                    np.stack(
                        [
                            near(rng, pool[rng.integers(len(pool))], int(rng.integers(0, 40)))
                            for _ in range(150)
                        ]
                    ),
                    np.stack(list(model.values()))[:50],
                ]
            )
            assert index.query(queries) == brute_model(model, queries)
    assert index._n > 0  # merges happened


def test_empty_index() -> None:
    q = random_codes(np.random.default_rng(0), 3)
    for index in (
        PDQIndex(),
        PDQIndex.build([], []),
        PDQIndex.build(np.array([], np.int64), np.empty((0, 32), np.uint8)),
    ):
        assert len(index) == 0
        assert index.query(q) == [[], [], []]
        assert index.query([]) == []
        assert index.remove([1, 2]) == 0
        assert 1 not in index
        assert index.nbytes > 0
    index = PDQIndex.build([1], q[:1])
    assert index.remove([1]) == 1
    assert len(index) == 0 and index.query(q[:1]) == [[]]
    index.compact()
    assert index.query(q[:1]) == [[]]


def test_duplicate_ids_last_wins() -> None:
    rng = np.random.default_rng(4)
    a, b, c, d = random_codes(rng, 4)
    index = PDQIndex.build([7, 8, 7], np.stack([a, b, c]))
    assert len(index) == 2
    assert index.query(np.stack([a, c])) == [[], [(7, 0)]]
    index.add([8, 9, 8], np.stack([d, a, c]))  # within a call, the last wins
    assert len(index) == 3
    assert index.query(np.stack([b, d, c])) == [[], [], [(7, 0), (8, 0)]]
    index.add([7], d[None, :])  # an id that exists is replaced
    assert index.query(np.stack([c, d])) == [[(8, 0)], [(7, 0)]]
    index.compact()
    assert index.query(np.stack([a, b, c, d])) == [[(9, 0)], [], [(8, 0)], [(7, 0)]]


def test_results_sorted_by_distance_then_id() -> None:
    rng = np.random.default_rng(8)
    base = random_codes(rng, 1)[0]
    stored = [flip(base, list(range(k))) for k in (5, 0, 5, 3, 31, 32)]
    index = PDQIndex.build([50, 40, 30, 20, 10, 60], np.stack(stored))
    index.add([5, 1], np.stack([flip(base, [200, 201, 202]), base]))
    assert index.query(base[None, :]) == [
        [(1, 0), (40, 0), (5, 3), (20, 3), (30, 5), (50, 5), (10, 31)]
    ]


def test_smaller_max_distance(
    stored: tuple[np.ndarray, np.ndarray], mixed_queries: np.ndarray
) -> None:
    ids, codes = stored
    for md in (0, 10, 15, 16, 20):
        index = PDQIndex.build(ids[:4000], codes[:4000], max_distance=md)
        assert index.max_distance == md
        assert index.query(mixed_queries) == brute(codes[:4000], ids[:4000], mixed_queries, md)
    with pytest.raises(ValueError, match="0..31"):
        PDQIndex(max_distance=32)
    with pytest.raises(ValueError):
        PDQIndex(max_distance=-1)


def test_pdq_to_bytes() -> None:
    h = "0123456789abcdefABCDEF" + "f" * 42
    assert pdq_to_bytes([h]).tobytes() == bytes.fromhex(h)
    assert pdq_to_bytes([h, h.lower()]).shape == (2, 32)
    assert pdq_to_bytes([]).shape == (0, 32)
    assert pdq_to_bytes(np.array([h])).tobytes() == bytes.fromhex(h)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("0" * 63, r"PDQ hash 1: must be 64 hexadecimal characters, got 63"),
        ("0" * 65, r"PDQ hash 1: must be 64 hexadecimal characters, got 65"),
        ("", r"PDQ hash 1: must be 64"),
        ("g" + "0" * 63, r"PDQ hash 1: not hexadecimal \(character 0\)"),
        ("0" * 62 + " 0", r"PDQ hash 1: not hexadecimal \(character 62\)"),
        ("0" * 63 + "é", r"PDQ hash 1: not hexadecimal \(character 63\)"),
        (None, r"PDQ hash 1: expected a hex string, got NoneType"),
        (b"0" * 64, r"PDQ hash 1: expected a hex string, got bytes"),
    ],
)
def test_invalid_hex(bad: object, message: str) -> None:
    good = "ab" * 32
    with pytest.raises(ValueError, match=message):
        pdq_to_bytes([good, bad, good])  # type: ignore[list-item]
    index = PDQIndex()
    with pytest.raises(ValueError, match=message):
        index.add([1, 2, 3], [good, bad, good])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=message):
        index.query([good, bad])  # type: ignore[list-item]
    assert len(index) == 0


def test_invalid_arguments() -> None:
    index = PDQIndex()
    with pytest.raises(TypeError, match="not a single string"):
        index.query("ab" * 32)
    with pytest.raises(ValueError, match="uint8"):
        index.query(np.zeros((2, 16), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        index.query(np.zeros((2, 32), dtype=np.int64))
    with pytest.raises(ValueError, match="2 ids for 1 hashes"):
        index.add([1, 2], ["ab" * 32])
    with pytest.raises(ValueError, match="integers"):
        index.add([1.5], ["ab" * 32])
    with pytest.raises(ValueError, match="integers"):
        index.add([2**64], ["ab" * 32])
    with pytest.raises(ValueError, match="1-D"):
        index.add(5, ["ab" * 32])  # type: ignore[arg-type]
    assert "x" not in index and 2**70 not in index
    assert len(index) == 0


def test_growth_keeps_tables_consistent() -> None:
    """Many merges that each enlarge the arrays, also while a view of them is held."""
    rng = np.random.default_rng(12)
    codes = random_codes(rng, 6000)
    ids = np.arange(6000, dtype=np.int64)
    index = PDQIndex.build(ids[:100], codes[:100], delta_threshold=37)
    for lo in range(100, 6000, 250):
        held = index._codes[:3]  # forces the copying path for the codes this round
        index.add(ids[lo : lo + 250], codes[lo : lo + 250])
        del held
    queries = np.stack(
        [near(rng, codes[rng.integers(6000)], int(rng.integers(0, 36))) for _ in range(400)]
    )
    assert index.query(queries) == brute(codes, ids, queries)
    assert len(index) == 6000 and index.nbytes >= index._n * 100


def test_compiled_scan_refuses_bad_input_instead_of_reading_past_it(scan: str) -> None:
    """The C scan runs without the GIL on arrays it is handed: a partial hash, a count
    beyond the arrays or table entries pointing past the stored rows raise ValueError."""
    if scan != "compiled":
        return  # the numpy scan indexes its arrays and raises on its own
    from triage import _pdqscan

    rng = np.random.default_rng(3)
    idx = PDQIndex.build(np.arange(100), random_codes(rng, 100))
    q = random_codes(rng, 2)
    args = (idx._codes, idx._order, idx._starts, idx._dead)
    assert _pdqscan.main(q, *args, idx._n, idx._cap, 31, True)  # well-formed: an answer
    with pytest.raises(ValueError, match="whole number of 32-byte"):
        _pdqscan.main(q.tobytes()[:40], *args, idx._n, idx._cap, 31, True)
    with pytest.raises(ValueError, match="n <= cap"):
        _pdqscan.main(q, *args, idx._n, -5, 31, True)
    bad_starts = idx._starts.copy()
    bad_starts[:, 1:] = 1_000  # ranges beyond the 100 stored rows
    with pytest.raises(ValueError, match="outside the stored rows"):
        _pdqscan.main(q, idx._codes, idx._order, bad_starts, idx._dead, idx._n, idx._cap, 31, True)
    with pytest.raises(ValueError, match="whole number of 32-byte"):
        _pdqscan.brute(b"ab", idx._codes, idx._dead, idx._n, 31)
