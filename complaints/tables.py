"""The complaints' tables: complaints, their filings, events, messages and related cases.

Mapped on the kernel's `centre.db.Base`, so that one Alembic history covers every table.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

log = logging.getLogger(__name__)
from centre.db import Base


class Complaint(Base):
    """A complaint under handling: received → under_review → upheld | rejected."""

    __tablename__ = "complaints"
    complaint_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    # How the report was found: report_id | case_id | provider_report_id | sha256 | md5 | pdq;
    # None: unmatched (names nothing the centre knows), kept and shown, never dropped.
    matched_by: Mapped[str | None] = mapped_column(String(24))
    report_id: Mapped[str | None] = mapped_column(String(36), index=True)
    case_id: Mapped[str | None] = mapped_column(String(36), index=True)
    provider_id: Mapped[str | None] = mapped_column(String(100))  # the report's provider
    opened_at: Mapped[dt.datetime]
    due_at: Mapped[dt.datetime] = mapped_column(index=True)
    assignee: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[dt.datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    related_cases: Mapped[int] = mapped_column(Integer, default=0)
    # Effects of the decision: none | pending | held (an Art. 48(6) hold) | done
    effects: Mapped[str] = mapped_column(String(16), default="none")
    effects_held_until: Mapped[dt.datetime | None]


class ComplaintFiling(Base):
    """One complaint/v1 as received (from complaints.intake or `centre complaints file`)."""

    __tablename__ = "complaint_filings"
    filing_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    complaint_id: Mapped[str] = mapped_column(ForeignKey("complaints.complaint_id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))  # provider | coordinating_authority | centre
    filer: Mapped[str] = mapped_column(String(100))  # provider id, member state, or centre
    complaint_ref: Mapped[str] = mapped_column(String(200))
    grounds: Mapped[str] = mapped_column(String(32), index=True)
    contact_ref: Mapped[str] = mapped_column(String(200))  # personal: never logged or counted
    statement: Mapped[str | None] = mapped_column(Text)
    concerns: Mapped[dict[str, Any]] = mapped_column(JSON)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # the complaint/v1 as received
    filed_at: Mapped[str] = mapped_column(String(64))  # as the filer wrote it
    received_at: Mapped[dt.datetime]
    source: Mapped[str] = mapped_column(String(300))  # topic/partition/offset, or cli:<handler>
    joined: Mapped[bool] = mapped_column(Boolean, default=False)


class ComplaintEvent(Base):
    """The complaint's history for the case handler: filed, joined, assigned, noted, decided,
    effects sent or held. Each is an audit entry as well."""

    __tablename__ = "complaint_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    complaint_id: Mapped[str] = mapped_column(ForeignKey("complaints.complaint_id"), index=True)
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ComplaintMessage(Base):
    """An effect to send: a retraction/v1 (sealed at sending) or a notice/v1. The id is
    deterministic (a retraction's from its case and recipient: one per pair, ever)."""

    __tablename__ = "complaint_messages"
    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    complaint_id: Mapped[str] = mapped_column(ForeignKey("complaints.complaint_id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # retraction | notice
    recipient: Mapped[str] = mapped_column(String(100))  # member state / europol / provider id
    case_id: Mapped[str | None] = mapped_column(String(36))
    topic: Mapped[str] = mapped_column(String(255))  # without CENTRE_TOPIC_PREFIX
    key: Mapped[str] = mapped_column(String(255))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(8), index=True)  # pending | held | sent
    not_before: Mapped[dt.datetime | None]  # held: the end of the hold
    created_at: Mapped[dt.datetime]
    sent_at: Mapped[dt.datetime | None]


class ComplaintRelatedCase(Base):
    """A case in the same cluster as an upheld complaint's report, listed for review."""

    __tablename__ = "complaint_related_cases"
    complaint_id: Mapped[str] = mapped_column(
        ForeignKey("complaints.complaint_id"), primary_key=True
    )
    case_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    report_id: Mapped[str] = mapped_column(String(36))
