"""`centre bench routing`: routing alone on triaged reports, then a P3 backlog and a new P1."""

from __future__ import annotations

import time

import orjson

from centre import samples
from centre.benchkit import (
    bench_producer,
    case_ids_of,
    cleaning,
    collect_cases,
    console,
    figures,
    fresh,
    intake_ids,
    produce_stamped,
    raw_passthrough,
    span_rate,
    start_worker,
    synthetic_messages,
)
from centre.settings import Settings
from centre.stack import Stack
from centre.topology import INTAKE, TRIAGED, le_topic


@cleaning
def run_routing_bench(settings: Settings, *, reports: int, backlog: int) -> int:
    """Routing alone, then a liaison's view of a backlog.

    1. Intake and triage accept and triage `reports` first; then the routing worker starts
       and its rate (jurisdiction, sealing for each recipient, the record) is measured from
       its first to its last case on le.europol (broker timestamps), with the raw pass-through
       rate of the same triaged messages and the ratio.
    2. `backlog` known-material (P3) cases are queued for Germany and nobody pulls them; then
       one urgent report for Germany arrives, and a liaison's first `pull --max 1` must
       return it."""
    import subprocess
    import sys

    from centre.keys import KeySet
    from centre.liaison import pull
    from centre.topology import urgent_topic

    run, home, settings = fresh(settings)
    console.print(f"bench routing {run}: intake and triage first, under {home} …")
    with Stack(settings, stages=("intake", "triage")):
        msgs, _ = synthetic_messages(run, reports, 0.05, 11)
        sent_at: dict[bytes, float] = {}
        produce_stamped(bench_producer(settings), settings.topic(INTAKE), msgs, sent_at=sent_at)
        ids = intake_ids(sent_at)
        triaged = collect_cases(
            settings, {rid for rid, _c in ids.values()}, 900, settings.topic(TRIAGED)
        )
        console.print(f"{len(triaged):,} reports triaged; starting routing …")
        w, started, rss = start_worker("routing", settings, home)
        try:
            out = collect_cases(settings, case_ids_of(ids), 900, alive=w.alive)
            cpu = rss.cpu_seconds().get("worker routing", float("nan"))
            if not out:
                console.print(f"[red]nothing routed; see {w.log_path}[/]")
                return 1
            first, rate = span_rate(out)
            raw = raw_passthrough(settings, reports, TRIAGED)

            # 2. The backlog: known material (P3) for Germany, queued and not pulled by a
            # liaison who had pulled everything before.
            keys = KeySet(settings.keys_dir)
            group = f"bench-liaison-{run}"
            for _ in pull(
                settings,
                "de",
                keys.recipient_private_keys("de"),
                keys.centre_public_keys(),
                timeout=3,
                group=group,
            ):
                pass
            console.print(f"queueing {backlog:,} P3 cases for de …")
            p3, sha = [], []
            for i in range(backlog):
                r = samples.report(
                    f"bench-{i % 4}",
                    f"{run}-p3-{i:06d}",
                    media_seed=f"{run}-{i}",
                    ip_country="de",
                    suspect_country="DE",
                )
                sha.append(r["content"][0]["sha256"])
                p3.append(
                    (f"{r['provider_id']}/{r['provider_report_id']}".encode(), orjson.dumps(r))
                )
            # Known material, so that they are P3: loaded as an operator loads a bank (the
            # indicator banks are triage's, which routing does not import).
            bank = home / "p3-known.jsonl"
            bank.write_text("".join(orjson.dumps({"sha256": v}).decode() + "\n" for v in sha))
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "app",
                    "indicators",
                    "import",
                    str(bank),
                    "--bank",
                    "known_material",
                    "--source",
                    "bench",
                ],
                env=settings.child_env(),
                check=True,
                capture_output=True,
            )
            p3_at: dict[bytes, float] = {}
            produce_stamped(bench_producer(settings), settings.topic(INTAKE), p3, sent_at=p3_at)
            queued = collect_cases(
                settings, case_ids_of(intake_ids(p3_at)), 900, settings.topic(le_topic("de"))
            )
            urgent_doc = samples.report(
                "bench-0", f"{run}-p1", media_seed=f"{run}-p1", urgent=True, ip_country="de"
            )
            key = f"bench-0/{run}-p1".encode()
            p1_at: dict[bytes, float] = {}
            t_sent = produce_stamped(
                bench_producer(settings),
                settings.topic(INTAKE),
                [(key, orjson.dumps(urgent_doc))],
                sent_at=p1_at,
            )
            p1_case = intake_ids(p1_at)[key][1].decode()
            lane = collect_cases(
                settings, {p1_case.encode()}, 120, settings.topic(urgent_topic("de"))
            )
            t_pull = time.time()
            got = [
                o.document
                for o in pull(
                    settings,
                    "de",
                    keys.recipient_private_keys("de"),
                    keys.centre_public_keys(),
                    max_messages=1,
                    timeout=10,
                    group=group,
                )
            ]
            pulled_in = time.time() - t_pull
        finally:
            rss.stop()
            w.stop()
    first_doc = got[0] if got else {}
    t = figures(f"centre bench routing ({reports:,} reports; backlog {backlog:,} P3 for de)")
    t.add_row("routed (cases on le.europol)", f"{len(out):,} / {reports:,}")
    t.add_row("routing throughput (first → last case)", f"{rate:,.0f} cases/s")
    t.add_row("raw pass-through of reports.triaged", f"{raw:,.0f} messages/s")
    t.add_row("ratio routing / raw", f"{rate / raw:.3f}" if raw else "n/a")
    t.add_row("worker start to first case", f"{first - started:.1f} s")
    t.add_row("peak RSS worker routing", f"{rss.peak.get('worker routing', 0) / 1e6:,.0f} MB")
    t.add_row("CPU of worker routing per 1,000 cases", f"{cpu * 1000 / max(1, len(out)):.2f} s")
    t.add_row("P3 cases queued for de, not pulled", f"{len(queued):,} / {backlog:,}")
    t.add_row(
        "P1 report to its case on le.de.urgent",
        f"{(lane[p1_case.encode()] - t_sent) * 1000:,.0f} ms" if lane else "not seen",
    )
    t.add_row(
        "liaison's first pull --max 1 returned",
        f"{first_doc.get('priority')} (the new urgent case: "
        f"{first_doc.get('case_id') == p1_case}) in {pulled_in * 1000:,.0f} ms",
    )
    console.print(t)
    ok = len(out) == reports and len(queued) == backlog and first_doc.get("case_id") == p1_case
    return 0 if ok else 1
