"""Synthetic report/v1 documents for the demo and the benchmark. No real material: hashes are
random or derived from a seed, addresses are public ones of well-known networks."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from typing import Any

# Public addresses whose country the shipped geolocation data knows (checked by tests).
IPS = {
    "de": "80.128.0.1",
    "fr": "90.0.0.1",
    "nl": "145.1.0.1",
    "it": "79.0.0.1",
    "es": "83.32.0.1",
    "pl": "83.0.0.1",
    "us": "8.8.8.8",
}


def fake_hashes(seed: str) -> dict[str, str]:
    """Hashes that look real and are stable for a seed (the same 'image' twice)."""
    return {
        "sha256": hashlib.sha256(seed.encode()).hexdigest(),
        "md5": hashlib.md5(seed.encode()).hexdigest(),
        "pdq": hashlib.sha256(b"pdq" + seed.encode()).hexdigest(),
    }


def near_copy(seed: str, bits: int = 12) -> dict[str, str]:
    """Hashes of a re-encoded copy of the `seed` image: other bytes (new sha256/md5), a PDQ
    `bits` away from the original's, as a resize or re-compression gives."""
    pdq = int(fake_hashes(seed)["pdq"], 16)
    rng = random.Random(f"near-{seed}")
    for b in rng.sample(range(256), bits):
        pdq ^= 1 << b
    return {**fake_hashes(f"{seed}-reencoded"), "pdq": f"{pdq:064x}"}


def report(
    provider_id: str,
    provider_report_id: str,
    *,
    kind: str = "new_material",
    media_seed: str | None = None,
    urgent: bool = False,
    live: bool = False,
    ip_country: str | None = "de",
    suspect_country: str | None = None,
    victim_country: str | None = None,
    hint: str | None = None,
    classification: str | None = "B2",
    text: str | None = None,
    near_copy_of: str | None = None,
) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    doc: dict[str, Any] = {
        "schema": "report/v1",
        "provider_id": provider_id,
        "provider_report_id": provider_report_id,
        "submitted_at": now.isoformat().replace("+00:00", "Z"),
        "incident": {
            "kind": kind,
            "occurred_at": (now - dt.timedelta(hours=2)).isoformat().replace("+00:00", "Z"),
            "urgent": urgent,
            "detection": "own_initiative",
            "service": {"type": "hosting", "url": f"https://{provider_id}.example/"},
            "description": "synthetic report for testing the pipeline",
        },
        "content": [],
        "location": {"ip_events": []},
        "users": [],
    }
    if urgent:
        doc["incident"]["urgent_reason"] = "ongoing abuse indicated"
    if media_seed is not None or near_copy_of is not None:
        hashes = near_copy(near_copy_of) if near_copy_of else fake_hashes(str(media_seed))
        item: dict[str, Any] = {
            "content_id": "f1",
            "media_type": "video" if live else "image",
            **hashes,
            "pdq_quality": 90,
            "publicly_available": False,
            "removed": True,
            "annotations": [],
        }
        if live:
            item["annotations"].append("live_streaming")
        if classification:
            item["industry_classification"] = classification
        doc["content"].append(item)
    if text is not None:
        doc["content"].append({"content_id": "m1", "media_type": "text", "text": text})
    if ip_country:
        doc["location"]["ip_events"].append(
            {"ip": IPS[ip_country], "port": 443, "at": doc["submitted_at"], "event": "upload"}
        )
    if hint:
        doc["location"]["country_hint"] = hint
    if suspect_country:
        doc["users"].append(
            {
                "role": "suspect",
                "account_id": "u-1",
                "country": suspect_country,
                "age_band": "adult",
                "account_action": "terminated",
            }
        )
    if victim_country:
        doc["users"].append(
            {"role": "victim", "account_id": "u-2", "country": victim_country, "age_band": "child"}
        )
    return doc


def synthetic(
    i: int, run: str, rng: random.Random, p1_share: float = 0.05, dup_share: float = 0.2
) -> dict[str, Any]:
    """The benchmark's mix: mostly new material from a few countries, some repeats, some P1."""
    countries = ["de", "fr", "nl", "it", "es", "pl"]
    seed = f"bench-{rng.randrange(200)}" if rng.random() < dup_share else f"{run}-{i}"
    doc = report(
        f"bench-{i % 4}",
        f"{run}-{i:07d}",
        media_seed=seed,
        urgent=rng.random() < p1_share,
        ip_country=rng.choice(countries),
        suspect_country=rng.choice(countries).upper() if rng.random() < 0.3 else None,
        classification=rng.choice(["A1", "A2", "B1", "B2"]),
    )
    if not doc["users"]:  # the uploader is known, if not the country: no information request
        doc["users"].append(
            {"role": "suspect", "account_id": f"u-{i}", "account_action": "suspended"}
        )
    return doc
