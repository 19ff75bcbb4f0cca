"""Supplements (Art. 48(5)): a report with `"supplement": true` and a known
`provider_report_id` completes the stored report instead of being a duplicate submission.

A supplement adds; it never rewrites what the provider said first (the report record keeps
both, and a liaison must be able to trust that a case only grows):

- lists of things (`content` by `content_id`, `users`, `location.ip_events`,
  `reported_elsewhere`, and any unknown list) gain the entries not already there; a content
  item already known gains the fields it lacked (a hash sent later);
- objects gain the keys they lacked, recursively;
- a value already present stays as it was.

Pure: no I/O, so it is tested without a broker or a database.
"""

from __future__ import annotations

import copy
from typing import Any

# Keys that describe the message, not the report: a supplement's own are not merged in.
_ENVELOPE = frozenset({"schema", "provider_id", "provider_report_id", "submitted_at", "supplement"})


def merge_supplement(
    original: dict[str, Any], supplement: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The report completed by the supplement, and the JSON paths it filled in (in order)."""
    merged = copy.deepcopy(original)
    added: list[str] = []
    for key, value in supplement.items():
        if key in _ENVELOPE:
            continue
        _merge_into(merged, key, value, f"$.{key}", added)
    return merged, added


def _merge_into(target: dict[str, Any], key: str, value: Any, path: str, added: list[str]) -> None:
    if value is None or value == [] or value == {} or value == "":
        return  # nothing to add
    if key not in target or target[key] is None or target[key] == [] or target[key] == "":
        target[key] = copy.deepcopy(value)
        added.append(path)
        return
    current = target[key]
    if isinstance(current, dict) and isinstance(value, dict):
        for k, v in value.items():
            _merge_into(current, k, v, f"{path}.{k}", added)
    elif isinstance(current, list) and isinstance(value, list):
        _merge_list(current, value, path, added)
    # A scalar already given stays: a supplement completes, it does not overwrite.


def _merge_list(current: list[Any], extra: list[Any], path: str, added: list[str]) -> None:
    by_id = {
        item.get("content_id"): i
        for i, item in enumerate(current)
        if isinstance(item, dict) and isinstance(item.get("content_id"), str)
    }
    for item in extra:
        cid = item.get("content_id") if isinstance(item, dict) else None
        if isinstance(cid, str) and cid in by_id:
            idx = by_id[cid]
            for k, v in item.items():
                _merge_into(current[idx], k, v, f"{path}[{idx}].{k}", added)
        elif item not in current:
            current.append(copy.deepcopy(item))
            if isinstance(cid, str):
                by_id[cid] = len(current) - 1
            added.append(f"{path}[{len(current) - 1}]")
