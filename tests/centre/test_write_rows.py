"""`write_rows` stores what SQLAlchemy would have stored (on SQLite it bypasses SQLAlchemy's
value processing): JSON, times with and without a zone, booleans, NULLs; inserts and
updates by key. On a real database (SQLite, and PostgreSQL when available)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, text

from centre.db import Provider, Report, make_engine, write_rows
from triage.tables import Cluster

AWARE = dt.datetime(2026, 11, 20, 9, 30, 5, 120000, tzinfo=dt.UTC)
ROUND = dt.datetime(2026, 11, 20, 9, 30, 5)  # no microseconds: still six digits of them


def _raw(conn, table: str, key: str, value: str) -> tuple:  # type: ignore[no-untyped-def]
    row = conn.execute(text(f'SELECT * FROM "{table}" WHERE "{key}" = :v'), {"v": value}).one()
    return tuple(row)[1:]  # without the key


def test_inserts_and_updates_store_what_sqlalchemy_stores(db_url: str) -> None:
    engine = make_engine(db_url)
    clusters = Cluster.__table__
    rows = [
        {
            "cluster_id": cid,
            "created_at": at,
            "times_reported": n,
            "recent_cases": cases,
            "merged_into": into,
        }
        for cid, at, n, cases, into in (
            ("a", AWARE, 1, ["c1", "c2"], None),
            ("b", ROUND, 3, [], "a"),
        )
    ]
    with engine.begin() as c:
        write_rows(c, clusters, rows)
        c.execute(clusters.insert(), [{**r, "cluster_id": r["cluster_id"] + "2"} for r in rows])
    with engine.connect() as c:
        for cid in ("a", "b"):
            assert _raw(c, "clusters", "cluster_id", cid) == _raw(
                c, "clusters", "cluster_id", cid + "2"
            )
        assert c.execute(
            select(clusters.c.recent_cases).where(clusters.c.cluster_id == "a")
        ).scalar() == ["c1", "c2"]

    reports = Report.__table__
    with engine.begin() as c:
        c.execute(
            Provider.__table__.insert(),
            [{"provider_id": "p", "first_seen_at": AWARE, "reports_received": 0}],
        )
        for rid in ("r1", "r2"):
            c.execute(
                reports.insert(),
                [
                    {
                        "report_id": rid,
                        "case_id": "case-" + rid,
                        "provider_id": "p",
                        "provider_report_id": rid,
                        "received_at": AWARE,
                        "submitted_at": "x",
                        "signature": "absent",
                        "status": "received",
                        "reasons": [],
                        "supplements": 0,
                    }
                ],
            )
    change = {
        "status": "triaged",
        "category": "new_material",
        "manifestly_unfounded": False,
        "triage": {"priority": "P2", "duplicates": {"times_reported": 1}, "none": None},
        "reasons": ["a", "ü"],
        "triaged_at": AWARE,
        "information_requested": None,
    }
    with engine.begin() as c:
        write_rows(c, reports, [{"report_id": "r1", **change}], key="report_id")
        c.execute(reports.update().where(reports.c.report_id == "r2").values(change))
    with engine.connect() as c:
        one, two = _raw(c, "reports", "report_id", "r1"), _raw(c, "reports", "report_id", "r2")
        assert one[3:] == two[3:]  # all but the case and the provider's ids
        back = c.execute(
            select(
                reports.c.triage, reports.c.manifestly_unfounded, reports.c.information_requested
            ).where(reports.c.report_id == "r1")
        ).one()
        assert back == (change["triage"], False, None)
    engine.dispose()


def test_nothing_to_write_is_no_statement(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as c:
        write_rows(c, Cluster.__table__, [])
        write_rows(c, Cluster.__table__, [], key="cluster_id")
        assert c.execute(select(Cluster.__table__.c.cluster_id)).all() == []
    engine.dispose()


def test_prepared_rows_are_converted_before_the_write_lock_is_taken(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`prepare_rows` converts every value at once and takes no lock; the statement, when
    run, takes the database's write-lock queue (`<db>.wlock`) until the commit. Values
    changed after preparing are not what is stored: the conversion happened before."""
    import fcntl
    import os

    from centre.db import prepare_rows, upgrade

    path = tmp_path / "c.db"
    upgrade(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}")
    probe = os.open(f"{path}.wlock", os.O_RDWR | os.O_CREAT, 0o600)

    def lock_is_free() -> bool:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(probe, fcntl.LOCK_UN)
        return True

    row = {
        "cluster_id": "a",
        "created_at": AWARE,
        "times_reported": 1,
        "recent_cases": ["c1"],
        "merged_into": None,
    }
    try:
        with engine.begin() as c:
            write = prepare_rows(c, Cluster.__table__, [row])
            row["recent_cases"].append("c2")  # after the conversion: not stored
            assert lock_is_free()
            write()
            assert not lock_is_free()
        assert lock_is_free()
        with engine.connect() as c:
            assert c.execute(select(Cluster.__table__.c.recent_cases)).scalar() == ["c1"]
    finally:
        os.close(probe)
        engine.dispose()
