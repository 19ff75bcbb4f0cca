"""Issue 21 against the real stack: no input can crash or stall a stage.

About 300 hostile messages (the hand-made pathological cases of tests/intake/test_fuzz.py,
seeded random mutations of a valid report, seeded byte corruptions of one) go to
`reports.intake` with about 50 valid reports among them. Every message must get exactly one
final status on the company's feedback topic, every valid report must be forwarded, and no
worker process may have been restarted meanwhile. Everything is generated from a fixed seed:
a failure is the same message every time.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from centre import samples
from centre.fields import MAX_PROVIDER_REPORT_ID, PROVIDER_ID
from centre.stack import Stack
from intake.validation import MAX_REPORT_BYTES
from tests.intake.test_fuzz import (
    FIELD_NAMES,
    ODD_NUMBERS,
    ODD_STRINGS,
    TOKENS,
    base_report,
    key_of,
    pathological_cases,
    serialise,
)
from tests.integration.helpers import FINAL, FeedbackReader, send_raw

pytestmark = pytest.mark.integration

PROVIDER = "fuzz-co"
SEED = 21  # the number
MUTATIONS = 70
CORRUPTIONS = 30
VALID = 50
TIMEOUT = 240.0
_PROVIDER_RE = re.compile(PROVIDER_ID)


@dataclass
class Message:
    name: str  # how to build it again: a case of pathological_cases, or mutation/corruption N
    key: bytes | None
    value: bytes
    expect: str | None = None  # "accepted", or a reason code the rejection must carry
    provider_id: str | None = None  # where the feedback goes, as the contract says
    feedback_id: str | None = None  # the provider_report_id the feedback names


def feedback_ids(value: bytes, key: bytes | None) -> tuple[str | None, str | None]:
    """The provider and provider_report_id that feedback about this message names (CONTRACT
    "feedback/v1"): the report's own when it has usable ones, else the Kafka key's; an id
    longer than 200 characters is shown as its first 199 and an ellipsis."""
    key_pid = key_prid = None
    if key:
        try:
            text = key.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        pid, sep, prid = text.partition("/")
        key_pid, key_prid = pid or None, (prid if sep and prid else None)
    doc: Any = None
    if value and len(value) <= MAX_REPORT_BYTES:
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            doc = None
    body = doc if isinstance(doc, dict) else {}
    body_pid, body_prid = body.get("provider_id"), body.get("provider_report_id")
    pid = next(
        (p for p in (body_pid, key_pid) if isinstance(p, str) and _PROVIDER_RE.fullmatch(p)), None
    )
    prid = next(
        (p for p in (body_prid, key_prid) if isinstance(p, str) and p and not p.isspace()), None
    )
    if prid is not None and len(prid) > MAX_PROVIDER_REPORT_ID:
        prid = prid[: MAX_PROVIDER_REPORT_ID - 1] + "…"
    return pid, prid


# -- seeded generators (no Hypothesis here: the broker run must be the same every time) ---------


def rand_text(rng: random.Random) -> str:
    def char() -> str:
        lo, hi = rng.choice([(0x20, 0x7E), (0x00, 0x1F), (0xA0, 0xD7FF), (0xE000, 0x10FFFF)])
        return chr(rng.randint(lo, hi))

    return "".join(char() for _ in range(rng.randint(0, 24)))


def rand_json(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth < 3 and r < 0.15:
        return [rand_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 3 and r < 0.3:
        return {
            rng.choice([rng.choice(FIELD_NAMES), rand_text(rng)]): rand_json(rng, depth + 1)
            for _ in range(rng.randint(0, 3))
        }
    return rng.choice(
        [
            None,
            True,
            False,
            rng.randint(-(2**70), 2**70),
            rng.uniform(-1e300, 1e300),
            rand_text(rng),
            rng.choice(ODD_STRINGS),
            rng.choice(ODD_NUMBERS),
        ]
    )


def spots(doc: Any) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    stack = [doc]
    while stack:
        v = stack.pop()
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
        for k, child in items:
            out.append((v, k))
            stack.append(child)
    return out


def mutated(rng: random.Random, prid: str) -> dict[str, Any]:
    """A valid report of PROVIDER with 1-5 members deleted, replaced or added. Its ids stay
    those of the key, or become a deliberate mismatch that still names the message alone."""
    doc = base_report(PROVIDER, prid)
    for _ in range(rng.randint(1, 5)):
        where = spots(doc)
        if not where:
            break
        parent, k = rng.choice(where)
        op = rng.choice(["delete", "replace", "add"])
        if op == "delete":
            del parent[k]
        elif op == "replace":
            parent[k] = rand_json(rng)
        elif isinstance(parent, dict):
            parent[rng.choice([rng.choice(FIELD_NAMES), rand_text(rng)])] = rand_json(rng)
        else:
            parent.append(rand_json(rng))
    pid = doc.get("provider_id")
    if isinstance(pid, str) and _PROVIDER_RE.fullmatch(pid) and pid != PROVIDER:
        doc["provider_id"] = "FUZZ CO"  # not another company's: that one would be told
    body_prid = doc.get("provider_report_id")
    if isinstance(body_prid, str) and body_prid.strip() and body_prid != prid:
        doc["provider_report_id"] = f"{prid}-mismatch"
    return doc


def corrupted(rng: random.Random, prid: str) -> bytes:
    value = bytearray(serialise(base_report(PROVIDER, prid)))
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(value))
        op = rng.choice(["delete", "insert", "overwrite"])
        if op == "delete":
            del value[at : at + rng.randint(1, 16)]
        elif op == "insert":
            value[at:at] = (
                rng.choice(TOKENS) if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 4))
            )
        else:
            value[at : at + 1] = rng.randbytes(1)
    return bytes(value)


def messages(run: str) -> tuple[list[Message], list[str]]:
    """The hostile messages and the valid reports among them (their ids), in sending order."""
    rng = random.Random(SEED)
    ids = iter(range(1, 1_000_000))
    hostile = [
        Message(c.name, c.key, c.value, c.expect)
        for c in pathological_cases(PROVIDER, lambda: f"{run}-p{next(ids):04d}")
    ]
    for i in range(MUTATIONS):
        prid = f"{run}-m{i:04d}"
        hostile.append(
            Message(f"mutation {i}", key_of(PROVIDER, prid), serialise(mutated(rng, prid)))
        )
    for i in range(CORRUPTIONS):
        prid = f"{run}-c{i:04d}"
        hostile.append(Message(f"corruption {i}", key_of(PROVIDER, prid), corrupted(rng, prid)))
    rng.shuffle(hostile)
    out: list[Message] = []
    valid: list[str] = []
    every = max(1, len(hostile) // VALID)
    for i, msg in enumerate(hostile):
        if i % every == 0 and len(valid) < VALID:
            prid = f"{run}-v{len(valid):03d}"
            r = samples.report(
                PROVIDER,
                prid,
                media_seed=f"fuzz-{prid}",
                ip_country=rng.choice(["de", "fr", "nl", "us", None]),
            )
            out.append(
                Message(f"valid {prid}", key_of(PROVIDER, prid), orjson.dumps(r), "accepted")
            )
            valid.append(prid)
        out.append(msg)
    for m in out:
        m.provider_id, m.feedback_id = feedback_ids(m.value, m.key)
    return out, valid


def test_no_message_crashes_or_stalls_a_stage(stack: Stack) -> None:
    run = uuid.uuid4().hex[:6]
    msgs, valid = messages(run)
    tracked = {m.feedback_id: m for m in msgs if m.provider_id == PROVIDER and m.feedback_id}
    # Each message is told about under an id of its own (the generator sees to it).
    assert len(tracked) == len([m for m in msgs if m.provider_id == PROVIDER and m.feedback_id])
    assert len(tracked) >= 300, len(tracked)
    pids = {st: w.pid for st, w in stack.workers.items()}
    restarts = {st: w.restarts for st, w in stack.workers.items()}

    send_raw(stack.settings, [(m.key, m.value) for m in msgs])
    fb = FeedbackReader(stack.settings, PROVIDER)
    want = set(tracked)

    def finals(items: list[dict[str, Any]]) -> set[str]:
        return {f["provider_report_id"] for f in items if f["status"] in FINAL}

    try:
        fb.until(lambda items: want <= finals(items), timeout=TIMEOUT)
    except AssertionError:
        missing = sorted(want - finals(fb.items))
        now = {st: w.pid for st, w in stack.workers.items()}
        fb.close()
        raise AssertionError(
            f"{len(missing)} of {len(want)} messages got no final status in {TIMEOUT:.0f}s, "
            f"e.g. {[(tracked[i].name, fb.statuses(i)) for i in missing[:15]]}; workers "
            f"{pids} -> {now}; logs in {stack.settings.home / 'logs'}"
        ) from None
    # A little longer, for a second final status that would follow the first.
    until = time.monotonic() + 5
    fb.until(lambda _: time.monotonic() > until, timeout=30)
    fb.close()

    wrong: list[str] = []
    for fid, m in tracked.items():
        mine = [f for f in fb.items if f["provider_report_id"] == fid and f["status"] in FINAL]
        if len({f.get("feedback_id") for f in mine}) != 1:
            wrong.append(f"{m.name}: {len(mine)} final statuses {[f['status'] for f in mine]}")
            continue
        final = mine[0]
        codes = [r.get("code") for r in final.get("reasons") or []]
        if m.expect == "accepted" and final["status"] != "forwarded":
            wrong.append(f"{m.name}: {final['status']} {codes}, expected forwarded")
        elif m.expect not in (None, "accepted") and (
            final["status"] != "rejected" or m.expect not in codes
        ):
            wrong.append(f"{m.name}: {final['status']} {codes}, expected rejected {m.expect}")
    assert not wrong, f"{len(wrong)} messages decided wrongly: {wrong[:20]}"
    assert {f"{run}-v{i:03d}" for i in range(len(valid))} <= want
    assert {st: w.pid for st, w in stack.workers.items()} == pids, "a worker restarted"
    assert {st: w.restarts for st, w in stack.workers.items()} == restarts
