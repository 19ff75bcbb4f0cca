"""`centre bench`: the whole pipeline's figures on a stack it starts for the purpose
(throughput, P1 latency at a paced rate, the raw pass-through; see `centre.benchkit`).
"""

from __future__ import annotations

import os
import time

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
) -> int:
    """The whole pipeline; on a scratch database made on the PostgreSQL server of
    `postgres` (and dropped after) when given, else on a new SQLite file."""
    if not postgres:
        return _run_bench(settings, None, reports, p1_share, paced_rate, paced_seconds)
    from centre.audit.bench import _pg_scratch

    url, drop = _pg_scratch(postgres)
    try:
        return _run_bench(settings, url, reports, p1_share, paced_rate, paced_seconds)
    finally:
        drop()


def _run_bench(
    settings: Settings,
    database_url: str | None,
    reports: int,
    p1_share: float,
    paced_rate: float,
    paced_seconds: float,
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
        sent_at: dict[bytes, float] = {}
        produce_stamped(producer, intake, paced, sent_at=sent_at, rate=paced_rate)
        ids = intake_ids(sent_at)
        paced_arrived = collect_cases(settings, case_ids_of(ids), 300)
        paced_took = time.time() - paced_started
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
    console.print(table)
    if len(arrived) < reports:
        console.print(f"[red]{reports - len(arrived)} cases did not arrive[/]")
        return 1
    return 0
