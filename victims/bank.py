"""The victims' private banks in memory, and the search of stored reports for them.

`VictimBank` holds the hashes of every open request (or of one): exact hashes in a dict,
PDQ in a `PDQIndex` (multi-index hashing, exact recall at distance ≤ 31), each value with the
requests and list items it belongs to. The victims worker keeps one of every open request
for the new reports it reads from `reports.triaged`, reloaded when `victim_bank_state`'s
version changes (the victims flow raises it whenever a bank is added or removed), and asks
it about each batch with one vectorised query; it builds one per request to search what is
already stored (`stored_candidates`).

A bank is private: what it matches is recorded in `victim_matches` by the victims flow and
never added to a case's `indicator_matches`, so neither providers nor law enforcement ever
see that a victim asked.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.pdq_index import PDQIndex, pdq_to_bytes
from triage.tables import Cluster, ClusterSignal, ReportCluster
from victims.tables import VictimBankState, VictimHash, VictimRequest

MAX_PDQ_DISTANCE = 31
PDQ_MIN_QUALITY = 50
_KIND_ORDER = {"sha256": 0, "md5": 1, "pdq": 2}
Owner = tuple[str, int]  # (request id, item of the victim's list)


@dataclass(frozen=True, slots=True)
class Hit:
    """A content item matched by a victim's hash: the best signal per request."""

    request_id: str
    item: int
    signal: str
    distance: int


class VictimBank:
    """Hashes of victims' requests, searchable like an indicator bank."""

    def __init__(self, max_distance: int = MAX_PDQ_DISTANCE, recheck_s: float = 0.0) -> None:
        self.max_distance = max_distance
        self.recheck_s = recheck_s
        self.exact: dict[tuple[str, str], list[Owner]] = {}
        self.pdq_values: list[str] = []
        self.pdq_owners: list[list[Owner]] = []
        self.index = PDQIndex(max_distance)
        self.version: int | None = None
        self.checked_at = 0.0

    # -- building ----------------------------------------------------------------------

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[tuple[str, int, str, str, int | None]],
        max_distance: int = MAX_PDQ_DISTANCE,
    ) -> VictimBank:
        """From (request id, item, kind, value, pdq quality) rows."""
        bank = cls(max_distance)
        bank._fill(rows)
        return bank

    def _fill(self, rows: Iterable[tuple[str, int, str, str, int | None]]) -> None:
        exact: dict[tuple[str, str], list[Owner]] = {}
        pdq: dict[str, list[Owner]] = {}
        for rid, item, kind, value, quality in rows:
            if kind == "pdq":
                if quality is not None and quality < PDQ_MIN_QUALITY:
                    continue
                pdq.setdefault(value, []).append((rid, item))
            else:
                exact.setdefault((kind, value), []).append((rid, item))
        self.exact = exact
        self.pdq_values = list(pdq)
        self.pdq_owners = [pdq[v] for v in self.pdq_values]
        self.index = (
            PDQIndex.build(np.arange(len(self.pdq_values)), self.pdq_values, self.max_distance)
            if self.pdq_values
            else PDQIndex(self.max_distance)
        )

    @staticmethod
    def rows(session: Session, request_ids: Sequence[str] | None = None) -> Any:
        q = (
            select(
                VictimHash.request_id,
                VictimHash.item,
                VictimHash.kind,
                VictimHash.value,
                VictimHash.pdq_quality,
            )
            .join(VictimRequest, VictimRequest.request_id == VictimHash.request_id)
            .where(VictimRequest.state == "open")
        )
        if request_ids is not None:
            q = q.where(VictimHash.request_id.in_(list(request_ids)))
        return session.execute(q)

    @classmethod
    def load(cls, session: Session, request_ids: Sequence[str] | None = None) -> VictimBank:
        """The open requests' banks (or only those given)."""
        bank = cls()
        bank._fill(bank.rows(session, request_ids))
        return bank

    @staticmethod
    def current_version(session: Session) -> int | None:
        return session.scalar(select(VictimBankState.version).where(VictimBankState.id == 1))

    def refresh(self, session: Session, force: bool = False) -> bool:
        """Reload when a victim bank was added or removed; True when it did. The version is
        read at most every `recheck_s` seconds (one row by primary key)."""
        now = time.monotonic()
        if not force and now - self.checked_at < self.recheck_s:
            return False
        self.checked_at = now
        version = self.current_version(session)
        if version == self.version and not force:
            return False
        self._fill(self.rows(session))
        self.version = version
        return True

    def __len__(self) -> int:
        return len(self.exact) + len(self.pdq_values)

    # -- matching ------------------------------------------------------------------------

    def match(self, signal_lists: Sequence[Iterable[tuple[str, str]]]) -> list[list[Hit]]:
        """For each content item (given as its (kind, value) signals), the best hit per
        request: an exact hash before a PDQ match, a nearer PDQ before a farther one. One
        index query for all PDQ values."""
        if not self.exact and not self.pdq_values:
            return [[] for _ in signal_lists]
        lists = [list(sigs) for sigs in signal_lists]
        near: dict[str, list[tuple[int, int]]] = {}
        if self.pdq_values:
            values = sorted({v for sigs in lists for k, v in sigs if k == "pdq"})
            if values:
                for v, hits in zip(values, self.index.query(values)):
                    if hits:
                        near[v] = hits
        out: list[list[Hit]] = []
        for sigs in lists:
            best: dict[str, tuple[int, int, str, int]] = {}  # request -> (d, order, kind, item)
            for kind, value in sigs:
                found: list[tuple[Owner, int]] = [(o, 0) for o in self.exact.get((kind, value), ())]
                if kind == "pdq":
                    found += [(o, d) for i, d in near.get(value, ()) for o in self.pdq_owners[i]]
                for (rid, item), d in found:
                    cand = (d, _KIND_ORDER.get(kind, 9), kind, item)
                    if rid not in best or cand < best[rid]:
                        best[rid] = cand
            out.append(
                [Hit(rid, item, kind, d) for rid, (d, _o, kind, item) in sorted(best.items())]
            )
        return out


# ------------------------------------------------------------------------------- stored


def _chunks(items: Sequence[Any], n: int = 500) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def stored_candidates(
    session: Session, bank: VictimBank, *, pdq_block: int = 1_000_000
) -> set[str]:
    """The clusters holding content equal to (or, for PDQ, within the distance of) any of the
    bank's hashes, found from `cluster_signals` without reading a report: exact values by
    an indexed `value IN (…)` in chunks; PDQ by streaming the stored PDQ values in blocks of
    `pdq_block`, indexing each block and querying it with the bank's values."""
    clusters: set[str] = set()
    exact = sorted(bank.exact)
    for chunk in _chunks(sorted({v for _k, v in exact})):
        for kind, value, cid in session.execute(
            select(ClusterSignal.kind, ClusterSignal.value, ClusterSignal.cluster_id).where(
                ClusterSignal.value.in_(list(chunk))
            )
        ):
            if (kind, value) in bank.exact:
                clusters.add(cid)
    if bank.pdq_values:
        queries = pdq_to_bytes(bank.pdq_values)
        matched: set[str] = set()
        block: list[np.ndarray] = []
        held = 0

        def search(parts: list[np.ndarray]) -> None:
            codes = np.concatenate(parts) if len(parts) > 1 else parts[0]
            idx = PDQIndex.build(np.arange(len(codes)), codes, bank.max_distance)
            rows = {i for hits in idx.query(queries) for i, _d in hits}
            for i in rows:
                matched.add(codes[i].tobytes().hex())

        result = session.execute(
            select(ClusterSignal.value)
            .where(ClusterSignal.kind == "pdq")
            .execution_options(yield_per=100_000)
        )
        for part in result.partitions():
            block.append(pdq_to_bytes([r[0] for r in part]))
            held += len(part)
            if held >= pdq_block:
                search(block)
                block, held = [], 0
        if block:
            search(block)
        for chunk in _chunks(sorted(matched)):
            clusters.update(
                session.scalars(
                    select(ClusterSignal.cluster_id).where(
                        ClusterSignal.value.in_(list(chunk)), ClusterSignal.kind == "pdq"
                    )
                )
            )
    return clusters


def cluster_families(session: Session, cluster_ids: Iterable[str]) -> set[str]:
    """Every cluster merged into the same surviving cluster as any given (up to the roots,
    then down to everything merged into them), a level at a time with IN queries."""
    family = set(cluster_ids)
    frontier = set(family)
    while frontier:  # up: the clusters these were merged into
        up = {
            m
            for chunk in _chunks(sorted(frontier))
            for m in session.scalars(
                select(Cluster.merged_into).where(
                    Cluster.cluster_id.in_(list(chunk)), Cluster.merged_into.is_not(None)
                )
            )
            if m is not None
        }  # none is, by the query; for the type
        frontier = up - family
        family |= frontier
    frontier = set(family)
    while frontier:  # down: the clusters merged into these
        down = {
            c
            for chunk in _chunks(sorted(frontier))
            for c in session.scalars(
                select(Cluster.cluster_id).where(Cluster.merged_into.in_(list(chunk)))
            )
        }
        frontier = down - family
        family |= frontier
    return family


def reports_of(session: Session, cluster_ids: Iterable[str]) -> list[str]:
    """The reports linked to any of the clusters."""
    out: set[str] = set()
    for chunk in _chunks(sorted(set(cluster_ids))):
        out.update(
            session.scalars(
                select(ReportCluster.report_id).where(ReportCluster.cluster_id.in_(list(chunk)))
            )
        )
    return sorted(out)
