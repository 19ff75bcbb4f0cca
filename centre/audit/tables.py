"""The audit trail's tables: entries, signed checkpoints, the head, data keys and subject keys.

Mapped on the kernel's `centre.db.Base`, so that one Alembic history covers every table.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import (
    BigInteger,
    Index,
    Integer,
    LargeBinary,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

log = logging.getLogger(__name__)
from centre.db import Base


class AuditEntry(Base):
    """One entry of the audit trail. `hash` = SHA-256(prev_hash ‖ canonical entry bytes);
    `ciphertext` is sealed under the batch's data key, `personal` under the person's key."""

    __tablename__ = "audit"
    # Only entries about a person are indexed by person (most have none).
    __table_args__ = (
        Index(
            "ix_audit_person",
            "person",
            sqlite_where=text("person IS NOT NULL"),
            postgresql_where=text("person IS NOT NULL"),
        ),
    )
    # INTEGER on SQLite makes seq the rowid itself, not a second index beside it.
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255), index=True)
    person: Mapped[str | None] = mapped_column(String(255))
    data_key_id: Mapped[str] = mapped_column(String(32))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    personal: Mapped[bytes | None] = mapped_column(LargeBinary)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class AuditCheckpoint(Base):
    """A signed tree head: the centre's Ed25519 signature over (seq, hash of entry seq, at)."""

    __tablename__ = "audit_checkpoints"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[dt.datetime]
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[bytes] = mapped_column(LargeBinary)


class AuditHead(Base):
    """One row (id 1): the newest entry, signed, updated in the same transaction as the
    entries. Appenders lock it first, so appends are serialised and never fork the chain."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[dt.datetime | None]
    key_id: Mapped[str | None] = mapped_column(String(16))
    signature: Mapped[bytes | None] = mapped_column(LargeBinary)
    checkpoint_seq: Mapped[int] = mapped_column(BigInteger)
    checkpoint_at: Mapped[dt.datetime | None]


class AuditDataKey(Base):
    """A data key (one per appended batch), wrapped by the audit key-encryption key `kek_id`."""

    __tablename__ = "audit_data_keys"
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kek_id: Mapped[str] = mapped_column(String(16), index=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime]


class AuditSubjectKey(Base):
    """The key that seals the data about one person in the audit trail, wrapped by a KEK.
    Deleting the row erases that data (crypto-shredding); every hash still verifies."""

    __tablename__ = "audit_subject_keys"
    person: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    key_id: Mapped[str] = mapped_column(String(16))
    kek_id: Mapped[str] = mapped_column(String(16))
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime]
