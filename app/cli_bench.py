"""`centre bench …`: the benches, each measured on a stack or scratch home of its own."""

from __future__ import annotations

import typer

from centre.cli_errors import err
from centre.cli_errors import load_settings as _settings

bench_app = typer.Typer(
    help="Measure and print figures. Without a subcommand: the whole pipeline on a fresh "
    "local stack (end-to-end throughput, latency per priority at a steady rate, peak memory "
    "and CPU per process, raw Kafka pass-through of the same messages and the ratio). "
    "`centre bench index`: the PDQ near-duplicate index alone; `triage`, `routing`, "
    "`complaints`, `victims`, `audit`: one part each.",
    rich_markup_mode="markdown",
)


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    reports: int = typer.Option(20000, help="synthetic reports to push through"),
    p1_share: float = typer.Option(0.05, help="share of urgent (P1) reports"),
    paced_rate: float = typer.Option(1000.0, help="reports/s of the latency phase"),
    paced_seconds: float = typer.Option(30.0, help="length of the latency phase"),
    keep: bool = typer.Option(False, help="keep the bench's stack directory (logs, data)"),
    postgres: str = typer.Option(
        "",
        help="a PostgreSQL URL: the stack runs on a scratch "
        "database made on that server (dropped after)",
    ),
    victim_hashes: int = typer.Option(
        0,
        help="bank this many victims' hashes first; 1 % of the paced reports then hold one, "
        "and the time to match them is measured",
    ),
) -> None:
    """Without a subcommand: measure the pipeline on a fresh local stack (end-to-end
    throughput, latency per priority at a steady rate, peak memory and CPU per process, and
    the raw Kafka pass-through rate of the same messages). `centre bench index` measures the
    PDQ index alone."""
    if ctx.invoked_subcommand is not None:
        return
    from app.bench import run_bench

    raise typer.Exit(
        run_bench(
            _settings(),
            reports=reports,
            p1_share=p1_share,
            paced_rate=paced_rate,
            paced_seconds=paced_seconds,
            keep=keep,
            postgres=postgres or None,
            victim_hashes=victim_hashes,
        )
    )


@bench_app.command("index")
def bench_index(
    sizes: str = typer.Option("1000000,10000000", help="index sizes to build, comma-separated"),
    queries: int = typer.Option(
        10000,
        help="single-hash queries per size (half near "
        "duplicates, half random), checked against brute force",
    ),
) -> None:
    """Build the PDQ near-duplicate index at each size from random hashes and print build
    time, memory, query latency p50/p99 at distance 31, batched query rate, and recall
    against brute force."""
    from triage.index_bench import print_index_bench, run_index_bench

    try:
        wanted = [int(x.replace("_", "")) for x in sizes.split(",") if x.strip()]
    except ValueError:
        err.print(f"[red]--sizes must be whole numbers separated by commas, not {sizes!r}[/]")
        raise typer.Exit(2) from None
    print_index_bench(run_index_bench(wanted, queries=queries))


@bench_app.command("triage")
def bench_triage(
    reports: int = typer.Option(20000, help="synthetic reports accepted before triage starts"),
    indicators: int = typer.Option(1_000_000, help="random PDQ indicators loaded"),
    keep: bool = typer.Option(False, help="keep the bench's stack directory (logs, data)"),
) -> None:
    """Triage alone on a backlog with a large PDQ bank loaded: its throughput (first to last
    output), the raw pass-through rate of the same messages and the ratio, memory, index load
    time."""
    from triage.bench import run_triage_bench

    raise typer.Exit(
        run_triage_bench(_settings(), reports=reports, indicators=indicators, keep=keep)
    )


@bench_app.command("chaos")
def bench_chaos(
    reports: int = typer.Option(100_000, help="how many reports to send"),
    rate: float = typer.Option(500.0, help="reports per second sent while the faults happen"),
    postgres: bool = typer.Option(
        False, help="on a private PostgreSQL server (Debian's packages), restarted mid-stream too"
    ),
    keep: bool = typer.Option(False, help="keep the run's stack directory (logs, data)"),
) -> None:
    """The pipeline under faults: every worker killed, the broker paused and crashed (and
    PostgreSQL restarted); prints reports lost, shown twice, the audit trail's verdict and
    each fault's time to recover. Exit 1 when anything was lost or not recovered from."""
    from app.chaos import run_chaos_bench

    raise typer.Exit(
        run_chaos_bench(_settings(), reports=reports, rate=rate, postgres=postgres, keep=keep)
    )


@bench_app.command("routing")
def bench_routing(
    reports: int = typer.Option(20000, help="synthetic reports triaged before routing starts"),
    backlog: int = typer.Option(
        10000, help="P3 cases queued for one member state before a new P1 arrives"
    ),
    keep: bool = typer.Option(False, help="keep the bench's stack directory (logs, data)"),
) -> None:
    """Routing alone on a backlog of triaged reports: its throughput including sealing for
    every recipient, the raw pass-through rate of the same messages and the ratio; then a
    backlog of P3 cases for one member state and a new P1: the liaison's first pull must
    return the P1."""
    from routing.bench import run_routing_bench

    raise typer.Exit(run_routing_bench(_settings(), reports=reports, backlog=backlog, keep=keep))


@bench_app.command("complaints")
def bench_complaints(
    cluster_size: int = typer.Option(
        100_000, help="reports of the same picture in the complaint's cluster"
    ),
    keep: bool = typer.Option(False, help="keep the bench's directory (broker logs, database)"),
) -> None:
    """Uphold a complaint about content reported CLUSTER_SIZE times on a fresh database and
    broker: time to list the related cases, bank the hashes and send the sealed retractions
    and the notices until acknowledged (target ≤ 5 s); a retry sends nothing; every liaison
    topic holds the retraction once."""
    from complaints.bench import run_complaints_bench

    if cluster_size < 1:
        err.print("[red]--cluster-size must be at least 1[/]")
        raise typer.Exit(2)
    raise typer.Exit(run_complaints_bench(_settings(), cluster_size=cluster_size, keep=keep))


@bench_app.command("victims")
def bench_victims(
    stored: int = typer.Option(1_000_000, help="stored reports the request is matched against"),
    hashes: int = typer.Option(1_000, help="items in the victim's request"),
    reports: int = typer.Option(20_000, help="reports triaged with and without the banks"),
    victim_hashes: int = typer.Option(10_000, help="victims' hashes banked for live matching"),
    rounds: int = typer.Option(2, help="alternated triage runs with and without (best of)"),
    live: bool = typer.Option(True, help="also measure live matching in triage"),
    keep: bool = typer.Option(False, help="keep the bench's directories (logs, data)"),
    database_url: str = typer.Option(
        "",
        help="an empty scratch database for the first "
        "part (e.g. PostgreSQL); default: a new SQLite file",
    ),
) -> None:
    """A victim's request of HASHES items filed against STORED reports on a fresh database
    (target ≤ 10 s for the filing, the search of every stored report and the notices
    queued; the matches must be exactly those seeded), then triage alone with and without
    VICTIM_HASHES banked (target: ≤ 10% less throughput). Never touches the centre's own
    database or topics."""
    from victims.bench import run_victims_bench

    if min(stored, hashes, reports, victim_hashes, rounds) < 1:
        err.print(
            "[red]--stored, --hashes, --reports, --victim-hashes and --rounds must be at least 1[/]"
        )
        raise typer.Exit(2)
    raise typer.Exit(
        run_victims_bench(
            _settings(),
            stored=stored,
            hashes=hashes,
            reports=reports,
            victim_hashes=victim_hashes,
            rounds=rounds,
            live=live,
            keep=keep,
            database_url=database_url or None,
        )
    )


@bench_app.command("audit")
def bench_audit(
    entries: int = typer.Option(100_000, help="entries to write, then verify and export"),
    batch: int = typer.Option(500, help="entries per appended batch"),
) -> None:
    """The audit trail alone, on a scratch database and key set (never the centre's own):
    writer entries/s (SQLite, and PostgreSQL when CENTRE_DATABASE_URL is one), verification
    of the database and of an export, export entries/s, and the memory each step took."""
    from centre.audit.bench import run_audit_bench

    run_audit_bench(_settings(), entries=entries, batch=batch)
