"""What an outsider does against the running stack: submit, read feedback, pull cases. Every
wait is for a condition (a message seen), bounded by a deadline, never a fixed sleep."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from centre.kafka import BatchProducer, base_config
from centre.keys import KeySet
from centre.liaison import pull
from centre.settings import Settings
from centre.topology import INTAKE, feedback_topic

FINAL = {"rejected", "duplicate_submission", "manifestly_unfounded", "forwarded"}


def wait_for(
    what: str,
    cond: Callable[[], Any],
    timeout: float = 60,
    alive: Callable[[], bool] | None = None,
    every: float = 0.1,
) -> Any:
    """Poll `cond` (a database row, a process state: nothing to subscribe to) until it holds;
    its value. Fails after `timeout`, or at once when `alive()` says the worker died."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if alive is not None and not alive():
            raise AssertionError(f"{what}: the worker exited")
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(every)  # between two looks at the condition, bounded by the deadline


def cli(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `centre` command with the stack's settings."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=settings.child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def send_raw(
    settings: Settings,
    messages: list[tuple[bytes | None, bytes]],
    headers: list[list[tuple[str, bytes]] | None] | None = None,
) -> None:
    p = BatchProducer(settings)
    for i, (key, value) in enumerate(messages):
        p.send(INTAKE, value, key=key, headers=headers[i] if headers else None)
    p.flush_or_raise()
    p.close()


def send_reports(settings: Settings, reports: list[dict[str, Any]]) -> None:
    send_raw(
        settings,
        [
            (f"{r['provider_id']}/{r['provider_report_id']}".encode(), json.dumps(r).encode())
            for r in reports
        ],
    )


class FeedbackReader:
    """Reads a provider's feedback topic from the beginning, as the company would."""

    def __init__(self, settings: Settings, provider_id: str) -> None:
        self.topic = settings.topic(feedback_topic(provider_id))
        self.consumer = Consumer(
            {
                **base_config(settings),
                "group.id": f"t-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "topic.metadata.refresh.interval.ms": 500,
            }
        )
        self.consumer.subscribe([self.topic])
        self.items: list[dict[str, Any]] = []

    def until(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 90
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not done(self.items):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"feedback condition not met in {timeout}s; got "
                    f"{[(f['provider_report_id'], f['status']) for f in self.items]}"
                )
            for msg in self.consumer.consume(500, timeout=0.3):
                if not msg.error():
                    self.items.append(json.loads(msg.value()))
        return self.items

    def final_for(self, prids: set[str], timeout: float = 90) -> dict[str, dict[str, Any]]:
        """The final feedback of each provider_report_id."""

        def done(items: list[dict[str, Any]]) -> bool:
            return prids <= {f["provider_report_id"] for f in items if f["status"] in FINAL}

        self.until(done, timeout)
        return {
            f["provider_report_id"]: f
            for f in self.items
            if f["status"] in FINAL and f["provider_report_id"] in prids
        }

    def statuses(self, prid: str) -> list[str]:
        return [f["status"] for f in self.items if f["provider_report_id"] == prid]

    def close(self) -> None:
        self.consumer.close()


def pull_cases(
    settings: Settings,
    recipient: str,
    want: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 90,
    group: str | None = None,
    schemas: tuple[str, ...] = ("case/v1",),
) -> list[dict[str, Any]]:
    """Pull as a liaison (own consumer group) until `want` holds for what was pulled: the
    documents of the given schemas (cases; other tests' retractions share the topics)."""
    keys = KeySet(settings.keys_dir)
    group = group or f"t-{recipient}-{uuid.uuid4().hex[:8]}"
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not want(got):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{recipient}: condition not met in {timeout}s ({len(got)} documents pulled)"
            )
        for opened in pull(
            settings,
            recipient,
            keys.recipient_private_keys(recipient),
            keys.centre_public_keys(),
            timeout=1.0,
            group=group,
        ):
            doc = opened.document
            if isinstance(doc, dict) and doc.get("schema") in schemas:
                got.append(doc)
    return got


def ids_of(docs: list[dict[str, Any]], prids: set[str]) -> list[str]:
    return [d["provider_report_id"] for d in docs if d.get("provider_report_id") in prids]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
