"""Triage: clusters, indicator banks, category, severity, priority, manifestly unfounded.

The result is stored on the report in the batch's transaction; a report read again after a
crash is not counted again: its stored result is sent once more.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from sqlalchemy import bindparam, select, update

from centre import audit
from centre import messages as m
from centre import metrics
from centre.db import Indicator, Report, ReportCluster
from centre.runtime import Finish, Record, StageBase
from centre.settings import Settings
from centre.topology import TRIAGED
from triage.clusters import ClusterBatch, Signal
from triage.rules import Match, classify, media_items
from triage.near import ClusterPDQ, IndicatorPDQ
from triage.signals import PDQ, content_signals
from victims.bank import VictimBank
from victims.flow import live_matches

log = logging.getLogger(__name__)
STAGE = "triage"


_KIND_ORDER = {"sha256": 0, "md5": 1, "pdq": 2}


def bank_matches(report: dict[str, Any], hits: dict[Signal, set[str]],
                 pdq_near: dict[str, list[tuple[str, int]]] | None = None) -> list[Match]:
    """One match per content item and bank: the strongest signal (an exact hash before a PDQ
    match, a nearer PDQ before a farther one), with its distance."""
    out: list[Match] = []
    pdq_near = pdq_near or {}
    for item in report.get("content") or []:
        best: dict[str, tuple[int, int, str]] = {}  # bank -> (distance, kind order, kind)
        for kind, value in content_signals(item):
            found = [(b, 0) for b in hits.get((kind, value), ())]
            if kind == "pdq":
                found += pdq_near.get(value, [])
            for bank, dist in found:
                cand = (dist, _KIND_ORDER.get(kind, 9), kind)
                if bank not in best or cand < best[bank]:
                    best[bank] = cand
        for bank in sorted(best):
            dist, _o, kind = best[bank]
            out.append(Match(str(item.get("content_id")), bank, kind, dist))
    return out


def low_quality_pdq(report: dict[str, Any]) -> list[str]:
    """Reasons for PDQ hashes kept on the case but not matched (quality below 50)."""
    out = []
    for item in report.get("content") or []:
        q = item.get("pdq_quality")
        if item.get("pdq") and isinstance(q, int) and q < PDQ.min_quality:
            out.append(f"pdq_low_quality_not_matched:{item.get('content_id')}:{q}")
    return out


class TriageStage(StageBase):
    name = STAGE
    # Up to 2 × CENTRE_BATCH_SIZE per batch on a backlog (`centre bench triage`, 1,000,000
    # indicators: five runs at 500 gave 3,169–3,608 reports/s, four at 1,000–2,000 gave
    # 3,522–3,913); under a steady load a batch is what queued meanwhile, far fewer.
    batch_scale = 2

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        with self.sessions() as s:
            self.cluster_pdq = ClusterPDQ.load(s)
            self.indicator_pdq = IndicatorPDQ()
            self.indicator_pdq.refresh(s, force=True)
            # Victims' private banks (victims/): matched here, recorded for the victims
            # worker, never on the case. Reloaded when victim_bank_state changes.
            self.victim_bank = VictimBank(recheck_s=1.0)
            self.victim_bank.refresh(s, force=True)
        log.info("PDQ indexes loaded: %d cluster members, %d indicators",
                 len(self.cluster_pdq.index), len(self.indicator_pdq.index))
        # The banks' PDQ search runs here, in C without the GIL, while the batch's database
        # reads go on in the stage's thread.
        self._searcher = ThreadPoolExecutor(1, thread_name_prefix="triage-pdq")
        self._pdq_banks: Future[dict[str, list[tuple[str, int]]]] | None = None

    def close(self) -> None:
        self._searcher.shutdown(wait=True)
        super().close()

    def _search_banks(self, s: Any, envelopes: list[dict[str, Any]]) -> None:
        """Start the banks' PDQ search for every value of the batch (refreshed banks first);
        `_triage` takes the answers when it needs them."""
        values = sorted({v for e in envelopes for item in e["report"].get("content") or []
                         for k, v in content_signals(item) if k == "pdq"})
        if self._pdq_banks is not None:
            wait([self._pdq_banks])  # a batch of replays only never took its answers
        self.indicator_pdq.refresh(s)
        self._pdq_banks = self._searcher.submit(self.indicator_pdq.near, values)

    def process(self, records: list[Record]) -> Finish:
        metrics.MESSAGES_IN.labels(STAGE).inc(len(records))
        self._new_pdq: list[tuple[str, str]] = []
        envelopes: list[dict[str, Any]] = []
        for r in records:
            try:
                envelopes.append(m.loads(r.value or b""))
            except Exception:
                # Only intake writes this topic; an unreadable message is a bug, kept visible.
                metrics.ERRORS.labels(STAGE, "unreadable_internal_message").inc()
                log.error("unreadable message at %s/%d/%d skipped", r.topic, r.partition, r.offset)
        results: list[dict[str, Any]] = []
        with self.sessions.begin() as s:
            self._search_banks(s, envelopes)
            ids = list({e["report_id"] for e in envelopes})
            reports = Report.__table__.c  # Core statements: no ORM work per row
            done = dict(s.execute(select(reports.report_id, reports.triage).where(
                reports.report_id.in_(ids))).all())
            todo: list[dict[str, Any]] = []
            for e in envelopes:
                prior = done.get(e["report_id"])
                seq = e.get("supplement") or 0
                if prior and (prior.get("supplement") or 0) >= seq:
                    # Read again after a crash: the stored result, not counted a second time.
                    results.append({**prior, "report": e["report"]})
                elif prior is not None and not prior and seq == 0:
                    continue  # a second copy within this batch
                elif seq and any(x["report_id"] == e["report_id"] for x in todo):
                    # A supplement to a report triaged in this same batch: the batch's
                    # clusters are not written yet, so it waits for its own batch.
                    results += self._triage(s, todo)
                    todo = [e]
                    done[e["report_id"]] = {"supplement": seq}
                else:
                    todo.append(e)
                    done[e["report_id"]] = {"supplement": seq}  # later copies are replays
            if todo:
                results += self._triage(s, todo)
        for res in results:
            self.producer.send(TRIAGED, m.dumps(res), key=res["report_id"].encode())
            metrics.OUTCOMES.labels(STAGE, res["category"]).inc()
        metrics.MESSAGES_OUT.labels(STAGE, "triaged").inc(len(results))
        audit.emit(self.producer, [_audit(res) for res in results])
        # Committed: later batches find this batch's PDQ values near their own.
        self.cluster_pdq.add(self._new_pdq)
        self._new_pdq = []
        sent = self.producer.detach()
        # The results are stored: the next batch may go on while the broker acknowledges
        # these (a crash before that sends the stored results again).
        return lambda: self.producer.wait_or_raise(sent)

    def _triage(self, s: Any, envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        now = m.now()
        per_report: list[list[list[Signal]]] = [
            [list(content_signals(item)) for item in media_items(e["report"])] for e in envelopes
        ]
        all_signals = {sig for items in per_report for sigs in items for sig in sigs}
        all_signals |= {sig for e in envelopes for item in e["report"].get("content") or []
                        for sig in content_signals(item)}
        pdq_values = sorted({v for k, v in all_signals if k == "pdq"})
        hits: dict[Signal, set[str]] = {}
        exact = sorted({v for k, v in all_signals if k != "pdq"})
        indicators = Indicator.__table__.c
        for chunk in _chunks(exact, 500):
            for bank, kind, value in s.execute(
                select(indicators.bank, indicators.kind, indicators.value).where(
                    indicators.enabled.is_(True), indicators.value.in_(chunk))
            ):
                if (kind, value) in all_signals:
                    hits.setdefault((kind, value), set()).add(bank)
        clusters = ClusterBatch(s, all_signals, now, near=self.cluster_pdq.near(pdq_values))
        self._new_pdq = clusters.new_pdq
        # A supplement's report is already in clusters: they are not counted again.
        supplemented = [e["report_id"] for e in envelopes if e.get("supplement")]
        member_of: dict[str, set[str]] = {}
        if supplemented:
            for rid, cid in s.execute(select(ReportCluster.report_id, ReportCluster.cluster_id)
                                      .where(ReportCluster.report_id.in_(supplemented))):
                member_of.setdefault(rid, set()).add(cid)
        assert self._pdq_banks is not None, "_search_banks starts every batch's search"
        pdq_banks = self._pdq_banks.result()
        results, updates = [], []
        for e, items in zip(envelopes, per_report):
            report = e["report"]
            matches = bank_matches(report, hits, pdq_banks)
            cls = classify(report, matches, self.settings.extended_p1)
            member = clusters.assign(e["report_id"], e["case_id"], items,
                                     member_of.get(e["report_id"], set()))
            reasons = cls.reasons + low_quality_pdq(report) + [
                f"near_duplicate:pdq_distance:{d}:cluster:{c}" for c, d in member.near] + [
                f"cluster_merged:{a}:into:{b}" for a, b in member.merges]
            if member.times_reported > 1:
                reasons.append(f"reported_before:{member.times_reported - 1}")
            result = {
                **{k: e[k] for k in ("report_id", "case_id", "provider_id", "provider_report_id",
                                     "received_at", "signature")},
                "triaged_at": m.iso(now),
                "supplement": e.get("supplement") or 0,
                "category": cls.category,
                "severity": cls.severity,
                "priority": cls.priority,
                "manifestly_unfounded": cls.manifestly_unfounded,
                "duplicates": {"cluster_ids": member.cluster_ids,
                               "times_reported": member.times_reported,
                               "related_case_ids": member.related_case_ids},
                "indicator_matches": [mt.as_dict() for mt in matches],
                "reasons": reasons,
                "report": report,
            }
            results.append(result)
            stored = {k: v for k, v in result.items() if k != "report"}
            updates.append({"report_id": e["report_id"], "status": "triaged",
                            "category": cls.category, "severity": cls.severity,
                            "priority": cls.priority,
                            "manifestly_unfounded": cls.manifestly_unfounded,
                            "triage": stored, "reasons": reasons, "triaged_at": now})
        clusters.flush()
        table = Report.__table__
        cols = [k for k in updates[0] if k != "report_id"]
        s.execute(update(table).where(table.c.report_id == bindparam("b_report_id")).values(
            {c: bindparam(f"b_{c}") for c in cols}),
            [{f"b_{k}": v for k, v in u.items()} for u in updates])
        live_matches(s, self.victim_bank, envelopes, now)  # victims' banks, in this transaction
        return results


def _audit(res: dict[str, Any]) -> audit.AuditEvent:
    """Cluster, indicator, category, priority and manifestly-unfounded decisions, with
    their reasons, for the audit trail (ids and codes; no report content)."""
    seq = res.get("supplement") or 0
    return audit.AuditEvent(
        actor=STAGE, action="report.triaged", subject=f"report:{res['report_id']}",
        discriminator=f"supplement/{seq}", at=m.parse_time(res["triaged_at"]),
        details={k: res.get(k) for k in (
            "case_id", "category", "severity", "priority", "manifestly_unfounded",
            "duplicates", "indicator_matches", "reasons", "supplement")})


def _chunks(items: list[Any], n: int) -> Any:
    for i in range(0, len(items), n):
        yield items[i:i + n]
