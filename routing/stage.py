"""Routing (over 500 lines: deciding, sealing, sending and recording a batch share its
in-flight state): jurisdiction, one sealed case/v1 per recipient, P1 first, final feedback.

Outputs are flushed before the report is marked forwarded, so a crash between the two sends
the case again (same case_id, which `centre liaison pull` deduplicates) and never loses it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update

from centre import audit, metrics
from centre import messages as m
from centre.crypto import Sealer, key_id
from centre.db import Report, ReportContent, prepare_rows, quarantine_report
from centre.kafka import ProviderTopics
from centre.keys import KeySet
from centre.runtime import Finish, QuarantineNotice, Record, StageBase
from centre.settings import Settings
from centre.topology import EUROPOL, feedback_topic, le_topic, urgent_topic
from routing.acks import AckReader
from routing.geo import make_geolocator
from routing.information import missing_information
from routing.jurisdiction import decide_jurisdiction
from routing.tables import Delivery

log = logging.getLogger(__name__)
STAGE = "routing"
_PRIORITY_ORDER = {"P1": 0, "P2": 1, "P3": 2}
_ROUTED = ("forwarded", "manifestly_unfounded", "awaiting_key")


def build_case(
    triaged: dict[str, Any],
    jurisdiction: dict[str, Any],
    reasons: list[str],
    forwarded_at: dt.datetime,
) -> dict[str, Any]:
    case = {
        "schema": "case/v1",
        "case_id": triaged["case_id"],
        "report_id": triaged["report_id"],
        "provider_id": triaged["provider_id"],
        "provider_report_id": triaged["provider_report_id"],
        "received_at": triaged["received_at"],
        "forwarded_at": m.iso(forwarded_at),
        "priority": triaged["priority"],
        "category": triaged["category"],
        "severity": triaged["severity"],
        "jurisdiction": jurisdiction,
        "duplicates": triaged["duplicates"],
        "indicator_matches": triaged["indicator_matches"],
        "reasons": reasons,
        "report": triaged["report"],
    }
    if triaged.get("supplement"):
        # An addition to case/v1: the case updated by the provider's n-th supplement (same
        # case_id; the report is the one completed by every supplement so far).
        case["supplement"] = triaged["supplement"]
    return case


def recipients_of(jurisdiction: dict[str, Any]) -> list[str]:
    """Every forwarded case goes to Europol too; with no member state, to Europol alone."""
    return [c["country"] for c in jurisdiction["countries"]] + [EUROPOL]


def _audit(
    t: dict[str, Any],
    status: str,
    jd: dict[str, Any] | None,
    missing: list[dict[str, str]],
    now: dt.datetime,
    deliveries: list[dict[str, Any]],
    *,
    retry: bool = False,
    feedback: bool = True,
) -> list[audit.AuditEvent]:
    """Routing's decisions on one report for the audit trail: what was asked of the provider,
    where the case went (recipient, key id) or why not, and the feedback sent."""
    subject, seq = f"report:{t['report_id']}", t.get("supplement") or 0
    received = m.parse_time(t["received_at"])  # the same when the report is routed again
    events = []
    if missing:
        events.append(
            audit.AuditEvent(
                actor=STAGE,
                action="report.information_requested",
                subject=subject,
                discriminator=f"supplement/{seq}",
                at=now,
                ordered_by=received,
                details={
                    "missing": [{"code": r["code"], "path": r["path"]} for r in missing],
                    "feedback": "information_requested",
                },
            )
        )
    action = {
        "forwarded": "case.forwarded",
        "awaiting_key": "case.awaiting_key",
        "manifestly_unfounded": "report.manifestly_unfounded",
    }[status]
    went = [
        {
            "recipient": d["recipient"],
            "key_id": d["key_id"],
            "state": d["state"],
            "priority": d["priority"],
        }
        for d in deliveries
    ]
    where = "retry/" + ",".join(sorted(d["recipient"] for d in deliveries)) if retry else ""
    events.append(
        audit.AuditEvent(
            actor=STAGE,
            action=action,
            subject=subject,
            discriminator=f"supplement/{seq}{where}",
            at=now,
            ordered_by=received,
            details={
                "case_id": t["case_id"],
                "priority": t.get("priority"),
                "jurisdiction": jd,
                "deliveries": went,
                "supplement": seq or None,
                "feedback": status if feedback and status != "awaiting_key" else None,
            },
        )
    )
    return events


def _record(
    s: Any,
    updates: list[dict[str, Any]],
    updates_again: list[dict[str, Any]],
    deliveries: list[dict[str, Any]],
) -> None:
    """The routing decisions on the report record, one statement each kind (executemany):
    a first routing sets forwarded_at; a supplement's keeps it and what was asked before.
    Then the new deliveries. Every row is converted before the first write takes the lock."""

    def rows(us: list[dict[str, Any]], *extra: tuple[str, str]) -> list[dict[str, Any]]:
        return [
            {
                "status": u["status"],
                "jurisdiction": u["jd"],
                "routed_supplements": u["sup"],
                **{column: u[k] for column, k in extra},
                "report_id": u["rid"],
            }
            for u in us
        ]

    table = Report.__table__
    writes = [
        prepare_rows(
            s,
            table,
            rows(updates, ("forwarded_at", "at"), ("information_requested", "asked")),
            key="report_id",
        ),
        prepare_rows(
            s,
            table,
            rows([u for u in updates_again if u["asked"]], ("information_requested", "asked")),
            key="report_id",
        ),
        prepare_rows(s, table, rows([u for u in updates_again if not u["asked"]]), key="report_id"),
        prepare_rows(
            s,
            Delivery.__table__,
            [{k: v for k, v in d.items() if k != "update"} for d in deliveries if not d["update"]],
        ),
    ]
    for write in writes:
        write()


class _Inflight:
    """A batch sent and not yet finished: its reports, and an event set when it is done."""

    __slots__ = ("report_ids", "done", "failed")

    def __init__(self, report_ids: set[str]) -> None:
        self.report_ids = report_ids
        self.done = threading.Event()
        self.failed = False


class RoutingStage(StageBase):
    name = STAGE
    retry_every_s = 2.0  # how often cases waiting for a recipient's key are looked at
    # Up to 4 × CENTRE_BATCH_SIZE per batch: a batch's flush and commit are most of routing's
    # cost; P1 cases are sorted first within a batch, so a bigger one does not delay them.
    batch_scale = 4
    idle_under_load_s = 1.0  # acknowledgements and key retries between batches, under load

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.provider_topics = ProviderTopics(settings)
        self.keys = KeySet(settings.keys_dir)
        self.locate = make_geolocator(settings.geoip_db).country
        self._retried_at = 0.0
        self._batch_keys: dict[str, Any] = {}
        self.acks = AckReader(settings)
        # The last batch sent, whose finish (acknowledgements, record) may still be running
        # while the next one is processed.
        self._inflight = _Inflight(set())
        self._inflight.done.set()

    def _case(self, t: dict[str, Any], now: dt.datetime) -> tuple[dict[str, Any], bytes]:
        j = decide_jurisdiction(t["report"], self.locate)
        jd, extra = j.as_dict(), list(j.reasons)
        if jd["europol_only"]:
            extra.append("europol_only:no_member_state")
        return jd, m.dumps(build_case(t, jd, t["reasons"] + extra, now))

    def _deliver(
        self,
        t: dict[str, Any],
        plaintext: bytes,
        rcpts: list[str],
        now: dt.datetime,
        to_seal: list[tuple[bytes, str, Any]],
        deliveries: list[dict[str, Any]],
        earlier: set[str] | None = None,
    ) -> int:
        """Queue the case for each recipient with a key; one waiting for a key is recorded as
        `awaiting_key` (never dropped) and raises the operator alert. Returns how many go."""
        sent = 0
        for rcpt in rcpts:
            row = {
                "case_id": t["case_id"],
                "recipient": rcpt,
                "report_id": t["report_id"],
                "priority": t["priority"],
                "topic": self.settings.topic(le_topic(rcpt)),
                "delivered_at": None,
                "update": rcpt in (earlier or ()),
            }
            public = self._key_for(rcpt)
            if public is None:
                deliveries.append(
                    {**row, "key_id": "", "state": "awaiting_key", "forwarded_at": None}
                )
                metrics.ERRORS.labels(STAGE, "recipient_key_missing").inc()
                continue
            to_seal.append((plaintext, rcpt, public))
            deliveries.append(
                {**row, "key_id": key_id(public), "state": "forwarded", "forwarded_at": now}
            )
            sent += 1
        return sent

    def _key_for(self, rcpt: str) -> Any | None:
        """The recipient's current key, read once per batch (a rotation applies from the
        next batch); None when no key is registered."""
        if rcpt not in self._batch_keys:
            self._batch_keys[rcpt] = (
                self.keys.recipient_public(rcpt) if self.keys.has_recipient(rcpt) else None
            )
        return self._batch_keys[rcpt]

    def _send(
        self,
        to_seal: list[tuple[bytes, str, Any]],
        deliveries: list[dict[str, Any]],
        feedback: list[dict[str, Any]],
        events: list[audit.AuditEvent],
    ) -> None:
        """Queue the batch's cases (P1 first, as sorted), then the providers' feedback (a
        provider never hears `forwarded` about a case that is not on its way), then the
        audit events. The caller waits for the broker's acknowledgements."""
        going = [d for d in deliveries if d["state"] == "forwarded"]
        sealer = Sealer(self.keys.centre_signer())
        for (_p, rcpt, _k), env, d in zip(to_seal, sealer.seal_batch(to_seal), going):
            if d["priority"] == "P1":  # its lane first, so a liaison's pull finds it first
                self.producer.send(urgent_topic(rcpt), env, key=d["case_id"].encode())
            self.producer.send(le_topic(rcpt), env, key=d["case_id"].encode())
        for fb in feedback:
            self.producer.send(
                feedback_topic(fb["provider_id"]),
                m.dumps(fb),
                key=fb["provider_report_id"].encode(),
            )
        audit.emit(self.producer, events)
        metrics.MESSAGES_OUT.labels(STAGE, "case").inc(len(going))

    @staticmethod
    def _feedback(
        t: dict[str, Any],
        status: str,
        now: dt.datetime,
        reasons: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        if reasons is None:
            reasons = [
                m.reason(r.split(":", 1)[0], r)
                for r in (t["reasons"] if status == "manifestly_unfounded" else [])
            ]
        seq = t.get("supplement") or 0
        source = f"routing/{t['report_id']}" + (f"/supplement/{seq}" if seq else "")
        return m.feedback(
            provider_id=t["provider_id"],
            provider_report_id=t["provider_report_id"],
            report_id=t["report_id"],
            status=status,
            reasons=reasons,
            at=now,
            source=source,
        )

    def quarantine_notice(
        self, s: Any, record: Record, reason: dict[str, str], at: dt.datetime
    ) -> QuarantineNotice | None:
        """A report set aside here is `quarantined` on its record; its company is told unless
        it already had its final status. The key is the report id (the value is not read)."""
        report_id = (record.key or b"").decode("utf-8", "replace")
        ids = quarantine_report(s, report_id, reason, at)
        return QuarantineNotice(ids[0], ids[1], report_id) if ids else None

    def process(self, records: list[Record]) -> Finish:
        """Decide, seal and send the batch's cases; returns its finish (the broker's
        acknowledgements, then the record), which may run while the next batch is processed."""
        metrics.MESSAGES_IN.labels(STAGE).inc(len(records))
        self._batch_keys = {}
        triaged = [m.loads(r.value or b"{}") for r in records]
        before = self._inflight
        if any(t["report_id"] in before.report_ids for t in triaged):
            # A report of the batch still finishing (a replay, a supplement right behind it):
            # its record is read once written.
            before.done.wait()
        if before.failed:
            raise RuntimeError("the batch before did not finish")
        with self.sessions.begin() as s:
            # A report is done up to the supplement it was last routed with. (Filtered here:
            # with the status in the query SQLite would walk the status index instead.)
            table = Report.__table__
            routed = {
                rid: sup
                for rid, st, sup in s.connection().execute(
                    select(table.c.report_id, table.c.status, table.c.routed_supplements).where(
                        table.c.report_id.in_([t["report_id"] for t in triaged])
                    )
                )
                if st in _ROUTED
            }
            supplemented = [t["report_id"] for t in triaged if t.get("supplement")]
            went: dict[str, set[str]] = {}
            if supplemented:
                for rid, rcpt in s.execute(
                    select(Delivery.report_id, Delivery.recipient).where(
                        Delivery.report_id.in_(supplemented)
                    )
                ):
                    went.setdefault(rid, set()).add(rcpt)
        todo = []
        for t in triaged:
            seq = t.get("supplement") or 0
            if t["report_id"] in routed and routed[t["report_id"]] >= seq:
                continue  # read again after a crash, or a second copy in this batch
            routed[t["report_id"]] = seq
            todo.append(t)
        # Urgent cases leave first, whatever order they arrived in.
        todo.sort(key=lambda t: _PRIORITY_ORDER.get(t["priority"], 9))
        now = m.now()
        updates: list[dict[str, Any]] = []
        updates_again: list[dict[str, Any]] = []  # supplements to a case that already went
        outcomes: dict[str, int] = {}
        latency: dict[str, list[float]] = {}
        deliveries: list[dict[str, Any]] = []
        to_seal: list[tuple[bytes, str, Any]] = []
        feedback: list[dict[str, Any]] = []
        events: list[audit.AuditEvent] = []
        self.provider_topics.ensure({t["provider_id"] for t in todo})
        for t in todo:
            missing = missing_information(t["report"])
            if missing:  # asked before the final status; forwarding does not wait for it
                feedback.append(self._feedback(t, "information_requested", now, missing))
                outcomes["information_requested"] = outcomes.get("information_requested", 0) + 1
            earlier = went.get(t["report_id"], set())
            mine = len(deliveries)  # this case's deliveries are appended from here
            if t["manifestly_unfounded"]:
                status, jd = "manifestly_unfounded", None
            else:
                jd, plaintext = self._case(t, now)
                # A supplement's update goes to every recipient that has the case, too.
                rcpts = recipients_of(jd)
                rcpts += sorted(earlier - set(rcpts))
                sent = self._deliver(t, plaintext, rcpts, now, to_seal, deliveries, earlier)
                status = "forwarded" if sent else "awaiting_key"
            if status != "awaiting_key":  # its final feedback comes when it goes
                feedback.append(self._feedback(t, status, now))
            outcomes[status] = outcomes.get(status, 0) + 1
            row = {
                "rid": t["report_id"],
                "status": status,
                "jd": jd,
                "sup": t.get("supplement") or 0,
                "at": now if status == "forwarded" else None,
                # What was asked stays on the record once a supplement answers it.
                "asked": [r["path"] for r in missing] if missing else None,
            }
            (updates_again if earlier else updates).append(row)
            events += _audit(t, status, jd, missing, now, deliveries[mine:])
            received = m.parse_time(t["received_at"])
            latency.setdefault(t["priority"], []).append((now - received).total_seconds())
        self._send(to_seal, deliveries, feedback, events)
        outgoing = self.producer.detach()
        batch = self._inflight = _Inflight({t["report_id"] for t in todo})

        def finish() -> None:
            try:
                self.producer.wait_or_raise(outgoing)
                # Acknowledged by the broker: now the record says where the cases went.
                if updates or updates_again:
                    with self.sessions.begin() as s:
                        _record(s, updates, updates_again, deliveries)
            except BaseException:
                batch.failed = True
                raise
            finally:
                batch.done.set()
            for status, n in outcomes.items():
                metrics.OUTCOMES.labels(STAGE, status).inc(n)
            for prio, values in latency.items():
                hist = metrics.LATENCY.labels(prio)
                for v in values:
                    hist.observe(v)

        return finish

    def close(self) -> None:
        self.acks.close()
        super().close()

    def idle(self) -> None:
        """Record liaisons' acknowledgements; send cases that waited for a recipient's key
        once the key is registered. Runs when no batch is being processed or finishing."""
        self.acks.record(self.sessions, self.producer)
        clock = time.monotonic()
        if clock - self._retried_at < self.retry_every_s:
            return
        self._retried_at = clock
        self._batch_keys = {}
        with self.sessions() as s:
            waiting = s.execute(
                select(Delivery.report_id, Delivery.recipient)
                .where(Delivery.state == "awaiting_key")
                .limit(1000)
            ).all()
            metrics.AWAITING_KEY.set(len(waiting))
            ready = [(rid, r) for rid, r in waiting if self._key_for(r) is not None]
            if not ready:
                return
            rids = sorted({rid for rid, _r in ready})
            rows = {
                rep.report_id: (rep, body)
                for rep, body in s.execute(
                    select(Report, ReportContent.body)
                    .join(ReportContent, ReportContent.report_id == Report.report_id)
                    .where(Report.report_id.in_(rids))
                )
            }
        now = m.now()
        to_seal: list[tuple[bytes, str, Any]] = []
        deliveries: list[dict[str, Any]] = []
        feedback: list[dict[str, Any]] = []
        first_sent: list[str] = []
        events: list[audit.AuditEvent] = []
        for rid in rids:
            rep, body = rows[rid]
            t = {**(rep.triage or {}), "report": body}
            jd, plaintext = self._case(t, now)
            rcpts = [r for x, r in ready if x == rid]
            mine = len(deliveries)
            self._deliver(t, plaintext, rcpts, now, to_seal, deliveries)
            events += _audit(
                t,
                "forwarded",
                jd,
                [],
                now,
                deliveries[mine:],
                retry=True,
                feedback=rep.status == "awaiting_key",
            )
            if rep.status == "awaiting_key":
                feedback.append(self._feedback(t, "forwarded", now))
                first_sent.append(rid)
        self._send(to_seal, deliveries, feedback, events)
        self.producer.flush_or_raise()
        with self.sessions.begin() as s:
            table = cast(Table, Delivery.__table__)
            s.execute(
                update(table)
                .where(table.c.case_id == bindparam("c"), table.c.recipient == bindparam("r"))
                .values(state="forwarded", key_id=bindparam("k"), forwarded_at=bindparam("t")),
                [
                    {"c": d["case_id"], "r": d["recipient"], "k": d["key_id"], "t": now}
                    for d in deliveries
                    if d["state"] == "forwarded"
                ],
            )
            if first_sent:
                s.execute(
                    update(Report),
                    [
                        {"report_id": rid, "status": "forwarded", "forwarded_at": now}
                        for rid in first_sent
                    ],
                )
        log.info("sent %d case(s) that waited for a recipient key", len(deliveries))
