"""The database: SQLAlchemy 2 models of the Art. 45 report record and the pipeline's state.

The schema is created only by Alembic (`migrations/`); `upgrade()` runs it. Models here are the
single source that `alembic check` compares the migrations against.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from centre.metrics import DB_WRITE_LOCK

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
            return value.replace(tzinfo=dt.timezone.utc)
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
    outcome: Mapped[str] = mapped_column(String(32))  # received | rejected | duplicate_submission | supplement
    report_id: Mapped[str | None] = mapped_column(String(36))
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    decided_at: Mapped[dt.datetime]


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
    status: Mapped[str] = mapped_column(String(32), index=True)  # received | triaged | forwarded | manifestly_unfounded
    category: Mapped[str | None] = mapped_column(String(32))
    severity: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[str | None] = mapped_column(String(4))
    manifestly_unfounded: Mapped[bool | None] = mapped_column(Boolean)
    triage: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the triage result, re-sent on replay
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
    __table_args__ = (UniqueConstraint("bank", "kind", "value", name="uq_indicator"),
                      Index("ix_indicators_value", "value"))
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


class BankState(Base):
    """One row whose `version` database triggers raise on every change to `indicators`
    (import, disable, enable, removal, by any writer), so a worker sees with one cheap read
    whether its in-memory copy of the banks is current."""

    __tablename__ = "bank_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


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


# ---- audit trail (centre/audit/; migration 0008) ---------------------------------------
# Append-only and hash-chained. No foreign keys on purpose: the chain must verify even when
# the key tables beside it were damaged or keys shredded.


class AuditEntry(Base):
    """One entry of the audit trail. `hash` = SHA-256(prev_hash ‖ canonical entry bytes);
    `ciphertext` is sealed under the batch's data key, `personal` under the person's key."""

    __tablename__ = "audit"
    # Only entries about a person are indexed by person (most have none).
    __table_args__ = (Index("ix_audit_person", "person",
                            sqlite_where=text("person IS NOT NULL"),
                            postgresql_where=text("person IS NOT NULL")),)
    # INTEGER on SQLite makes seq the rowid itself, not a second index beside it.
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"),
                                     primary_key=True, autoincrement=False)
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

# ---- end of audit trail -------------------------------------------------------------------


# ---- complaints (complaints/; migration 0009) ---------------------------------------------
# A complaint is about a report (its case). Each complaint/v1 received is a filing; a second
# filing about a report with an open complaint joins it. What an upheld complaint sends
# (retraction/v1 to each recipient, notices to providers) waits in complaint_messages until
# it is acknowledged by the broker, so a crash or a repeated decide never sends it twice.


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
    complaint_id: Mapped[str] = mapped_column(ForeignKey("complaints.complaint_id"),
                                              primary_key=True)
    case_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    report_id: Mapped[str] = mapped_column(String(36))

# ---- end of complaints --------------------------------------------------------------------


# ---- victims' removal requests (victims/; migration 0010) ---------------------------------
# A victim, through a case handler, asks the centre to find and remove their pictures and
# videos (CSA Regulation proposal Art. 20, 21). Only hashes are kept, in a private bank of
# the request; nothing here holds the victim's identity (it is sealed in the audit trail
# under the victim's own key), and the PIN is kept only as a slow hash.


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
    request_id: Mapped[str] = mapped_column(ForeignKey("victim_requests.request_id"),
                                            index=True)
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
    __table_args__ = (UniqueConstraint("request_id", "report_id", "content_id",
                                       name="uq_victim_match"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("victim_requests.request_id"),
                                            index=True)
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
    request_id: Mapped[str] = mapped_column(ForeignKey("victim_requests.request_id"),
                                            index=True)
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

# ---- end of victims -----------------------------------------------------------------------


# JSON columns hold whole reports: orjson writes and reads them several times faster.
_JSON: dict[str, Any] = {"json_serializer": lambda obj: orjson.dumps(obj).decode(),
                         "json_deserializer": orjson.loads}


def quarantine_report(s: Session, report_id: str, reason: dict[str, Any],
                      at: dt.datetime) -> tuple[str, str] | None:
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


def insert_ignoring_conflicts(s: Any, table: Any, rows: list[dict[str, Any]],
                              unique: list[str]) -> None:
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
    return (f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
            f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}")


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


def write_rows(s: Any, table: Any, rows: list[dict[str, Any]], *,
               key: str | None = None) -> None:
    """INSERT `rows` into `table` or, with `key`, UPDATE each row found by that column, in
    the caller's transaction (a Session or a Connection). Every row has the same keys."""
    prepare_rows(s, table, rows, key=key)()


def prepare_rows(s: Any, table: Any, rows: list[dict[str, Any]], *,
                 key: str | None = None) -> Callable[[], None]:
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
            stmt = table.update().where(table.c[key] == bindparam(f"b_{key}")).values(
                {c: bindparam(f"b_{c}") for c in columns if c != key})
            params = [{f"b_{c}": r[c] for c in columns} for r in rows]

        def run_core() -> None:
            conn.execute(stmt, params)
        return run_core
    if key is None:
        order = columns
        sql = 'INSERT INTO "%s" (%s) VALUES (%s)' % (
            table.name, ", ".join(f'"{c}"' for c in order), ", ".join("?" * len(order)))
    else:
        order = [c for c in columns if c != key] + [key]
        sql = 'UPDATE "%s" SET %s WHERE "%s" = ?' % (
            table.name, ", ".join(f'"{c}" = ?' for c in order[:-1]), key)
    convert = [_sqlite_value(table.c[c]) for c in order]
    if not any(convert):
        values = [tuple(r[c] for c in order) for r in rows]
    else:
        pairs = list(zip(order, convert))
        values = [tuple(r[c] if f is None else f(r[c]) for c, f in pairs) for r in rows]

    def run() -> None:
        conn.exec_driver_sql(sql, values)
    return run


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the CLI read while workers write; NORMAL sync is durable across process crashes.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    # Lookups by random ids touch pages all over the file: keep them in memory, not re-read.
    cur.execute("PRAGMA cache_size=-65536")
    # Read through a mapping of up to 4 GB (address space, not memory): a worker's pages of
    # the file are not copied into its cache, which each commit of another connection
    # empties (triage reads on one connection while its second thread writes on another).
    cur.execute("PRAGMA mmap_size=4294967296")
    # A report's pages are written three times within a second (intake, triage, routing):
    # checkpointing every 40 MB of log instead of 4 MB copies each page back once, not thrice.
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _no_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


_LOCK_WAIT = DB_WRITE_LOCK.labels("wait")
_LOCK_HELD = DB_WRITE_LOCK.labels("held")


class _WriterQueue(sqlite3.Connection):
    """An SQLite connection that queues for the database's single write lock in the kernel.

    SQLite lets one writer at a time; the others poll with sleeps that grow to 100 ms, so a
    worker waiting on another's commit oversleeps it, adding latency and idling a core. Here
    a connection takes an exclusive flock on `<db>.wlock` just before its first write and
    releases it right after commit or rollback: a waiter wakes the moment the lock is free.
    SQLite's own locking still guards correctness; the flock only orders the queue.
    """

    _lock_path: str | None = None
    _locked_at = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock_fd: int | None = None
        self._locked = False

    def take_write_lock(self) -> None:
        if self._locked or self._lock_path is None:
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        asked = time.perf_counter()
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._locked_at = time.perf_counter()
        self._locked = True
        _LOCK_WAIT.observe(self._locked_at - asked)

    def _release(self) -> None:
        if self._locked and self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            _LOCK_HELD.observe(time.perf_counter() - self._locked_at)
        self._locked = False

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _queue_for_writes(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    if statement.lstrip()[:7].upper().startswith(_WRITES):
        dbapi = conn.connection.dbapi_connection
        if isinstance(dbapi, _WriterQueue):
            dbapi.take_write_lock()


class _Checkpointer:
    """Copies an SQLite write-ahead log back into the database file from a thread of its own.

    Left to SQLite, the commit that fills the log to `wal_autocheckpoint` pages copies it back
    itself, tens of milliseconds while that worker still holds the database's one write
    lock, which every other writer is queued behind. A worker's connections do not
    checkpoint (`wal_autocheckpoint=0`); this thread does, PASSIVE (it never waits for or
    blocks a writer or reader), whenever the log has grown past `min_bytes`. Several workers
    may run one: only one checkpoints at a time, the others find it busy and skip.

    A PASSIVE checkpoint never starts the log again from its beginning: SQLite does that
    only when a writer finds every frame copied back, which under a steady load almost never
    happens. The log then grows for tens of seconds (600 MB at 1,000 reports/s), and every
    commit appends to new blocks of the file. So once the log holds more than
    `restart_frames` frames, the thread queues for the write lock as a writer does
    (`<db>.wlock`) and checkpoints RESTART: it copies the rest back, waits up to 100 ms for
    readers of older snapshots (writers wait meanwhile), and the next commit writes from the
    log's start, over blocks the file already has. A reader that keeps an old snapshot longer
    (a long export), or another worker's checkpoint, makes it give up, and it tries again
    `restart_backoff_s` later, not at every round (`centre bench`, 20,000 reports: P1 p99
    at 1,000/s went from 372–527 ms in five runs to 308–506, median 402, in seven)."""

    def __init__(self, path: str, every_s: float = 0.5, min_bytes: int = 8 << 20,
                 restart_frames: int = 20_000, restart_backoff_s: float = 5.0) -> None:
        self.path, self.wal = path, f"{path}-wal"
        self.every_s, self.min_bytes, self.restart_frames = every_s, min_bytes, restart_frames
        self.restart_backoff_s = restart_backoff_s
        self._rounds = 0  # looks at the log so far
        self.restarts = self.restart_attempts = 0  # RESTART checkpoints done, tried
        self._restart_after = 0.0  # monotonic time before which none is tried
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.every_s):
                self._rounds += 1
                try:
                    if os.path.getsize(self.wal) < self.min_bytes:
                        continue
                    if conn is None:
                        conn = sqlite3.connect(self.path, timeout=0, check_same_thread=False)
                    _busy, frames, _copied = conn.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames > self.restart_frames and time.monotonic() >= self._restart_after:
                        self._restart(conn)
                except (OSError, sqlite3.Error):
                    continue  # no log yet, or busy: the next round tries again
        finally:
            if conn is not None:
                conn.close()

    def _restart(self, conn: sqlite3.Connection) -> None:
        """A RESTART checkpoint, queued for the write lock like any writer's transaction."""
        self.restart_attempts += 1
        fd = os.open(f"{self.path}.wlock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            conn.execute("PRAGMA busy_timeout=100")
            try:
                busy, _frames, _copied = conn.execute(
                    "PRAGMA wal_checkpoint(RESTART)").fetchone()
            finally:
                conn.execute("PRAGMA busy_timeout=0")
            if busy:
                self._restart_after = time.monotonic() + self.restart_backoff_s
                log.warning("sqlite: the log could not be started again (a reader of an old "
                            "snapshot, or another worker's checkpoint); next try in %.0f s",
                            self.restart_backoff_s)
            else:
                self.restarts += 1
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def make_engine(url: str, *, background_checkpoint: bool = False) -> Engine:
    """An engine for the centre's database. Its errors never quote a statement's values
    (`hide_parameters`): they would put report content or a victim's data into a log.

    `background_checkpoint` (long-running writers: the stages' workers): on an SQLite file,
    the write-ahead log is copied back by a thread of this process (`_Checkpointer`), never
    by a commit; `engine.dispose()` stops it."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        connect_args: dict[str, Any] = {"timeout": 30}
        on_file = bool(path) and path != ":memory:"
        if on_file:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            queue = type("WriterQueue", (_WriterQueue,), {"_lock_path": f"{path}.wlock"})
            connect_args["factory"] = queue
        engine = create_engine(url, connect_args=connect_args, hide_parameters=True, **_JSON)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "before_cursor_execute", _queue_for_writes)
        if on_file and background_checkpoint:
            checkpointer = _Checkpointer(path)
            event.listen(engine, "connect", _no_autocheckpoint)
            event.listen(engine, "engine_disposed", lambda _e: checkpointer.stop())
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5,
                         hide_parameters=True, **_JSON)


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
