"""`centre bench victims` (over 500 lines: two benches that share the seeded data): a
victim's request against a million stored reports, and the live matching of new reports
beside triage.

1. Past matching. On a fresh database (under CENTRE_HOME/bench/victims-<run>, removed after
   unless kept) `stored` reports are stored as triage leaves them (report, content, cluster,
   cluster signals, cluster link), each with one picture. A request of `hashes` items is then
   filed as the victims worker files it: the request, its bank, the search of every stored
   report (cluster_signals, then the matched reports only), the matches and the removal
   notices queued, in one transaction; then the notices are sent to a broker until
   acknowledged. Some items are stored exactly (one of them in a cluster of 500 reports),
   some as re-encoded copies (PDQ 8-24 bits away), most not at all; the matches found must
   be exactly those. Target: ≤ 10 s for the filing and search.
2. Live matching. Triage on the same backlog of synthetic reports with the victims worker
   beside it (reading `reports.triaged`, group centre-victims-match), on fresh stacks:
   without victims' hashes, and with `victim_hashes` banked (1% of the reports hold one of
   them). Alternated `rounds` times, best of each; target: ≤ 10% less triage throughput, and
   every report matched (the victims worker caught up) within seconds of the last one
   triaged. The cost of the matching itself is also timed in-process (µs per report), free
   of the machine's noise.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import time
import uuid
from typing import Any

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select

from centre import messages as m
from centre.audit.sink import drop
from centre.benchkit import scratch
from centre.db import Provider, Report, ReportContent, make_engine, make_sessionmaker
from centre.settings import Settings
from triage.tables import Cluster, ClusterSignal, ReportCluster
from victims.model import Item
from victims.tables import VictimMatch

console = Console()
PAST_TARGET_S = 10.0
LIVE_TARGET = 0.10
LIVE_BEHIND_S = 10.0  # the victims worker done matching at most this long after triage
_CHUNK = 50_000
VIRAL = 500  # reports of the first exact item, in one cluster


def _hex(rng: np.random.Generator, n: int, nbytes: int) -> list[str]:
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    return [r.tobytes().hex() for r in raw]


def _flip(value: str, bits: int, rng: random.Random) -> str:
    v = int(value, 16)
    for b in rng.sample(range(256), bits):
        v ^= 1 << b
    return f"{v:064x}"


def victim_items(n: int, seed: int) -> list[Item]:
    rng = np.random.default_rng(seed)
    sha, md5, pdq = _hex(rng, n, 32), _hex(rng, n, 16), _hex(rng, n, 32)
    return [Item(i + 1, "image", sha[i], md5[i], pdq[i], 100) for i in range(n)]


def seed_stored(
    engine: Any, stored: int, items: list[Item], now: dt.datetime, seed: int = 11
) -> dict[str, int]:
    """`stored` reports as triage leaves them. Item 1 is in VIRAL reports of one cluster,
    items 2-100 in one report each, byte for byte; items 101-200 as re-encoded copies (other
    bytes, PDQ 8-24 bits away); the rest nowhere. Returns the matches to expect."""
    rng = np.random.default_rng(seed)
    prng = random.Random(seed)
    providers = [f"bench-{i}" for i in range(20)]
    exact = {i: items[i] for i in range(min(100, len(items)))}
    near = {i: items[i] for i in range(100, min(200, len(items)))}
    # which stored report holds which victim item (report numbers spread over the range)
    slots = prng.sample(range(stored), min(stored, VIRAL + len(exact) - 1 + len(near)))
    holder: dict[int, tuple[str, Item]] = {}
    k = 0
    for _ in range(VIRAL if exact else 0):
        holder[slots[k]] = ("viral", exact[0])
        k += 1
    for i in list(exact)[1:]:
        holder[slots[k]] = ("exact", exact[i])
        k += 1
    for i in near:
        holder[slots[k]] = ("near", near[i])
        k += 1
    viral_cluster = m.cluster_id_for("sha256", exact[0].sha256 or "") if exact else ""
    with engine.begin() as c:
        c.execute(
            insert(Provider),
            [{"provider_id": p, "first_seen_at": now, "reports_received": 0} for p in providers],
        )
        if exact:
            c.execute(
                insert(Cluster),
                [
                    {
                        "cluster_id": viral_cluster,
                        "created_at": now,
                        "merged_into": None,
                        "times_reported": VIRAL,
                        "recent_cases": [],
                    }
                ],
            )
            c.execute(
                insert(ClusterSignal),
                [
                    {"kind": k2, "value": getattr(exact[0], k2), "cluster_id": viral_cluster}
                    for k2 in ("sha256", "md5", "pdq")
                ],
            )
    expect = {"reports": 0, "public": 0}
    for start in range(0, stored, _CHUNK):
        n = min(_CHUNK, stored - start)
        sha, md5, pdq = _hex(rng, n, 32), _hex(rng, n, 16), _hex(rng, n, 32)
        reports, contents, clusters, signals, links = [], [], [], [], []
        for j in range(n):
            i = start + j
            pid, prid = providers[i % len(providers)], f"s-{i:07d}"
            rid = m.report_id_for(pid, prid)
            public = i % 2 == 0
            kind, it = holder.get(i, ("", None))
            h: dict[str, str | None] = {"sha256": sha[j], "md5": md5[j], "pdq": pdq[j]}
            if kind in ("viral", "exact") and it is not None:
                h = {"sha256": it.sha256, "md5": it.md5, "pdq": it.pdq}
            elif kind == "near" and it is not None:
                h["pdq"] = _flip(it.pdq or "", prng.randrange(8, 25), prng)
            if it is not None:
                expect["reports"] += 1
                expect["public"] += public
            item = {
                "content_id": "f1",
                "media_type": "image",
                **h,
                "pdq_quality": 90,
                "url": f"https://{pid}.example/m/{i}",
                "publicly_available": public,
                "removed": not public,
            }
            reports.append(
                {
                    "report_id": rid,
                    "case_id": m.case_id_for(rid),
                    "provider_id": pid,
                    "provider_report_id": prid,
                    "received_at": now,
                    "submitted_at": "x",
                    "signature": "absent",
                    "status": "forwarded",
                    "reasons": [],
                    "supplements": 0,
                    "routed_supplements": 0,
                }
            )
            contents.append(
                {
                    "report_id": rid,
                    "body": {
                        "schema": "report/v1",
                        "provider_id": pid,
                        "provider_report_id": prid,
                        "content": [item],
                    },
                }
            )
            if kind == "viral":
                links.append({"report_id": rid, "cluster_id": viral_cluster})
                continue
            sha256 = h["sha256"]
            assert sha256 is not None  # the bench's items carry every hash (`victim_items`)
            cid = m.cluster_id_for("sha256", sha256)
            clusters.append(
                {
                    "cluster_id": cid,
                    "created_at": now,
                    "merged_into": None,
                    "times_reported": 1,
                    "recent_cases": [],
                }
            )
            signals += [{"kind": k2, "value": v, "cluster_id": cid} for k2, v in h.items()]
            links.append({"report_id": rid, "cluster_id": cid})
        with engine.begin() as c:
            c.execute(insert(Report), reports)
            c.execute(insert(ReportContent), contents)
            c.execute(insert(Cluster), clusters)
            c.execute(insert(ClusterSignal), signals)
            c.execute(insert(ReportCluster), links)
        if (start // _CHUNK) % 4 == 3:
            console.print(f"  {start + n:,} reports stored …")
    return expect


def _count_notices(settings: Settings, providers: list[str], timeout: float = 60) -> int:
    """Notices on the providers' topics, read to their ends."""
    from confluent_kafka import Consumer, TopicPartition

    from centre.kafka import base_config, position
    from centre.topology import notices_topic

    c = Consumer(
        {
            **base_config(settings),
            "group.id": f"bench-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        parts = []
        for p in providers:
            t = settings.topic(notices_topic(p))
            md = c.list_topics(t, timeout=10).topics[t]
            parts += [TopicPartition(t, q, 0) for q in md.partitions]
        ends = {
            (tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10)[1] for tp in parts
        }
        c.assign(parts)
        seen = dict.fromkeys(ends, 0)
        n = 0
        deadline = time.monotonic() + timeout
        while any(seen[k] < ends[k] for k in ends) and time.monotonic() < deadline:
            for msg in c.consume(2000, timeout=0.5):
                if msg.error():
                    continue
                topic, partition, offset = position(msg)
                seen[(topic, partition)] = offset + 1
                n += 1
        return n
    finally:
        c.close()


def run_past_bench(
    settings: Settings,
    *,
    stored: int = 1_000_000,
    hashes: int = 1_000,
    keep: bool = False,
    database_url: str | None = None,
) -> tuple[bool, Table]:
    """Part 1; returns (target met and matches exactly as seeded, the figures)."""
    from centre.kafka import BatchProducer, ProviderTopics
    from victims import flow

    with scratch(settings, "victims", database_url=database_url, keep=keep, topic_tag="vb") as (
        run,
        home,
        s,
    ):
        engine = make_engine(s.database_url)
        sessions = make_sessionmaker(engine)
        now = m.now()
        items = victim_items(hashes, 3)
        t0 = time.perf_counter()
        console.print(f"storing {stored:,} reports as triage leaves them …")
        expect = seed_stored(engine, stored, items, now)
        seeded_in = time.perf_counter() - t0
        rid = str(uuid.uuid4())
        doc = request_doc(rid, items, now)
        producer = BatchProducer(s)
        topics = ProviderTopics(s)
        console.print(
            f"{stored:,} reports stored in {seeded_in:.0f} s; filing a request of "
            f"{hashes:,} hashes …"
        )
        t0 = time.perf_counter()
        with sessions.begin() as ses:
            filed = flow.file_request(ses, doc, items, source="bench", now=m.now())
            drop(ses)  # (the worker would emit them)
        t1 = time.perf_counter()
        sent = flow.dispatch(
            sessions, producer, topics, now=m.now(), repeat=dt.timedelta(hours=24), escalate_after=3
        )
        t2 = time.perf_counter()
        with sessions() as ses:
            providers = sorted(set(ses.scalars(select(VictimMatch.provider_id))))
            found = ses.scalar(select(func.count()).select_from(VictimMatch)) or 0
        on_topics = _count_notices(s, providers) if providers else 0
        producer.close()
        engine.dispose()
        searched = filed.searched
        backend = "SQLite" if s.database_url.startswith("sqlite") else "PostgreSQL"
        t = Table(
            title=f"centre bench victims: past matching ({hashes:,} hashes against "
            f"{stored:,} stored reports, {backend})"
        )
        t.add_column("figure")
        t.add_column("value", justify="right")
        t.add_row("clusters / reports checked", f"{searched.clusters:,} / {searched.reports:,}")
        t.add_row("matches found / seeded", f"{found:,} / {expect['reports']:,}")
        t.add_row(
            "removal notices queued / expected (public)",
            f"{searched.notices:,} / {expect['public']:,}",
        )
        t.add_row(
            "filing + search of every stored report + notices queued",
            f"{t1 - t0:.2f} s (target ≤ {PAST_TARGET_S:.0f} s)",
        )
        t.add_row("sending the notices until acknowledged", f"{t2 - t1:.2f} s")
        t.add_row("notices on the providers' topics", f"{on_topics:,} (sent {sent.sent:,})")
        ok = (
            t1 - t0 <= PAST_TARGET_S
            and found == expect["reports"]
            and searched.notices == expect["public"] == sent.sent == on_topics
        )
        return ok, t


def request_doc(rid: str, items: list[Item], now: dt.datetime) -> dict[str, Any]:
    from victims import pin as pins
    from victims.model import build_request

    return build_request(
        request_id=rid,
        items=items,
        pin_hash=pins.hash_pin(pins.new_pin()),
        filed_by="bench",
        requested_at=now,
        identity_recorded=False,
    )


# ------------------------------------------------------------------------------- live


def _reports(run: str, n: int, bank: list[Item], share: float, seed: int) -> list[dict[str, Any]]:
    """The synthetic mix of `centre bench`; `share` of them hold a victim's picture (half
    byte for byte, half re-encoded)."""
    from centre import samples

    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = samples.synthetic(i, run, rng, 0.05)
        if bank and rng.random() < share:
            it = rng.choice(bank)
            c = r["content"][0]
            if rng.random() < 0.5:
                c.update(sha256=it.sha256, md5=it.md5, pdq=it.pdq)
            else:
                c["pdq"] = _flip(it.pdq or "", rng.randrange(4, 25), rng)
        out.append(r)
    return out


def _caught_up_at(settings: Settings, timeout: float) -> float:
    """When the victims worker's live matching has committed all of reports.triaged (wall
    time), or NaN after `timeout`."""
    from confluent_kafka import KafkaException

    from centre.metrics import group_lag, lag_reader
    from centre.topology import READERS, TRIAGED

    c = lag_reader(settings, READERS["victims-match"].name)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                lag = group_lag(c, settings.topic(TRIAGED))
            except KafkaException:  # the group's coordinator not ready yet
                lag = -1
            if lag == 0:
                return time.time()
            time.sleep(0.1)
        return float("nan")
    finally:
        c.close()


def _triage_once(
    settings: Settings, reports: list[dict[str, Any]], bank: list[Item], keep: bool
) -> dict[str, float]:
    """A fresh stack with intake only; the reports accepted; `bank` filed as requests of
    1,000; then the victims worker and the triage worker: triage's rate from first to last
    output, and how long after the last output the victims worker had matched them all."""
    from centre.benchkit import (
        bench_producer,
        collect_cases,
        fresh,
        intake_ids,
        produce_stamped,
        span_rate,
        start_worker,
    )
    from centre.stack import Stack
    from centre.topology import ACCEPTED, INTAKE, TRIAGED
    from victims import flow

    run, home, s = fresh(settings)
    if s.kafka_bootstrap is not None:
        s = s.with_(topic_prefix=f"{s.topic_prefix}vt{run}.")
    try:
        with Stack(s, stages=("intake",)):
            engine = make_engine(s.database_url)
            sessions = make_sessionmaker(engine)
            now = m.now()
            for start in range(0, len(bank), 1000):
                part = bank[start : start + 1000]
                with sessions.begin() as ses:
                    flow.file_request(
                        ses,
                        request_doc(str(uuid.uuid4()), part, now),
                        part,
                        source="bench",
                        now=now,
                    )
                    drop(ses)
            msgs = [
                (f"{r['provider_id']}/{r['provider_report_id']}".encode(), orjson.dumps(r))
                for r in reports
            ]
            sent_at: dict[bytes, float] = {}
            produce_stamped(bench_producer(s), s.topic(INTAKE), msgs, sent_at=sent_at)
            keys = {rid for rid, _case in intake_ids(sent_at).values()}
            accepted = collect_cases(s, keys, 600, s.topic(ACCEPTED))
            v, _vstarted, vrss = start_worker("victims", s, home)
            w, _started, rss = start_worker("triage", s, home)
            try:
                out = collect_cases(s, keys, 900, s.topic(TRIAGED), alive=w.alive)
                cpu = rss.cpu_seconds().get("worker triage", float("nan"))
                caught = _caught_up_at(s, 300) if out else float("nan")
                vcpu = vrss.cpu_seconds().get("worker victims", float("nan"))
            finally:
                rss.stop()
                vrss.stop()
                w.stop()
                v.stop()
            with sessions() as ses:
                matches = ses.scalar(select(func.count()).select_from(VictimMatch)) or 0
            engine.dispose()
        if not out:
            return {
                "rate": 0.0,
                "cpu": cpu,
                "vcpu": vcpu,
                "matches": matches,
                "triaged": 0,
                "accepted": len(accepted),
                "behind": float("nan"),
            }
        _first, rate = span_rate(out)
        return {
            "rate": rate,
            "cpu": cpu,
            "vcpu": vcpu,
            "matches": matches,
            "triaged": len(out),
            "accepted": len(accepted),
            "behind": max(0.0, caught - max(out.values())),
        }
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def matching_cost(reports: list[dict[str, Any]], bank: list[Item]) -> float:
    """µs per report of the live matching (in-process, as `live_rows` does it)."""
    from victims.bank import VictimBank
    from victims.matching import live_rows

    vb = VictimBank.from_rows(
        [("r", it.item, k, v, it.pdq_quality) for it in bank for k, v in it.hashes()]
    )
    envs = []
    for r in reports:
        rid = m.report_id_for(r["provider_id"], r["provider_report_id"])
        envs.append(
            {
                "report_id": rid,
                "case_id": m.case_id_for(rid),
                "provider_id": r["provider_id"],
                "provider_report_id": r["provider_report_id"],
                "received_at": "2026-11-23T12:00:00.000Z",
                "report": r,
            }
        )
    now = m.now()
    t0 = time.perf_counter()
    for i in range(0, len(envs), 500):  # batches of the victims worker's reads
        live_rows(vb, envs[i : i + 500], now)
    return (time.perf_counter() - t0) / max(1, len(envs)) * 1e6


def run_live_bench(
    settings: Settings,
    *,
    reports: int = 20_000,
    victim_hashes: int = 10_000,
    rounds: int = 2,
    keep: bool = False,
) -> tuple[bool, Table]:
    """Part 2; returns (target met, the figures)."""
    run = uuid.uuid4().hex[:6]
    bank = victim_items(victim_hashes, 5)
    docs = _reports(run, reports, bank, 0.01, 9)
    rates: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    for r in range(rounds):
        for label, b in (("without", []), ("with", bank)):
            console.print(
                f"round {r + 1}/{rounds}: triage of {reports:,} reports, the victims "
                f"worker beside it, {label} {victim_hashes:,} victims' hashes "
                "banked …"
            )
            rates[label].append(_triage_once(settings, docs, b, keep))
    best = {k: max(v, key=lambda x: x["rate"]) for k, v in rates.items()}
    overhead = (
        1 - best["with"]["rate"] / best["without"]["rate"]
        if best["without"]["rate"]
        else float("nan")
    )
    cost = matching_cost(docs, bank)
    t = Table(
        title=f"centre bench victims: live matching beside triage ({reports:,} reports, "
        f"{victim_hashes:,} victims' hashes, best of {rounds})"
    )
    t.add_column("figure")
    t.add_column("value", justify="right")
    for k in ("without", "with"):
        runs = ", ".join(f"{x['rate']:,.0f}" for x in rates[k])
        t.add_row(f"triage throughput {k} the victims' hashes", f"{runs} reports/s")
        t.add_row(
            f"  CPU of worker triage per 1,000 reports ({k}, best run)",
            f"{best[k]['cpu'] * 1000 / max(1, best[k]['triaged']):.3f} s",
        )
        t.add_row(
            f"  CPU of worker victims per 1,000 reports ({k}, best run)",
            f"{best[k]['vcpu'] * 1000 / max(1, best[k]['triaged']):.3f} s",
        )
        t.add_row(
            f"  victims worker caught up after the last report triaged ({k}, best run)",
            f"{best[k]['behind']:.2f} s",
        )
    t.add_row(
        "victims' matches recorded by the victims worker (best run with)",
        f"{int(best['with']['matches']):,}",
    )
    t.add_row(
        "throughput lost (best with vs best without)",
        f"{overhead * 100:.1f} % (target ≤ {LIVE_TARGET * 100:.0f} %)",
    )
    t.add_row("matching cost in-process (victims' bank, per report)", f"{cost:.1f} µs")
    ok = (
        overhead <= LIVE_TARGET
        and best["with"]["triaged"] == reports
        and best["without"]["triaged"] == reports
        and best["with"]["matches"] > 0
        and all(best[k]["behind"] <= LIVE_BEHIND_S for k in best)
    )
    return ok, t


def run_victims_bench(
    settings: Settings,
    stored: int = 1_000_000,
    hashes: int = 1_000,
    *,
    reports: int = 20_000,
    victim_hashes: int = 10_000,
    rounds: int = 2,
    live: bool = True,
    keep: bool = False,
    database_url: str | None = None,
) -> int:
    """Both parts; prints the figures; 0 when every target is met."""
    ok, t = run_past_bench(
        settings, stored=stored, hashes=hashes, keep=keep, database_url=database_url
    )
    console.print(t)
    if not ok:
        console.print("[red]past matching: target not met or matches not as seeded[/]")
    if live:
        ok_live, t = run_live_bench(
            settings, reports=reports, victim_hashes=victim_hashes, rounds=rounds, keep=keep
        )
        console.print(t)
        if not ok_live:
            console.print("[red]live matching: target not met[/]")
        ok = ok and ok_live
    return 0 if ok else 1
