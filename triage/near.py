"""The triage worker's in-memory PDQ indexes, rebuilt from the database when it starts.

Two of them: the PDQ values of cluster members (content seen before, any provider) and the
enabled PDQ indicators of the banks. Exact kinds (sha256, md5) are looked up in the
database by value, the banks' only when `ExactKeys` says they may be there; PDQ needs a
Hamming-distance search, which `PDQIndex` serves.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.pdq_index import PDQIndex, pdq_to_bytes
from triage.tables import BankState, ClusterSignal, Indicator


class ClusterPDQ:
    """PDQ values of cluster members → their cluster, searchable by distance.

    It grows by about one value per report, and every report queries it: a small delta
    (brute-forced by every query) merged often costs less than a large one merged rarely."""

    DELTA_THRESHOLD = 2048

    def __init__(self, max_distance: int = 31) -> None:
        self.index = PDQIndex(max_distance, delta_threshold=self.DELTA_THRESHOLD)
        self.cluster_of: list[str] = []

    @classmethod
    def load(cls, session: Session, max_distance: int = 31) -> ClusterPDQ:
        self = cls(max_distance)
        rows = session.execute(
            select(ClusterSignal.value, ClusterSignal.cluster_id).where(ClusterSignal.kind == "pdq")
        ).all()
        if rows:
            self.cluster_of = [c for _v, c in rows]
            self.index = PDQIndex.build(
                range(len(rows)),
                [v for v, _c in rows],
                max_distance,
                delta_threshold=cls.DELTA_THRESHOLD,
            )
        return self

    def near(self, values: list[str]) -> dict[str, list[tuple[str, int]]]:
        """For each value, the clusters of stored values within the distance, each with the
        distance of its nearest member, nearest first."""
        if not values or not len(self.index):
            return {}
        out: dict[str, list[tuple[str, int]]] = {}
        for value, hits in zip(values, self.index.query(values)):
            best: dict[str, int] = {}
            for i, d in hits:  # sorted by distance: the first seen per cluster is its nearest
                best.setdefault(self.cluster_of[i], d)
            if best:
                out[value] = list(best.items())
        return out

    def add(self, pairs: Iterable[tuple[str, str]]) -> None:
        pairs = list(pairs)
        if not pairs:
            return
        start = len(self.cluster_of)
        self.cluster_of += [c for _v, c in pairs]
        self.index.add(range(start, start + len(pairs)), [v for v, _c in pairs])


class ExactKeys:
    """A set of (kind, value) signals kept as sorted 64-bit hashes of this process (8 bytes
    each, a small part of what the strings would take): `maybe` never leaves out a member;
    it lets a non-member through about once in 2^64 / n, and the database then answers."""

    def __init__(self, signals: Iterable[tuple[str, str]] = ()) -> None:
        self.keys = np.unique(np.fromiter((hash(sig) for sig in signals), np.int64))

    def __len__(self) -> int:
        return len(self.keys)

    def maybe(self, signals: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """The signals that may be members."""
        if not len(self.keys) or not signals:
            return []
        asked = np.fromiter((hash(sig) for sig in signals), np.int64, len(signals))
        at = np.minimum(np.searchsorted(self.keys, asked), len(self.keys) - 1)
        return [sig for sig, hit in zip(signals, (self.keys[at] == asked).tolist()) if hit]


class IndicatorPDQ:
    """Enabled PDQ indicators of every bank, reloaded when the banks change: `bank_state`'s
    version, which database triggers raise on any change to `indicators`, is read before
    every batch (one row by primary key), at most every `recheck_s` seconds."""

    def __init__(self, max_distance: int = 31, recheck_s: float = 0.0) -> None:
        self.max_distance = max_distance
        self.recheck_s = recheck_s
        self.index = PDQIndex(max_distance)
        self.bank_names: list[str] = []
        self.sorted_ids = np.zeros(0, np.int64)  # indicator ids, sorted, and their banks
        self.sorted_banks = np.zeros(0, np.int16)
        self.exact = ExactKeys()  # the enabled indicators of the other kinds (sha256, md5)
        self.version: int | None = None
        self.checked_at = 0.0
        # Answers for values asked before (content is reported again and again), until the
        # banks change; dropped whole when full.
        self._answers: dict[str, list[tuple[str, int]]] = {}

    @staticmethod
    def _version(session: Session) -> int | None:
        return session.scalar(select(BankState.version).where(BankState.id == 1))

    def refresh(self, session: Session, force: bool = False) -> bool:
        """Reload when the banks changed; True when it did."""
        now = time.monotonic()
        if not force and now - self.checked_at < self.recheck_s:
            return False
        self.checked_at = now
        version = self._version(session)
        if version == self.version and not force:
            return False
        # Streamed in chunks into compact arrays: 1,000,000 indicators as Python tuples
        # would cost several hundred MB for a moment, as arrays ~40 MB.
        ids, banks, codes = [], [], []
        names: dict[str, int] = {}
        result = session.execute(
            select(Indicator.id, Indicator.bank, Indicator.value)
            .where(Indicator.kind == "pdq", Indicator.enabled.is_(True))
            .execution_options(yield_per=100_000)
        )
        for chunk in result.partitions():
            ids.append(np.fromiter((r[0] for r in chunk), np.int64, len(chunk)))
            banks.append(
                np.fromiter(
                    (names.setdefault(r[1], len(names)) for r in chunk), np.int16, len(chunk)
                )
            )
            codes.append(pdq_to_bytes([r[2] for r in chunk]))
        self.bank_names = sorted(names, key=names.__getitem__)
        if ids:
            id_arr, bank_arr = np.concatenate(ids), np.concatenate(banks)
            order = np.argsort(id_arr)
            self.sorted_ids, self.sorted_banks = id_arr[order], bank_arr[order]
            self.index = PDQIndex.build(id_arr, np.concatenate(codes), self.max_distance)
        else:
            self.sorted_ids = np.zeros(0, np.int64)
            self.sorted_banks = np.zeros(0, np.int16)
            self.index = PDQIndex(self.max_distance)
        self.exact = ExactKeys(
            (kind, value)
            for kind, value in session.execute(
                select(Indicator.kind, Indicator.value)
                .where(Indicator.kind != "pdq", Indicator.enabled.is_(True))
                .execution_options(yield_per=100_000)
            )
        )
        self.version = version
        self._answers = {}
        return True

    ANSWERS_KEPT = 200_000

    def near(self, values: list[str]) -> dict[str, list[tuple[str, int]]]:
        """For each value with a match, (bank, distance) of the nearest indicator of each
        bank. Safe to call from one other thread while no `refresh` runs."""
        if not values or not len(self.index):
            return {}
        answers = self._answers
        out = {v: answers[v] for v in values if v in answers}
        ask = [v for v in values if v not in answers]
        if not ask:
            return {v: a for v, a in out.items() if a}
        if len(answers) + len(ask) > self.ANSWERS_KEPT:
            answers = self._answers = {}
        for value, hits in zip(ask, self.index.query(ask)):
            best: dict[str, int] = {}
            if hits:
                found = np.array([i for i, _d in hits], np.int64)
                at = np.searchsorted(self.sorted_ids, found)
                for (_i, d), b in zip(hits, self.sorted_banks[at].tolist()):
                    bank = self.bank_names[b]
                    if d < best.get(bank, 1 << 16):
                        best[bank] = d
            nearest = sorted(best.items(), key=lambda bd: (bd[1], bd[0]))
            answers[value] = out[value] = nearest
        return {v: a for v, a in out.items() if a}
