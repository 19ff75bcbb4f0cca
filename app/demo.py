"""`centre demo`: the stack, a handful of telling reports, and what each liaison received."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from rich.console import Console
from rich.table import Table

from centre import samples
from centre.broker import _port_in_use, free_port
from centre.kafka import BatchProducer, base_config
from centre.keys import KeySet
from centre.liaison import pull
from centre.settings import Settings
from centre.stack import Stack
from centre.topology import INTAKE, NOTICE_RESPONSES, RECIPIENTS, notices_topic
from triage.bank_import import import_file

FINAL = {"rejected", "duplicate_submission", "manifestly_unfounded", "forwarded"}


def scenario(run: str) -> list[tuple[str, str | None, bytes, str]]:
    """(what it shows, key, value, provider_report_id) for each message the demo sends."""
    r = samples.report
    msgs: list[tuple[str, dict[str, Any] | bytes, str | None]] = [
        (
            "known material, IP in Germany",
            r(
                "acme-social",
                f"{run}-1",
                kind="known_material",
                media_seed=f"known-{run}",
                classification="A2",
            ),
            None,
        ),
        (
            "urgent live stream, suspect FR, victim IT",
            r(
                "acme-social",
                f"{run}-2",
                media_seed=f"live-{run}",
                urgent=True,
                live=True,
                ip_country=None,
                suspect_country="FR",
                victim_country="IT",
                classification="A1",
            ),
            None,
        ),
        (
            "new image, IP in France",
            r("blue-cloud", f"{run}-1", media_seed=f"img-{run}", ip_country="fr"),
            None,
        ),
        (
            "same image from another company",
            r("acme-social", f"{run}-3", media_seed=f"img-{run}", ip_country="nl"),
            None,
        ),
        (
            "same image a third time",
            r("chat-app", f"{run}-9", media_seed=f"img-{run}", ip_country="es"),
            None,
        ),
        (
            "that image re-encoded (PDQ 12 bits away)",
            r("blue-cloud", f"{run}-4", near_copy_of=f"img-{run}", ip_country="it"),
            None,
        ),
        (
            "solicitation, only a country hint",
            r(
                "chat-app",
                f"{run}-1",
                kind="solicitation",
                ip_country=None,
                hint="NL",
                text="[redacted message]",
            ),
            None,
        ),
        (
            "IP outside the EU only",
            r("chat-app", f"{run}-2", media_seed=f"us-{run}", ip_country="us"),
            None,
        ),
        ("known false positive", r("acme-social", f"{run}-4", media_seed=f"fp-{run}"), None),
        (
            "not JSON",
            b'{"schema": "report/v1", "provider_id": "blue-cloud", ...',
            f"blue-cloud/{run}-2",
        ),
        (
            "missing occurred_at and hashes",
            {
                "schema": "report/v1",
                "provider_id": "blue-cloud",
                "provider_report_id": f"{run}-3",
                "submitted_at": "2026-11-20T10:15:00Z",
                "incident": {"kind": "new_material"},
                "content": [{"content_id": "x", "media_type": "image"}],
            },
            None,
        ),
        (
            "the first report sent again",
            r("acme-social", f"{run}-1", kind="known_material", media_seed=f"known-{run}"),
            None,
        ),
    ]
    out = []
    for what, doc, key in msgs:
        if isinstance(doc, bytes):
            out.append((what, key, doc, (key or "/").split("/", 1)[1]))
        else:
            out.append(
                (
                    what,
                    f"{doc['provider_id']}/{doc['provider_report_id']}",
                    json.dumps(doc).encode(),
                    doc["provider_report_id"],
                )
            )
    return out


def _times(case: dict[str, Any]) -> str:
    """times_reported, and how this report's content joined its cluster when it was near."""
    times = str(case["duplicates"]["times_reported"])
    near = [r.split(":")[2] for r in case.get("reasons", []) if r.startswith("near_duplicate:")]
    if near:
        return f"{times} (PDQ near copy, distance {min(near, key=int)})"
    if case["duplicates"]["times_reported"] > 1:
        return f"{times} (same hash)"
    return times


def _load_banks(settings: Settings, run: str, home: Path) -> None:
    for bank, seed in (("known_material", f"known-{run}"), ("false_positive", f"fp-{run}")):
        f = home / f"demo-{bank}.jsonl"
        f.write_text(json.dumps({"sha256": samples.fake_hashes(seed)["sha256"]}) + "\n")
        import_file(settings, bank, f, source="demo", added_by="demo", reason="demo data")


def _wait_feedback(
    settings: Settings, wanted: Counter[str], timeout: float
) -> dict[str, list[str]]:
    """Until each key has as many final statuses as it was sent (a resubmission gets its own)."""
    consumer = Consumer(
        {
            **base_config(settings),
            "group.id": f"demo-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    consumer.subscribe(["^" + re.escape(settings.topic("provider.")) + r".+\.feedback$"])
    statuses: dict[str, list[str]] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if all(sum(x in FINAL for x in statuses.get(k, [])) >= n for k, n in wanted.items()):
                break
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error():
                    continue
                fb = json.loads(msg.value() or b"")
                k = f"{fb['provider_id']}/{fb['provider_report_id']}"
                if k in wanted:
                    statuses.setdefault(k, []).append(fb["status"])
    finally:
        consumer.close()
    return statuses


def _pull_all(settings: Settings, run: str) -> list[tuple[str, dict[str, Any]]]:
    """Every liaison pulls at once (each with its own key), as they would in their own offices."""
    keys = KeySet(settings.keys_dir)

    def one(rcpt: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (rcpt, o.document)
            for o in pull(
                settings,
                rcpt,
                keys.recipient_private_keys(rcpt),
                keys.centre_public_keys(),
                timeout=2.0,
                group=f"demo-{run}-{rcpt}",
            )
        ]

    with ThreadPoolExecutor(len(RECIPIENTS)) as pool:
        return [x for got in pool.map(one, RECIPIENTS) for x in got]


def _notices(settings: Settings, provider: str, want: Any, timeout: float) -> list[dict[str, Any]]:
    """notice/v1 on a company's notices topic, read until `want(notices)` holds."""
    consumer = Consumer(
        {
            **base_config(settings),
            "group.id": f"demo-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 500,
        }
    )
    consumer.subscribe([settings.topic(notices_topic(provider))])
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while not want(got) and time.monotonic() < deadline:
            got += [
                json.loads(x.value() or b"")
                for x in consumer.consume(100, timeout=0.5)
                if not x.error()
            ]
    finally:
        consumer.close()
    return got


def victims_demo(settings: Settings, run: str, console: Console) -> bool:
    """A victim's request for the demo's image: filed by a case handler with its hashes only;
    the three stored reports and the re-encoded copy are found (all already removed, so no
    notice); a company then reports another copy, still online: triage matches it, the
    company gets a removal notice and answers `removed`; the victim's status shows it all."""
    from victims.model import Item
    from victims.service import VictimDesk
    from victims.tables import VictimNotice

    h = samples.fake_hashes(f"img-{run}")
    with VictimDesk(settings) as desk:
        rid, pin = desk.file(
            [Item(1, "image", h["sha256"], h["md5"], h["pdq"], 90)],
            by="demo-case-handler",
            identity_ref=f"helpline-{run}",
        )
        filed = desk.wait_filed(rid, 60)
        console.print(
            f"victim's request {rid[:8]} filed (hashes only): "
            f"{filed['matches'] if filed else '?'} stored item(s) matched, "
            f"{filed['notices'] if filed else '?'} removal notice(s) (all removed "
            "already)"
        )
        later = samples.report(
            "chat-app", f"{run}-7", media_seed=f"img-{run}-phone", ip_country="pl"
        )
        later["content"][0].update(
            pdq=samples.near_copy(f"img-{run}", 20)["pdq"],
            publicly_available=True,
            removed=False,
            url=f"https://chat-app.example/m/{run}",
        )
        producer = BatchProducer(settings)
        producer.send(INTAKE, json.dumps(later).encode(), key=f"chat-app/{run}-7".encode())
        producer.flush_or_raise()
        notices = _notices(
            settings,
            "chat-app",
            lambda got: any(n.get("type") == "removal" for n in got),
            timeout=60,
        )
        removal = next((n for n in notices if n.get("type") == "removal"), None)
        if removal is None:
            console.print("[red]no removal notice reached chat-app[/]")
            return False
        console.print(
            f"chat-app reported a re-encoded copy still online: removal notice "
            f"{removal['notice_id'][:8]} for {removal['provider_report_id']}; "
            "chat-app answers removed"
        )
        producer.send(
            NOTICE_RESPONSES,
            json.dumps(
                {
                    "schema": "notice-response/v1",
                    "notice_id": removal["notice_id"],
                    "provider_id": "chat-app",
                    "status": "removed",
                    "at": removal["at"],
                }
            ).encode(),
            key=removal["notice_id"].encode(),
        )
        producer.flush_or_raise()
        producer.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the victims worker recorded the answer
            with desk.sessions() as s:
                if s.get(VictimNotice, removal["notice_id"]).answer:  # type: ignore[union-attr]
                    break
            time.sleep(0.3)  # polling a database row, bounded by the deadline
        st = desk.status(rid, pin, by="demo-case-handler")
    t = Table(title="What the victim is told (`centre victims status ID --pin …`)")
    for col in ("company", "reports", "first reported", "notices", "removed", "waiting"):
        t.add_column(col)
    for p in st["providers"]:
        t.add_row(
            p["provider"],
            str(p["reports"]),
            str(p["first_reported_at"])[:19],
            str(p["notices"]),
            str(p["removed"]),
            str(p["waiting_for_answer"]),
        )
    console.print(t)
    sent_to = ", ".join(f"le.{f['to']}" for f in st["forwarded_to_law_enforcement"])
    console.print(
        f"{st['reports_holding_your_material']} reports held the victim's picture; "
        f"forwarded to {sent_to or 'nobody'}; removal notices: "
        f"{st['removal_notices']['sent']} sent, {st['removal_notices']['removed']} "
        "removed."
    )
    return bool(st["removal_notices"]["removed"])


def run_demo(settings: Settings, extra: int = 0) -> int:
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    run = time.strftime("%H%M%S") + "-" + uuid.uuid4().hex[:4]
    if settings.kafka_bootstrap is None and _port_in_use(settings.local_kafka_port):
        settings = settings.with_(local_kafka_port=free_port())
    console.print(f"[bold]Starting the stack[/] (home {settings.home}) …")
    with Stack(settings) as stack:
        console.print(
            f"ready: broker {settings.bootstrap}, workers "
            f"{', '.join(f'{s}={w.pid}' for s, w in stack.workers.items())}"
        )
        _load_banks(settings, run, settings.home)
        msgs = scenario(run)
        producer = BatchProducer(settings)
        for _what, key, value, _prid in msgs:
            producer.send(INTAKE, value, key=key.encode() if key else None)
        producer.flush_or_raise()
        console.print(f"sent {len(msgs)} reports from 3 companies; waiting for feedback …")
        wanted = Counter(k for _w, k, _v, _p in msgs if k)
        statuses = _wait_feedback(settings, wanted, timeout=60)

        fb = Table(title="What each company was told (feedback/v1)")
        for col in ("report", "what it shows", "feedback"):
            fb.add_column(col)
        seen_keys: set[str] = set()
        for what, key, _v, _p in msgs:
            got = statuses.get(key or "", ["(none)"])
            if key in seen_keys:  # the resubmission: its own answer only
                shown = [x for x in got if x == "duplicate_submission"]
            else:
                shown = [x for x in got if x != "duplicate_submission"]
            seen_keys.add(key or "")
            fb.add_row(key or "-", what, " → ".join(shown or ["(none)"]))
        console.print(fb)

        cases = Table(title="What each liaison pulled (sealed case/v1, opened with its own key)")
        for col in (
            "liaison",
            "case",
            "from",
            "priority",
            "category",
            "severity",
            "jurisdiction (basis)",
            "times reported (how matched)",
        ):
            cases.add_column(col)
        total = 0
        for rcpt, d in _pull_all(settings, run):
            if not str(d.get("provider_report_id", "")).startswith(run):
                continue
            total += 1
            j = d["jurisdiction"]
            basis = (
                "; ".join(f"{c['country']} ({', '.join(c['basis'])})" for c in j["countries"])
                or "none: Europol only"
            )
            # The end of the id: its start is the report's receipt time, shared by the demo's.
            cases.add_row(
                f"le.{rcpt}",
                "…" + str(d["case_id"])[-8:],
                f"{d['provider_id']}/{d['provider_report_id']}",
                d["priority"],
                d["category"],
                d["severity"],
                basis,
                _times(d),
            )
        console.print(cases)
        console.print(f"{total} sealed cases delivered.")
        victim_ok = victims_demo(settings, run, console)
        # What an auditor sees: every decision above is an entry of the audit trail.
        from centre.audit import AuditLog

        console.print(
            f"Audit trail (`centre audit verify`): {AuditLog(settings).verify().summary()}"
        )
        console.print("Stopping the stack …")
    return 0 if total and victim_ok else 1
