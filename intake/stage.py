"""Intake: validate each report/v1, make it idempotent, give it a report_id, tell the company.

Every message read is decided exactly once and the decision is stored by its position on the
topic, in the same transaction as its effects. A message read again after a crash finds its
decision and re-sends the same outputs; a new message with a known provider_report_id is a
duplicate submission. Bad input never raises: it is rejected with one reason per problem and
kept whole in the dead-letter store.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite

from centre import audit, metrics
from centre import messages as m
from centre.db import (
    DeadLetter,
    Provider,
    Report,
    ReportContent,
    ReportSupplement,
    insert_ignoring_conflicts,
    prepare_rows,
)
from centre.kafka import ProviderTopics
from centre.keys import KeySet
from centre.runtime import Finish, QuarantineNotice, Record, StageBase
from centre.settings import Settings
from centre.topology import ACCEPTED, INTAKE, feedback_topic
from intake.supplements import merge_supplement
from intake.tables import IntakeDecision
from intake.validation import Outcome, ids_from_key, parse_key, validate_report

log = logging.getLogger(__name__)
STAGE = "intake"
_TOPIC_SAFE = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")


@dataclass(slots=True)
class Decision:
    record: Record
    outcome: str  # received | rejected | duplicate_submission | supplement
    provider_id: str | None
    provider_report_id: str | None
    report_id: str | None
    reasons: list[dict[str, Any]]
    at: dt.datetime
    report: dict[str, Any] | None = None
    received_at: dt.datetime | None = None
    signature: str = "absent"
    supplement: int = 0  # for a supplement: its number (1, 2, …) on the report
    case_id: str | None = None  # of a received report or a supplement: the stored one


class IntakeStage(StageBase):
    name = STAGE

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.provider_topics = ProviderTopics(settings)
        self.keys = KeySet(settings.keys_dir)
        self.source_topic = settings.topic(INTAKE)

    # -- deciding ---------------------------------------------------------------------------

    def _validate(self, rec: Record) -> Outcome:
        pid, _ = parse_key(rec.key)
        if pid is None and rec.value:
            pid = _peek_provider(rec.value)
        provider_key = self.keys.provider_public(pid) if pid and _safe(pid) else None
        sig = rec.headers.get("signature")
        return validate_report(
            rec.value,
            rec.key,
            signature_b64=sig.decode("ascii", "replace") if sig else None,
            provider_key=provider_key,
            require_signature=self.settings.require_signatures,
        )

    def quarantine_notice(
        self, s: Any, record: Record, reason: dict[str, str], at: dt.datetime
    ) -> QuarantineNotice | None:
        """A message set aside here is decided `rejected` at its position; the company named
        in the key is told (the value is not read: it may be what made intake fail)."""
        pid, prid = ids_from_key(record.key)
        insert_ignoring_conflicts(
            s,
            IntakeDecision.__table__,
            [
                dict(
                    partition=record.partition,
                    offset=record.offset,
                    provider_id=pid,
                    provider_report_id=prid,
                    outcome="rejected",
                    report_id=None,
                    reasons=[reason],
                    decided_at=at,
                )
            ],
            ["partition", "offset"],
        )
        return QuarantineNotice(pid, prid, None) if pid and _safe(pid) else None

    def process(self, records: list[Record]) -> Finish:
        metrics.MESSAGES_IN.labels(STAGE).inc(len(records))
        with self.sessions.begin() as s:
            # One query per partition, each served by the primary key (partition, offset).
            by_partition: dict[int, list[int]] = {}
            for r in records:
                by_partition.setdefault(r.partition, []).append(r.offset)
            stored = IntakeDecision.__table__.c  # Core rows: no ORM work per decision
            known = {
                (d.partition, d.offset): d
                for part, offsets in by_partition.items()
                for d in s.execute(
                    select(IntakeDecision.__table__).where(
                        stored.partition == part, stored.offset.in_(offsets)
                    )
                )
            }
            fresh = [r for r in records if (r.partition, r.offset) not in known]
            decisions = self._decide(s, fresh)
            replays = self._replay(
                s, [r for r in records if (r.partition, r.offset) in known], known
            )
        return self._send(replays + decisions)

    def _decide(self, s: Any, records: list[Record]) -> list[Decision]:
        now = m.now()
        outcomes = [(r, self._validate(r)) for r in records]
        ids = {
            (o.provider_id, o.provider_report_id)
            for _, o in outcomes
            if o.accepted and o.provider_id is not None and o.provider_report_id is not None
        }
        existing: dict[tuple[str, str], str] = {}
        by_provider: dict[str, list[str]] = {}
        for provider_id, provider_report_id in ids:
            by_provider.setdefault(provider_id, []).append(provider_report_id)
        for (
            provider_id,
            prids,
        ) in by_provider.items():  # served by the (provider_id, provider_report_id) index
            for prid, rid in s.execute(
                select(Report.provider_report_id, Report.report_id).where(
                    Report.provider_id == provider_id, Report.provider_report_id.in_(prids)
                )
            ):
                existing[(provider_id, prid)] = rid

        decisions: list[Decision] = []
        new_reports: list[dict[str, Any]] = []
        dead: list[dict[str, Any]] = []
        providers: set[str] = set()
        for rec, out in outcomes:
            pid, prid = out.provider_id, out.provider_report_id
            if not out.accepted:
                reasons = [p.as_dict() for p in out.problems]
                decisions.append(Decision(rec, "rejected", pid, prid, None, reasons, now))
                dead.append(
                    dict(
                        topic=rec.topic,
                        partition=rec.partition,
                        offset=rec.offset,
                        key=rec.key,
                        value=rec.value,
                        headers=_printable(rec.headers),
                        provider_id=pid if _safe(pid) else None,
                        reasons=reasons,
                        received_at=now,
                    )
                )
                if _safe(pid):
                    providers.add(pid)
                continue
            assert pid is not None and prid is not None and out.report is not None
            providers.add(pid)
            prior = existing.get((pid, prid))
            if prior is not None:
                outcome = (
                    "supplement" if out.report.get("supplement") is True else "duplicate_submission"
                )
                decisions.append(
                    Decision(
                        rec,
                        outcome,
                        pid,
                        prid,
                        prior,
                        [],
                        now,
                        out.report if outcome == "supplement" else None,
                    )
                )
                continue
            # Received when the broker took the message (its timestamp, in milliseconds).
            received_at = m.from_ms(round(rec.timestamp * 1000)) if rec.timestamp else now
            rid = m.report_id_for(pid, prid, received_at)
            existing[(pid, prid)] = rid  # a second copy later in this same batch is a duplicate
            case_id = m.case_id_for(rid, received_at)
            new_reports.append(
                dict(
                    report_id=rid,
                    case_id=case_id,
                    provider_id=pid,
                    provider_report_id=prid,
                    received_at=received_at,
                    submitted_at=str(out.report.get("submitted_at")),
                    signature=out.signature,
                    status="received",
                    reasons=[],
                    supplements=0,
                )
            )
            decisions.append(
                Decision(
                    rec,
                    "received",
                    pid,
                    prid,
                    rid,
                    [],
                    now,
                    out.report,
                    received_at,
                    out.signature,
                    case_id=case_id,
                )
            )

        # Every row converted before the first write, which takes the write lock (SQLite).
        supplements = [d for d in decisions if d.outcome == "supplement"]
        writes = [
            prepare_rows(s, Report.__table__, new_reports),
            prepare_rows(
                s,
                ReportContent.__table__,
                [
                    {"report_id": d.report_id, "body": d.report}
                    for d in decisions
                    if d.outcome == "received"
                ],
            ),
            prepare_rows(s, DeadLetter.__table__, dead),
        ]
        if not supplements:  # a supplement's decision takes its reasons when applied
            writes.append(_prepare_decisions(s, decisions))
        if providers:
            self._upsert_providers(s, providers, now)  # before the reports that refer to them
        for write in writes:
            write()
        if dead:
            metrics.DEAD_LETTERS.labels(STAGE).inc(len(dead))
        for d in supplements:
            self._supplement(s, d)
        if supplements:
            _prepare_decisions(s, decisions)()
        return decisions

    def _supplement(self, s: Any, d: Decision) -> None:
        """Complete the stored report with a supplement; the supplement itself is kept too.
        Several supplements to one report in one batch apply in order (the session's
        identity map holds the report between them)."""
        assert d.report_id and d.report is not None
        rep = s.get(Report, d.report_id)
        content = s.get(ReportContent, d.report_id)
        merged, added = merge_supplement(content.body, d.report)
        rep.supplements += 1
        s.add(
            ReportSupplement(
                report_id=d.report_id,
                seq=rep.supplements,
                received_at=d.at,
                body=d.report,
                added=added,
            )
        )
        content.body = merged
        d.reasons = [
            m.reason(
                "supplement_received",
                f"completes the earlier report (supplement {rep.supplements}): "
                f"{len(added)} field(s) added; the case is updated where it went",
                "$.supplement",
            )
        ]
        d.report, d.received_at, d.signature = merged, rep.received_at, rep.signature
        d.case_id = rep.case_id
        d.supplement = rep.supplements
        s.flush()

    def _upsert_providers(self, s: Any, providers: set[str], now: dt.datetime) -> None:
        rows = [dict(provider_id=p, first_seen_at=now, reports_received=0) for p in providers]
        dialect = s.bind.dialect.name
        table = cast(Table, Provider.__table__)
        ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
        s.execute(ins.on_conflict_do_nothing(index_elements=["provider_id"]), rows)

    def _replay(
        self, s: Any, records: list[Record], known: dict[tuple[int, int], Any]
    ) -> list[Decision]:
        """Rebuild the decisions of messages decided before a crash, to send their outputs again."""
        out: list[Decision] = []
        for rec in records:
            d = known[(rec.partition, rec.offset)]
            dec = Decision(
                rec,
                d.outcome,
                d.provider_id,
                d.provider_report_id,
                d.report_id,
                list(d.reasons or []),
                d.decided_at,
            )
            if d.outcome in ("received", "supplement") and d.report_id:
                rep = s.get(Report, d.report_id)
                dec.report = s.get(ReportContent, d.report_id).body
                dec.received_at, dec.signature = rep.received_at, rep.signature
                dec.case_id = rep.case_id
                # A supplement read again: the report as completed so far goes on again
                # (triage and routing skip a supplement number they have already handled).
                dec.supplement = rep.supplements if d.outcome == "supplement" else 0
            out.append(dec)
        return out

    # -- telling --------------------------------------------------------------------------

    def _send(self, decisions: list[Decision]) -> Finish:
        # Feedback first, flushed, and only then the accepted reports: a provider must see
        # `received` before any later stage can tell it `forwarded`, and the two go through
        # different topics that the broker does not order against each other.
        self.provider_topics.ensure({d.provider_id for d in decisions if _safe(d.provider_id)})
        for d in decisions:
            metrics.OUTCOMES.labels(STAGE, d.outcome).inc()
            if not _safe(d.provider_id):
                metrics.ERRORS.labels(STAGE, "no_provider_for_feedback").inc()
                continue
            assert d.provider_id is not None
            status = "received" if d.outcome == "supplement" else d.outcome
            fb = m.feedback(
                provider_id=d.provider_id,
                provider_report_id=d.provider_report_id,
                report_id=d.report_id,
                status=status,
                reasons=d.reasons,
                at=d.at,
                source=f"{self.source_topic}/{d.record.partition}/{d.record.offset}",
            )
            self.producer.send(
                feedback_topic(d.provider_id),
                m.dumps(fb),
                key=(d.provider_report_id or "").encode(),
            )
            metrics.MESSAGES_OUT.labels(STAGE, "feedback").inc()
        audit.emit(self.producer, [self._audit(d) for d in decisions])
        self.producer.flush_or_raise()
        accepted = [d for d in decisions if d.outcome in ("received", "supplement")]
        for d in accepted:
            assert d.report_id and d.report is not None and d.received_at is not None
            self.producer.send(
                ACCEPTED,
                m.dumps(
                    {
                        "supplement": d.supplement,
                        "report_id": d.report_id,
                        "case_id": d.case_id,
                        "provider_id": d.provider_id,
                        "provider_report_id": d.provider_report_id,
                        "received_at": m.iso(d.received_at),
                        "signature": d.signature,
                        "report": d.report,
                    }
                ),
                key=d.report_id.encode(),
            )
        metrics.MESSAGES_OUT.labels(STAGE, "accepted").inc(len(accepted))
        sent = self.producer.detach()
        # Stored and the feedback acknowledged: the next batch may go on while the broker
        # acknowledges the accepted reports (a crash before that sends them again).
        return lambda: self.producer.wait_or_raise(sent)

    def _audit(self, d: Decision) -> audit.AuditEvent:
        """The decision for the audit trail: ids, outcome, reason codes and paths (never a
        reason's message, which may quote the input), and the feedback sent."""
        where = f"{self.source_topic}/{d.record.partition}/{d.record.offset}"
        return audit.AuditEvent(
            actor=STAGE,
            action=f"report.{d.outcome}",
            subject=f"report:{d.report_id}" if d.report_id else f"message:{where}",
            discriminator=where,
            at=d.at,
            # The report's own events lead with its receipt (a duplicate's is not its own).
            ordered_by=d.received_at if d.outcome in ("received", "supplement") else None,
            details={
                "message": where,
                "provider_id": d.provider_id if _safe(d.provider_id) else None,
                "provider_report_id": d.provider_report_id,
                "signature": d.signature,
                "supplement": d.supplement or None,
                "reasons": [{"code": r.get("code"), "path": r.get("path")} for r in d.reasons],
                "feedback": ("received" if d.outcome == "supplement" else d.outcome)
                if _safe(d.provider_id)
                else None,
            },
        )


def _prepare_decisions(s: Any, decisions: list[Decision]) -> Callable[[], None]:
    """The decisions as `intake_decisions` rows, to store with their effects."""
    return prepare_rows(
        s,
        IntakeDecision.__table__,
        [
            dict(
                partition=d.record.partition,
                offset=d.record.offset,
                provider_id=d.provider_id,
                provider_report_id=d.provider_report_id,
                outcome=d.outcome,
                report_id=d.report_id,
                reasons=d.reasons,
                decided_at=d.at,
            )
            for d in decisions
        ],
    )


def _safe(provider_id: str | None) -> TypeGuard[str]:
    """A provider id that can name a topic (and so receive feedback)."""
    return bool(provider_id and _TOPIC_SAFE.fullmatch(provider_id))


def _peek_provider(value: bytes) -> str | None:
    try:
        doc = m.loads(value)
    except Exception:
        return None
    pid = doc.get("provider_id") if isinstance(doc, dict) else None
    return pid if isinstance(pid, str) else None


def _printable(headers: dict[str, bytes]) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in headers.items()}
