"""Near-duplicate search over 256-bit PDQ hashes (over 500 lines: the tables, the probe, the
scan and the updates share one array layout that only this file may touch): multi-index hashing in compact numpy arrays.

Two hashes match when their Hamming distance is at most `max_distance` (31 by default, the
threshold of Meta's Hasher-Matcher-Actioner).

Recall is exact, by pigeonhole. A hash is cut into 16 disjoint chunks of 16 bits. If two hashes
differed in at least 2 bits in every chunk they would be at least 32 apart; so at distance
<= 31 at least one chunk differs in at most 1 bit. For each chunk there is a table of all
stored rows grouped by that chunk's value; a query probes, in every table, its own chunk value
and the 16 values one bit away (17 keys x 16 tables = 272 probes), and every candidate found is
checked exactly. At `max_distance` <= 15 some chunk is equal, so only the 16 exact keys are
probed. Above 31 the argument fails and the index refuses to be built.

Layout (n stored rows): codes (n, 32) uint8; per table the rows sorted stably by the chunk
value, one flat int32 array (16 tables side by side); `starts` (16, 65537) int32 such that the
rows whose chunk t is k are order_t[starts[t, k]:starts[t, k + 1]]; ids (n,) int64; a tombstone
mask; the ids sorted with their rows for look-ups: 117 bytes per hash, plus 4 MB.

Updates: `add` appends to a small delta segment searched by brute force; when the delta holds
`delta_threshold` entries it is merged into the tables (an insertion per table, no re-sort).
`remove` sets tombstones, filtered from results; tombstoned rows are dropped at the next merge
(or by `compact`). Not thread-safe: guard an index shared between threads with a lock.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

_Bytes = bytes | np.ndarray[Any, Any]  # what the compiled scans read (as buffers)


class _Scans(Protocol):
    """The scans compiled from triage/_pdqscan.c (typed in triage/_pdqscan.pyi)."""

    def main(
        self,
        q: _Bytes,
        codes: _Bytes,
        order: _Bytes,
        starts: _Bytes,
        dead: _Bytes,
        n: int,
        cap: int,
        maxd: int,
        one_bit: bool,
        /,
    ) -> tuple[bytes, bytes, bytes]: ...

    def brute(
        self, q: _Bytes, codes: _Bytes, dead: _Bytes, n: int, maxd: int, /
    ) -> tuple[bytes, bytes, bytes]: ...


def _compiled_scans() -> _Scans | None:
    try:  # the candidate scan compiled at install (triage/_pdqscan.c); numpy does it otherwise
        from triage import _pdqscan
    except ImportError:  # pragma: no cover - a source tree that was never built
        return None
    return _pdqscan


_pdqscan = _compiled_scans()

__all__ = ["PDQIndex", "pdq_to_bytes", "MAX_SUPPORTED_DISTANCE"]

PDQ_BYTES = 32
PDQ_HEX_CHARS = 64
MAX_SUPPORTED_DISTANCE = 31  # 16 chunks x (1 flip + 1) - 1: the largest radius with full recall

_TABLES = 16
_KEYS = 1 << 16
_FLIPS = np.array([0] + [1 << b for b in range(16)], dtype=np.uint16)  # probe masks per table
_TABLE_BASE = (np.arange(_TABLES, dtype=np.intp) * (_KEYS + 1))[:, None]  # row offsets in starts
_TABLE_NO = np.arange(_TABLES, dtype=np.intp)[:, None]

_HEX_LUT = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_LUT[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX_LUT[_c] = 10 + _i

Codes = npt.NDArray[np.uint8]
IdArray = npt.NDArray[np.int64]


def pdq_to_bytes(hexes: Sequence[str]) -> Codes:
    """(n, 32) uint8 codes from 64-character hex strings (either case).

    Raises ValueError naming the index of the first bad hash (wrong length, non-hex character,
    not a str); the hash itself is not echoed.
    """
    if isinstance(hexes, (str, bytes)):
        raise TypeError("pass a sequence of PDQ hex strings, not a single string")
    items = hexes.tolist() if isinstance(hexes, np.ndarray) else list(hexes)
    n = len(items)
    if n == 0:
        return np.empty((0, PDQ_BYTES), dtype=np.uint8)
    try:
        joined = "".join(items)
    except TypeError:
        for i, h in enumerate(items):
            if not isinstance(h, str):
                raise ValueError(
                    f"PDQ hash {i}: expected a hex string, got {type(h).__name__}"
                ) from None
        raise
    lens = np.fromiter(map(len, items), dtype=np.int64, count=n)
    bad = np.flatnonzero(lens != PDQ_HEX_CHARS)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"PDQ hash {i}: must be {PDQ_HEX_CHARS} hexadecimal characters, got {int(lens[i])}"
        )
    try:
        raw = joined.encode("ascii")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"PDQ hash {exc.start // PDQ_HEX_CHARS}: not hexadecimal "
            f"(character {exc.start % PDQ_HEX_CHARS})"
        ) from None
    nib = _HEX_LUT[np.frombuffer(raw, dtype=np.uint8)]
    bad = np.flatnonzero(nib == 255)
    if bad.size:
        at = int(bad[0])
        raise ValueError(
            f"PDQ hash {at // PDQ_HEX_CHARS}: not hexadecimal (character {at % PDQ_HEX_CHARS})"
        )
    nib = nib.reshape(n, PDQ_HEX_CHARS)
    out: Codes = (nib[:, 0::2] << np.uint8(4)) | nib[:, 1::2]
    return out


def scan_hits(raw: tuple[bytes, bytes, bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query no., row, distance) int64 arrays from a compiled scan's answer."""
    qn, rows, dist = raw
    return (
        np.frombuffer(qn, np.int64),
        np.frombuffer(rows, np.int64),
        np.frombuffer(dist, np.int64),
    )


def _as_codes(hashes: Sequence[str] | np.ndarray) -> tuple[Codes, bool]:
    """(codes as a C-contiguous (n, 32) uint8 array, whether it is a fresh array we own)."""
    if isinstance(hashes, np.ndarray):
        if hashes.dtype.kind in "USO":
            return pdq_to_bytes(hashes.tolist()), True
        if hashes.dtype != np.uint8 or hashes.ndim != 2 or hashes.shape[1] != PDQ_BYTES:
            raise ValueError(
                f"PDQ codes must be hex strings or a (n, {PDQ_BYTES}) uint8 array, "
                f"got {hashes.dtype} {hashes.shape}"
            )
        c = np.ascontiguousarray(hashes)
        return c, c is not hashes
    return pdq_to_bytes(hashes), True


def _as_ids(ids: Sequence[int] | np.ndarray) -> IdArray:
    a = np.asarray(ids)
    if a.ndim != 1:
        raise ValueError("ids must be a 1-D sequence of integers")
    if a.size == 0:
        return np.empty(0, dtype=np.int64)
    if a.dtype.kind == "u":
        if int(a.max()) > np.iinfo(np.int64).max:
            raise ValueError("ids must fit in int64")
    elif a.dtype.kind != "i":
        raise ValueError(f"ids must be integers, got {a.dtype}")
    return a.astype(np.int64, copy=False)


def _last_of_each_id(ids: IdArray) -> npt.NDArray[np.intp] | None:
    """Positions keeping the last occurrence of every id, in input order; None if all unique."""
    if ids.size < 2:
        return None
    srt = np.argsort(ids, kind="stable")
    s = ids[srt]
    last = np.ones(ids.size, dtype=np.bool_)
    np.not_equal(s[1:], s[:-1], out=last[:-1])
    if last.all():
        return None
    return np.sort(srt[last])


def _distance(a64: npt.NDArray[np.uint64], b64: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Exact Hamming distances between rows of two (k, 4) uint64 arrays."""
    return np.bitwise_count(a64 ^ b64).sum(axis=1, dtype=np.int64)


def _compact_in_place(a: np.ndarray, keep: npt.NDArray[np.intp], step: int = 1 << 20) -> None:
    """Move rows `keep` (ascending) to the front of `a`, a block at a time (no full copy)."""
    for s in range(0, keep.size, step):
        idx = keep[s : s + step]
        a[s : s + idx.size] = a[idx]  # a[idx] is a copy; rows still to read are all >= s + size


def _grow(owner: Any, name: str, shape: tuple[int, ...]) -> None:
    """Enlarge array attribute `name` of `owner` to `shape` (first axis), in place if no view
    of it exists (realloc: large blocks are remapped, not copied), else by copying."""
    a = getattr(owner, name)
    setattr(owner, name, None)  # the local is then the only reference numpy's check accepts
    try:
        a.resize(shape)
    except ValueError:  # a view of it is alive somewhere: leave that memory alone
        b = np.zeros(shape, dtype=a.dtype)
        b[: a.shape[0]] = a
        a = b
    setattr(owner, name, a)


class PDQIndex:
    """Ids of stored PDQ hashes within `max_distance` of each query, with exact recall.

    Ids are caller-supplied int64 values (e.g. database row ids), unique within the index:
    adding an id that is present replaces its hash; within one `add` or `build` the last
    occurrence of an id wins.
    """

    DEFAULT_DELTA_THRESHOLD = 16_384
    # Scan candidates in C when the extension was built (an index may be told not to, so the
    # two scans can be compared).
    compiled = _pdqscan is not None
    CANDIDATE_BUDGET = 1 << 16  # candidates scored per step: temporaries stay in cache
    QUERY_BLOCK = 4096  # queries whose probe keys are computed together

    def __init__(
        self,
        max_distance: int = MAX_SUPPORTED_DISTANCE,
        *,
        delta_threshold: int = DEFAULT_DELTA_THRESHOLD,
    ) -> None:
        """An empty index. `max_distance` 0..31; `delta_threshold`: delta size that triggers
        a merge into the tables (larger: rarer merges, slower queries)."""
        if isinstance(max_distance, bool) or not isinstance(max_distance, (int, np.integer)):
            raise TypeError("max_distance must be an int")
        if not 0 <= max_distance <= MAX_SUPPORTED_DISTANCE:
            raise ValueError(
                f"max_distance must be 0..{MAX_SUPPORTED_DISTANCE}: beyond that "
                "16 chunks with one-bit probes no longer guarantee recall"
            )
        if delta_threshold < 1:
            raise ValueError("delta_threshold must be at least 1")
        self._max_distance = int(max_distance)
        self.delta_threshold = int(delta_threshold)
        self._flips = _FLIPS if self._max_distance >= _TABLES else _FLIPS[:1]
        # Main segment: rows [0, _n) of arrays with room for _cap rows.
        self._n = 0
        self._cap = 0
        self._codes: Codes = np.empty((0, PDQ_BYTES), dtype=np.uint8)
        self._ids: IdArray = np.empty(0, dtype=np.int64)
        self._dead = np.empty(0, dtype=np.bool_)
        self._ndead = 0
        self._order = np.empty(0, dtype=np.int32)  # table t: _order[t*_cap : t*_cap + _n]
        self._starts = np.zeros((_TABLES, _KEYS + 1), dtype=np.int32)
        self._sid: IdArray = np.empty(0, dtype=np.int64)  # main ids, sorted
        self._srow = np.empty(0, dtype=np.int32)  # their rows
        # Delta segment: rows [0, _dn), searched by brute force.
        self._dn = 0
        self._dcodes: Codes = np.empty((0, PDQ_BYTES), dtype=np.uint8)
        self._dids: IdArray = np.empty(0, dtype=np.int64)
        self._ddead = np.empty(0, dtype=np.bool_)
        self._dpos: dict[int, int] = {}  # live delta id -> delta row

    # -- construction and updates ------------------------------------------------------------

    @classmethod
    def build(
        cls,
        ids: Sequence[int] | np.ndarray,
        hashes: Sequence[str] | np.ndarray,
        max_distance: int = MAX_SUPPORTED_DISTANCE,
        *,
        delta_threshold: int = DEFAULT_DELTA_THRESHOLD,
    ) -> PDQIndex:
        """An index of `hashes` (hex strings or (n, 32) uint8) under `ids`, built in bulk:
        one stable 16-bit radix argsort per table."""
        idx = cls(max_distance, delta_threshold=delta_threshold)
        ida = _as_ids(ids)
        codes, fresh = _as_codes(hashes)
        if ida.size != codes.shape[0]:
            raise ValueError(f"{ida.size} ids for {codes.shape[0]} hashes")
        keep = _last_of_each_id(ida)
        if keep is not None:
            ida, codes, fresh = ida[keep], codes[keep], True
        if ida.size:
            idx._load(ida, codes if fresh else codes.copy())
        return idx

    def _load(self, ids: IdArray, codes: Codes) -> None:
        n = ids.size
        if n >= np.iinfo(np.int32).max:
            raise ValueError("at most 2**31 - 2 hashes")
        self._n = self._cap = n
        self._codes = codes
        self._ids = ids.copy()
        self._dead = np.zeros(n, dtype=np.bool_)
        self._order = np.empty(_TABLES * n, dtype=np.int32)
        chunks = codes.view(np.uint16)
        every_key = np.arange(_KEYS, dtype=np.uint16)
        for t in range(_TABLES):
            col = np.ascontiguousarray(chunks[:, t])
            o = np.argsort(col, kind="stable")  # radix sort for 16-bit keys
            self._order[t * n : (t + 1) * n] = o
            self._starts[t, :_KEYS] = np.searchsorted(col[o], every_key)
            self._starts[t, _KEYS] = n
        srt = np.argsort(ids, kind="stable")
        self._sid = ids[srt]
        self._srow = srt.astype(np.int32)

    def add(self, ids: Sequence[int] | np.ndarray, hashes: Sequence[str] | np.ndarray) -> None:
        """Add or replace entries (hashes: hex strings or (n, 32) uint8)."""
        ida = _as_ids(ids)
        codes, _fresh = _as_codes(hashes)
        if ida.size != codes.shape[0]:
            raise ValueError(f"{ida.size} ids for {codes.shape[0]} hashes")
        if ida.size == 0:
            return
        keep = _last_of_each_id(ida)
        if keep is not None:
            ida, codes = ida[keep], codes[keep]
        self._discard(ida)
        m, dn = ida.size, self._dn
        if dn + m > self._dcodes.shape[0]:
            cap = max(dn + m, 2 * self._dcodes.shape[0], 1024)
            _grow(self, "_dcodes", (cap, PDQ_BYTES))
            _grow(self, "_dids", (cap,))
            _grow(self, "_ddead", (cap,))
        self._dcodes[dn : dn + m] = codes
        self._dids[dn : dn + m] = ida
        self._ddead[dn : dn + m] = False
        self._dpos.update(zip(ida.tolist(), range(dn, dn + m)))
        self._dn = dn + m
        if self._dn >= self.delta_threshold:
            self._merge()

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Remove entries; returns how many of the (distinct) ids were present."""
        ida = _as_ids(ids)
        if ida.size == 0:
            return 0
        return self._discard(np.unique(ida))

    def _discard(self, ids: IdArray) -> int:
        """Tombstone the live entries of `ids` (distinct); returns how many there were."""
        count = 0
        if self._n - self._ndead:
            rows = self._main_rows(ids)
            rows = rows[rows >= 0]
            self._dead[rows] = True
            self._ndead += rows.size
            count += rows.size
        if self._dpos:
            pop = self._dpos.pop
            hit = [p for p in (pop(i, -1) for i in ids.tolist()) if p >= 0]
            if hit:
                self._ddead[hit] = True
                count += len(hit)
        return count

    def _main_rows(self, ids: IdArray) -> npt.NDArray[np.intp]:
        """Live main row of each id, -1 where absent or tombstoned."""
        if self._sid.size == 0:
            return np.full(ids.size, -1, dtype=np.intp)
        pos = np.minimum(np.searchsorted(self._sid, ids), self._sid.size - 1)
        rows = self._srow[pos].astype(np.intp)
        ok = (self._sid[pos] == ids) & ~self._dead[rows]
        return np.where(ok, rows, -1)

    def compact(self) -> None:
        """Merge the delta into the tables and drop tombstoned rows now."""
        self._merge()

    def _merge(self) -> None:
        live = np.flatnonzero(~self._ddead[: self._dn])
        new_codes = self._dcodes[live]
        new_ids = self._dids[live]
        self._dn = 0
        self._dpos = {}
        if self._dcodes.shape[0] > 4 * self.delta_threshold:  # after a bulk add
            self._dcodes = np.empty((0, PDQ_BYTES), dtype=np.uint8)
            self._dids = np.empty(0, dtype=np.int64)
            self._ddead = np.empty(0, dtype=np.bool_)
        self._drop_tombstones()
        m, n = new_ids.size, self._n
        if m == 0:
            return
        if n + m >= np.iinfo(np.int32).max:
            raise ValueError("at most 2**31 - 2 hashes")
        if n + m > self._cap:
            self._reserve(max(n + m, self._cap + self._cap // 8))
        cap = self._cap
        self._codes[n : n + m] = new_codes
        self._ids[n : n + m] = new_ids
        self._dead[n : n + m] = False
        new_rows = np.arange(n, n + m, dtype=np.int32)
        chunks = new_codes.view(np.uint16)
        for t in range(_TABLES):
            k = chunks[:, t]
            srt = np.argsort(k, kind="stable")
            st = self._starts[t]
            ends = st[k[srt].astype(np.intp) + 1]  # each new row goes at the end of its bucket
            merged = np.insert(self._order[t * cap : t * cap + n], ends, new_rows[srt])
            self._order[t * cap : t * cap + n + m] = merged
            st[1:] += np.cumsum(np.bincount(k, minlength=_KEYS), dtype=np.int32)
        srt = np.argsort(new_ids)
        at = np.searchsorted(self._sid, new_ids[srt])
        self._sid = np.insert(self._sid, at, new_ids[srt])
        self._srow = np.insert(self._srow, at, new_rows[srt])
        self._n = n + m

    def _drop_tombstones(self) -> None:
        if not self._ndead:
            return
        n, cap = self._n, self._cap
        keep_mask = ~self._dead[:n]
        keep = np.flatnonzero(keep_mask)
        n2 = keep.size
        new_row = np.cumsum(keep_mask, dtype=np.int32)
        new_row -= 1
        dead_chunks = self._codes[np.flatnonzero(self._dead[:n])].view(np.uint16)
        for t in range(_TABLES):
            seg = self._order[t * cap : t * cap + n]
            self._order[t * cap : t * cap + n2] = new_row[seg[keep_mask[seg]]]
            gone = np.bincount(dead_chunks[:, t], minlength=_KEYS)
            self._starts[t, 1:] -= np.cumsum(gone, dtype=np.int32)
        _compact_in_place(self._codes, keep)
        _compact_in_place(self._ids, keep)
        self._dead[:n] = False
        in_sid = keep_mask[self._srow]
        self._sid = self._sid[in_sid]
        self._srow = new_row[self._srow[in_sid]]
        self._n, self._ndead = n2, 0

    def _reserve(self, cap: int) -> None:
        """Room for `cap` main rows; each table keeps its place at t * cap."""
        old, n = self._cap, self._n
        _grow(self, "_codes", (cap, PDQ_BYTES))
        _grow(self, "_ids", (cap,))
        _grow(self, "_dead", (cap,))
        _grow(self, "_order", (_TABLES * cap,))
        order = self._order
        for t in range(_TABLES - 1, 0, -1):  # last first: targets lie beyond the sources
            order[t * cap : t * cap + n] = order[t * old : t * old + n]
        self._cap = cap

    # -- queries -----------------------------------------------------------------------------

    def query(self, hashes: Sequence[str] | np.ndarray) -> list[list[tuple[int, int]]]:
        """Per query hash, [(id, distance)] of the live entries within `max_distance`, sorted
        by distance then id. Hashes: hex strings or (n, 32) uint8."""
        q, _fresh = _as_codes(hashes)
        nq = q.shape[0]
        if nq == 0:
            return []
        if not len(self):
            return [[] for _ in range(nq)]
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        if self._n - self._ndead:
            for lo in range(0, nq, self.QUERY_BLOCK):
                parts.extend(self._search_main(q[lo : lo + self.QUERY_BLOCK], lo))
        if self._dpos:
            parts.extend(self._search_delta(q))
        return self._collect(parts, nq)

    def _search_main(self, q: Codes, first: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(query no., id, distance) of main-segment hits, deduplicated and live."""
        if self.compiled:
            assert _pdqscan is not None  # `compiled` is only set when it was built
            qn, rows, d = scan_hits(
                _pdqscan.main(
                    q,
                    self._codes,
                    self._order,
                    self._starts,
                    self._dead,
                    self._n,
                    self._cap,
                    self._max_distance,
                    len(self._flips) > 1,
                )
            )
            return [(qn + first, self._ids[rows], d)] if qn.size else []
        return self._search_main_numpy(q, first)

    def _search_main_numpy(
        self, q: Codes, first: int
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        nq, n, cap, maxd = q.shape[0], self._n, self._cap, self._max_distance
        starts = self._starts.reshape(-1)
        keys = (q.view(np.uint16)[:, :, None] ^ self._flips).astype(np.intp)
        keys += _TABLE_BASE
        b = starts[keys]
        lens = (starts[keys + 1] - b).reshape(nq, -1)
        shift = b.astype(np.intp)
        shift += _TABLE_NO * cap  # absolute start of each probed range in _order
        shift = shift.reshape(nq, -1)
        per_query = lens.sum(axis=1, dtype=np.intp)
        cum = np.cumsum(per_query)
        q64 = q.view(np.uint64)
        qw0, qw1 = np.ascontiguousarray(q64[:, 0]), np.ascontiguousarray(q64[:, 1])
        words = self._codes[:n].view("V16")[:, 0]  # words 0-1 of each row (bytes, copied exactly)
        out = []
        lo = 0
        while lo < nq:  # groups of queries holding at most CANDIDATE_BUDGET candidates
            done = int(cum[lo - 1]) if lo else 0
            hi = max(lo + 1, int(np.searchsorted(cum, done + self.CANDIDATE_BUDGET, "right")))
            ln = lens[lo:hi].reshape(-1)
            ends = np.cumsum(ln, dtype=np.intp)
            total = int(ends[-1])
            if total:
                # Positions in _order of every candidate: the ranges laid end to end.
                pos = np.repeat(shift[lo:hi].reshape(-1) - (ends - ln), ln)
                pos += np.arange(total, dtype=np.intp)
                rows = self._order[pos].astype(np.intp)
                w = words[rows].view(np.uint64).reshape(total, 2)
                w0, w1 = w[:, 0], w[:, 1]
                if hi - lo == 1:
                    qi = None
                    np.bitwise_xor(w0, q64[lo, 0], out=w0)
                    np.bitwise_xor(w1, q64[lo, 1], out=w1)
                else:
                    qi = np.repeat(np.arange(lo, hi, dtype=np.intp), per_query[lo:hi])
                    np.bitwise_xor(w0, qw0[qi], out=w0)
                    np.bitwise_xor(w1, qw1[qi], out=w1)
                # Over the limit on half the bits already: not a match (random pairs: ~64).
                s = np.bitwise_count(w0)
                s += np.bitwise_count(w1)
                near = np.flatnonzero(s <= maxd)
                if near.size:
                    r = rows[near]
                    qn = np.full(near.size, lo, np.intp) if qi is None else qi[near]
                    d = _distance(self._codes.view(np.uint64)[r], q64[qn])
                    ok = (d <= maxd) & ~self._dead[r]
                    r, qn, d = r[ok], qn[ok], d[ok]
                    # A row can be found through several tables: keep one per (query, row).
                    key = qn.astype(np.int64) * n + r
                    srt = np.argsort(key, kind="stable")
                    ks = key[srt]
                    first_ = np.ones(ks.size, dtype=np.bool_)
                    np.not_equal(ks[1:], ks[:-1], out=first_[1:])
                    sel = srt[first_]
                    out.append((qn[sel] + first, self._ids[r[sel]], d[sel]))
            lo = hi
        return out

    def _search_delta(self, q: Codes) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(query no., id, distance) of delta-segment hits, by brute force in blocks."""
        dn, maxd = self._dn, self._max_distance
        if self.compiled:
            assert _pdqscan is not None  # `compiled` is only set when it was built
            qn, rows, d = scan_hits(_pdqscan.brute(q, self._dcodes, self._ddead, dn, maxd))
            return [(qn, self._dids[rows], d)] if qn.size else []
        d64 = self._dcodes[:dn].view(np.uint64)
        w0, w1 = d64[:, 0], d64[:, 1]
        q64 = q.view(np.uint64)
        step = max(1, self.CANDIDATE_BUDGET // dn)
        out = []
        for lo in range(0, q.shape[0], step):
            qq = q64[lo : lo + step]
            x = np.bitwise_xor(qq[:, 0:1], w0)
            s = np.bitwise_count(x)
            np.bitwise_xor(qq[:, 1:2], w1, out=x)
            s += np.bitwise_count(x)
            qn, j = np.nonzero(s <= maxd)
            if qn.size:
                qn += lo
                d = _distance(d64[j], q64[qn])
                ok = (d <= maxd) & ~self._ddead[j]
                out.append((qn[ok], self._dids[j[ok]], d[ok]))
        return out

    @staticmethod
    def _collect(
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], nq: int
    ) -> list[list[tuple[int, int]]]:
        parts = [p for p in parts if p[0].size]
        if not parts:
            return [[] for _ in range(nq)]
        qn = np.concatenate([p[0] for p in parts])
        ids = np.concatenate([p[1] for p in parts])
        d = np.concatenate([p[2] for p in parts])
        srt = np.lexsort((ids, d, qn))
        bounds = np.searchsorted(qn[srt], np.arange(nq + 1)).tolist()
        pairs = list(zip(ids[srt].tolist(), d[srt].tolist()))
        return [pairs[bounds[i] : bounds[i + 1]] for i in range(nq)]

    # -- introspection -----------------------------------------------------------------------

    @property
    def max_distance(self) -> int:
        return self._max_distance

    def __len__(self) -> int:
        """Live entries."""
        return self._n - self._ndead + len(self._dpos)

    def __contains__(self, id: Any) -> bool:
        try:
            i = operator.index(id)
        except TypeError:
            return False
        if i in self._dpos:
            return True
        if not -(2**63) <= i < 2**63:
            return False
        return bool(self._main_rows(np.array([i], dtype=np.int64))[0] >= 0)

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays (allocated capacity included) and delta map."""
        arrays = (
            self._codes,
            self._ids,
            self._dead,
            self._order,
            self._starts,
            self._sid,
            self._srow,
            self._dcodes,
            self._dids,
            self._ddead,
        )
        return sum(a.nbytes for a in arrays) + sys.getsizeof(self._dpos)

    def __repr__(self) -> str:
        return (
            f"PDQIndex(len={len(self)}, main={self._n}, delta={self._dn}, "
            f"tombstones={self._ndead}, max_distance={self._max_distance})"
        )
