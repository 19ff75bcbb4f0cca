"""What victims' tests need around a request: stored reports (reusing the complaints' seed),
hash lists, requests as the desk builds them, and stand-ins for the broker."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from centre import messages as m
from tests.complaints.seed import NOW, FakeProducer, FakeTopics, add_report, hashes
from victims import pin as pins
from victims.model import Item, build_request

__all__ = [
    "NOW",
    "FakeProducer",
    "FakeTopics",
    "add_report",
    "hashes",
    "public_item",
    "near_pdq",
    "request_doc",
    "triaged",
    "FAST_PIN_LOG2",
]

FAST_PIN_LOG2 = 14  # the smallest accepted scrypt cost: tests hash many PINs


def public_item(content_id: str, seed: str, **extra: Any) -> dict[str, Any]:
    """A media item still online at the provider (a removal notice goes for it)."""
    return {
        "content_id": content_id,
        "media_type": "image",
        **hashes(seed),
        "pdq_quality": 90,
        "url": f"https://host.example/{seed}.jpg",
        "publicly_available": True,
        "removed": False,
        **extra,
    }


def near_pdq(value: str, bits: int, seed: int = 1) -> str:
    """A PDQ `bits` away from `value` (a re-encoded copy)."""
    v = int(value, 16)
    for b in random.Random(seed).sample(range(256), bits):
        v ^= 1 << b
    return f"{v:064x}"


def request_doc(
    rid: str, items: list[Item], pin: str = "AAAA-BBBB-CCCC", at: dt.datetime = NOW
) -> dict[str, Any]:
    return build_request(
        request_id=rid,
        items=items,
        pin_hash=pins.hash_pin(pin, n_log2=FAST_PIN_LOG2),
        filed_by="hanna",
        requested_at=at,
        identity_recorded=False,
    )


def triaged(
    provider: str, prid: str, items: list[dict[str, Any]], received_at: dt.datetime = NOW
) -> dict[str, Any]:
    """A report as triage sends it on `reports.triaged` (what live matching reads of it)."""
    rid = m.report_id_for(provider, prid)
    return {
        "report_id": rid,
        "case_id": m.case_id_for(rid),
        "provider_id": provider,
        "provider_report_id": prid,
        "received_at": m.iso(received_at),
        "signature": "absent",
        "triaged_at": m.iso(received_at),
        "supplement": 0,
        "category": "new_material",
        "severity": "unknown",
        "priority": "P2",
        "manifestly_unfounded": False,
        "duplicates": {"cluster_ids": [], "times_reported": 1, "related_case_ids": []},
        "indicator_matches": [],
        "reasons": [],
        "report": {
            "schema": "report/v1",
            "provider_id": provider,
            "provider_report_id": prid,
            "content": items,
        },
    }


def iso(t: dt.datetime) -> str:
    return m.iso(t)
