"""Content clusters: every item equal to (or, for PDQ, near) a member joins that cluster.

One item that links two clusters merges them; the merged one points at the survivor
(`merged_into`), so ids handed out earlier still resolve. Work is done a batch at a time: the
clusters a batch touches are loaded once, changed in memory in report order, written back in
the batch's transaction.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import bindparam, exists, func, select
from sqlalchemy.orm import Session

from centre import messages as m
from centre.db import prepare_rows
from triage.pdq_index import _pdqscan, scan_hits
from triage.tables import Cluster, ClusterSignal, ReportCluster

RECENT_CASES = 100  # related_case_ids shows the most recent ones; times_reported counts all

Signal = tuple[str, str]

_RA, _RB = ReportCluster.__table__.alias("ra"), ReportCluster.__table__.alias("rb")
# Reports linked to both clusters :a and :b.
_OVERLAP = (
    select(func.count())
    .select_from(_RA)
    .where(
        _RA.c.cluster_id == bindparam("a"),
        exists().where(_RB.c.report_id == _RA.c.report_id, _RB.c.cluster_id == bindparam("b")),
    )
)


@dataclass(slots=True)
class _State:
    cluster_id: str
    created_at: dt.datetime
    times_reported: int
    recent_cases: list[str]
    merged_into: str | None = None
    new: bool = False
    dirty: bool = False


@dataclass(slots=True)
class Membership:
    cluster_ids: list[str]
    times_reported: int
    related_case_ids: list[str]
    merges: list[tuple[str, str]] = field(default_factory=list)  # (merged, into)
    near: list[tuple[str, int]] = field(default_factory=list)  # (cluster, PDQ distance) joined


@dataclass(slots=True)
class ClusterWrites:
    """A batch's changes to the clusters, as rows; `write_clusters` writes them."""

    new: list[dict[str, Any]] = field(default_factory=list)  # clusters rows to insert
    changed: list[dict[str, Any]] = field(default_factory=list)  # clusters rows to update
    signals: list[dict[str, str]] = field(default_factory=list)  # cluster_signals rows
    links: list[dict[str, str]] = field(default_factory=list)  # report_clusters rows
    # cluster id -> (created_at, times_reported, recent_cases, merged_into), new and changed
    states: dict[str, tuple[dt.datetime, int, list[str], str | None]] = field(default_factory=dict)


def write_clusters(s: Any, w: ClusterWrites) -> None:
    """The rows of `w`, in the caller's transaction (clusters before what refers to them)."""
    for run in prepare_clusters(s, w):
        run()


def prepare_clusters(s: Any, w: ClusterWrites) -> list[Callable[[], None]]:
    """`write_clusters` as prepared statements (`centre.db.prepare_rows`), to run in order."""
    return [
        prepare_rows(s, Cluster.__table__, w.new),
        prepare_rows(s, Cluster.__table__, w.changed, key="cluster_id"),
        prepare_rows(s, ClusterSignal.__table__, w.signals),
        prepare_rows(s, ReportCluster.__table__, w.links),
    ]


class Unwritten:
    """A batch's cluster changes while another thread writes them: the next batch takes
    them from here, not from the database, which may not have them yet (`written` is set
    once it has). Triage is the clusters' only writer, so these are their newest state."""

    def __init__(self, w: ClusterWrites) -> None:
        self.states = w.states
        self.by_signal = {(r["kind"], r["value"]): r["cluster_id"] for r in w.signals}
        self.linked = {r["cluster_id"] for r in w.links}
        self.written = threading.Event()


class ClusterBatch:
    """The clusters of one batch; call `assign` per report in order, then `flush` (or
    `take_writes`, to write them elsewhere)."""

    def __init__(
        self,
        session: Session,
        signals: Iterable[Signal],
        now: dt.datetime,
        near: dict[str, list[tuple[str, int]]] | None = None,
        max_pdq_distance: int = 31,
        unwritten: Unwritten | None = None,
    ) -> None:
        """`near`: for PDQ values of this batch, the clusters of stored PDQ values within
        `max_pdq_distance` (from the PDQ index); PDQ values new in this batch are compared
        with each other here. `unwritten`: the previous batch's changes, if they may not be
        committed yet (this batch then only reads `session`)."""
        self.s = session
        self.unwritten = unwritten
        self.now = now
        self.near = near or {}
        self.max_pdq = max_pdq_distance
        self.batch_pdq = _BatchPDQ()  # PDQ values placed in this batch
        self.new_pdq: list[tuple[str, str]] = []  # (value, cluster id) for the index
        wanted = list(set(signals))
        self.by_signal: dict[Signal, str] = {}
        self.new_signals: list[dict[str, str]] = []
        self.links: list[dict[str, str]] = []
        self.clusters: dict[str, _State] = {}
        # Reports linked in this batch (not yet written), per cluster; and whether any of them
        # was linked to clusters before (a supplement's report).
        self.linked_now: dict[str, set[str]] = {}
        self.relinked = False
        wanted_set = set(wanted)
        signals_t = ClusterSignal.__table__.c  # Core statements: no ORM work per row
        for chunk in _chunks(sorted({v for _k, v in wanted}), 500):
            for kind, value, cid in session.execute(
                select(signals_t.kind, signals_t.value, signals_t.cluster_id).where(
                    signals_t.value.in_(chunk)
                )
            ):
                if (kind, value) in wanted_set:
                    self.by_signal[(kind, value)] = cid
        if unwritten is not None:
            for sig in wanted_set & unwritten.by_signal.keys():
                self.by_signal[sig] = unwritten.by_signal[sig]
        self._load(set(self.by_signal.values()) | {c for cs in self.near.values() for c, _d in cs})

    def _load(self, ids: set[str]) -> None:
        table = Cluster.__table__
        while ids:
            rows: list[tuple[str, dt.datetime, int, list[str], str | None]] = []
            if self.unwritten is not None:
                mine = ids & self.unwritten.states.keys()
                rows += [(cid, *self.unwritten.states[cid]) for cid in mine]
                ids -= mine
            if ids:
                rows += self.s.execute(
                    select(
                        table.c.cluster_id,
                        table.c.created_at,
                        table.c.times_reported,
                        table.c.recent_cases,
                        table.c.merged_into,
                    ).where(table.c.cluster_id.in_(list(ids)))
                ).all()
            ids = set()
            for cid, created_at, times, recent, merged_into in rows:
                self.clusters[cid] = _State(cid, created_at, times, list(recent or []), merged_into)
                if merged_into and merged_into not in self.clusters:
                    ids.add(merged_into)

    def _resolve(self, cid: str) -> str:
        while (nxt := self.clusters[cid].merged_into) is not None:
            cid = nxt
        return cid

    def _merge(self, ids: list[str], merges: list[tuple[str, str]]) -> str:
        # The oldest cluster survives, so the id most liaisons have already seen stays current.
        ordered = sorted(ids, key=lambda c: (self.clusters[c].created_at, c))
        target = self.clusters[ordered[0]]
        for cid in ordered[1:]:
            other = self.clusters[cid]
            overlap = self._overlap(target.cluster_id, cid)
            target.times_reported += other.times_reported - overlap
            target.recent_cases = _recent(target.recent_cases + other.recent_cases)
            other.merged_into, other.dirty, target.dirty = target.cluster_id, True, True
            merges.append((cid, target.cluster_id))
        return target.cluster_id

    def _overlap(self, a: str, b: str) -> int:
        """Reports already counted in both clusters (so a merge does not count them twice).

        Links made in this batch are counted here, in memory; the stored ones by the
        database, asked only when both clusters are stored. A batch holding a supplement's
        report (whose stored and new links could pair up) writes first and asks the
        database for everything."""
        if self.relinked:
            assert self.unwritten is None, "a supplement's batch reads and writes at once"
            self.flush()
            return self._stored_overlap(a, b)
        now = len(self.linked_now.get(a, set()) & self.linked_now.get(b, set()))
        if self.clusters[a].new or self.clusters[b].new:
            return now
        if self.unwritten is not None and {a, b} & self.unwritten.linked:
            self.unwritten.written.wait()  # their links of the batch before, once stored
        return now + self._stored_overlap(a, b)

    def _stored_overlap(self, a: str, b: str) -> int:
        # From the cluster with fewer reports, each looked up in the other by primary key.
        if self.clusters[a].times_reported > self.clusters[b].times_reported:
            a, b = b, a
        return int(self.s.execute(_OVERLAP, {"a": a, "b": b}).scalar() or 0)

    def assign(
        self, report_id: str, case_id: str, items: list[list[Signal]], member_of: Iterable[str] = ()
    ) -> Membership:
        """Place each item's signals; returns the report's clusters and counts after it.

        `member_of`: clusters the report already counts in (a supplement's report, triaged
        again): it stays counted once in them."""
        member_of = set(member_of)
        if member_of:
            self.relinked = True
        if member_of - set(self.clusters):
            self._load(member_of - set(self.clusters))
        merges: list[tuple[str, str]] = []
        final: list[str] = []
        near_joins: dict[str, int] = {}
        for signals in items:
            if not signals:
                continue
            hits = {self.by_signal[s] for s in signals if s in self.by_signal}
            exact = {self._resolve(c) for c in hits}
            near: dict[str, int] = {}
            for kind, value in signals:
                if kind != "pdq":
                    continue
                for c, d in self.near.get(value, ()):
                    if c in self.clusters and d < near.get(c, 1 << 16):
                        near[c] = d
                for c, d in self.batch_pdq.near(value, self.max_pdq):
                    if d < near.get(c, 1 << 16):
                        near[c] = d
            hits |= set(near)
            for c, d in near.items():
                r = self._resolve(c)
                if r not in exact and d > 0 and d < near_joins.get(r, 1 << 16):
                    near_joins[r] = d
            found = sorted({self._resolve(c) for c in hits})
            if not found:
                cid = m.cluster_id_for(*signals[0], founded_at=self.now)
                self.clusters[cid] = _State(cid, self.now, 0, [], new=True)
            elif len(found) == 1:
                cid = found[0]
            else:
                cid = self._merge(found, merges)
            for sig in signals:
                if sig not in self.by_signal:
                    self.by_signal[sig] = cid
                    self.new_signals.append({"kind": sig[0], "value": sig[1], "cluster_id": cid})
                    if sig[0] == "pdq":
                        self.batch_pdq.add(sig[1], cid)
                        self.new_pdq.append((sig[1], cid))
            if cid not in final:
                final.append(cid)
        final = list(dict.fromkeys(self._resolve(c) for c in final))
        related: list[str] = []
        times = 1  # this report, even when it holds no media to cluster
        already = {self._resolve(c) for c in member_of}  # after this report's merges
        final += [c for c in sorted(already) if c not in final]
        for cid in final:
            st = self.clusters[cid]
            related += [c for c in st.recent_cases if c != case_id and c not in related]
            if cid in already:
                times = max(times, st.times_reported)
                continue
            st.times_reported += 1
            st.recent_cases = _recent(st.recent_cases + [case_id])
            st.dirty = True
            times = max(times, st.times_reported)
            self.links.append({"report_id": report_id, "cluster_id": cid})
            self.linked_now.setdefault(cid, set()).add(report_id)
        joined = [(self._resolve(c), d) for c, d in near_joins.items()]
        return Membership(
            final, times, related[-RECENT_CASES:], merges, [(c, d) for c, d in joined if c in final]
        )

    def take_writes(self) -> ClusterWrites:
        """The changes since the last call, as rows; the batch goes on from them."""
        w = ClusterWrites(signals=self.new_signals, links=self.links)
        for st in self.clusters.values():
            if not (st.new or st.dirty):
                continue
            row = {
                "cluster_id": st.cluster_id,
                "times_reported": st.times_reported,
                "recent_cases": st.recent_cases,
                "merged_into": st.merged_into,
            }
            if st.new:
                w.new.append({**row, "created_at": st.created_at})
            else:
                w.changed.append(row)
            w.states[st.cluster_id] = (
                st.created_at,
                st.times_reported,
                st.recent_cases,
                st.merged_into,
            )
            st.new = st.dirty = False
        self.new_signals, self.links = [], []
        return w

    def flush(self) -> None:
        write_clusters(self.s, self.take_writes())


class _BatchPDQ:
    """PDQ values placed in this batch, compared with each new one at once (numpy), so a
    batch of n reports costs n vector operations rather than n² Python comparisons."""

    def __init__(self) -> None:
        self.codes = np.zeros((64, 4), dtype=np.uint64)
        self.clusters: list[str] = []
        self._live = np.zeros(0, dtype=np.bool_)  # no row is removed (the scan's tombstones)

    def add(self, value: str, cluster_id: str) -> None:
        n = len(self.clusters)
        if n == len(self.codes):
            self.codes = np.concatenate([self.codes, np.zeros_like(self.codes)])
        self.codes[n] = np.frombuffer(bytes.fromhex(value), dtype=np.uint64)
        self.clusters.append(cluster_id)

    def near(self, value: str, max_distance: int) -> list[tuple[str, int]]:
        n = len(self.clusters)
        if not n:
            return []
        if _pdqscan is not None:  # one compiled pass (triage/_pdqscan.c)
            if len(self._live) < n:
                self._live = np.zeros(len(self.codes), dtype=np.bool_)
            _q, rows, dist = scan_hits(
                _pdqscan.brute(bytes.fromhex(value), self.codes, self._live, n, max_distance)
            )
            return [(self.clusters[i], d) for i, d in zip(rows.tolist(), dist.tolist())]
        q = np.frombuffer(bytes.fromhex(value), dtype=np.uint64)
        d = np.bitwise_count(self.codes[:n] ^ q).sum(axis=1)
        return [(self.clusters[i], int(d[i])) for i in np.flatnonzero(d <= max_distance)]


def _recent(case_ids: list[str]) -> list[str]:
    return list(dict.fromkeys(case_ids))[-RECENT_CASES:]


def _chunks(items: list[Any], n: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
