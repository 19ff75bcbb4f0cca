"""The audit trail's database side (over 500 lines: the statements and the appender share
one transaction's driver-level state, split apart they would pass it around): the audit tables and the statements and driver-level
access used on them (inserting entries, finding known event ids, reading rows back), and
`AuditStore`, the base of `AuditLog` that appends batches in the caller's transaction
(details sealed under a new data key, personal data under the person's own key, each entry
chained to the one before, under the lock on the head row), writes the signed checkpoints
and head, keeps the per-person keys, and reads entries and checkpoints back in order; also
the append metrics.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from prometheus_client import Counter
from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from centre.audit.format import (
    _NONCE,
    ZERO_HASH,
    AuditError,
    AuditEvent,
    _now,
    _sign_head,
    _text,
    _utc,
    at_text,
    entry_hash,
    kind_of,
)
from centre.audit.keys import AuditKeyring, _data_key_aad, _subject_key_aad
from centre.audit.tables import (
    AuditCheckpoint,
    AuditDataKey,
    AuditEntry,
    AuditHead,
    AuditSubjectKey,
)
from centre.db import make_engine, make_sessionmaker
from centre.keys import KeySet
from centre.settings import Settings

ENTRIES = Counter("centre_audit_entries_total", "Entries appended to the audit trail")
CHECKPOINTS = Counter("centre_audit_checkpoints_total", "Signed audit checkpoints written")
SHREDDED = Counter(
    "centre_audit_subjects_shredded_total",
    "Person keys destroyed by the audit purge (crypto-shredding)",
)


# -- the database ----------------------------------------------------------------------------------

_E = cast(Table, AuditEntry.__table__)
_CP = cast(Table, AuditCheckpoint.__table__)
_HEAD = cast(Table, AuditHead.__table__)
_DK = cast(Table, AuditDataKey.__table__)
# The statements an append runs while it holds the head (on SQLite, the database's one write
# lock), built once: building them cost more than running them.
_TAKE_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq)
_READ_HEAD = select(_HEAD.c.seq, _HEAD.c.hash, _HEAD.c.checkpoint_seq, _HEAD.c.checkpoint_at).where(
    _HEAD.c.id == 1
)
_NEWEST = select(func.max(_E.c.seq))
_SET_HEAD = update(_HEAD).where(_HEAD.c.id == 1)
_SK = cast(Table, AuditSubjectKey.__table__)
_CHUNK = 5000


@dataclass
class AppendResult:
    appended: int
    duplicates: int
    head_seq: int
    checkpoints: int


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: bytes
    checkpoint_seq: int
    checkpoint_at: dt.datetime | None


_ENTRY_COLUMNS: Final = (
    "seq",
    "event_id",
    "at",
    "actor",
    "action",
    "subject",
    "person",
    "data_key_id",
    "ciphertext",
    "personal",
    "prev_hash",
    "hash",
)


_COLUMN_LIST: Final = ", ".join(f'"{n}"' for n in _ENTRY_COLUMNS)


@dataclass(slots=True)
class _Chain:
    """Entry rows chained after a head: the rows to insert, (seq, hash) of each, the last."""

    rows: list[tuple[Any, ...]]
    hashes: list[tuple[int, bytes]]
    seq: int
    prev: bytes


def _chain(
    todo: Sequence[AuditEvent],
    seq: int,
    prev: bytes,
    sealed: dict[str, bytes],
    data_key_id: str,
    persons: dict[str, tuple[str, AESGCM]],
) -> _Chain:
    """The entries of `todo` following the head (`seq`, `prev`): sealed details, personal
    data under its person's key, each entry's hash over the one before."""
    rows: list[tuple[Any, ...]] = []
    hashes: list[tuple[int, bytes]] = []
    dkid = data_key_id.encode()
    for ev in todo:
        seq += 1
        eid, at = ev.event_id.encode(), at_text(ev.at)
        ct = sealed[ev.event_id]
        personal = b""
        if ev.personal is not None:
            assert ev.person is not None
            skid, skey = persons[ev.person]
            pn = os.urandom(12)
            personal = skid.encode() + pn + skey.encrypt(pn, orjson.dumps(ev.personal), eid)
        actor, action, subject = ev.actor.encode(), ev.action.encode(), ev.subject.encode()
        h = entry_hash(
            prev,
            seq,
            eid,
            at.encode(),
            actor,
            action,
            subject,
            _text(ev.person),
            dkid,
            ct,
            personal,
        )
        rows.append(
            (
                seq,
                ev.event_id,
                at,
                ev.actor,
                ev.action,
                ev.subject,
                ev.person,
                data_key_id,
                ct,
                personal or None,
                prev,
                h,
            )
        )
        hashes.append((seq, h))
        prev = h
    return _Chain(rows, hashes, seq, prev)


def _insert_entries(c: Any, rows: list[tuple[Any, ...]]) -> None:
    """INSERT the entries straight through the driver, in the caller's transaction:
    SQLAlchemy's per-value processing costs more than everything else an append does, and
    on PostgreSQL an executemany costs a round trip per row where COPY streams them. Times
    are the canonical text: SQLite keeps SQLAlchemy's text form, PostgreSQL parses ISO 8601."""
    conn: Connection = c.connection() if isinstance(c, Session) else c
    dialect = conn.dialect
    if dialect.name == "postgresql":
        with (
            _driver(conn).cursor() as cur,
            cur.copy(f'COPY "audit" ({_COLUMN_LIST}) FROM STDIN') as copy,
        ):
            for r in rows:
                copy.write_row(r)
        return
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = 'INSERT INTO "audit" (%s) VALUES (%s)' % (
        _COLUMN_LIST,
        ", ".join([mark] * len(_ENTRY_COLUMNS)),
    )
    if dialect.name == "sqlite":  # "YYYY-MM-DD HH:MM:SS.ffffff", from the canonical text
        rows = [(r[0], r[1], f"{r[2][:10]} {r[2][11:26]}", *r[3:]) for r in rows]
    else:
        rows = [(r[0], r[1], dt.datetime.fromisoformat(r[2]), *r[3:]) for r in rows]
    conn.exec_driver_sql(sql, rows)


def _driver(conn: Connection) -> Any:
    """The driver's own connection (psycopg), in the same transaction as `conn`."""
    raw = conn.connection.driver_connection
    assert raw is not None
    return raw


def _existing_ids(c: Any, ids: list[str]) -> set[str]:
    """Which of `ids` are in the log already (PostgreSQL: one array parameter, not one
    parameter per id)."""
    conn: Connection = c.connection() if isinstance(c, Session) else c
    if not ids:
        return set()
    if conn.dialect.name == "postgresql":
        with _driver(conn).cursor() as cur:
            return {
                r[0]
                for r in cur.execute(
                    'SELECT "event_id" FROM "audit" WHERE "event_id" = ANY(%s)', (ids,)
                )
            }
    return {
        eid
        for chunk in _chunks(ids)
        for (eid,) in conn.execute(select(_E.c.event_id).where(_E.c.event_id.in_(chunk)))
    }


def _at_from_db(value: Any) -> str:
    """The canonical text of a stored time: SQLite hands back SQLAlchemy's text (reshaped by
    slicing, the fast path), PostgreSQL a datetime."""
    if isinstance(value, str):
        if len(value) == 26 and value[10] == " ":
            return f"{value[:10]}T{value[11:]}Z"
        return at_text(dt.datetime.fromisoformat(value))
    return at_text(value)


def _chunks(items: Sequence[Any], n: int = 900) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class AuditStore:
    """The rows of the audit trail: appending, checkpoints, the signed head, and reading
    entries and checkpoints back in order. `AuditLog` (in `centre.audit.log`) is this with
    verification, export, decrypted reading, the purge and KEK rotation; its docstring says
    how appends are serialised.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        keys: KeySet | None = None,
        keyring: AuditKeyring | None = None,
    ) -> None:
        self.settings = settings
        self._own_engine = engine is None
        self.engine = engine if engine is not None else make_engine(settings.database_url)
        self.sessions = make_sessionmaker(self.engine)
        self.keys = keys or KeySet(settings.keys_dir)
        self.keyring = keyring or AuditKeyring(settings.keys_dir)
        self._subject_keys: dict[tuple[str, str], AESGCM] = {}

    def close(self) -> None:
        if self._own_engine:
            self.engine.dispose()

    # -- appending -------------------------------------------------------------------------

    def _lock_head(self, c: Any) -> _Head:
        c = c.connection() if isinstance(c, Session) else c  # Core: no ORM work here
        r = c.execute(_TAKE_HEAD)
        if r.rowcount == 0:
            if c.execute(select(_E.c.seq).limit(1)).first() is not None:
                raise AuditError(
                    "the audit head row is missing while entries exist: the log "
                    "was tampered with (run `centre audit verify`)"
                )
            c.execute(insert(_HEAD).values(id=1, seq=0, hash=ZERO_HASH, checkpoint_seq=0))
        row = c.execute(_READ_HEAD).one()
        # Appends commit entries and head together, so nothing may lie beyond the head. (max:
        # always an index probe; `seq > head LIMIT 1` can be planned as a full scan.)
        newest = c.execute(_NEWEST).scalar()
        if newest is not None and newest > row.seq:
            raise AuditError(
                f"entries exist beyond the signed head {row.seq}: the log was "
                "tampered with (run `centre audit verify`); not appending"
            )
        return _Head(row.seq, bytes(row.hash), row.checkpoint_seq, row.checkpoint_at)

    def append(
        self, c: Any, events: Sequence[AuditEvent], *, now: dt.datetime | None = None
    ) -> AppendResult:
        """Append `events` in the caller's transaction `c` (a Session or Connection), which
        must commit for them to count. Events already in the log (same id) are skipped.

        What does not depend on the head being locked is done before it is: which events
        are new, their details encrypted under a new data key, and the hash chain as it would
        follow the head as read then. On SQLite that lock is the database's only write lock,
        which every stage waits for. If the head moved in the meantime, which events are new
        is asked again under the lock and the chain is computed again from the locked head.
        Events with personal data are chained under the lock (their person keys are read and
        made there)."""
        now = _utc(now or _now())
        fresh: dict[str, AuditEvent] = {}
        for ev in events:
            fresh.setdefault(ev.event_id, ev)
        seen = self._head_peek(c)
        for known in _existing_ids(c, list(fresh)):
            del fresh[known]
        data_key, data_key_id = AESGCM.generate_key(256), secrets.token_hex(16)
        aead = AESGCM(data_key)
        sealed: dict[str, bytes] = {}
        for i, ev in enumerate(fresh.values()):
            nonce = _NONCE.pack(i)  # a counter: the data key serves this batch only
            sealed[ev.event_id] = nonce + aead.encrypt(
                nonce, orjson.dumps(ev.details), ev.event_id.encode()
            )

        kek_id, wrapped = self.keyring.wrap(data_key, _data_key_aad(data_key_id))
        ready: _Chain | None = None
        if seen is not None and fresh and all(e.personal is None for e in fresh.values()):
            ready = _chain(list(fresh.values()), seen[0], seen[1], sealed, data_key_id, {})

        head = self._lock_head(c)
        if seen is None or (head.seq, head.hash) != seen:
            ready = None
            if fresh:
                for known in _existing_ids(c, list(fresh)):
                    del fresh[known]
        todo = list(fresh.values())
        if not todo:
            cps = self._checkpoints_due(head, [], now)
            self._finish(c, head, head.seq, head.hash, cps, now)
            return AppendResult(0, len(events), head.seq, len(cps))

        c.execute(
            insert(_DK).values(key_id=data_key_id, kek_id=kek_id, wrapped=wrapped, created_at=now)
        )
        if ready is None:
            persons = self._person_keys(c, {e.person for e in todo if e.personal is not None}, now)
            ready = _chain(todo, head.seq, head.hash, sealed, data_key_id, persons)
        _insert_entries(c, ready.rows)
        cps = self._checkpoints_due(head, ready.hashes, now)
        self._finish(c, head, ready.seq, ready.prev, cps, now)
        return AppendResult(len(ready.rows), len(events) - len(ready.rows), ready.seq, len(cps))

    @staticmethod
    def _head_peek(c: Any) -> tuple[int, bytes] | None:
        """The head's sequence number and hash, read without locking it."""
        row = c.execute(select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)).first()
        return None if row is None else (row.seq, bytes(row.hash))

    def _checkpoints_due(
        self, head: _Head, hashes: list[tuple[int, bytes]], now: dt.datetime
    ) -> list[tuple[int, bytes]]:
        """Every N entries, and at the head when T seconds passed since the last one."""
        every, out = self.settings.audit_checkpoint_every, []
        nxt = head.checkpoint_seq + every
        for seq, h in hashes:
            if seq >= nxt:
                out.append((seq, h))
                nxt = seq + every
        last_seq = hashes[-1][0] if hashes else head.seq
        last_hash = hashes[-1][1] if hashes else head.hash
        last_cp_seq = out[-1][0] if out else head.checkpoint_seq
        overdue = (
            head.checkpoint_at is None
            or (now - _utc(head.checkpoint_at)).total_seconds()
            >= self.settings.audit_checkpoint_seconds
        )
        if last_seq > last_cp_seq and overdue:
            out.append((last_seq, last_hash))
        return out

    def _finish(
        self,
        c: Any,
        head: _Head,
        seq: int,
        head_hash: bytes,
        cps: list[tuple[int, bytes]],
        now: dt.datetime,
    ) -> None:
        if not cps and seq == head.seq:
            return  # nothing changed: the signed head stands
        signer, at = self.keys.centre_signer(), at_text(now)
        if cps:
            rows = []
            for cp_seq, cp_hash in cps:
                kid, sig = _sign_head(signer, cp_seq, cp_hash, at)
                rows.append(
                    {"seq": cp_seq, "hash": cp_hash, "at": now, "key_id": kid, "signature": sig}
                )
            c.execute(insert(_CP), rows)
        kid, sig = _sign_head(signer, seq, head_hash, at)
        values: dict[str, Any] = {
            "seq": seq,
            "hash": head_hash,
            "at": now,
            "key_id": kid,
            "signature": sig,
        }
        if cps:
            values.update(checkpoint_seq=cps[-1][0], checkpoint_at=now)
        c.execute(_SET_HEAD.values(**values))

    def checkpoint_if_due(self, now: dt.datetime | None = None) -> bool:
        """A time-based checkpoint when entries wait longer than T seconds for one (the
        writer calls this when idle). Reads before locking, so an idle call costs one read."""
        now = _utc(now or _now())
        with self.engine.connect() as conn:
            row = conn.execute(
                select(_HEAD.c.seq, _HEAD.c.checkpoint_seq, _HEAD.c.checkpoint_at).where(
                    _HEAD.c.id == 1
                )
            ).first()
        if row is None or row.seq <= row.checkpoint_seq:
            return False
        if (
            row.checkpoint_at is not None
            and (now - _utc(row.checkpoint_at)).total_seconds()
            < self.settings.audit_checkpoint_seconds
        ):
            return False
        with self.sessions.begin() as s:
            head = self._lock_head(s)
            cps = self._checkpoints_due(head, [], now)
            self._finish(s, head, head.seq, head.hash, cps, now)
        CHECKPOINTS.inc(len(cps))
        return bool(cps)

    def _person_keys(
        self, c: Any, persons: set[str | None], now: dt.datetime
    ) -> dict[str, tuple[str, AESGCM]]:
        """The key of each person, made when the person has none (or theirs was shredded);
        `last_used_at` moves to now, which restarts their retention."""
        wanted = sorted(p for p in persons if p)
        out: dict[str, tuple[str, AESGCM]] = {}
        if not wanted:
            return out
        found = {
            r.person: r
            for chunk in _chunks(wanted)
            for r in c.execute(
                select(_SK.c.person, _SK.c.key_id, _SK.c.kek_id, _SK.c.wrapped).where(
                    _SK.c.person.in_(chunk)
                )
            )
        }
        new = []
        for p in wanted:
            r = found.get(p)
            if r is None:
                key, skid = AESGCM.generate_key(256), secrets.token_hex(8)
                kek_id, wrapped = self.keyring.wrap(key, _subject_key_aad(p, skid))
                new.append(
                    {
                        "person": p,
                        "kind": kind_of(p)[:32],
                        "key_id": skid,
                        "kek_id": kek_id,
                        "wrapped": wrapped,
                        "created_at": now,
                        "last_used_at": now,
                    }
                )
                aead = AESGCM(key)
            else:
                skid = r.key_id
                aead = self._subject_keys.get((p, skid)) or AESGCM(
                    self.keyring.unwrap(r.kek_id, bytes(r.wrapped), _subject_key_aad(p, skid))
                )
            if len(self._subject_keys) > 10_000:
                self._subject_keys.clear()
            self._subject_keys[(p, skid)] = aead
            out[p] = (skid, aead)
        if new:
            c.execute(insert(_SK), new)
        for chunk in _chunks([p for p in wanted if p in found]):
            c.execute(update(_SK).where(_SK.c.person.in_(chunk)).values(last_used_at=now))
        return out

    def record(self, events: Sequence[AuditEvent], now: dt.datetime | None = None) -> AppendResult:
        """Append in a transaction of its own (the CLI's entries)."""
        with self.sessions.begin() as s:
            result = self.append(s, events, now=now)
        count_committed(result)
        return result

    # -- reading the chain -------------------------------------------------------------------

    @staticmethod
    def _head_row(conn: Connection) -> Any:
        return conn.execute(select(_HEAD).where(_HEAD.c.id == 1)).first()

    @staticmethod
    def _entries(conn: Connection, upto: int) -> Iterator[Any]:
        """Entries 1…upto in seq order, in chunks (keyset pagination): memory stays flat.
        Read through the driver (verification's hot loop); PostgreSQL sends binary rows (no
        hex-encoded bytea) and the time is formatted here (to_char on the server cost more)."""
        pg = conn.dialect.name == "postgresql"
        cols = _COLUMN_LIST
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        sql = 'SELECT %s FROM "audit" WHERE "seq" > %s AND "seq" <= %s ORDER BY "seq" LIMIT %d' % (
            cols,
            mark,
            mark,
            _CHUNK,
        )
        last = 0
        while True:
            if pg:
                with _driver(conn).cursor(binary=True) as cur:
                    rows = cur.execute(sql, (last, upto)).fetchall()
            else:
                rows = conn.exec_driver_sql(sql, (last, upto)).fetchall()
            if not rows:
                return
            for r in rows:
                yield (r[0], r[1], _at_from_db(r[2]), *r[3:])
            last = rows[-1][0]

    @staticmethod
    def _checkpoint_rows(conn: Connection, upto: int) -> Iterator[Any]:
        last = -1
        while True:
            rows = conn.execute(
                select(_CP.c.seq, _CP.c.hash, _CP.c.at, _CP.c.key_id, _CP.c.signature)
                .where(_CP.c.seq > last, _CP.c.seq <= upto)
                .order_by(_CP.c.seq)
                .limit(_CHUNK)
            ).all()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]


def count_committed(result: AppendResult) -> None:
    """Metrics for an append whose transaction committed."""
    ENTRIES.inc(result.appended)
    CHECKPOINTS.inc(result.checkpoints)
