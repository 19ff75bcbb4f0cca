"""Validation of one report/v1 message: pure, no I/O, one reason per problem.

The order follows what the company has to fix first: size (over 1 MiB is not parsed at all),
encoding, JSON, the object, the schema (every problem at once), the Kafka key against the body,
and the signature. Messages name fields and expectations and never the report's values: the
feedback travels outside the centre and the report may hold a victim's data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from centre.fields import MAX_PROVIDER_REPORT_ID, PROVIDER_ID
from centre.problems import (
    Problem,
    SignatureStatus,
    check_signature,
    parse_key,
    schema_problems,
)
from intake import limits
from intake.model import ReportV1

MAX_REPORT_BYTES = 1024 * 1024
_PROVIDER_ID_RE = re.compile(PROVIDER_ID)


@dataclass(slots=True)
class Outcome:
    report: dict[str, Any] | None  # the accepted report as plain JSON, None when rejected
    problems: list[Problem] = field(default_factory=list)
    provider_id: str | None = None
    provider_report_id: str | None = None
    signature: SignatureStatus = "absent"  # "unchecked": present, but no key to check it with

    @property
    def accepted(self) -> bool:
        return not self.problems and self.report is not None


def ids_from_key(key: bytes | None) -> tuple[str | None, str | None]:
    """The provider id (when it can name a topic) and the report id (cut short when long)
    that the Kafka key names, for feedback about a message whose value is not read."""
    pid, prid = parse_key(key)
    return _usable_provider_id(pid), _shown_report_id(prid)


def _usable_provider_id(v: Any) -> str | None:
    # Only an id that can name a topic and fit the database is handed on: the stage sends
    # feedback to provider.<provider_id>.feedback and stores the id in 100/200-wide columns.
    return v if isinstance(v, str) and _PROVIDER_ID_RE.fullmatch(v) else None


def _usable_report_id(v: Any) -> str | None:
    if isinstance(v, str) and 0 < len(v) <= MAX_PROVIDER_REPORT_ID and not v.isspace():
        return v
    return None


def _shown_report_id(v: Any) -> str | None:
    """The id feedback names the report by: the usable id, or a longer one cut short (with an
    ellipsis) so that the company can still tell which report it was."""
    if isinstance(v, str) and v and not v.isspace():
        return limits.shown_id(v, MAX_PROVIDER_REPORT_ID)
    return None


def _key_problem(key: bytes | None, doc: dict[str, Any]) -> Problem | None:
    """key_mismatch when the Kafka key disagrees with the body. A body id that is missing or
    invalid is not compared: its own schema problem is the one to fix first."""
    if not key:
        return None
    key_pid, key_prid = parse_key(key)
    if key_pid is None or key_prid is None:
        return Problem(
            "key_mismatch",
            "The Kafka key must be <provider_id>/<provider_report_id> in UTF-8.",
            "$",
        )
    body_pid = _usable_provider_id(doc.get("provider_id"))
    body_prid = _usable_report_id(doc.get("provider_report_id"))
    pid_differs = body_pid is not None and body_pid != key_pid
    prid_differs = body_prid is not None and body_prid != key_prid
    if not (pid_differs or prid_differs):
        return None
    path = (
        "$"
        if pid_differs and prid_differs
        else ("$.provider_id" if pid_differs else "$.provider_report_id")
    )
    return Problem(
        "key_mismatch",
        "The Kafka key must be <provider_id>/<provider_report_id> "
        "with the same values as the report's provider_id and provider_report_id.",
        path,
    )


def _unparseable(value: bytes) -> Problem:
    """Why orjson refused the value: UTF-8 first, since a decoder names bytes, not lines."""
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Problem(
            "invalid_encoding",
            f"The value is not valid UTF-8 (first bad byte at offset {exc.start}).",
            "$",
        )
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        # orjson's messages describe the syntax only ("unexpected character"), never the text.
        return Problem(
            "invalid_json",
            f"The value is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.",
            "$",
        )
    raise AssertionError("value parses after all")  # pragma: no cover


def _too_deep_to_parse(exc: orjson.JSONDecodeError) -> bool:
    # orjson 3.13 says "depth limit exceeded"; older ones "recursion depth exceeded".
    return "depth" in exc.msg.lower() or "recursion" in exc.msg.lower()


def validate_report(
    value: bytes | None,
    key: bytes | None = None,
    *,
    signature_b64: str | None = None,
    provider_key: Ed25519PublicKey | None = None,
    require_signature: bool = False,
) -> Outcome:
    """Decide whether one message is an acceptable report/v1; never raises on bad input.

    `key` is the Kafka key, `signature_b64` the `signature` header, `provider_key` the key
    registered for the provider (None when none is). With `require_signature`, a missing
    signature or an unregistered key rejects. Without it, a signature rejects only when a key
    is registered and the signature is present and wrong (`check_signature`). The ids in the
    Outcome are the body's when usable, else the key's, so a rejection still reaches the
    company."""
    key_pid, key_prid = parse_key(key)
    out = Outcome(None, [], _usable_provider_id(key_pid), _shown_report_id(key_prid))
    key_limit = limits.key_problem(key)
    if key_limit is not None:
        out.problems.append(Problem(key_limit.code, key_limit.message, key_limit.path))
    if not value:
        out.signature = "unchecked" if signature_b64 else "absent"
        out.problems.append(
            Problem("invalid_json", "The value is empty; it must be one JSON object.", "$")
        )
        return out
    if len(value) > MAX_REPORT_BYTES:
        # Not verified either: the size alone decides, and checking costs time on big values.
        out.signature = "unchecked" if signature_b64 else "absent"
        out.problems.append(
            Problem(
                "too_large",
                f"The value is {len(value)} bytes; the limit is {MAX_REPORT_BYTES} bytes (1 MiB).",
                "$",
            )
        )
        return out
    out.signature, sig_problems = check_signature(
        value, signature_b64, provider_key, require_signature
    )
    try:
        # orjson also rejects what the rest of the pipeline could not write back out
        # (lone surrogates, NaN, nesting deeper than it parses), and is the fastest parser here.
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        first = (
            Problem(
                "too_deep",
                f"The value nests objects and arrays deeper than {limits.MAX_DEPTH} levels.",
                "$",
            )
            if _too_deep_to_parse(exc)
            else _unparseable(value)
        )
        out.problems += [first, *sig_problems]
        return out
    if not isinstance(doc, dict):
        out.problems += [
            Problem(
                "not_an_object",
                "The value must be a JSON object, not an array, string, number, boolean or null.",
                "$",
            ),
            *sig_problems,
        ]
        return out
    out.provider_id = _usable_provider_id(doc.get("provider_id")) or out.provider_id
    out.provider_report_id = (
        _shown_report_id(doc.get("provider_report_id")) or out.provider_report_id
    )
    report: ReportV1 | None = None
    # Past a limit, the document is not validated field by field: the limits are what to fix
    # first, and the schema's walk of it would be as long as the document is large.
    over = limits.structure_problems(doc)
    if over:
        out.problems += [Problem(p.code, p.message, p.path) for p in over]
    else:
        try:
            report = ReportV1.model_validate(doc)
        except ValidationError as exc:
            out.problems += schema_problems(exc)
    key_problem = _key_problem(key, doc)
    if key_problem:
        out.problems.append(key_problem)
    out.problems += sig_problems
    if len(out.problems) > limits.MAX_REASONS:
        # A feedback/v1 must fit its topic (1 MiB): 10,000 users with every field wrong would
        # be 40,000 reasons. The first ones say what to fix; the last one how many more.
        more = len(out.problems) - (limits.MAX_REASONS - 1)
        out.problems = out.problems[: limits.MAX_REASONS - 1] + [
            Problem(
                "too_many_problems", f"{more} more problems are not listed; fix these first.", "$"
            )
        ]
    if report is not None and not out.problems:
        # The dump carries the normalised hashes and countries and every unknown field, and
        # leaves out defaults the company did not send (exclude_unset).
        out.report = report.model_dump(by_alias=True, exclude_unset=True)
    return out


__all__ = [
    "MAX_REPORT_BYTES",
    "Outcome",
    "Problem",
    "SignatureStatus",
    "check_signature",
    "ids_from_key",
    "parse_key",
    "schema_problems",
    "validate_report",
]
