"""Information requests (Art. 48(5)): what a report lacks for jurisdiction or assessment.

The provider is told each missing field with its JSON path; forwarding never waits for it
(CONTRACT.md): what can be forwarded is forwarded, and a supplement updates the case. Pure.
"""

from __future__ import annotations

from typing import Any

from centre import messages as m

_MATERIAL = ("known_material", "new_material")
_HASHES = ("sha256", "md5", "pdq")


def _object(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def missing_information(report: dict[str, Any]) -> list[dict[str, str]]:
    """One `feedback/v1` reason per missing field; empty when nothing is missing."""
    out: list[dict[str, str]] = []
    location = _object(report.get("location"))
    if not location.get("ip_events"):
        out.append(
            m.reason(
                "missing_ip_events",
                "no IP event (address, port, time) of the upload or login: the member state with "
                "jurisdiction cannot be located from the network; send a supplement with "
                "location.ip_events",
                "$.location.ip_events",
            )
        )
    if not report.get("users"):
        out.append(
            m.reason(
                "missing_users",
                "no user: the account that shared or solicited the material (and any victim) is "
                "not identified; send a supplement with users",
                "$.users",
            )
        )
    incident = _object(report.get("incident"))
    content = [c for c in report.get("content") or [] if isinstance(c, dict)]
    if incident.get("kind") in _MATERIAL and not any(c.get(h) for c in content for h in _HASHES):
        out.append(
            m.reason(
                "missing_content_hash",
                "the report is about material but no content item carries a hash (sha256, md5 or "
                "pdq): it cannot be matched or deduplicated; send a supplement with the content's "
                "hashes",
                "$.content",
            )
        )
    return out
