"""Routing's tables: the deliveries of each case to each recipient, and holds on a report.

Mapped on the kernel's `centre.db.Base`, so that one Alembic history covers every table.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import (
    Boolean,
    ForeignKey,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

log = logging.getLogger(__name__)
from centre.db import Base


class Hold(Base):
    """A law-enforcement request under Art. 48(6): the provider must not inform the user
    and/or not remove the content until `until` (at most 18 months)."""

    __tablename__ = "holds"
    hold_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), index=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.report_id"))
    provider_id: Mapped[str] = mapped_column(String(100))
    no_inform: Mapped[bool] = mapped_column(Boolean)
    no_removal: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime]
    until: Mapped[dt.datetime]


class Delivery(Base):
    """Where a case went: one row per recipient, with when it was forwarded (and later pulled)."""

    __tablename__ = "deliveries"
    case_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(16), primary_key=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.report_id"), index=True)
    priority: Mapped[str] = mapped_column(String(4))
    key_id: Mapped[str] = mapped_column(String(32))
    topic: Mapped[str] = mapped_column(String(255))
    # forwarded | awaiting_key (no key registered for the recipient: sent once one is)
    state: Mapped[str] = mapped_column(String(16), default="forwarded", index=True)
    forwarded_at: Mapped[dt.datetime | None]
    delivered_at: Mapped[dt.datetime | None]
