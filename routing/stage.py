"""Routing: jurisdiction, one sealed case/v1 per recipient, P1 first, final feedback.

Outputs are flushed before the report is marked forwarded, so a crash between the two sends
the case again (same case_id, which `centre liaison pull` deduplicates) and never loses it.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select, update

from centre import messages as m
from centre import metrics
from centre.crypto import Sealer, key_id
from centre.db import Delivery, Report
from centre.kafka import ProviderTopics
from centre.keys import KeySet
from centre.runtime import Record, StageBase
from centre.settings import Settings
from centre.topology import EUROPOL, feedback_topic, le_topic
from routing.geo import make_geolocator
from routing.jurisdiction import decide_jurisdiction

log = logging.getLogger(__name__)
STAGE = "routing"
_PRIORITY_ORDER = {"P1": 0, "P2": 1, "P3": 2}


def build_case(triaged: dict[str, Any], jurisdiction: dict[str, Any], reasons: list[str],
               forwarded_at: dt.datetime) -> dict[str, Any]:
    return {
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


def recipients_of(jurisdiction: dict[str, Any]) -> list[str]:
    """Every forwarded case goes to Europol too; with no member state, to Europol alone."""
    return [c["country"] for c in jurisdiction["countries"]] + [EUROPOL]


class RoutingStage(StageBase):
    name = STAGE

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.provider_topics = ProviderTopics(settings)
        self.keys = KeySet(settings.keys_dir)
        self.locate = make_geolocator(settings.geoip_db).country

    def process(self, records: list[Record]) -> None:
        metrics.MESSAGES_IN.labels(STAGE).inc(len(records))
        triaged = [m.loads(r.value or b"{}") for r in records]
        with self.sessions.begin() as s:
            finished = {rid for rid, st in s.execute(
                select(Report.report_id, Report.status).where(
                    Report.report_id.in_([t["report_id"] for t in triaged])))
                if st in ("forwarded", "manifestly_unfounded")}
        todo, seen = [], set(finished)
        for t in triaged:
            if t["report_id"] not in seen:
                seen.add(t["report_id"])
                todo.append(t)
        # Urgent cases leave first, whatever order they arrived in.
        todo.sort(key=lambda t: _PRIORITY_ORDER.get(t["priority"], 9))
        now = m.now()
        updates: list[dict[str, Any]] = []
        deliveries: list[dict[str, Any]] = []
        to_seal: list[tuple[bytes, str, Any]] = []
        feedback: list[dict[str, Any]] = []
        sealer = Sealer(self.keys.centre_signer())
        self.provider_topics.ensure({t["provider_id"] for t in todo})
        for t in todo:
            if t["manifestly_unfounded"]:
                status, extra, jd = "manifestly_unfounded", [], None
            else:
                j = decide_jurisdiction(t["report"], self.locate)
                jd, extra = j.as_dict(), list(j.reasons)
                if jd["europol_only"]:
                    extra.append("europol_only:no_member_state")
                case = build_case(t, jd, t["reasons"] + extra, now)
                plaintext = m.dumps(case)
                for rcpt in recipients_of(jd):
                    public = self.keys.recipient_public(rcpt)
                    to_seal.append((plaintext, rcpt, public))
                    deliveries.append({"case_id": t["case_id"], "recipient": rcpt,
                                       "report_id": t["report_id"], "priority": t["priority"],
                                       "key_id": key_id(public),
                                       "topic": self.settings.topic(le_topic(rcpt)),
                                       "forwarded_at": now, "delivered_at": None})
                metrics.MESSAGES_OUT.labels(STAGE, "case").inc(len(recipients_of(jd)))
                status = "forwarded"
            feedback.append(m.feedback(provider_id=t["provider_id"],
                            provider_report_id=t["provider_report_id"],
                            report_id=t["report_id"], status=status,
                            reasons=[m.reason(r.split(":", 1)[0], r) for r in
                                     (t["reasons"] if status == "manifestly_unfounded" else [])],
                            at=now, source=f"routing/{t['report_id']}"))
            metrics.OUTCOMES.labels(STAGE, status).inc()
            updates.append({"report_id": t["report_id"], "status": status, "jurisdiction": jd,
                            "forwarded_at": now if status == "forwarded" else None})
            received = dt.datetime.fromisoformat(t["received_at"].replace("Z", "+00:00"))
            metrics.LATENCY.labels(t["priority"]).observe((now - received).total_seconds())
        # Cases first (P1 first, as sorted), then the providers' feedback: a provider never
        # hears `forwarded` about a case that is not on its way.
        for (_p, rcpt, _k), env, d in zip(to_seal, sealer.seal_batch(to_seal), deliveries):
            self.producer.send(le_topic(rcpt), env, key=d["case_id"].encode())
        for fb in feedback:
            self.producer.send(feedback_topic(fb["provider_id"]), m.dumps(fb),
                               key=fb["provider_report_id"].encode())
        self.producer.flush_or_raise()
        if updates:
            with self.sessions.begin() as s:
                s.execute(update(Report), updates)
                if deliveries:
                    s.execute(Delivery.__table__.insert(), deliveries)
