"""Classification of a report: category, severity, priority, manifestly unfounded.

Pure functions of the report and its indicator matches, exactly as CONTRACT.md says; each
returns the reasons for its decision as stable strings ("code" or "code:detail"), which end
up on the case for the liaison and in the audit trail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MEDIA_TYPES = frozenset({"image", "video"})
KNOWN_BANK = "known_material"
FALSE_POSITIVE_BANK = "false_positive"
# Industry classification, most severe first (A: prepubescent, B: pubescent; 1: sex act).
SEVERITY_ORDER = ("A1", "A2", "B1", "B2")


@dataclass(frozen=True, slots=True)
class Match:
    content_id: str
    bank: str
    signal: str  # sha256 | md5 | pdq
    distance: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "content_id": self.content_id,
            "bank": self.bank,
            "signal": self.signal,
            "distance": self.distance,
        }


@dataclass(slots=True)
class Classification:
    category: str
    severity: str
    priority: str
    manifestly_unfounded: bool
    reasons: list[str] = field(default_factory=list)


def media_items(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in report.get("content") or [] if c.get("media_type") in MEDIA_TYPES]


def _matched(matches: Iterable[Match], bank: str) -> set[str]:
    return {mt.content_id for mt in matches if mt.bank == bank}


def category(report: dict[str, Any], matches: Iterable[Match]) -> tuple[str, list[str]]:
    known = sorted(_matched(matches, KNOWN_BANK))
    claimed = (report.get("incident") or {}).get("kind")
    if known:
        return "known_material", [f"known_material_match:{cid}" for cid in known]
    reasons = []
    if claimed == "known_material":
        reasons.append("claimed_known_not_in_database")
    if media_items(report):
        return "new_material", reasons + ["media_not_in_known_material_bank"]
    return "solicitation", reasons + ["no_media"]


def severity(report: dict[str, Any]) -> tuple[str, list[str]]:
    present = {c.get("industry_classification") for c in report.get("content") or []}
    for level in SEVERITY_ORDER:
        if level in present:
            return level, [f"severity:{level}:highest_industry_classification"]
    return "unknown", ["severity:unknown:no_industry_classification"]


def urgent_signals(report: dict[str, Any]) -> list[str]:
    """Signals that a child may be in immediate danger beyond the contract's P1 rule: a
    child victim named in a sextortion report, or content annotated `infant`."""
    out = []
    incident = report.get("incident") or {}
    if "sextortion" in (incident.get("annotations") or []) and any(
        isinstance(u, dict) and u.get("role") == "victim" and u.get("age_band") == "child"
        for u in report.get("users") or []
    ):
        out.append("sextortion_child_victim")
    out += [
        f"infant:{c.get('content_id')}"
        for c in report.get("content") or []
        if "infant" in (c.get("annotations") or [])
    ]
    return out


def priority(
    report: dict[str, Any], category_: str, extended_p1: bool = False
) -> tuple[str, list[str]]:
    """CONTRACT.md: P1 when urgent or any content is live_streaming; else P2 for new material
    and solicitation; else P3. With `extended_p1` the urgent signals make P1 too; without it
    they are recorded as `urgent_signal:…` reasons for the liaison."""
    reasons = []
    if (report.get("incident") or {}).get("urgent") is True:
        reasons.append("p1:urgent")
    live = [
        c.get("content_id")
        for c in report.get("content") or []
        if "live_streaming" in (c.get("annotations") or [])
    ]
    reasons += [f"p1:live_streaming:{cid}" for cid in live]
    signals = urgent_signals(report)
    if extended_p1:
        reasons += [f"p1:{sig}" for sig in signals]
    if reasons:
        return "P1", reasons
    notes = [f"urgent_signal:{sig}" for sig in signals]
    if category_ in ("new_material", "solicitation"):
        return "P2", [f"p2:{category_}"] + notes
    return "P3", ["p3:known_material"] + notes


def manifestly_unfounded(
    report: dict[str, Any], matches: Iterable[Match]
) -> tuple[bool, list[str]]:
    """Unfounded only when there is media and every media item is in the false_positive bank."""
    media = media_items(report)
    if not media:
        return False, []
    fp = _matched(matches, FALSE_POSITIVE_BANK)
    if all(c.get("content_id") in fp for c in media):
        return True, ["manifestly_unfounded:all_media_in_false_positive_bank"]
    if fp:
        return False, [f"false_positive_match:{cid}" for cid in sorted(fp)]
    return False, []


def classify(
    report: dict[str, Any], matches: list[Match], extended_p1: bool = False
) -> Classification:
    cat, r1 = category(report, matches)
    sev, r2 = severity(report)
    pri, r3 = priority(report, cat, extended_p1)
    unfounded, r4 = manifestly_unfounded(report, matches)
    return Classification(cat, sev, pri, unfounded, r1 + r2 + r3 + r4)
