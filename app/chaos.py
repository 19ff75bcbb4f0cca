"""The pipeline under faults, measured from outside: `centre bench chaos` and the chaos test.

A stack of its own (its own local broker, so that the broker can be paused and crashed) takes
a steady stream of reports while, one after another, each worker is killed (SIGKILL), the
broker is paused (SIGSTOP, then SIGCONT) and crashed (SIGKILL; the supervisor starts it again),
and, on PostgreSQL, the database server is restarted. Then:

- lost: reports without a final status, or without their case at Europol;
- shown twice: cases that `centre liaison pull` printed more than once (and, for what it is
  worth, cases the topic carried more than once: at-least-once, deduplicated by the pull);
- the audit trail verified;
- per fault, the time from the broker answering again (for a worker kill, from the kill) to
  the pipeline forwarding at its earlier rate again (90 % of the rate before the fault, over
  3 s), from the times the feedback `forwarded` was sent.

This process holds no Kafka client while faults happen: the sender, the reader of what came
out and every question to the broker run in child processes (a dead one is started again),
as the supervisor's do (`centre.isolated`).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from centre import isolated
from centre.settings import Settings

PROVIDERS = [f"bench-{i}" for i in range(4)]  # samples.synthetic's companies
RECOVERY_TARGET_S = 30.0  # `centre bench chaos` fails a fault recovered from more slowly


@dataclass
class FaultRun:
    name: str
    at: float  # seconds after sending began
    answering_at: float | None = None  # monotonic time the broker answered again
    recovery_s: float | None = None


@dataclass
class ChaosResult:
    sent: int
    forwarded: int
    lost: list[str]
    conflicting: list[str]  # reports told two different final statuses
    shown_twice: int
    carried_twice: int
    audit_ok: bool
    audit_summary: str
    faults: list[FaultRun]
    restarts: dict[str, int]
    supervisor_alive: bool
    seconds: float
    notes: list[str] = field(default_factory=list)


# -- child processes ------------------------------------------------------------------------


def _sender(settings: Settings, run: str, n: int, rate: float, start: int, progress: str) -> None:
    """Send reports start…n-1 at `rate`, writing how many are acknowledged in order."""
    import logging

    import orjson
    from confluent_kafka import Producer

    logging.getLogger("centre.kafka.librdkafka").disabled = True  # faults are expected here

    from centre import samples
    from centre.kafka import base_config
    from centre.topology import INTAKE

    p = Producer(
        {
            **base_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "message.timeout.ms": 600_000,
        }
    )
    topic = settings.topic(INTAKE)
    began = time.monotonic()
    for i in range(start, n):
        while began + (i - start) / rate > time.monotonic():
            p.poll(0.005)
        doc = samples.synthetic(i, run, random.Random(i), p1_share=0.05)
        key = f"{doc['provider_id']}/{doc['provider_report_id']}".encode()
        while True:
            try:
                p.produce(topic, orjson.dumps(doc), key)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
        if (i + 1) % 1000 == 0 or i + 1 == n:
            if p.flush(600) == 0:
                Path(progress).write_text(str(i + 1))
    p.flush(600)


def _reader(settings: Settings, out: str) -> None:
    """Append what came out, from the beginning, to `out`: feedback as ["f", prid, status,
    ms] and Europol's sealed cases as ["c", case_id] (the message key)."""
    import logging

    from confluent_kafka import Consumer

    from centre.kafka import base_config
    from centre.topology import feedback_topic, le_topic, urgent_topic

    logging.getLogger("centre.kafka.librdkafka").disabled = True  # faults are expected here

    c = Consumer(
        {
            **base_config(settings),
            "group.id": f"chaos-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    europol = {settings.topic(le_topic("europol")), settings.topic(urgent_topic("europol"))}
    c.subscribe([settings.topic(feedback_topic(p)) for p in PROVIDERS] + sorted(europol))
    with open(out, "w") as f:
        while True:
            lines: list[list[str | int]] = []
            for msg in c.consume(5000, timeout=0.5):
                if msg.error():
                    continue
                if msg.topic() in europol:
                    lines.append(["c", (msg.key() or b"").decode()])
                else:
                    fb = json.loads(msg.value() or b"")
                    lines.append(["f", fb["provider_report_id"], fb["status"], msg.timestamp()[1]])
            if lines:
                f.write("".join(json.dumps(x) + "\n" for x in lines))
                f.flush()


def _pull_europol(settings: Settings) -> dict[str, int]:
    """What `centre liaison pull --europol` prints: case id → times printed."""
    from centre.keys import KeySet
    from centre.liaison import pull

    keys = KeySet(settings.keys_dir)
    shown: dict[str, int] = {}
    group = f"chaos-pull-{uuid.uuid4().hex[:8]}"
    while True:
        n = 0
        for opened in pull(
            settings,
            "europol",
            keys.recipient_private_keys("europol"),
            keys.centre_public_keys(),
            timeout=3.0,
            group=group,
            on_refused=lambda _m: None,
        ):
            doc = opened.document
            if doc.get("schema") == "case/v1":
                cid = str(doc["case_id"])
                shown[cid] = shown.get(cid, 0) + 1
            n += 1
        if n == 0:
            return shown


class _Child:
    """A long-running child process, started again if it dies."""

    def __init__(self, target: Callable[..., None], args: Callable[[], tuple[Any, ...]]):
        self.target, self.args = target, args
        self.proc: Any = None
        self.restarts = 0

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        self.proc = ctx.Process(target=self.target, args=self.args(), daemon=True)
        self.proc.start()

    def keep_alive(self) -> None:
        if self.proc is not None and not self.proc.is_alive() and self.proc.exitcode != 0:
            self.restarts += 1
            self.start()

    def done(self) -> bool:
        return self.proc is not None and self.proc.exitcode == 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join(10)


# -- the run ----------------------------------------------------------------------------------


def default_plan(send_seconds: float, stages: list[str], postgres: bool) -> list[FaultRun]:
    """Faults spread over the sending: each worker killed, the broker paused and crashed,
    PostgreSQL restarted; each with time after it to recover while reports keep coming."""
    plan = [
        FaultRun(f"SIGKILL {st}", send_seconds * (0.08 + 0.06 * i)) for i, st in enumerate(stages)
    ]
    plan.append(FaultRun("broker SIGSTOP/SIGCONT", send_seconds * 0.48))
    plan.append(FaultRun("broker SIGKILL and restart", send_seconds * 0.64))
    if postgres:
        plan.append(FaultRun("PostgreSQL restart", send_seconds * 0.82))
    return plan


def run_chaos(
    settings: Settings,
    *,
    reports: int,
    rate: float,
    pause_s: float = 10.0,
    postgres: Any = None,
    timeout: float = 900.0,
    say: Callable[[str], None] = print,
) -> ChaosResult:
    """One chaos run on `settings` (a home of its own; no CENTRE_KAFKA_BOOTSTRAP: the stack
    starts, pauses and crashes its own broker). `postgres`: a `PrivatePostgres` whose
    database the stack uses and which is restarted mid-stream."""
    from centre.audit import AuditLog
    from centre.broker import broker_answers
    from centre.keys import KeySet
    from centre.stack import Stack

    assert settings.kafka_bootstrap is None, "chaos needs a local broker of its own"
    run = uuid.uuid4().hex[:8]
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    progress, out = home / "chaos.sent", home / "chaos.out.jsonl"
    stack = Stack(settings)
    say(f"chaos {run}: starting a stack under {home} …")
    stack.start(ready_timeout=300)
    sender = _Child(
        _sender,
        lambda: (
            settings,
            run,
            reports,
            rate,
            int(progress.read_text()) if progress.exists() else 0,
            str(progress),
        ),
    )
    reader = _Child(_reader, lambda: (settings, str(out)))
    send_seconds = reports / rate
    plan = default_plan(send_seconds, list(stack.workers), postgres is not None)
    notes: list[str] = []
    try:
        reader.start()
        sender.start()
        t0 = time.monotonic()
        for fault in plan:
            while time.monotonic() < t0 + fault.at:
                sender.keep_alive()
                reader.keep_alive()
                time.sleep(0.1)
            fault.at = time.monotonic() - t0  # a fault before may have taken longer
            say(f"  {fault.at:6.1f}s  {fault.name}")
            fault.answering_at = _inflict(
                fault.name, stack, settings, postgres, pause_s, broker_answers
            )
        prids = {f"{run}-{i:07d}" for i in range(reports)}
        deadline = time.monotonic() + timeout
        while True:
            sender.keep_alive()
            reader.keep_alive()
            final, cases = _read(out)
            if prids <= final.keys() and len(cases) >= reports:
                break
            if time.monotonic() > deadline:
                notes.append(f"stopped waiting after {timeout:.0f}s")
                break
            time.sleep(1.0)
        seconds = time.monotonic() - t0
        sender.stop()
        reader.stop()
        final, cases = _read(out)
        shown = isolated.call(_pull_europol, settings, timeout=600)
        log = AuditLog(settings)
        try:
            stack.wait_caught_up(120)  # the audit writer has recorded everything sent
            verdict = log.verify(public_keys=KeySet(settings.keys_dir).centre_public_keys())
        finally:
            log.close()
        alive = stack._supervisor is not None and stack._supervisor.is_alive()
        restarts = dict(stack.exits)
    finally:
        sender.stop()
        reader.stop()
        stack.stop()
    forwarded_ms = sorted(ms for st, ms in final.values() if st == "forwarded")
    for fault in plan:
        fault.recovery_s = _recovery(forwarded_ms, fault, t0, rate)
    statuses: dict[str, set[str]] = {}
    for prid, st in _all_finals(out):
        statuses.setdefault(prid, set()).add(st)
    case_count: dict[str, int] = {}
    for cid in cases:
        case_count[cid] = case_count.get(cid, 0) + 1
    lost = sorted(p for p in prids if final.get(p, ("", 0))[0] != "forwarded")
    if sender.restarts or reader.restarts:
        notes.append(
            f"the sender was started again {sender.restarts}x, the reader {reader.restarts}x"
        )
    return ChaosResult(
        sent=reports,
        forwarded=len(forwarded_ms),
        lost=lost,
        conflicting=sorted(p for p, s in statuses.items() if len(s) > 1),
        shown_twice=sum(1 for n in shown.values() if n > 1),
        carried_twice=sum(1 for n in case_count.values() if n > 1),
        audit_ok=verdict.ok,
        audit_summary=verdict.summary(),
        faults=plan,
        restarts=restarts,
        supervisor_alive=alive,
        seconds=seconds,
        notes=notes,
    )


def _inflict(
    name: str,
    stack: Any,
    settings: Settings,
    postgres: Any,
    pause_s: float,
    broker_answers: Callable[..., str | None],
) -> float:
    """Do the fault; returns the monotonic time the broker (or the database) answers again."""
    if name.startswith("SIGKILL "):
        stack.workers[name.split(" ", 1)[1]].kill()
        return time.monotonic()
    if name.startswith("PostgreSQL"):
        postgres.restart()
        return time.monotonic()
    broker = stack.broker
    pid = broker.process.pid
    if "SIGSTOP" in name:
        os.kill(pid, signal.SIGSTOP)
        time.sleep(pause_s)  # the fault itself: the broker frozen this long
        os.kill(pid, signal.SIGCONT)
    else:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # the supervisor starts it again
            proc = stack.broker.process
            if proc is not None and proc.pid != pid and proc.poll() is None:
                break
            time.sleep(0.1)
    while isolated.call(broker_answers, settings.bootstrap, 5.0, timeout=60) is not None:
        pass
    return time.monotonic()


def _read(out: Path) -> tuple[dict[str, tuple[str, int]], list[str]]:
    """Each report's final status (the first told) with its time, and every case carried."""
    from centre.messages import FEEDBACK_STATUSES

    finals = set(FEEDBACK_STATUSES) - {"received", "information_requested"}
    final: dict[str, tuple[str, int]] = {}
    cases: list[str] = []
    if not out.exists():
        return final, cases
    with open(out) as f:
        for line in f:
            if not line.endswith("\n"):
                break  # being written
            x = json.loads(line)
            if x[0] == "c":
                cases.append(x[1])
            elif x[2] in finals and x[1] not in final:
                final[x[1]] = (x[2], x[3])
    return final, cases


def _all_finals(out: Path) -> list[tuple[str, str]]:
    from centre.messages import FEEDBACK_STATUSES

    finals = set(FEEDBACK_STATUSES) - {"received", "information_requested"}
    with open(out) as f:
        return [(x[1], x[2]) for x in map(json.loads, f) if x[0] == "f" and x[2] in finals]


def _recovery(forwarded_ms: list[int], fault: FaultRun, t0: float, rate: float) -> float | None:
    """Seconds from the broker answering again to forwarding at 90 % of the rate of the 10 s
    before the fault (at most the sending rate: a backlog worked off before the fault is no
    rate to return to) for 3 s in a row; None when it never did before the reports ran out."""
    if fault.answering_at is None or not forwarded_ms:
        return None
    # Monotonic times to wall-clock milliseconds (the feedback's timestamps).
    offset_ms = time.time() * 1000 - time.monotonic() * 1000
    start_ms = (t0 + fault.at) * 1000 + offset_ms
    back_ms = fault.answering_at * 1000 + offset_ms
    per_s: dict[int, int] = {}
    for ms in forwarded_ms:
        per_s[ms // 1000] = per_s.get(ms // 1000, 0) + 1
    before = [per_s.get(s, 0) for s in range(int(start_ms // 1000) - 11, int(start_ms // 1000) - 1)]
    earlier = min(statistics.median(before) if before else 0, rate)
    last = max(per_s)
    s = int(back_ms // 1000)
    while s + 2 <= last:
        # The first second of three in a row at the earlier rate; recovered at its end.
        if all(per_s.get(s + k, 0) >= 0.9 * earlier for k in range(3)):
            return max(0.0, s + 1 - back_ms / 1000)
        s += 1
    return None


def print_result(r: ChaosResult, say: Callable[[str], None] = print) -> None:
    say(f"reports sent                 {r.sent}")
    say(f"forwarded                    {r.forwarded}")
    say(f"lost                         {len(r.lost)}")
    say(f"told two final statuses      {len(r.conflicting)}")
    say(f"shown twice (liaison pull)   {r.shown_twice}")
    say(
        f"carried twice on le.europol  {r.carried_twice}  (at least once; the pull shows "
        "each case once)"
    )
    say(f"audit trail                  {r.audit_summary}")
    say(f"supervisor alive at the end  {'yes' if r.supervisor_alive else 'NO'}")
    say(f"worker exits seen            {json.dumps(r.restarts, sort_keys=True)}")
    for f in r.faults:
        rec = "did not recover" if f.recovery_s is None else f"{f.recovery_s:.1f}s"
        say(f"  {f.at:6.1f}s  {f.name:32s} back to the earlier rate after {rec}")
    say(f"run took {r.seconds:.0f}s")
    for n in r.notes:
        say(f"note: {n}")


def run_chaos_bench(
    settings: Settings, *, reports: int, rate: float, postgres: bool, keep: bool = False
) -> int:
    """`centre bench chaos`: a run in a home of its own under CENTRE_HOME/bench (removed after
    unless `keep`), on a new SQLite file or a private PostgreSQL server. Exit status 0 when
    nothing was lost or shown twice, the trail verified and every fault was recovered from
    within RECOVERY_TARGET_S."""
    import shutil

    from centre.broker import _port_in_use, free_port
    from centre.pgserver import private_postgres

    home = settings.home / "bench" / f"chaos-{uuid.uuid4().hex[:8]}"
    pg = private_postgres() if postgres else None
    port = settings.local_kafka_port
    s = settings.with_(
        home=home,
        kafka_bootstrap=None,
        local_kafka_port=free_port() if _port_in_use(port) else port,
        database_url=pg.url if pg else f"sqlite:///{home / 'centre.db'}",
    )
    try:
        r = run_chaos(
            s, reports=reports, rate=rate, postgres=pg, say=lambda t: print(t, flush=True)
        )
    finally:
        if pg is not None:
            pg.remove()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    print(
        f"centre bench chaos: {reports} reports at {rate:.0f}/s on "
        f"{'PostgreSQL' if postgres else 'SQLite'}"
    )
    print_result(r)
    ok = (
        not r.lost
        and not r.shown_twice
        and r.audit_ok
        and r.supervisor_alive
        and all(f.recovery_s is not None and f.recovery_s <= RECOVERY_TARGET_S for f in r.faults)
    )
    return 0 if ok else 1
