"""The victims' tables: requests, their hashes (the private bank), its version, matches and
removal notices.

Mapped on the kernel's `centre.db.Base`, so that one Alembic history covers every table.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

log = logging.getLogger(__name__)
from centre.db import Base


class VictimRequest(Base):
    """A victim's request: open → withdrawn. `pin_hash` is scrypt (victims/pin.py)."""

    __tablename__ = "victim_requests"
    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # open | withdrawn
    pin_hash: Mapped[str] = mapped_column(String(200))
    items: Mapped[int] = mapped_column(Integer)  # lines of the victim's hash list
    requested_at: Mapped[str] = mapped_column(String(64))  # as the case handler's tool wrote it
    filed_at: Mapped[dt.datetime]  # when the victims worker filed it
    filed_by: Mapped[str] = mapped_column(String(100))  # the case handler's login
    source: Mapped[str] = mapped_column(String(300))  # topic/partition/offset
    past_matched_at: Mapped[dt.datetime | None]  # stored reports matched (filing, rescan)
    rescan_at: Mapped[dt.datetime | None] = mapped_column(index=True)  # one more pass due
    withdrawn_at: Mapped[dt.datetime | None]
    withdrawn_by: Mapped[str | None] = mapped_column(String(100))


class VictimHash(Base):
    """An entry of the private bank `victim:<request_id>`: matched like the indicator banks,
    never shown to providers or law enforcement. `item`: the line of the victim's list."""

    __tablename__ = "victim_hashes"
    __table_args__ = (UniqueConstraint("request_id", "kind", "value", name="uq_victim_hash"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("victim_requests.request_id"), index=True)
    item: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # sha256 | md5 | pdq
    value: Mapped[str] = mapped_column(String(128))
    media_type: Mapped[str | None] = mapped_column(String(16))
    pdq_quality: Mapped[int | None] = mapped_column(Integer)


class VictimBankState(Base):
    """One row whose `version` the victims flow raises whenever a victim bank is added or
    removed, so triage sees with one cheap read whether its in-memory copy is current."""

    __tablename__ = "victim_bank_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class VictimMatch(Base):
    """A content item of a stored report that matched a victim's hash (found when the request
    was filed, or by triage when the report arrived). What the notice needs is copied from
    the report here, so the notice never reads the report again."""

    __tablename__ = "victim_matches"
    __table_args__ = (
        UniqueConstraint("request_id", "report_id", "content_id", name="uq_victim_match"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("victim_requests.request_id"), index=True)
    item: Mapped[int] = mapped_column(Integer)  # the victim's list line that matched
    report_id: Mapped[str] = mapped_column(String(36), index=True)
    case_id: Mapped[str] = mapped_column(String(36))
    provider_id: Mapped[str] = mapped_column(String(100))
    provider_report_id: Mapped[str] = mapped_column(String(200))
    content_id: Mapped[str] = mapped_column(String(200))
    reported_at: Mapped[dt.datetime]  # when the centre received the report
    signal: Mapped[str] = mapped_column(String(16))  # sha256 | md5 | pdq
    distance: Mapped[int] = mapped_column(Integer)
    content: Mapped[dict[str, Any]] = mapped_column(JSON)  # media_type and hashes as reported
    url: Mapped[str | None] = mapped_column(Text)
    publicly_available: Mapped[bool | None] = mapped_column(Boolean)
    removed: Mapped[bool | None] = mapped_column(Boolean)
    found_by: Mapped[str] = mapped_column(String(8))  # past | live
    found_at: Mapped[dt.datetime]
    # new (no notice decided yet) | noticed | no_notice (removed and not public) | withdrawn
    state: Mapped[str] = mapped_column(String(16), index=True)


class VictimNotice(Base):
    """A notice/v1 to a provider about a victim's request: `removal` (repeated until
    answered) or `removal_cancelled` (once, after a withdrawal). The id is deterministic."""

    __tablename__ = "victim_notices"
    notice_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("victim_requests.request_id"), index=True)
    match_id: Mapped[int | None] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(24))  # removal | removal_cancelled
    provider_id: Mapped[str] = mapped_column(String(100), index=True)
    report_id: Mapped[str] = mapped_column(String(36))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # the notice, without attempt and at
    # pending (never sent) | sent (waiting for an answer) | answered | cancelled | done
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime]
    first_sent_at: Mapped[dt.datetime | None]
    last_sent_at: Mapped[dt.datetime | None]
    next_due_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    answer: Mapped[str | None] = mapped_column(String(16))  # removed | not_found | refused
    answer_reason: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[dt.datetime | None]
    removed_at: Mapped[dt.datetime | None]
    # Escalated to the coordinating authority's list: refused | unanswered
    escalation: Mapped[str | None] = mapped_column(String(16))
    escalated_at: Mapped[dt.datetime | None]
