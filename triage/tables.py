"""Triage's tables: clusters of content seen before, their signals and members, the indicator
banks and their version.

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
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

log = logging.getLogger(__name__)
from centre.db import Base


class Cluster(Base):
    """Content seen before: every item equal (or near, for PDQ) to a member joins the cluster."""

    __tablename__ = "clusters"
    cluster_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[dt.datetime]
    merged_into: Mapped[str | None] = mapped_column(String(36), index=True)
    times_reported: Mapped[int] = mapped_column(Integer, default=0)
    recent_cases: Mapped[list[Any]] = mapped_column(JSON, default=list)


class ClusterSignal(Base):
    """A hash of a cluster member. Exact kinds are looked up directly; PDQ also through an index."""

    __tablename__ = "cluster_signals"
    # value first: lookups are `value IN (…)`, which SQLite cannot serve from a (kind, value)
    # index (a row-value IN is a full scan there).
    value: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.cluster_id"), index=True)


class ReportCluster(Base):
    __tablename__ = "report_clusters"
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.report_id"), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.cluster_id"), primary_key=True)
    __table_args__ = (Index("ix_report_clusters_cluster", "cluster_id"),)


class Indicator(Base):
    """An entry of an indicator bank (Art. 44) with its provenance."""

    __tablename__ = "indicators"
    __table_args__ = (
        UniqueConstraint("bank", "kind", "value", name="uq_indicator"),
        Index("ix_indicators_value", "value"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bank: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(200))
    added_by: Mapped[str] = mapped_column(String(100))
    added_at: Mapped[dt.datetime]
    reason: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The last disable or enable: when, by whom and why (None until the first change).
    changed_at: Mapped[dt.datetime | None]
    changed_by: Mapped[str | None] = mapped_column(String(100))
    change_reason: Mapped[str | None] = mapped_column(Text)


class BankState(Base):
    """One row whose `version` database triggers raise on every change to `indicators`
    (import, disable, enable, removal, by any writer), so a worker sees with one cheap read
    whether its in-memory copy of the banks is current."""

    __tablename__ = "bank_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
