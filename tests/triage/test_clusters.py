"""Clusters on a real database (SQLite, and PostgreSQL when available), schema from Alembic."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from centre import messages as m
from centre.db import Provider, Report, make_engine, make_sessionmaker
from triage.clusters import ClusterBatch
from triage.tables import Cluster

NOW = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)


def _reports(s, n: int) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    s.merge(Provider(provider_id="p", first_seen_at=NOW, reports_received=0))
    ids = []
    for i in range(n):
        rid = m.report_id_for("p", f"r{i}")
        s.add(
            Report(
                report_id=rid,
                case_id=m.case_id_for(rid),
                provider_id="p",
                provider_report_id=f"r{i}",
                received_at=NOW,
                submitted_at="x",
                signature="absent",
                status="received",
                reasons=[],
                supplements=0,
            )
        )
        ids.append((rid, m.case_id_for(rid)))
    s.flush()
    return ids


def test_equal_hashes_join_and_count(db_url: str) -> None:
    engine = make_engine(db_url)
    with make_sessionmaker(engine).begin() as s:
        r = _reports(s, 3)
        a, b = ("sha256", "a" * 64), ("md5", "b" * 32)
        batch = ClusterBatch(s, [a, b], NOW)
        m1 = batch.assign(*r[0], [[a]])
        m2 = batch.assign(*r[1], [[b, a]])  # md5 joins the cluster through the shared sha256
        batch.flush()
        batch2 = ClusterBatch(s, [b], NOW)  # a later batch finds it from the database
        m3 = batch2.assign(*r[2], [[b]])
        batch2.flush()
    assert m1.cluster_ids == m2.cluster_ids == m3.cluster_ids
    assert [m1.times_reported, m2.times_reported, m3.times_reported] == [1, 2, 3]
    assert m3.related_case_ids == [r[0][1], r[1][1]]
    engine.dispose()


def test_an_item_linking_two_clusters_merges_them_without_double_counting(db_url: str) -> None:
    engine = make_engine(db_url)
    with make_sessionmaker(engine).begin() as s:
        r = _reports(s, 4)
        x, y = ("sha256", "1" * 64), ("sha256", "2" * 64)
        bx, by = ("md5", "1" * 32), ("md5", "2" * 32)
        batch = ClusterBatch(s, [x, y, bx, by], NOW)
        c1 = batch.assign(*r[0], [[x]]).cluster_ids[0]
        # r1 holds both items, each in its own cluster: counted once in each.
        batch.assign(*r[1], [[x], [y]])
        batch.flush()
        batch = ClusterBatch(s, [x, y], NOW)
        merged = batch.assign(*r[2], [[x, y]])  # one item equal to both: merge
        batch.flush()
        assert len(merged.cluster_ids) == 1
        # x-cluster had r0, r1; y-cluster had r1; merged holds r0, r1, r2 = 3 distinct.
        assert merged.times_reported == 3
        assert merged.merges and merged.merges[0][1] == merged.cluster_ids[0]
        survivor = merged.cluster_ids[0]
        assert survivor == c1  # the older cluster survives
        gone = merged.merges[0][0]
        assert s.scalar(select(Cluster.merged_into).where(Cluster.cluster_id == gone)) == survivor
        later = ClusterBatch(s, [y], NOW).assign(*r[3], [[y]])
        assert later.cluster_ids == [survivor] and later.times_reported == 4
    engine.dispose()


def test_a_merge_counts_shared_reports_once_in_the_batch_and_stored(db_url: str) -> None:
    """Reports already in both clusters are counted once, whether their links were made in
    this batch (not yet written), stored by an earlier batch, or some of each."""
    engine = make_engine(db_url)
    with make_sessionmaker(engine).begin() as s:
        r = _reports(s, 7)
        x, y = ("sha256", "5" * 64), ("sha256", "6" * 64)
        batch = ClusterBatch(s, [x, y], NOW)  # all in one batch: new clusters
        batch.assign(*r[0], [[x]])
        batch.assign(*r[1], [[x], [y]])
        merged = batch.assign(*r[2], [[x, y]])
        batch.flush()
        assert len(merged.cluster_ids) == 1 and merged.times_reported == 3  # r0, r1, r2

        u, v = ("sha256", "7" * 64), ("sha256", "8" * 64)
        first = ClusterBatch(s, [u, v], NOW)
        first.assign(*r[3], [[u]])
        first.assign(*r[4], [[u], [v]])  # stored in both
        first.flush()
        batch = ClusterBatch(s, [u, v], NOW + dt.timedelta(hours=1))
        batch.assign(*r[5], [[u], [v]])  # linked to both in this batch
        merged = batch.assign(*r[6], [[u, v]])
        batch.flush()
        # u: r3, r4, r5; v: r4, r5; merged: r3, r4, r5 and r6.
        assert len(merged.cluster_ids) == 1 and merged.times_reported == 4
    engine.dispose()


def _flip(hex_value: str, bits: list[int]) -> str:
    v = int(hex_value, 16)
    for b in bits:
        v ^= 1 << b
    return f"{v:064x}"


def test_pdq_near_copies_join_within_a_batch_and_across_batches(db_url: str) -> None:
    from triage.near import ClusterPDQ

    base = "f0" * 32
    near31, far32 = _flip(base, list(range(31))), _flip(base, list(range(100, 132)))
    engine = make_engine(db_url)
    with make_sessionmaker(engine).begin() as s:
        r = _reports(s, 4)
        p0, p31, p32 = ("pdq", base), ("pdq", near31), ("pdq", far32)
        batch = ClusterBatch(s, [p0, p31], NOW)
        m0 = batch.assign(*r[0], [[p0]])
        m1 = batch.assign(*r[1], [[p31]])  # 31 bits away, same batch: joins
        batch.flush()
        assert m1.cluster_ids == m0.cluster_ids and m1.times_reported == 2
        assert m1.near == [(m0.cluster_ids[0], 31)]
        index = ClusterPDQ.load(s)  # what the worker rebuilds at start
        assert len(index.index) == 2
        near = index.near([far32, _flip(base, [7])])
        assert far32 not in near  # 32 bits from the base, 63 from near31
        batch = ClusterBatch(s, [p32, ("pdq", _flip(base, [7]))], NOW, near=near)
        m2 = batch.assign(*r[2], [[p32]])
        m3 = batch.assign(*r[3], [[("pdq", _flip(base, [7]))]])
        batch.flush()
    assert m2.cluster_ids != m0.cluster_ids and m2.times_reported == 1
    assert m3.cluster_ids == m0.cluster_ids and m3.times_reported == 3
    assert m3.near == [(m0.cluster_ids[0], 1)]
    engine.dispose()


def test_a_stored_cluster_merges_with_one_made_in_the_same_batch(db_url: str) -> None:
    engine = make_engine(db_url)
    with make_sessionmaker(engine).begin() as s:
        r = _reports(s, 3)
        x, y = ("sha256", "3" * 64), ("sha256", "4" * 64)
        first = ClusterBatch(s, [x], NOW)
        old = first.assign(*r[0], [[x]]).cluster_ids[0]
        first.flush()
        batch = ClusterBatch(
            s, [x, y], NOW + dt.timedelta(hours=1)
        )  # x's cluster comes from the DB
        batch.assign(*r[1], [[y]])  # a new cluster, made now
        merged = batch.assign(*r[2], [[x, y]])  # links the stored one and the new one
        batch.flush()
    assert merged.cluster_ids == [old] and merged.times_reported == 3
    engine.dispose()


def test_a_supplemented_report_stays_counted_once_and_joins_new_clusters(db_url: str) -> None:
    engine = make_engine(db_url)
    with make_sessionmaker(engine).begin() as s:
        r = _reports(s, 3)
        a, b = ("sha256", "c" * 64), ("sha256", "d" * 64)
        batch = ClusterBatch(s, [a, b], NOW)
        first = batch.assign(*r[0], [[a]])
        batch.assign(*r[1], [[b]])
        batch.flush()
        # r0's supplement adds an item equal to r1's: r0 now counts in b's cluster too, and
        # still once in its own.
        batch = ClusterBatch(s, [a, b], NOW)
        again = batch.assign(*r[0], [[a], [b]], member_of=set(first.cluster_ids))
        batch.flush()
        counts = {c.cluster_id: c.times_reported for c in s.scalars(select(Cluster))}
    assert set(again.cluster_ids) == set(counts) and len(counts) == 2
    assert counts[first.cluster_ids[0]] == 1
    assert sorted(counts.values()) == [1, 2]
    assert again.times_reported == 2 and again.related_case_ids == [r[1][1]]
    engine.dispose()
