"""Test data shared by every test package: valid report/v1 documents to start from.

    make_report()                                    # a fresh valid report
    make_report(incident={"urgent": True, "urgent_reason": "live abuse"})   # merged into incident
    make_report(content=[])                          # lists are replaced, not merged
    make_report(location={"country_hint": REMOVE})   # REMOVE deletes a key, at any depth

Each call has a new provider_report_id and new random hashes, so reports never collide by
accident (duplicate submission, duplicate content) unless a test makes them.
"""

from __future__ import annotations

import itertools
import json
import secrets
import uuid
from typing import Any, Final

PROVIDER_ID: Final = "acme-social"
REMOVE: Final = object()  # an override value that deletes the key instead of setting it

_counter = itertools.count(1)
_RUN = uuid.uuid4().hex[:8]  # keeps ids unique across test runs sharing a database or broker


def random_hashes() -> dict[str, str]:
    """sha256, md5 and pdq as lower-case hex. Random PDQs are about 128 bits apart, far from
    the 31 of a duplicate, so two of them never cluster by chance."""
    return {
        "sha256": secrets.token_hex(32),
        "md5": secrets.token_hex(16),
        "pdq": secrets.token_hex(32),
    }


def make_report(**overrides: Any) -> dict[str, Any]:
    """A valid report/v1 dict from provider "acme-social" with a unique provider_report_id,
    one image item (random sha256, md5 and pdq), one upload from 80.128.0.1 and a suspect in
    FR. Keyword overrides are deep-merged: a dict merges into the dict already there, any
    other value (lists included) replaces it, and REMOVE deletes the key."""
    report: dict[str, Any] = {
        "schema": "report/v1",
        "provider_id": PROVIDER_ID,
        "provider_report_id": f"r-{_RUN}-{next(_counter):06d}",
        "submitted_at": "2026-11-20T10:15:00Z",
        "incident": {
            "kind": "new_material",
            "occurred_at": "2026-11-19T22:01:00+01:00",
            "urgent": False,
            "detection": "own_initiative",
            "service": {"type": "hosting", "url": "https://acme-social.example/"},
            "description": "synthetic report for tests",
        },
        "content": [
            {
                "content_id": "f1",
                "media_type": "image",
                **random_hashes(),
                "pdq_quality": 90,
                "publicly_available": False,
                "removed": True,
                "annotations": [],
                "industry_classification": "B2",
            }
        ],
        "location": {
            "ip_events": [
                {"ip": "80.128.0.1", "port": 443, "at": "2026-11-19T22:00:00Z", "event": "upload"}
            ]
        },
        "users": [
            {
                "role": "suspect",
                "account_id": "u-1",
                "country": "FR",
                "age_band": "adult",
                "account_action": "terminated",
            }
        ],
    }
    _merge(report, overrides)
    return report


def report_bytes(report: dict[str, Any]) -> bytes:
    """The Kafka value a company would send."""
    return json.dumps(report).encode("utf-8")


def report_key(report: dict[str, Any]) -> bytes:
    """The Kafka key `<provider_id>/<provider_report_id>`."""
    return f"{report['provider_id']}/{report['provider_report_id']}".encode()


def _merge(target: dict[str, Any], overrides: dict[str, Any]) -> None:
    for name, value in overrides.items():
        if value is REMOVE:
            target.pop(name, None)
        elif isinstance(value, dict) and isinstance(target.get(name), dict):
            _merge(target[name], value)
        else:
            target[name] = _strip_removes(value)


def _strip_removes(value: Any) -> Any:
    # A dict set where nothing was before still honours REMOVE inside it (it simply is absent).
    if isinstance(value, dict):
        return {k: _strip_removes(v) for k, v in value.items() if v is not REMOVE}
    return value
