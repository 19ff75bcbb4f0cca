"""The database: SQLAlchemy 2 models of the Art. 45 report record and the pipeline's state.

The schema is created only by Alembic (`migrations/`); `upgrade()` runs it. Models here are the
single source that `alembic check` compares the migrations against.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from centre.sqlite import (
    Checkpointer,
    WriterQueue,
    no_autocheckpoint,
    queue_for_writes,
    sqlite_pragmas,
)

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware timestamp on every backend: SQLite stores no zone and hands back
    naive datetimes, which are UTC here; this makes them aware, so code never compares
    naive with aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: dt.datetime | None, _dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        dt.datetime: UTCDateTime,
    }


class Provider(Base):
    """A company that reports; its feedback topic is created on first sight."""

    __tablename__ = "providers"
    provider_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    first_seen_at: Mapped[dt.datetime]
    reports_received: Mapped[int] = mapped_column(Integer, default=0)


class Report(Base):
    """The record of Art. 45: the report as received, every decision with reasons, and times."""

    __tablename__ = "reports"
    __table_args__ = (
        UniqueConstraint("provider_id", "provider_report_id", name="uq_reports_provider_ref"),
    )
    report_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), unique=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("providers.provider_id"))
    provider_report_id: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[dt.datetime]
    submitted_at: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(16))  # absent | valid | invalid | unchecked
    status: Mapped[str] = mapped_column(
        String(32), index=True
    )  # received | triaged | forwarded | manifestly_unfounded
    category: Mapped[str | None] = mapped_column(String(32))
    severity: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[str | None] = mapped_column(String(4))
    manifestly_unfounded: Mapped[bool | None] = mapped_column(Boolean)
    triage: Mapped[dict[str, Any] | None] = mapped_column(
        JSON
    )  # the triage result, re-sent on replay
    jurisdiction: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    triaged_at: Mapped[dt.datetime | None]
    forwarded_at: Mapped[dt.datetime | None]
    supplements: Mapped[int] = mapped_column(Integer, default=0)
    # Art. 48(5): the fields the provider was asked for (JSON paths), null when none were.
    information_requested: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    routed_supplements: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ReportContent(Base):
    """The report as received, written once. Apart from `reports` so that the decisions taken
    on a report later rewrite a small row, not the whole report with it."""

    __tablename__ = "report_contents"
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.report_id"), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)


class ReportSupplement(Base):
    """A supplement (`"supplement": true`) as received: the report record keeps every message,
    while `report_contents` holds the report completed by them."""

    __tablename__ = "report_supplements"
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.report_id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1, 2, … per report
    received_at: Mapped[dt.datetime]
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    added: Mapped[list[Any]] = mapped_column(JSON, default=list)  # JSON paths it filled in


class DeadLetter(Base):
    """A rejected message kept whole, with its reasons, so nothing a company sent is lost."""

    __tablename__ = "dead_letters"
    __table_args__ = (UniqueConstraint("topic", "partition", "offset", name="uq_dead_letter_pos"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes | None] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    provider_id: Mapped[str | None] = mapped_column(String(100))
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    received_at: Mapped[dt.datetime]


# ---- audit trail (centre/audit/; migration 0008) ---------------------------------------
# Append-only and hash-chained. No foreign keys on purpose: the chain must verify even when
# the key tables beside it were damaged or keys shredded.


# ---- end of audit trail -------------------------------------------------------------------


# ---- complaints (complaints/; migration 0009) ---------------------------------------------
# A complaint is about a report (its case). Each complaint/v1 received is a filing; a second
# filing about a report with an open complaint joins it. What an upheld complaint sends
# (retraction/v1 to each recipient, notices to providers) waits in complaint_messages until
# it is acknowledged by the broker, so a crash or a repeated decide never sends it twice.


# ---- end of complaints --------------------------------------------------------------------


# ---- victims' removal requests (victims/; migration 0010) ---------------------------------
# A victim, through a case handler, asks the centre to find and remove their pictures and
# videos (CSA Regulation proposal Art. 20, 21). Only hashes are kept, in a private bank of
# the request; nothing here holds the victim's identity (it is sealed in the audit trail
# under the victim's own key), and the PIN is kept only as a slow hash.


# ---- end of victims -----------------------------------------------------------------------


# JSON columns hold whole reports: orjson writes and reads them several times faster.
_JSON: dict[str, Any] = {
    "json_serializer": lambda obj: orjson.dumps(obj).decode(),
    "json_deserializer": orjson.loads,
}


def quarantine_report(
    s: Session, report_id: str, reason: dict[str, Any], at: dt.datetime
) -> tuple[str, str] | None:
    """Mark a report that a stage set aside (centre/poison.py) as `quarantined`, with the
    reason; returns its (provider_id, provider_report_id) when its company has yet to hear a
    final status, else None (unknown, or already told)."""
    rep = s.get(Report, report_id)
    if rep is None:
        return None
    # A report already told its final status keeps it (a supplement may be what failed).
    # Quarantined before (and perhaps not told, if that try stopped short): told again, with
    # the same feedback_id.
    if rep.status in ("forwarded", "manifestly_unfounded"):
        return None
    if rep.status != "quarantined":
        rep.status = "quarantined"
        rep.reasons = [*(rep.reasons or []), reason["code"]]
    return rep.provider_id, rep.provider_report_id


def insert_ignoring_conflicts(
    s: Any, table: Any, rows: list[dict[str, Any]], unique: list[str]
) -> None:
    """INSERT the rows, leaving alone those whose `unique` columns are already stored (SQLite
    and PostgreSQL both say it as ON CONFLICT DO NOTHING)."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    if not rows:
        return
    dialect = s.bind.dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite_dialect.insert)(table)
    s.execute(ins.on_conflict_do_nothing(index_elements=unique), rows)


def _sqlite_time(v: dt.datetime | None) -> str | None:
    """SQLAlchemy's SQLite text for a time (its zone dropped, as SQLAlchemy drops it)."""
    if v is None:
        return None
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


def _sqlite_value(column: Any) -> Any:
    """How one column's Python values go to SQLite, as SQLAlchemy would write them; None
    when the driver takes them as they are."""
    kind = column.type
    if isinstance(kind, TypeDecorator):  # UTCDateTime: its impl's processing, unchanged
        kind = kind.impl
    if isinstance(kind, JSON):
        null = None if kind.none_as_null else "null"
        return lambda v: null if v is None else orjson.dumps(v).decode()
    if isinstance(kind, DateTime):
        return _sqlite_time
    return None


def write_rows(s: Any, table: Any, rows: list[dict[str, Any]], *, key: str | None = None) -> None:
    """INSERT `rows` into `table` or, with `key`, UPDATE each row found by that column, in
    the caller's transaction (a Session or a Connection). Every row has the same keys."""
    prepare_rows(s, table, rows, key=key)()


def prepare_rows(
    s: Any, table: Any, rows: list[dict[str, Any]], *, key: str | None = None
) -> Callable[[], None]:
    """`write_rows`, in two steps: every value is converted now, and the statement runs
    when the returned callable is called. A transaction that prepares all its statements
    before it runs the first holds SQLite's one write lock (taken at its first write,
    queued for by every stage) for the database's work only.

    On SQLite they go straight to the driver, each column's values converted once here
    (JSON as orjson text, times as SQLAlchemy's text form): SQLAlchemy's processing of every
    value costs a hot path (triage's writes) more than SQLite's own work. Elsewhere they
    take SQLAlchemy's path. Python-side column defaults are not applied: give every value
    (server defaults apply)."""
    if not rows:
        return lambda: None
    columns = list(rows[0])
    conn = s.connection() if isinstance(s, Session) else s
    if conn.dialect.name != "sqlite":
        if key is None:
            stmt, params = table.insert(), rows
        else:
            stmt = (
                table.update()
                .where(table.c[key] == bindparam(f"b_{key}"))
                .values({c: bindparam(f"b_{c}") for c in columns if c != key})
            )
            params = [{f"b_{c}": r[c] for c in columns} for r in rows]

        def run_core() -> None:
            conn.execute(stmt, params)

        return run_core
    if key is None:
        order = columns
        sql = 'INSERT INTO "%s" (%s) VALUES (%s)' % (
            table.name,
            ", ".join(f'"{c}"' for c in order),
            ", ".join("?" * len(order)),
        )
    else:
        order = [c for c in columns if c != key] + [key]
        sql = 'UPDATE "%s" SET %s WHERE "%s" = ?' % (
            table.name,
            ", ".join(f'"{c}" = ?' for c in order[:-1]),
            key,
        )
    convert = [_sqlite_value(table.c[c]) for c in order]
    if not any(convert):
        values = [tuple(r[c] for c in order) for r in rows]
    else:
        pairs = list(zip(order, convert))
        values = [tuple(r[c] if f is None else f(r[c]) for c, f in pairs) for r in rows]

    def run() -> None:
        conn.exec_driver_sql(sql, values)

    return run


def make_engine(url: str, *, background_checkpoint: bool = False) -> Engine:
    """An engine for the centre's database. Its errors never quote a statement's values
    (`hide_parameters`): they would put report content or a victim's data into a log.

    `background_checkpoint` (long-running writers: the stages' workers): on an SQLite file,
    the write-ahead log is copied back by a thread of this process (`Checkpointer`), never
    by a commit; `engine.dispose()` stops it."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        connect_args: dict[str, Any] = {"timeout": 30}
        on_file = bool(path) and path != ":memory:"
        if on_file:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            queue = type("WriterQueue", (WriterQueue,), {"_lock_path": f"{path}.wlock"})
            connect_args["factory"] = queue
        engine = create_engine(url, connect_args=connect_args, hide_parameters=True, **_JSON)
        event.listen(engine, "connect", sqlite_pragmas)
        event.listen(engine, "before_cursor_execute", queue_for_writes)
        if on_file and background_checkpoint:
            checkpointer = Checkpointer(path)
            event.listen(engine, "connect", no_autocheckpoint)
            event.listen(engine, "engine_disposed", lambda _e: checkpointer.stop())
        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=5, hide_parameters=True, **_JSON
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
