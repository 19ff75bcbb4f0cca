"""What the benches share: a scratch home with its own broker and database, producing and
collecting with the broker's timestamps, ids as intake derives them, tables of figures.

The benches themselves: `app/bench.py` (end to end), `triage/bench.py`, `routing/bench.py`,
`complaints/bench.py`, `victims/bench.py`, `triage/index_bench.py`, `centre/audit/bench.py`.

The end-to-end bench (`centre bench`):

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

import random
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from centre.topology import INTAKE, TopicSpec, le_topic

console = Console()


@dataclass
class RssSampler:
    pids: dict[str, int]
    peak: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> RssSampler:
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


def bench_producer(settings: Settings) -> Producer:
    return Producer(
        {
            **base_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def produce_stamped(
    p: Producer,
    topic: str,
    msgs: list[tuple[bytes, bytes]],
    sent_at: dict[bytes, float] | None = None,
    rate: float | None = None,
) -> float:
    """Returns the time of the first produce. `sent_at`: each key's message timestamp, in
    seconds, which the bench sets itself (`ids` derives the pipeline's ids from it)."""
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


def intake_ids(sent_at: dict[bytes, float]) -> dict[bytes, tuple[bytes, bytes]]:
    """Message key → (report id, case id), as intake derives them from the key and the
    message's timestamp."""
    out = {}
    for k, ts in sent_at.items():
        received = m.from_ms(round(ts * 1000))
        provider_id, provider_report_id = k.decode().split("/", 1)
        rid = m.report_id_for(provider_id, provider_report_id, received)
        out[k] = (rid.encode(), m.case_id_for(rid, received).encode())
    return out


def collect_cases(
    settings: Settings,
    expected: set[bytes],
    timeout: float,
    topic: str | None = None,
    alive: Any = None,
) -> dict[bytes, float]:
    """Message key → broker append time on `topic` (default le.europol) for expected keys;
    stops early when `alive()` says the process producing them has died."""
    topic = topic or settings.topic(le_topic("europol"))
    c = Consumer(
        {
            **base_config(settings),
            "group.id": f"bench-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    seen: dict[bytes, float] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < len(expected) and time.monotonic() < deadline:
            if alive is not None and not alive():
                console.print("[red]the worker died; see its log[/]")
                break
            for msg in c.consume(5000, timeout=0.5):
                key = msg.key()
                if msg.error() or key is None or key not in expected:
                    continue
                seen.setdefault(key, msg.timestamp()[1] / 1000.0)
    finally:
        c.close()
    return seen


def synthetic_messages(
    run: str, n: int, p1_share: float, seed: int
) -> tuple[list[tuple[bytes, bytes]], dict[bytes, str]]:
    """Synthetic reports as (key, value), and each key's priority."""
    rng = random.Random(seed)
    msgs, prio = [], {}
    for i in range(n):
        r = samples.synthetic(i, run, rng, p1_share)
        key = f"{r['provider_id']}/{r['provider_report_id']}".encode()
        msgs.append((key, orjson.dumps(r)))
        prio[key] = "P1" if r["incident"]["urgent"] else "P2"
    return msgs, prio


def case_ids_of(ids: dict[bytes, tuple[bytes, bytes]]) -> set[bytes]:
    """The case ids of `ids`."""
    return {case for _rid, case in ids.values()}


def raw_passthrough(settings: Settings, n: int, source: str = INTAKE) -> float:
    """consume → produce of n messages of `source` with no processing, messages/s."""
    out = settings.topic("bench.passthrough")
    ensure_topics(settings, [TopicSpec("bench.passthrough", settings.partitions, "bench")])
    c = Consumer(
        {
            **base_config(settings),
            "group.id": f"bench-raw-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52428800,
        }
    )
    c.subscribe([settings.topic(source)])
    p = bench_producer(settings)
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


def fresh(settings: Settings, database_url: str | None = None) -> tuple[str, Any, Settings]:
    """A run id, its directory under CENTRE_HOME/bench, and settings for a stack of its own
    (its own database, a new SQLite file unless `database_url` names an empty scratch one;
    its own broker port when the default one is taken)."""
    run = uuid.uuid4().hex[:8]
    home = settings.home / "bench" / run
    settings = settings.with_(
        home=home, database_url=database_url or f"sqlite:///{home / 'centre.db'}"
    )
    if settings.kafka_bootstrap is None and _port_in_use(settings.local_kafka_port):
        settings = settings.with_(local_kafka_port=free_port())
    return run, home, settings


def start_worker(stage: str, settings: Settings, home: Any) -> tuple[Any, float, RssSampler]:
    """Start one stage's worker process alone, with its memory and CPU sampled."""
    from centre.stack import WorkerProcess

    w = WorkerProcess(stage, settings, home / "logs" / f"worker-{stage}.log")
    started = time.time()
    w.start()
    return w, started, RssSampler({f"worker {stage}": w.pid or 0}).start()


def span_rate(out: dict[bytes, float]) -> tuple[float, float]:
    """The first output's time and the rate from the first to the last output."""
    first, last = min(out.values()), max(out.values())
    return first, (len(out) / (last - first) if last > first else float("nan"))


def lock_figures(logs: dict[str, Any]) -> dict[str, tuple[float, float, float, float]]:
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
                hit = re.search(
                    r'^centre_db_write_lock_seconds_%s\{phase="%s"\} (\S+)$' % (part, phase),
                    text,
                    re.M,
                )
                v[phase, part] = float(hit.group(1)) if hit else 0.0
        out[name] = (v["wait", "sum"], v["wait", "count"], v["held", "sum"], v["held", "count"])
    return out


@contextmanager
def scratch(
    settings: Settings,
    name: str,
    *,
    database_url: str | None = None,
    keep: bool = False,
    topic_tag: str | None = None,
) -> Iterator[tuple[str, Path, Settings]]:
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


def figures(title: str) -> Table:
    t = Table(title=title)
    t.add_column("figure")
    t.add_column("value", justify="right")
    return t


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def cleaning(fn: Any) -> Any:
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
