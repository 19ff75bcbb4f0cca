"""`centre bench`: the whole pipeline's figures on a stack it starts for the purpose
(throughput, P1 latency at a paced rate, the raw pass-through; see `centre.benchkit`).
"""

from __future__ import annotations

import os
import time
from typing import Any

from centre.benchkit import (
    RssSampler,
    bench_producer,
    case_ids_of,
    cleaning,
    collect_cases,
    console,
    figures,
    fresh,
    intake_ids,
    lock_figures,
    pct,
    produce_stamped,
    raw_passthrough,
    synthetic_messages,
)
from centre.settings import Settings
from centre.stack import Stack
from centre.topology import ACCEPTED, INTAKE, TRIAGED


@cleaning
def run_bench(
    settings: Settings,
    *,
    reports: int,
    p1_share: float,
    paced_rate: float = 1000.0,
    paced_seconds: float = 30.0,
    postgres: str | None = None,
    victim_hashes: int = 0,
) -> int:
    """The whole pipeline; on a scratch database made on the PostgreSQL server of
    `postgres` (and dropped after) when given, else on a new SQLite file. With
    `victim_hashes`, that many victims' hashes are banked first (open requests), 1 % of the
    paced reports hold one, and the time from sending such a report to its match is
    measured."""
    if not postgres:
        return _run_bench(
            settings, None, reports, p1_share, paced_rate, paced_seconds, victim_hashes
        )
    from centre.audit.bench import _pg_scratch

    url, drop = _pg_scratch(postgres)
    try:
        return _run_bench(
            settings, url, reports, p1_share, paced_rate, paced_seconds, victim_hashes
        )
    finally:
        drop()


def _run_bench(
    settings: Settings,
    database_url: str | None,
    reports: int,
    p1_share: float,
    paced_rate: float,
    paced_seconds: float,
    victim_hashes: int = 0,
) -> int:
    run, home, settings = fresh(settings, database_url)
    console.print(f"bench {run}: starting a fresh stack under {home} …")
    with Stack(settings) as stack:
        pids = {f"worker {s}": w.pid for s, w in stack.workers.items() if w.pid}
        pids["bench (producing, collecting)"] = os.getpid()
        if stack.broker and stack.broker.process:
            pids["broker"] = stack.broker.process.pid
        rss = RssSampler(pids).start()  # type: ignore[arg-type]
        producer = bench_producer(settings)
        intake = settings.topic(INTAKE)

        # Warm-up: provider topics created, caches filled, the broker JIT-compiled (a
        # freshly started JVM spends a core compiling for its first seconds) before timing.
        warm, _ = synthetic_messages(run + "w", 10000, p1_share, 1)
        warm_at: dict[bytes, float] = {}
        produce_stamped(producer, intake, warm, sent_at=warm_at)
        collect_cases(settings, case_ids_of(intake_ids(warm_at)), 120)
        bank = _bank_victims(settings, victim_hashes) if victim_hashes else []

        msgs, _ = synthetic_messages(run, reports, p1_share, 2)
        console.print(f"phase 1: {reports} reports as fast as they can be produced …")
        cpu_before = rss.cpu_seconds()
        phase1_at: dict[bytes, float] = {}
        first = produce_stamped(producer, intake, msgs, sent_at=phase1_at)
        produced_in = time.time() - first
        arrived = collect_cases(settings, case_ids_of(intake_ids(phase1_at)), 600)
        cpu_after = rss.cpu_seconds()
        cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_after if k in cpu_before}
        e2e = len(arrived) / (max(arrived.values()) - first) if arrived else 0.0

        # The latency phase measures the pipeline at a steady rate, not the tail of phase 1:
        # every worker (the audit writer too) first works off its backlog.
        stack.wait_caught_up(600)
        n_paced = int(paced_rate * paced_seconds)
        console.print(f"phase 2: {n_paced} reports paced at {paced_rate:.0f}/s …")
        logs = {s: w.log_path for s, w in stack.workers.items()}
        locks_before = lock_figures(logs)
        cpu_at_pace = rss.cpu_seconds()
        paced_started = time.time()
        paced, paced_prio = synthetic_messages(run + "p", n_paced, max(p1_share, 0.05), 3)
        paced, holding = _with_victims(paced, bank, 0.01, 4)
        sent_at: dict[bytes, float] = {}
        produce_stamped(producer, intake, paced, sent_at=sent_at, rate=paced_rate)
        ids = intake_ids(sent_at)
        paced_arrived = collect_cases(settings, case_ids_of(ids), 300)
        paced_took = time.time() - paced_started
        matched_after = _match_delays(settings, holding, ids, sent_at) if holding else []
        locks_after = lock_figures(logs)
        cpu_paced = {
            k: (v - cpu_at_pace[k]) / paced_took
            for k, v in rss.cpu_seconds().items()
            if k in cpu_at_pace
        }
        lat: dict[str, list[float]] = {"P1": [], "P2": []}
        for k, t0 in sent_at.items():
            case = ids[k][1]
            if case in paced_arrived:
                lat[paced_prio[k]].append(paced_arrived[case] - t0)
        # Where a P1 report's time goes: broker append times of the same report on each
        # stage's output topic (intake → reports.accepted, triage → reports.triaged,
        # routing → le.europol).
        p1 = {k: ids[k][1] for k in sent_at if paced_prio[k] == "P1"}
        rid = {k: ids[k][0] for k in p1}
        at_acc = collect_cases(settings, set(rid.values()), 60, settings.topic(ACCEPTED))
        at_tri = collect_cases(settings, set(rid.values()), 60, settings.topic(TRIAGED))
        hops: dict[str, list[float]] = {"intake": [], "triage": [], "routing": []}
        for k, case in p1.items():
            a, t = at_acc.get(rid[k]), at_tri.get(rid[k])
            if a is None or t is None or case not in paced_arrived:
                continue
            hops["intake"].append(a - sent_at[k])
            hops["triage"].append(t - a)
            hops["routing"].append(paced_arrived[case] - t)

        console.print("phase 3: raw Kafka pass-through of the same messages …")
        raw = raw_passthrough(settings, reports)
        rss.stop()

    backend = "PostgreSQL" if settings.database_url.startswith("postgresql") else "SQLite"
    table = figures(
        f"centre bench ({reports} reports, {backend}, 2-core machine, broker on the same host)"
    )
    table.add_row("reports produced in", f"{produced_in:.2f} s")
    table.add_row("cases delivered (phase 1)", f"{len(arrived)} / {reports}")
    table.add_row("end-to-end throughput", f"{e2e:,.0f} reports/s")
    table.add_row("raw pass-through (consume→produce)", f"{raw:,.0f} messages/s")
    table.add_row("ratio end-to-end / raw", f"{e2e / raw:.3f}" if raw else "n/a")
    for p in ("P1", "P2"):
        v = lat[p]
        table.add_row(
            f"{p} latency at {paced_rate:.0f}/s (n={len(v)}) p50 / p99",
            f"{pct(v, 0.5) * 1000:,.0f} ms / {pct(v, 0.99) * 1000:,.0f} ms",
        )
    for hop, v in hops.items():
        table.add_row(
            f"  P1 time in {hop} (produce or previous output → its output) p50 / p99",
            f"{pct(v, 0.5) * 1000:,.0f} ms / {pct(v, 0.99) * 1000:,.0f} ms",
        )
    for name in sorted(locks_after):
        after, before = locks_after[name], locks_before.get(name, (0.0, 0.0, 0.0, 0.0))
        n = after[1] - before[1]
        if n < 1:
            continue
        table.add_row(
            f"  SQLite write lock at {paced_rate:.0f}/s, {name}: transactions / mean wait "
            "/ mean held / share of time held",
            f"{n:,.0f} / {(after[0] - before[0]) / n * 1000:,.1f} ms / "
            f"{(after[2] - before[2]) / n * 1000:,.1f} ms / "
            f"{(after[2] - before[2]) / paced_took:.0%}",
        )
    for name, b in sorted(rss.peak.items()):
        table.add_row(f"peak RSS {name}", f"{b / 1e6:,.0f} MB")
    for name, secs in sorted(cpu.items()):
        table.add_row(f"CPU per 1,000 reports (phase 1) {name}", f"{secs * 1000 / reports:.2f} s")
    for name, share in sorted(cpu_paced.items()):
        table.add_row(f"CPU at {paced_rate:.0f}/s (phase 2) {name}", f"{share:.0%} of a core")
    if victim_hashes:
        table.add_row("victims' hashes banked (open requests)", f"{victim_hashes:,}")
        table.add_row(
            "paced reports holding a victim's picture / matched",
            f"{len(holding)} / {len(matched_after)}",
        )
        table.add_row(
            "  time from sending to the match p50 / p99 / max",
            f"{pct(matched_after, 0.5) * 1000:,.0f} ms / {pct(matched_after, 0.99) * 1000:,.0f}"
            f" ms / {max(matched_after, default=float('nan')) * 1000:,.0f} ms",
        )
    console.print(table)
    if len(arrived) < reports:
        console.print(f"[red]{reports - len(arrived)} cases did not arrive[/]")
        return 1
    return 0


def _bank_victims(settings: Settings, n: int) -> list[Any]:
    """`n` victims' hashes filed as open requests of 1,000 (as a case handler files them);
    the victims worker reloads its bank on its next read."""
    import uuid

    from centre import messages as m
    from centre.audit.sink import drop
    from centre.db import make_engine, make_sessionmaker
    from victims import flow
    from victims.bench import request_doc, victim_items

    bank = victim_items(n, 5)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    now = m.now()
    for start in range(0, n, 1000):
        part = bank[start : start + 1000]
        with sessions.begin() as ses:
            flow.file_request(
                ses, request_doc(str(uuid.uuid4()), part, now), part, source="bench", now=now
            )
            drop(ses)  # its audit events: the bench is not the centre's staff
    engine.dispose()
    console.print(f"{n:,} victims' hashes banked")
    return bank


def _with_victims(
    msgs: list[tuple[bytes, bytes]], bank: list[Any], share: float, seed: int
) -> tuple[list[tuple[bytes, bytes]], set[bytes]]:
    """`msgs` with `share` of them holding a banked picture byte for byte; their keys."""
    import random

    import orjson

    if not bank:
        return msgs, set()
    rng = random.Random(seed)
    out, holding = [], set()
    for key, value in msgs:
        if rng.random() < share:
            doc = orjson.loads(value)
            it = rng.choice(bank)
            doc["content"][0].update(sha256=it.sha256, md5=it.md5, pdq=it.pdq)
            value = orjson.dumps(doc)
            holding.add(key)
        out.append((key, value))
    return out, holding


def _match_delays(
    settings: Settings,
    holding: set[bytes],
    ids: dict[bytes, tuple[bytes, bytes]],
    sent_at: dict[bytes, float],
    timeout: float = 60.0,
) -> list[float]:
    """Seconds from sending each report of `holding` to its match being recorded, waiting
    up to `timeout` for the last ones."""
    import datetime as dt

    from sqlalchemy import select

    from centre.db import make_engine
    from victims.tables import VictimMatch

    by_report = {ids[k][0].decode(): k for k in holding}
    engine = make_engine(settings.database_url)
    found: dict[str, dt.datetime] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(found) < len(by_report) and time.monotonic() < deadline:
            with engine.connect() as c:
                for rid, at in c.execute(
                    select(VictimMatch.report_id, VictimMatch.found_at).where(
                        VictimMatch.report_id.in_(list(by_report))
                    )
                ):
                    found.setdefault(rid, at)
            time.sleep(0.5)
    finally:
        engine.dispose()
    utc = dt.UTC
    return sorted(
        (at if at.tzinfo else at.replace(tzinfo=utc)).timestamp() - sent_at[by_report[rid]]
        for rid, at in found.items()
    )
