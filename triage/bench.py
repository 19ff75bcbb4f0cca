"""`centre bench triage`: triage alone on a backlog, with a large PDQ bank loaded."""

from __future__ import annotations

import random
import time
from typing import Any, cast

import orjson
from sqlalchemy import Table

from centre import messages as m
from centre import samples
from centre.benchkit import (
    bench_producer,
    cleaning,
    collect_cases,
    console,
    figures,
    fresh,
    produce_stamped,
    raw_passthrough,
    span_rate,
    start_worker,
)
from centre.settings import Settings
from centre.stack import Stack
from centre.topology import ACCEPTED, INTAKE, TRIAGED


def _random_pdq_indicators(engine: Any, n: int, seed: int) -> list[str]:
    """n random PDQ hashes into the known_material bank; returns the first 1,000 of them (for
    near copies in the reports)."""
    import datetime as dt

    import numpy as np

    from triage.tables import Indicator

    rng = np.random.default_rng(seed)
    now = dt.datetime.now(dt.UTC)
    sample: list[str] = []
    step = 50_000
    with engine.begin() as c:
        for start in range(0, n, step):
            codes = rng.integers(0, 256, size=(min(step, n - start), 32), dtype=np.uint8)
            values = [row.tobytes().hex() for row in codes]
            if len(sample) < 1000:
                sample += values[: 1000 - len(sample)]
            c.execute(
                cast(Table, Indicator.__table__).insert(),
                [
                    {
                        "bank": "known_material",
                        "kind": "pdq",
                        "value": v,
                        "source": "bench",
                        "added_by": "bench",
                        "added_at": now,
                        "reason": None,
                        "enabled": True,
                    }
                    for v in values
                ],
            )
    return sample


@cleaning
def run_triage_bench(
    settings: Settings, *, reports: int, indicators: int, near_share: float = 0.1
) -> int:
    """Triage alone on a backlog: intake accepts `reports` first, then the triage worker
    starts with `indicators` PDQ indicators loaded; its rate is from its first to its last
    output (broker timestamps). Then the raw pass-through of the same accepted messages."""
    from centre.db import make_engine

    run, home, settings = fresh(settings)
    console.print(f"bench triage {run}: intake only first, under {home} …")
    with Stack(settings, stages=("intake",)):
        engine = make_engine(settings.database_url)
        t0 = time.time()
        sample = _random_pdq_indicators(engine, indicators, 7)
        engine.dispose()
        console.print(f"{indicators:,} PDQ indicators stored in {time.time() - t0:.1f} s")
        rng = random.Random(5)
        msgs, keys = [], set()
        for i in range(reports):
            r = samples.synthetic(i, run, rng, 0.05)
            if sample and rng.random() < near_share:  # a re-encoded copy of known material
                v = int(rng.choice(sample), 16)
                for b in rng.sample(range(256), rng.randrange(0, 30)):
                    v ^= 1 << b
                r["content"][0]["pdq"] = f"{v:064x}"
            msgs.append((f"{r['provider_id']}/{r['provider_report_id']}".encode(), orjson.dumps(r)))
            keys.add(m.report_id_for(r["provider_id"], r["provider_report_id"]).encode())
        produce_stamped(bench_producer(settings), settings.topic(INTAKE), msgs)
        accepted = collect_cases(settings, keys, 600, settings.topic(ACCEPTED))
        console.print(f"{len(accepted):,} reports accepted by intake; starting triage …")
        w, started, rss = start_worker("triage", settings, home)
        try:
            out = collect_cases(settings, keys, 900, settings.topic(TRIAGED), alive=w.alive)
            cpu = rss.cpu_seconds().get("worker triage", float("nan"))
        finally:
            rss.stop()
            w.stop()
        if not out:
            console.print(f"[red]nothing triaged; see {w.log_path}[/]")
            return 1
        first, rate = span_rate(out)
        raw = raw_passthrough(settings, reports, ACCEPTED)
    t = figures(f"centre bench triage ({reports:,} reports, {indicators:,} PDQ indicators)")
    t.add_row("triaged", f"{len(out):,} / {reports:,}")
    t.add_row("worker start to first output (index load)", f"{first - started:.1f} s")
    t.add_row("triage throughput (first → last output)", f"{rate:,.0f} reports/s")
    t.add_row("raw pass-through of reports.accepted", f"{raw:,.0f} messages/s")
    t.add_row("ratio triage / raw", f"{rate / raw:.3f}" if raw else "n/a")
    t.add_row("peak RSS worker triage", f"{rss.peak.get('worker triage', 0) / 1e6:,.0f} MB")
    t.add_row("CPU of worker triage (load + run)", f"{cpu:.1f} s")
    console.print(t)
    return 0 if len(out) == reports else 1
