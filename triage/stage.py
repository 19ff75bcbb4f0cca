"""Triage: clusters, indicator banks, category, severity, priority, manifestly unfounded.

The result is stored on the report in the batch's transaction; a report read again after a
crash is not counted again: its stored result is sent once more.

A batch is decided in the stage's thread, reading the database only; its rows are written,
committed and then sent by the batch's `finish`, on the worker's second thread, while the
next batch is decided. That next batch takes what the batch before changed (clusters, their
signals, results) from memory until it is committed (`triage.clusters.Unwritten`).
"""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from centre import audit, metrics
from centre import messages as m
from centre.db import Report, prepare_rows, quarantine_report
from centre.runtime import Finish, QuarantineNotice, Record, StageBase
from centre.settings import Settings
from centre.topology import TRIAGED
from triage.clusters import ClusterBatch, ClusterWrites, Signal, Unwritten, prepare_clusters
from triage.near import ClusterPDQ, IndicatorPDQ
from triage.rules import Match, classify, media_items
from triage.signals import PDQ, content_signals
from triage.tables import Indicator, ReportCluster

log = logging.getLogger(__name__)
STAGE = "triage"


_KIND_ORDER = {"sha256": 0, "md5": 1, "pdq": 2}


def item_signals(envelopes: list[dict[str, Any]]) -> dict[int, list[Signal]]:
    """Every content item's signals, worked out once per batch (by the item's id())."""
    return {
        id(item): list(content_signals(item))
        for e in envelopes
        for item in e["report"].get("content") or []
    }


def bank_matches(
    report: dict[str, Any],
    hits: dict[Signal, set[str]],
    pdq_near: dict[str, list[tuple[str, int]]] | None = None,
    signals: dict[int, list[Signal]] | None = None,
) -> list[Match]:
    """One match per content item and bank: the strongest signal (an exact hash before a PDQ
    match, a nearer PDQ before a farther one), with its distance. `signals`: the items'
    signals from `item_signals`, else worked out here."""
    out: list[Match] = []
    pdq_near = pdq_near or {}
    for item in report.get("content") or []:
        best: dict[str, tuple[int, int, str]] = {}  # bank -> (distance, kind order, kind)
        for kind, value in signals[id(item)] if signals is not None else content_signals(item):
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


@dataclass(slots=True)
class _Triaged:
    """What `_triage` decided for some reports: the results to send, the rows to write."""

    results: list[dict[str, Any]]
    updates: list[dict[str, Any]]  # their `reports` rows
    clusters: ClusterWrites


@dataclass(slots=True)
class _Pending:
    """A batch handed to its `finish` to be written: its stored results (per report) and
    cluster changes, for the next batch to read until `clusters.written` is set."""

    results: dict[str, dict[str, Any]]
    clusters: Unwritten
    before: _Pending | None  # the batch handed over before it


class TriageStage(StageBase):
    name = STAGE
    # Up to 4 × CENTRE_BATCH_SIZE per batch on a backlog: the batch's reads and its writes
    # overlap, and larger batches spread their fixed costs (`centre bench triage`, 1,000,000
    # indicators, this session: up to 1,000 per batch 4,602–4,834 reports/s, up to 2,000
    # 5,368–5,490); under a steady load a batch is what queued meanwhile, far fewer.
    batch_scale = 4
    # Only `finish` sends, one batch at a time, and flushes: the broker's acknowledgements
    # need no Python call each (they cost the worker's second thread a fifth of its time).
    producer_options = {"delivery.report.only.error": True}

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        with self.sessions() as s:
            self.cluster_pdq = ClusterPDQ.load(s)
            self.indicator_pdq = IndicatorPDQ()
            self.indicator_pdq.refresh(s, force=True)
        log.info(
            "PDQ indexes loaded: %d cluster members, %d indicators",
            len(self.cluster_pdq.index),
            len(self.indicator_pdq.index),
        )
        # The banks' PDQ search runs here, in C without the GIL, while the batch's database
        # reads go on in the stage's thread.
        self._searcher = ThreadPoolExecutor(1, thread_name_prefix="triage-pdq")
        self._pdq_banks: Future[dict[str, list[tuple[str, int]]]] | None = None
        self._pending: _Pending | None = None  # the last batch handed over to be written

    def close(self) -> None:
        self._searcher.shutdown(wait=True)
        super().close()

    def _search_banks(self, s: Any, signals: dict[int, list[Signal]]) -> None:
        """Start the banks' PDQ search for every value of the batch (refreshed banks first);
        `_triage` takes the answers when it needs them."""
        values = sorted({v for sigs in signals.values() for k, v in sigs if k == "pdq"})
        if self._pdq_banks is not None:
            wait([self._pdq_banks])  # a batch of replays only never took its answers
        self.indicator_pdq.refresh(s)
        self._pdq_banks = self._searcher.submit(self.indicator_pdq.near, values)

    def quarantine_notice(
        self, s: Any, record: Record, reason: dict[str, str], at: dt.datetime
    ) -> QuarantineNotice | None:
        """A report set aside here is `quarantined` on its record; its company is told unless
        it already had its final status. The key is the report id (the value is not read)."""
        report_id = (record.key or b"").decode("utf-8", "replace")
        ids = quarantine_report(s, report_id, reason, at)
        return QuarantineNotice(ids[0], ids[1], report_id) if ids else None

    def process(self, records: list[Record]) -> Finish:
        metrics.MESSAGES_IN.labels(STAGE).inc(len(records))
        envelopes: list[dict[str, Any]] = []
        for r in records:
            try:
                envelopes.append(m.loads(r.value or b""))
            except Exception:
                # Only intake writes this topic; an unreadable message is a bug, kept visible.
                metrics.ERRORS.labels(STAGE, "unreadable_internal_message").inc()
                log.error("unreadable message at %s/%d/%d skipped", r.topic, r.partition, r.offset)
        pending = self._pending
        if pending is not None and pending.before is not None:
            pending.before.clusters.written.wait()  # only the last batch may be unwritten
            pending.before = None
        # A supplement's report already counts in clusters: its batch reads what is stored
        # and writes at once (merging its clusters asks the database about its own links).
        at_once = any(e.get("supplement") for e in envelopes)
        if at_once and pending is not None:
            pending.clusters.written.wait()
            pending = self._pending = None
        results: list[dict[str, Any]] = []
        runs: list[_Triaged] = []
        with self.sessions.begin() if at_once else self.sessions() as s:
            signals = item_signals(envelopes)
            self._search_banks(s, signals)
            ids = list({e["report_id"] for e in envelopes})
            reports = Report.__table__.c  # Core statements: no ORM work per row
            done = dict(
                s.execute(
                    select(reports.report_id, reports.triage).where(reports.report_id.in_(ids))
                ).all()
            )
            if pending is not None:
                done.update((i, pending.results[i]) for i in ids if i in pending.results)
            todo: list[dict[str, Any]] = []
            # The supplement number each report of this batch was taken at: a second copy
            # of a report (intake sends it again after a crash) is a replay of the first.
            taken: dict[str, int] = {}
            for e in envelopes:
                rid, seq = e["report_id"], e.get("supplement") or 0
                if taken.get(rid, -1) >= seq:
                    continue  # a copy within this batch: the first copy's result goes out
                prior = done.get(rid)
                if prior and (prior.get("supplement") or 0) >= seq:
                    # Read again after a crash: the stored result, not counted a second time.
                    results.append({**prior, "report": e["report"]})
                elif seq and any(x["report_id"] == rid for x in todo):
                    # A supplement to a report triaged in this same batch: the batch's
                    # clusters are not written yet, so it waits for its own batch.
                    runs.append(self._triage(s, signals, todo, None))
                    self._write(s, runs[-1])
                    results += runs[-1].results
                    todo = [e]
                else:
                    todo.append(e)
                taken[rid] = seq
            if todo:
                runs.append(
                    self._triage(
                        s, signals, todo, None if at_once or pending is None else pending.clusters
                    )
                )
                if at_once:
                    self._write(s, runs[-1])
                results += runs[-1].results
        if at_once or not runs:
            return lambda: self._send(results)  # written (or nothing to write)
        run = runs[0]
        handed = self._pending = _Pending(
            {u["report_id"]: u["triage"] for u in run.updates}, Unwritten(run.clusters), pending
        )

        def finish() -> None:
            with self.sessions.begin() as w:
                self._write(w, run)
            handed.clusters.written.set()
            self._send(results)

        return finish

    def _write(self, s: Any, run: _Triaged) -> None:
        """The batch's rows, converted before the first write takes the write lock."""
        writes = prepare_clusters(s, run.clusters) + [
            prepare_rows(s, Report.__table__, run.updates, key="report_id")
        ]
        for write in writes:
            write()

    def _send(self, results: list[dict[str, Any]]) -> None:
        """A batch's results and audit events, once stored; done when the broker has them
        (a crash before that sends the stored results again). Batches' finishes run one
        after another, so a flush waits for this batch's messages only."""
        for res in results:
            self.producer.send(TRIAGED, m.dumps(res), key=res["report_id"].encode())
            metrics.OUTCOMES.labels(STAGE, res["category"]).inc()
        metrics.MESSAGES_OUT.labels(STAGE, "triaged").inc(len(results))
        audit.emit(self.producer, [_audit(res) for res in results])
        self.producer.flush_or_raise()

    def _triage(
        self,
        s: Any,
        signals: dict[int, list[Signal]],
        envelopes: list[dict[str, Any]],
        unwritten: Unwritten | None,
    ) -> _Triaged:
        """Decide `envelopes`, reading `s` (and `unwritten`, the batch before, if it may not
        be stored yet); the PDQ values placed join the index at once."""
        now = m.now()
        per_report: list[list[list[Signal]]] = [
            [signals[id(item)] for item in media_items(e["report"])] for e in envelopes
        ]
        all_signals = {
            sig
            for e in envelopes
            for item in e["report"].get("content") or []
            for sig in signals[id(item)]
        }  # media items' among them
        pdq_values = sorted({v for k, v in all_signals if k == "pdq"})
        hits: dict[Signal, set[str]] = {}
        # Exact kinds are asked of the database only when the banks may hold them.
        exact = sorted(
            {
                v
                for k, v in self.indicator_pdq.exact.maybe(
                    [sig for sig in all_signals if sig[0] != "pdq"]
                )
            }
        )
        indicators = Indicator.__table__.c
        for chunk in _chunks(exact, 500):
            for bank, kind, value in s.execute(
                select(indicators.bank, indicators.kind, indicators.value).where(
                    indicators.enabled.is_(True), indicators.value.in_(chunk)
                )
            ):
                if (kind, value) in all_signals:
                    hits.setdefault((kind, value), set()).add(bank)
        clusters = ClusterBatch(
            s, all_signals, now, near=self.cluster_pdq.near(pdq_values), unwritten=unwritten
        )
        # A supplement's report is already in clusters: they are not counted again.
        supplemented = [e["report_id"] for e in envelopes if e.get("supplement")]
        member_of: dict[str, set[str]] = {}
        if supplemented:
            for rid, cid in s.execute(
                select(ReportCluster.report_id, ReportCluster.cluster_id).where(
                    ReportCluster.report_id.in_(supplemented)
                )
            ):
                member_of.setdefault(rid, set()).add(cid)
        assert self._pdq_banks is not None, "_search_banks starts every batch's search"
        pdq_banks = self._pdq_banks.result()
        results, updates = [], []
        for e, items in zip(envelopes, per_report):
            report = e["report"]
            matches = bank_matches(report, hits, pdq_banks, signals)
            cls = classify(report, matches, self.settings.extended_p1)
            member = clusters.assign(
                e["report_id"], e["case_id"], items, member_of.get(e["report_id"], set())
            )
            reasons = (
                cls.reasons
                + low_quality_pdq(report)
                + [f"near_duplicate:pdq_distance:{d}:cluster:{c}" for c, d in member.near]
                + [f"cluster_merged:{a}:into:{b}" for a, b in member.merges]
            )
            if member.times_reported > 1:
                reasons.append(f"reported_before:{member.times_reported - 1}")
            result = {
                **{
                    k: e[k]
                    for k in (
                        "report_id",
                        "case_id",
                        "provider_id",
                        "provider_report_id",
                        "received_at",
                        "signature",
                    )
                },
                "triaged_at": m.iso(now),
                "supplement": e.get("supplement") or 0,
                "category": cls.category,
                "severity": cls.severity,
                "priority": cls.priority,
                "manifestly_unfounded": cls.manifestly_unfounded,
                "duplicates": {
                    "cluster_ids": member.cluster_ids,
                    "times_reported": member.times_reported,
                    "related_case_ids": member.related_case_ids,
                },
                "indicator_matches": [mt.as_dict() for mt in matches],
                "reasons": reasons,
                "report": report,
            }
            results.append(result)
            stored = {k: v for k, v in result.items() if k != "report"}
            updates.append(
                {
                    "report_id": e["report_id"],
                    "status": "triaged",
                    "category": cls.category,
                    "severity": cls.severity,
                    "priority": cls.priority,
                    "manifestly_unfounded": cls.manifestly_unfounded,
                    "triage": stored,
                    "reasons": reasons,
                    "triaged_at": now,
                }
            )
        # Later batches find this batch's PDQ values near their own (before they are stored:
        # a batch that fails stops the worker, and the index with it).
        self.cluster_pdq.add(clusters.new_pdq)
        return _Triaged(results, updates, clusters.take_writes())


def _audit(res: dict[str, Any]) -> audit.AuditEvent:
    """Cluster, indicator, category, priority and manifestly-unfounded decisions, with
    their reasons, for the audit trail (ids and codes; no report content)."""
    seq = res.get("supplement") or 0
    return audit.AuditEvent(
        actor=STAGE,
        action="report.triaged",
        subject=f"report:{res['report_id']}",
        discriminator=f"supplement/{seq}",
        at=m.parse_time(res["triaged_at"]),
        ordered_by=m.parse_time(res["received_at"]),
        details={
            k: res.get(k)
            for k in (
                "case_id",
                "category",
                "severity",
                "priority",
                "manifestly_unfounded",
                "duplicates",
                "indicator_matches",
                "reasons",
                "supplement",
            )
        },
    )


def _chunks(items: list[Any], n: int) -> Any:
    for i in range(0, len(items), n):
        yield items[i : i + n]
