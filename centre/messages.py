"""Message formats between stages and to the outside, and the deterministic ids they carry.

Every output has an id derived from its input, so a message processed twice after a crash
produces the same output, and every consumer deduplicates on that id (DESIGN.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any

import orjson

_NS = uuid.UUID("6f1c3c52-8a47-4f4e-9d0c-7d2b1f0e5a11")
NS_REPORT = uuid.uuid5(_NS, "report")
NS_CASE = uuid.uuid5(_NS, "case")
NS_CLUSTER = uuid.uuid5(_NS, "cluster")
NS_FEEDBACK = uuid.uuid5(_NS, "feedback")

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)

FEEDBACK_STATUSES = (
    "rejected",
    "received",
    "duplicate_submission",
    "manifestly_unfounded",
    "forwarded",
    "information_requested",
)


def uuid5_text(namespace: uuid.UUID, name: str) -> str:
    """`str(uuid.uuid5(namespace, name))`, without building a UUID object (whose int
    arithmetic cost triage and the audit trail more than the SHA-1 itself)."""
    h = hashlib.sha1(namespace.bytes + name.encode()).digest()
    x = (h[:6] + bytes(((h[6] & 0x0F) | 0x50, h[7], (h[8] & 0x3F) | 0x80)) + h[9:16]).hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def time_ordered_text(at: dt.datetime, namespace: uuid.UUID, name: str) -> str:
    """A UUID (version 8, custom) whose first 48 bits are `at` in milliseconds since the
    epoch and whose other 74 are SHA-1 of `name` in `namespace`: as deterministic as
    `uuid5_text` for the same time, and ids made about the same time sort together, so an
    index on them grows at its end instead of at a random page for every row."""
    if at.tzinfo is None:  # SQLite hands back naive datetimes for UTC columns
        at = at.replace(tzinfo=dt.UTC)
    ms = ((at - _EPOCH) // _MS) & 0xFFFFFFFFFFFF  # exact: `iso` keeps the same milliseconds
    h = hashlib.sha1(namespace.bytes + name.encode()).digest()
    x = (
        ms.to_bytes(6, "big") + bytes(((h[0] & 0x0F) | 0x80, h[1], (h[2] & 0x3F) | 0x80)) + h[3:10]
    ).hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def derived_id(namespace: uuid.UUID, name: str, at: dt.datetime | None = None) -> str:
    """The id of `name` in `namespace`: led by `at` when given (`time_ordered_text`),
    else the plain uuid5 (`uuid5_text`)."""
    if at is not None:
        return time_ordered_text(at, namespace, name)
    return uuid5_text(namespace, name)


def report_id_for(
    provider_id: str, provider_report_id: str, received_at: dt.datetime | None = None
) -> str:
    """A report's id. Intake gives the time the report was received (its message's
    timestamp on the intake topic, the same when the message is read again), which leads
    the id: the indexes on report ids (reports, their contents, cluster links, deliveries,
    the trail's subjects) take new reports at their end, not each at a random page."""
    return derived_id(NS_REPORT, f"{provider_id}/{provider_report_id}", received_at)


def case_id_for(report_id: str, received_at: dt.datetime | None = None) -> str:
    """A case's id, from its report's id (and, as that, led by the report's receipt)."""
    return derived_id(NS_CASE, report_id, received_at)


def from_ms(ms: int) -> dt.datetime:
    """A Kafka timestamp (milliseconds since the epoch) as an exact UTC time."""
    return _EPOCH + ms * _MS


def cluster_id_for(kind: str, value: str, founded_at: dt.datetime | None = None) -> str:
    """A new cluster is named by the first signal that founded it. Triage gives the time it
    founded it too (`time_ordered_text`): a cluster is stored with its founding batch, never
    sent before, so a batch decided again after a crash may name it anew, and the indexes
    on cluster ids take new clusters at their end."""
    return derived_id(NS_CLUSTER, f"{kind}:{value}", founded_at)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(t: dt.datetime) -> str:
    if t.tzinfo is None:  # SQLite hands back naive datetimes for UTC columns
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> dt.datetime:
    """The inverse of `iso` (and any ISO 8601 time with a zone, `Z` included)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def feedback(
    *,
    provider_id: str,
    provider_report_id: str | None,
    report_id: str | None,
    status: str,
    reasons: list[dict[str, Any]],
    at: dt.datetime,
    source: str,
) -> dict[str, Any]:
    """feedback/v1. `feedback_id` (an addition to the contract) lets a provider drop repeats:
    it is the same whenever the same decision on the same input is sent again."""
    assert status in FEEDBACK_STATUSES, status
    fid = uuid.uuid5(NS_FEEDBACK, f"{source}|{status}")
    return {
        "schema": "feedback/v1",
        "feedback_id": str(fid),
        "provider_id": provider_id,
        "provider_report_id": provider_report_id,
        "report_id": report_id,
        "status": status,
        "reasons": reasons,
        "at": iso(at),
    }


def reason(code: str, message: str, path: str = "$") -> dict[str, str]:
    return {"code": code, "message": message, "path": path}
