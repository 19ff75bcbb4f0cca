"""Validation of one report/v1 message: pure, no I/O, one reason per problem.

The order follows what the company needs to fix first: size (not parsed at all when over
1 MiB), encoding, JSON, the schema (every problem at once), the Kafka key against the body, and
the signature. Messages name fields and expectations, never the report's values.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from intake.model import ReportV1

MAX_REPORT_BYTES = 1024 * 1024
_HASH_LEN = {"sha256": 64, "md5": 32, "pdq": 64}


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    message: str
    path: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "path": self.path}


@dataclass(slots=True)
class Outcome:
    report: dict[str, Any] | None
    problems: list[Problem] = field(default_factory=list)
    provider_id: str | None = None
    provider_report_id: str | None = None
    signature: str = "absent"  # absent | valid | invalid | unchecked (no key registered)

    @property
    def accepted(self) -> bool:
        return not self.problems and self.report is not None


def parse_key(key: bytes | None) -> tuple[str | None, str | None]:
    """`<provider_id>/<provider_report_id>`; either part None when absent or not UTF-8."""
    if not key:
        return None, None
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return None, None
    pid, sep, prid = text.partition("/")
    return (pid or None), (prid if sep and prid else None)


def _path(loc: tuple[Any, ...]) -> str:
    out = "$"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _problem(err: dict[str, Any]) -> Problem:
    loc = tuple(err.get("loc") or ())
    kind = err.get("type", "")
    field_name = next((p for p in reversed(loc) if isinstance(p, str)), "")
    path = _path(loc)
    if kind == "missing":
        return Problem("missing_field", f"{field_name} is required", path)
    if field_name in _HASH_LEN and kind in ("string_pattern_mismatch", "string_type"):
        return Problem("invalid_hash",
                       f"{field_name} must be {_HASH_LEN[field_name]} hexadecimal characters", path)
    if field_name == "provider_id" and kind == "string_pattern_mismatch":
        return Problem("invalid_value", "provider_id must match [a-z0-9][a-z0-9._-]{0,99} "
                       "(it names the provider's feedback topic)", path)
    if kind == "string_pattern_mismatch" and field_name in ("country", "country_hint"):
        return Problem("invalid_value", f"{field_name} must be an ISO 3166-1 alpha-2 code", path)
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return Problem("invalid_value", f"{field_name or 'value'} must be one of {expected}", path)
    if kind.startswith(("datetime", "timezone")):
        return Problem("invalid_value", f"{field_name} must be an ISO-8601 date-time with a "
                       "time zone, e.g. 2026-11-20T10:15:00Z", path)
    if kind == "string_too_short":
        return Problem("invalid_value", f"{field_name} must not be empty", path)
    if kind == "string_too_long":
        return Problem("invalid_value", f"{field_name} is too long", path)
    if kind.endswith("_type") or kind in ("model_attributes_type", "dict_type", "list_type"):
        want = kind.removesuffix("_type").replace("model_attributes", "object").replace(
            "dict", "object").replace("model", "object")
        return Problem("invalid_type", f"{field_name or 'value'} must be of type {want}", path)
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return Problem("invalid_value", f"{field_name} is out of range ({err.get('msg', '')})",
                       path)
    return Problem("invalid_value", f"{field_name or 'value'} is not valid ({kind})", path)


def _cross_field(doc: dict[str, Any]) -> list[Problem]:
    """Rules that span fields, checked on the raw document so they add to field errors."""
    out = []
    incident = doc.get("incident") if isinstance(doc.get("incident"), dict) else {}
    reason = incident.get("urgent_reason")
    if incident.get("urgent") is True and not (isinstance(reason, str) and reason.strip()):
        out.append(Problem("urgent_reason_required", "urgent_reason is required and must not "
                           "be empty when urgent is true", "$.incident.urgent_reason"))
    content = doc.get("content") if isinstance(doc.get("content"), list) else []
    description = incident.get("description")
    if not content and not (isinstance(description, str) and description.strip()):
        out.append(Problem("content_or_description_required", "a report needs at least one "
                           "content item or a non-empty incident.description", "$.content"))
    for i, item in enumerate(content):
        if (isinstance(item, dict) and item.get("media_type") in ("image", "video")
                and not any(item.get(k) for k in _HASH_LEN)):
            out.append(Problem("missing_hash", "an image or video item needs at least one of "
                               "sha256, md5, pdq", f"$.content[{i}]"))
    return out


def _normalise(doc: dict[str, Any]) -> None:
    """Lower-case hashes and upper-case country codes in place, keeping everything else."""
    for item in doc.get("content") or []:
        for k in _HASH_LEN:
            if isinstance(item.get(k), str):
                item[k] = item[k].lower()
    loc = doc.get("location") or {}
    if isinstance(loc.get("country_hint"), str):
        loc["country_hint"] = loc["country_hint"].upper()
    for group in ("users", "reported_elsewhere"):
        for u in doc.get(group) or []:
            if isinstance(u.get("country"), str):
                u["country"] = u["country"].upper()


def _check_signature(value: bytes, signature_b64: str | None, key: Ed25519PublicKey | None,
                     required: bool) -> tuple[str, Problem | None]:
    if signature_b64 is None:
        if required:
            return "absent", Problem("missing_signature", "a signature header is required "
                                     "(base64 Ed25519 over the value bytes)", "$")
        return "absent", None
    if key is None:
        if required:
            return "unchecked", Problem("unknown_provider_key", "no public key is registered "
                                        "for this provider_id; signatures cannot be checked", "$")
        return "unchecked", None
    try:
        key.verify(base64.b64decode(signature_b64, validate=True), value)
    except (binascii.Error, ValueError, InvalidSignature):
        # A wrong signature from a provider with a registered key is refused even when
        # signatures are optional: someone may be impersonating that provider.
        return "invalid", Problem("bad_signature", "the signature does not verify with the "
                                  "provider's registered key", "$")
    return "valid", None


def validate_report(value: bytes | None, key: bytes | None = None, *,
                    signature_b64: str | None = None, provider_key: Ed25519PublicKey | None = None,
                    require_signature: bool = False) -> Outcome:
    key_pid, key_prid = parse_key(key)
    out = Outcome(None, [], key_pid, key_prid)
    if value is None or len(value) == 0:
        out.problems.append(Problem("invalid_json", "the message value is empty", "$"))
        return out
    if len(value) > MAX_REPORT_BYTES:
        out.problems.append(Problem("too_large", f"the report is {len(value)} bytes; the limit "
                                    f"is {MAX_REPORT_BYTES} bytes (1 MiB)", "$"))
        return out
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        out.problems.append(Problem("invalid_encoding", f"the value is not UTF-8 (byte "
                                    f"{exc.start})", "$"))
        return out
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        out.problems.append(Problem("invalid_json", f"not valid JSON: line {exc.lineno} "
                                    f"column {exc.colno}: {exc.msg}", "$"))
        return out
    if not isinstance(doc, dict):
        out.problems.append(Problem("not_an_object", "the report must be a JSON object", "$"))
        return out
    for name in ("provider_id", "provider_report_id"):
        if isinstance(doc.get(name), str) and doc[name]:
            setattr(out, name, doc[name])
    try:
        ReportV1.model_validate(doc)
    except ValidationError as exc:
        seen: set[tuple[str, str]] = set()
        for err in exc.errors(include_url=False, include_input=False):
            p = _problem(err)  # type: ignore[arg-type]
            if (p.code, p.path) not in seen:
                seen.add((p.code, p.path))
                out.problems.append(p)
    out.problems += _cross_field(doc)
    ids = [c.get("content_id") for c in doc.get("content") or [] if isinstance(c, dict)]
    for i, cid in enumerate(ids):
        if cid is not None and cid in ids[:i]:
            out.problems.append(Problem("duplicate_content_id", "content_id must be unique "
                                        "within a report", f"$.content[{i}].content_id"))
    if key is not None and (key_pid, key_prid) != (doc.get("provider_id"),
                                                   doc.get("provider_report_id")):
        out.problems.append(Problem("key_mismatch", "the Kafka key must be "
                                    "<provider_id>/<provider_report_id> of the report", "$"))
    out.signature, sig_problem = _check_signature(value, signature_b64, provider_key,
                                                  require_signature)
    if sig_problem:
        out.problems.append(sig_problem)
    if not out.problems:
        _normalise(doc)
        out.report = doc
    return out
