"""Intake's table: what it decided for each message read from reports.intake, by position.

Mapped on the kernel's `centre.db.Base`, so that one Alembic history covers every table.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

log = logging.getLogger(__name__)
from centre.db import Base


class IntakeDecision(Base):
    """One row per message read from reports.intake: what intake decided for it.

    Keyed by the message's position, so a message read again after a crash is recognised as
    the same message (its recorded outputs are sent again) rather than as a resubmission.
    """

    __tablename__ = "intake_decisions"
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider_id: Mapped[str | None] = mapped_column(String(100))
    provider_report_id: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(
        String(32)
    )  # received | rejected | duplicate_submission | supplement
    report_id: Mapped[str | None] = mapped_column(String(36))
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    decided_at: Mapped[dt.datetime]
