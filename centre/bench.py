"""`centre bench`: the pipeline's figures, measured on a stack it starts for the purpose.

Two phases on the same stack, then the raw Kafka rate on the same messages:
  1. throughput: N reports produced as fast as possible; end-to-end rate is from the first
     produce to the last case appended to le.europol (broker timestamps, so a slow reader
     does not flatter or spoil the figure);
  2. latency: once every worker has worked off phase 1, reports paced at a steady rate below
     capacity, latency per priority from the report's append to reports.intake to its
     case's append to le.europol;
  3. raw pass-through: confluent-kafka consume → produce of the same N intake messages, no
     processing: the ceiling the pipeline is compared with.
Peak RSS of every worker process is sampled throughout.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson
import psutil
from confluent_kafka import Consumer, Producer
from rich.console import Console
from rich.table import Table

from centre import messages as m
from centre import samples
from centre.broker import _port_in_use, free_port
from centre.kafka import base_config, ensure_topics
from centre.settings import Settings
from centre.stack import Stack
from centre.topology import ACCEPTED, INTAKE, TRIAGED, TopicSpec, le_topic

console = Console()


@dataclass
class RssSampler:
    pids: dict[str, int]
    peak: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "RssSampler":
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        procs = {}
        for name, pid in self.pids.items():
            try:
                procs[name] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                pass
        while not self._stop.wait(0.2):
            for name, p in procs.items():
                try:
                    self.peak[name] = max(self.peak.get(name, 0), p.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass

    def stop(self) -> None:
        self._stop.set()

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds used so far by each sampled process."""
        out = {}
        for name, pid in self.pids.items():
            try:
                t = psutil.Process(pid).cpu_times()
                out[name] = t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return out


def _producer(settings: Settings) -> Producer:
    return Producer({**base_config(settings), "enable.idempotence": True, "acks": "all",
                     "partitioner": "murmur2_random", "linger.ms": 5,
                     "queue.buffering.max.messages": 1_000_000})


def _produce(p: Producer, topic: str, msgs: list[tuple[bytes, bytes]],
             sent_at: dict[bytes, float] | None = None, rate: float | None = None) -> float:
    """Returns the time of the first produce. `sent_at`: each key's message timestamp, in
    seconds, which the bench sets itself (`_ids` derives the pipeline's ids from it)."""
    first = time.time()
    for i, (k, v) in enumerate(msgs):
        while rate and first + i / rate > time.time():
            # Paced: send what is due in 5 ms ticks, so that pacing costs the machine (which
            # the pipeline shares) little CPU.
            p.poll(0.005)
        stamp = int(time.time() * 1000)
        while True:
            try:
                p.produce(topic, v, k, timestamp=stamp)
                break
            except BufferError:
                p.poll(0.01)
        if sent_at is not None:
            sent_at[k] = stamp / 1000.0
        p.poll(0)
    p.flush(120)
    return first


def _ids(sent_at: dict[bytes, float]) -> dict[bytes, tuple[bytes, bytes]]:
    """Message key → (report id, case id), as intake derives them from the key and the
    message's timestamp."""
    out = {}
    for k, ts in sent_at.items():
        received = m.from_ms(round(ts * 1000))
        rid = m.report_id_for(*k.decode().split("/", 1), received)
        out[k] = (rid.encode(), m.case_id_for(rid, received).encode())
    return out


def _collect_cases(settings: Settings, expected: set[bytes], timeout: float,
                   topic: str | None = None,
                   alive: Any = None) -> dict[bytes, float]:
    """Message key → broker append time on `topic` (default le.europol) for expected keys;
    stops early when `alive()` says the process producing them has died."""
    topic = topic or settings.topic(le_topic("europol"))
    c = Consumer({**base_config(settings), "group.id": f"bench-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    seen: dict[bytes, float] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < len(expected) and time.monotonic() < deadline:
            if alive is not None and not alive():
                console.print("[red]the worker died; see its log[/]")
                break
            for msg in c.consume(5000, timeout=0.5):
                if msg.error() or msg.key() not in expected:
                    continue
                seen.setdefault(msg.key(), msg.timestamp()[1] / 1000.0)
    finally:
        c.close()
    return seen


def _messages(run: str, n: int, p1_share: float, seed: int) -> tuple[list[tuple[bytes, bytes]], dict[bytes, str]]:
    """Synthetic reports as (key, value), and each key's priority."""
    rng = random.Random(seed)
    msgs, prio = [], {}
    for i in range(n):
        r = samples.synthetic(i, run, rng, p1_share)
        key = f"{r['provider_id']}/{r['provider_report_id']}".encode()
        msgs.append((key, orjson.dumps(r)))
        prio[key] = "P1" if r["incident"]["urgent"] else "P2"
    return msgs, prio


def _cases(ids: dict[bytes, tuple[bytes, bytes]]) -> set[bytes]:
    """The case ids of `_ids`."""
    return {case for _rid, case in ids.values()}


def _raw_passthrough(settings: Settings, n: int, source: str = INTAKE) -> float:
    """consume → produce of n messages of `source` with no processing, messages/s."""
    out = settings.topic("bench.passthrough")
    ensure_topics(settings, [TopicSpec("bench.passthrough", settings.partitions, "bench")])
    c = Consumer({**base_config(settings), "group.id": f"bench-raw-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "fetch.max.bytes": 52428800})
    c.subscribe([settings.topic(source)])
    p = _producer(settings)
    done, first = 0, None
    deadline = time.monotonic() + 300
    while done < n and time.monotonic() < deadline:
        batch = c.consume(5000, timeout=0.5)
        for msg in batch:
            if msg.error():
                continue
            if first is None:
                first = time.time()
            while True:
                try:
                    p.produce(out, msg.value(), msg.key())
                    break
                except BufferError:
                    p.poll(0.01)
            done += 1
        p.poll(0)
    p.flush(120)
    c.close()
    return done / (time.time() - (first or time.time()))


def _fresh(settings: Settings, database_url: str | None = None) -> tuple[str, Any, Settings]:
    """A run id, its directory under CENTRE_HOME/bench, and settings for a stack of its own
    (its own database, a new SQLite file unless `database_url` names an empty scratch one;
    its own broker port when the default one is taken)."""
    run = uuid.uuid4().hex[:8]
    home = settings.home / "bench" / run
    settings = settings.with_(home=home,
                              database_url=database_url or f"sqlite:///{home / 'centre.db'}")
    if settings.kafka_bootstrap is None and _port_in_use(settings.local_kafka_port):
        settings = settings.with_(local_kafka_port=free_port())
    return run, home, settings


def _start_worker(stage: str, settings: Settings, home: Any) -> tuple[Any, float, RssSampler]:
    """Start one stage's worker process alone, with its memory and CPU sampled."""
    from centre.stack import WorkerProcess

    w = WorkerProcess(stage, settings, home / "logs" / f"worker-{stage}.log")
    started = time.time()
    w.start()
    return w, started, RssSampler({f"worker {stage}": w.pid or 0}).start()


def _span_rate(out: dict[bytes, float]) -> tuple[float, float]:
    """The first output's time and the rate from the first to the last output."""
    first, last = min(out.values()), max(out.values())
    return first, (len(out) / (last - first) if last > first else float("nan"))


def _lock_figures(logs: dict[str, Any]) -> dict[str, tuple[float, float, float, float]]:
    """Per worker, its SQLite write-lock histogram so far (from its /metrics, whose address
    it printed in its log): (wait sum, wait count, held sum, held count)."""
    import re
    import urllib.request

    out = {}
    for name, path in logs.items():
        found = re.findall(rb"metrics for \S+ on (http://\S+)", Path(path).read_bytes())
        if not found:
            continue
        try:
            text = urllib.request.urlopen(found[-1].decode(), timeout=5).read().decode()
        except OSError:
            continue
        v = {}
        for phase in ("wait", "held"):
            for part in ("sum", "count"):
                hit = re.search(r'^centre_db_write_lock_seconds_%s\{phase="%s"\} (\S+)$'
                                % (part, phase), text, re.M)
                v[phase, part] = float(hit.group(1)) if hit else 0.0
        out[name] = (v["wait", "sum"], v["wait", "count"], v["held", "sum"], v["held", "count"])
    return out


@contextmanager
def scratch(settings: Settings, name: str, *, database_url: str | None = None,
            keep: bool = False,
            topic_tag: str | None = None) -> Iterator[tuple[str, Path, Settings]]:
    """A throw-away home for one part's bench: (run id, home, its settings). Its own
    database (a fresh SQLite file unless `database_url` names an empty one) at the newest
    migration, its own keys, and a broker of its own when none is configured (stopped
    after); removed after unless `keep`. With a configured broker, `topic_tag` keeps the
    run's topics apart."""
    from centre import db
    from centre.broker import LocalBroker
    from centre.keys import KeySet

    run = uuid.uuid4().hex[:8]
    home = settings.home / "bench" / f"{name}-{run}"
    s = settings.with_(home=home, database_url=database_url or f"sqlite:///{home / 'centre.db'}")
    if s.kafka_bootstrap is not None and topic_tag:
        s = s.with_(topic_prefix=f"{s.topic_prefix}{topic_tag}{run}.")
    broker = None
    try:
        home.mkdir(parents=True, exist_ok=True)
        if s.kafka_bootstrap is None:
            port = s.local_kafka_port if not _port_in_use(s.local_kafka_port) else free_port()
            s = s.with_(local_kafka_port=port)
            broker = LocalBroker(s.kafka_dir, port=port, partitions=3)
            console.print(f"bench {name} {run}: starting a broker under {home} …")
            broker.start()
        KeySet.init(s.keys_dir)
        db.upgrade(s.database_url)
        yield run, home, s
    finally:
        if broker is not None:
            broker.stop()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def _figures(title: str) -> Table:
    t = Table(title=title)
    t.add_column("figure")
    t.add_column("value", justify="right")
    return t


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _cleaning(fn: Any) -> Any:
    """Run a bench and remove the stack directory it made (broker logs and database of a
    20,000-report run take ~600 MB) unless `keep`."""
    import functools
    import shutil

    @functools.wraps(fn)
    def wrapper(settings: Settings, *args: Any, keep: bool = False, **kw: Any) -> int:
        root = settings.home / "bench"
        before = set(root.iterdir()) if root.exists() else set()
        try:
            return int(fn(settings, *args, **kw))
        finally:
            if not keep and root.exists():
                for d in set(root.iterdir()) - before:
                    shutil.rmtree(d, ignore_errors=True)
    return wrapper


@_cleaning
def run_bench(settings: Settings, *, reports: int, p1_share: float, paced_rate: float = 1000.0,
              paced_seconds: float = 30.0, postgres: str | None = None) -> int:
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


def _run_bench(settings: Settings, database_url: str | None, reports: int, p1_share: float,
               paced_rate: float, paced_seconds: float) -> int:
    run, home, settings = _fresh(settings, database_url)
    console.print(f"bench {run}: starting a fresh stack under {home} …")
    with Stack(settings) as stack:
        pids = {f"worker {s}": w.pid for s, w in stack.workers.items() if w.pid}
        pids["bench (producing, collecting)"] = os.getpid()
        if stack.broker and stack.broker.process:
            pids["broker"] = stack.broker.process.pid
        rss = RssSampler(pids).start()  # type: ignore[arg-type]
        producer = _producer(settings)
        intake = settings.topic(INTAKE)

        # Warm-up: provider topics created, caches filled, the broker JIT-compiled (a
        # freshly started JVM spends a core compiling for its first seconds) before timing.
        warm, _ = _messages(run + "w", 10000, p1_share, 1)
        warm_at: dict[bytes, float] = {}
        _produce(producer, intake, warm, sent_at=warm_at)
        _collect_cases(settings, _cases(_ids(warm_at)), 120)

        msgs, _ = _messages(run, reports, p1_share, 2)
        console.print(f"phase 1: {reports} reports as fast as they can be produced …")
        cpu_before = rss.cpu_seconds()
        phase1_at: dict[bytes, float] = {}
        first = _produce(producer, intake, msgs, sent_at=phase1_at)
        produced_in = time.time() - first
        arrived = _collect_cases(settings, _cases(_ids(phase1_at)), 600)
        cpu_after = rss.cpu_seconds()
        cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_after if k in cpu_before}
        e2e = len(arrived) / (max(arrived.values()) - first) if arrived else 0.0

        # The latency phase measures the pipeline at a steady rate, not the tail of phase 1:
        # every worker (the audit writer too) first works off its backlog.
        stack.wait_caught_up(600)
        n_paced = int(paced_rate * paced_seconds)
        console.print(f"phase 2: {n_paced} reports paced at {paced_rate:.0f}/s …")
        logs = {s: w.log_path for s, w in stack.workers.items()}
        locks_before = _lock_figures(logs)
        cpu_at_pace = rss.cpu_seconds()
        paced_started = time.time()
        paced, paced_prio = _messages(run + "p", n_paced, max(p1_share, 0.05), 3)
        sent_at: dict[bytes, float] = {}
        _produce(producer, intake, paced, sent_at=sent_at, rate=paced_rate)
        ids = _ids(sent_at)
        paced_arrived = _collect_cases(settings, _cases(ids), 300)
        paced_took = time.time() - paced_started
        locks_after = _lock_figures(logs)
        cpu_paced = {k: (v - cpu_at_pace[k]) / paced_took
                     for k, v in rss.cpu_seconds().items() if k in cpu_at_pace}
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
        at_acc = _collect_cases(settings, set(rid.values()), 60, settings.topic(ACCEPTED))
        at_tri = _collect_cases(settings, set(rid.values()), 60, settings.topic(TRIAGED))
        hops: dict[str, list[float]] = {"intake": [], "triage": [], "routing": []}
        for k, case in p1.items():
            a, t = at_acc.get(rid[k]), at_tri.get(rid[k])
            if a is None or t is None or case not in paced_arrived:
                continue
            hops["intake"].append(a - sent_at[k])
            hops["triage"].append(t - a)
            hops["routing"].append(paced_arrived[case] - t)

        console.print("phase 3: raw Kafka pass-through of the same messages …")
        raw = _raw_passthrough(settings, reports)
        rss.stop()

    backend = "PostgreSQL" if settings.database_url.startswith("postgresql") else "SQLite"
    t = _figures(f"centre bench ({reports} reports, {backend}, 2-core machine, broker on the "
                 "same host)")
    t.add_row("reports produced in", f"{produced_in:.2f} s")
    t.add_row("cases delivered (phase 1)", f"{len(arrived)} / {reports}")
    t.add_row("end-to-end throughput", f"{e2e:,.0f} reports/s")
    t.add_row("raw pass-through (consume→produce)", f"{raw:,.0f} messages/s")
    t.add_row("ratio end-to-end / raw", f"{e2e / raw:.3f}" if raw else "n/a")
    for p in ("P1", "P2"):
        v = lat[p]
        t.add_row(f"{p} latency at {paced_rate:.0f}/s (n={len(v)}) p50 / p99",
                  f"{_pct(v, .5) * 1000:,.0f} ms / {_pct(v, .99) * 1000:,.0f} ms")
    for hop, v in hops.items():
        t.add_row(f"  P1 time in {hop} (produce or previous output → its output) p50 / p99",
                  f"{_pct(v, .5) * 1000:,.0f} ms / {_pct(v, .99) * 1000:,.0f} ms")
    for name in sorted(locks_after):
        a, b = locks_after[name], locks_before.get(name, (0.0, 0.0, 0.0, 0.0))
        n = a[1] - b[1]
        if n < 1:
            continue
        t.add_row(f"  SQLite write lock at {paced_rate:.0f}/s, {name}: transactions / mean wait "
                  "/ mean held / share of time held",
                  f"{n:,.0f} / {(a[0] - b[0]) / n * 1000:,.1f} ms / "
                  f"{(a[2] - b[2]) / n * 1000:,.1f} ms / {(a[2] - b[2]) / paced_took:.0%}")
    for name, b in sorted(rss.peak.items()):
        t.add_row(f"peak RSS {name}", f"{b / 1e6:,.0f} MB")
    for name, secs in sorted(cpu.items()):
        t.add_row(f"CPU per 1,000 reports (phase 1) {name}", f"{secs * 1000 / reports:.2f} s")
    for name, share in sorted(cpu_paced.items()):
        t.add_row(f"CPU at {paced_rate:.0f}/s (phase 2) {name}", f"{share:.0%} of a core")
    console.print(t)
    if len(arrived) < reports:
        console.print(f"[red]{reports - len(arrived)} cases did not arrive[/]")
        return 1
    return 0


def _random_pdq_indicators(engine: Any, n: int, seed: int) -> list[str]:
    """n random PDQ hashes into the known_material bank; returns the first 1,000 of them (for
    near copies in the reports)."""
    import datetime as dt

    import numpy as np

    from triage.tables import Indicator

    rng = np.random.default_rng(seed)
    now = dt.datetime.now(dt.timezone.utc)
    sample: list[str] = []
    step = 50_000
    with engine.begin() as c:
        for start in range(0, n, step):
            codes = rng.integers(0, 256, size=(min(step, n - start), 32), dtype=np.uint8)
            values = [row.tobytes().hex() for row in codes]
            if len(sample) < 1000:
                sample += values[:1000 - len(sample)]
            c.execute(Indicator.__table__.insert(), [
                {"bank": "known_material", "kind": "pdq", "value": v, "source": "bench",
                 "added_by": "bench", "added_at": now, "reason": None, "enabled": True}
                for v in values])
    return sample


@_cleaning
def run_triage_bench(settings: Settings, *, reports: int, indicators: int,
                     near_share: float = 0.1) -> int:
    """Triage alone on a backlog: intake accepts `reports` first, then the triage worker
    starts with `indicators` PDQ indicators loaded; its rate is from its first to its last
    output (broker timestamps). Then the raw pass-through of the same accepted messages."""
    from centre.db import make_engine

    run, home, settings = _fresh(settings)
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
            msgs.append((f"{r['provider_id']}/{r['provider_report_id']}".encode(),
                         orjson.dumps(r)))
            keys.add(m.report_id_for(r["provider_id"], r["provider_report_id"]).encode())
        _produce(_producer(settings), settings.topic(INTAKE), msgs)
        accepted = _collect_cases(settings, keys, 600, settings.topic(ACCEPTED))
        console.print(f"{len(accepted):,} reports accepted by intake; starting triage …")
        w, started, rss = _start_worker("triage", settings, home)
        try:
            out = _collect_cases(settings, keys, 900, settings.topic(TRIAGED), alive=w.alive)
            cpu = rss.cpu_seconds().get("worker triage", float("nan"))
        finally:
            rss.stop()
            w.stop()
        if not out:
            console.print(f"[red]nothing triaged; see {w.log_path}[/]")
            return 1
        first, rate = _span_rate(out)
        raw = _raw_passthrough(settings, reports, ACCEPTED)
    t = _figures(f"centre bench triage ({reports:,} reports, {indicators:,} PDQ indicators)")
    t.add_row("triaged", f"{len(out):,} / {reports:,}")
    t.add_row("worker start to first output (index load)", f"{first - started:.1f} s")
    t.add_row("triage throughput (first → last output)", f"{rate:,.0f} reports/s")
    t.add_row("raw pass-through of reports.accepted", f"{raw:,.0f} messages/s")
    t.add_row("ratio triage / raw", f"{rate / raw:.3f}" if raw else "n/a")
    t.add_row("peak RSS worker triage", f"{rss.peak.get('worker triage', 0) / 1e6:,.0f} MB")
    t.add_row("CPU of worker triage (load + run)", f"{cpu:.1f} s")
    console.print(t)
    return 0 if len(out) == reports else 1


@_cleaning
def run_routing_bench(settings: Settings, *, reports: int, backlog: int) -> int:
    """Routing alone, then a liaison's view of a backlog.

    1. Intake and triage accept and triage `reports` first; then the routing worker starts
       and its rate (jurisdiction, sealing for each recipient, the record) is measured from
       its first to its last case on le.europol (broker timestamps), with the raw pass-through
       rate of the same triaged messages and the ratio.
    2. `backlog` known-material (P3) cases are queued for Germany and nobody pulls them; then
       one urgent report for Germany arrives, and a liaison's first `pull --max 1` must
       return it."""
    import datetime as dt

    from centre.db import make_engine
    from triage.tables import Indicator
    from centre.keys import KeySet
    from centre.liaison import pull
    from centre.topology import urgent_topic

    run, home, settings = _fresh(settings)
    console.print(f"bench routing {run}: intake and triage first, under {home} …")
    with Stack(settings, stages=("intake", "triage")):
        msgs, _ = _messages(run, reports, 0.05, 11)
        sent_at: dict[bytes, float] = {}
        _produce(_producer(settings), settings.topic(INTAKE), msgs, sent_at=sent_at)
        ids = _ids(sent_at)
        triaged = _collect_cases(settings, {rid for rid, _c in ids.values()}, 900,
                                 settings.topic(TRIAGED))
        console.print(f"{len(triaged):,} reports triaged; starting routing …")
        w, started, rss = _start_worker("routing", settings, home)
        try:
            out = _collect_cases(settings, _cases(ids), 900, alive=w.alive)
            cpu = rss.cpu_seconds().get("worker routing", float("nan"))
            if not out:
                console.print(f"[red]nothing routed; see {w.log_path}[/]")
                return 1
            first, rate = _span_rate(out)
            raw = _raw_passthrough(settings, reports, TRIAGED)

            # 2. The backlog: known material (P3) for Germany, queued and not pulled by a
            # liaison who had pulled everything before.
            keys = KeySet(settings.keys_dir)
            group = f"bench-liaison-{run}"
            for _ in pull(settings, "de", keys.recipient_private_keys("de"),
                          keys.centre_public_keys(), timeout=3, group=group):
                pass
            console.print(f"queueing {backlog:,} P3 cases for de …")
            p3, sha = [], []
            for i in range(backlog):
                r = samples.report(f"bench-{i % 4}", f"{run}-p3-{i:06d}", media_seed=f"{run}-{i}",
                                   ip_country="de", suspect_country="DE")
                sha.append(r["content"][0]["sha256"])
                p3.append((f"{r['provider_id']}/{r['provider_report_id']}".encode(),
                           orjson.dumps(r)))
            engine = make_engine(settings.database_url)
            now = dt.datetime.now(dt.timezone.utc)
            with engine.begin() as c:
                c.execute(Indicator.__table__.insert(), [
                    {"bank": "known_material", "kind": "sha256", "value": v, "source": "bench",
                     "added_by": "bench", "added_at": now, "reason": None, "enabled": True}
                    for v in sha])
            engine.dispose()
            p3_at: dict[bytes, float] = {}
            _produce(_producer(settings), settings.topic(INTAKE), p3, sent_at=p3_at)
            queued = _collect_cases(settings, _cases(_ids(p3_at)), 900,
                                    settings.topic(le_topic("de")))
            urgent_doc = samples.report("bench-0", f"{run}-p1", media_seed=f"{run}-p1",
                                        urgent=True, ip_country="de")
            key = f"bench-0/{run}-p1".encode()
            p1_at: dict[bytes, float] = {}
            t_sent = _produce(_producer(settings), settings.topic(INTAKE),
                              [(key, orjson.dumps(urgent_doc))], sent_at=p1_at)
            p1_case = _ids(p1_at)[key][1].decode()
            lane = _collect_cases(settings, {p1_case.encode()}, 120,
                                  settings.topic(urgent_topic("de")))
            t_pull = time.time()
            got = [o.document for o in pull(settings, "de", keys.recipient_private_keys("de"),
                                            keys.centre_public_keys(), max_messages=1,
                                            timeout=10, group=group)]
            pulled_in = time.time() - t_pull
        finally:
            rss.stop()
            w.stop()
    first_doc = got[0] if got else {}
    t = _figures(f"centre bench routing ({reports:,} reports; backlog {backlog:,} P3 for de)")
    t.add_row("routed (cases on le.europol)", f"{len(out):,} / {reports:,}")
    t.add_row("routing throughput (first → last case)", f"{rate:,.0f} cases/s")
    t.add_row("raw pass-through of reports.triaged", f"{raw:,.0f} messages/s")
    t.add_row("ratio routing / raw", f"{rate / raw:.3f}" if raw else "n/a")
    t.add_row("worker start to first case", f"{first - started:.1f} s")
    t.add_row("peak RSS worker routing", f"{rss.peak.get('worker routing', 0) / 1e6:,.0f} MB")
    t.add_row("CPU of worker routing per 1,000 cases", f"{cpu * 1000 / max(1, len(out)):.2f} s")
    t.add_row("P3 cases queued for de, not pulled", f"{len(queued):,} / {backlog:,}")
    t.add_row("P1 report to its case on le.de.urgent",
              f"{(lane[p1_case.encode()] - t_sent) * 1000:,.0f} ms" if lane else "not seen")
    t.add_row("liaison's first pull --max 1 returned",
              f"{first_doc.get('priority')} (the new urgent case: "
              f"{first_doc.get('case_id') == p1_case}) in {pulled_in * 1000:,.0f} ms")
    console.print(t)
    ok = len(out) == reports and len(queued) == backlog and first_doc.get("case_id") == p1_case
    return 0 if ok else 1
