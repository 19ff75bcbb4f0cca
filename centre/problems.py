"""Reasons for refusing a message, shared by the centre's ways in (report/v1 at intake,
complaint/v1, victim-request/v1, notice responses): one `Problem` per problem with a stable
code, a sentence that names the field and what is expected (never the sender's values: the
reason travels outside the centre), and a JSON path; pydantic's errors read that way; the
Kafka key `<sender>/<ref>`; a sender's Ed25519 signature over the value bytes.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from centre.fields import COUNTRY, HASH_FIELDS, HEX32, HEX64, NOT_BLANK, PROVIDER_ID

SignatureStatus = Literal["absent", "valid", "invalid", "unchecked"]

# Codes that model.py raises itself (custom pydantic errors): their message is already a phrase.
_OWN_CODES = frozenset(
    {
        "invalid_value",
        "invalid_hash",
        "missing_hash",
        "urgent_reason_required",
        "content_or_description_required",
        "duplicate_content_id",
    }
)
_PATTERN_PHRASES = {
    HEX64: "must be 64 hexadecimal characters",
    HEX32: "must be 32 hexadecimal characters",
    COUNTRY: "must be a two-letter ISO 3166-1 alpha-2 country code",
    PROVIDER_ID: "must match ^[a-z0-9][a-z0-9._-]{0,99}$ because it names the provider's Kafka "
    "topics (lower-case letters, digits, '.', '_' and '-', at most 100 characters)",
    NOT_BLANK: "must not be empty",
}
_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "a boolean (true or false)",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "float_type": "a number",
}


@dataclass(frozen=True, slots=True)
class Problem:
    code: str  # machine-readable, stable: companies branch on it
    message: str  # one English sentence naming the field and what is expected, no values
    path: str  # JSONPath of the field, "$" for the whole message

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "path": self.path}


def parse_key(key: bytes | None) -> tuple[str | None, str | None]:
    """Split the Kafka key `<provider_id>/<provider_report_id>` at its first "/".

    Either part is None when absent or empty; both are None when the key is not UTF-8."""
    if not key:
        return None, None
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return None, None
    pid, sep, prid = text.partition("/")
    return (pid or None), (prid if sep and prid else None)


def jsonpath(loc: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def label(path: str, whole: str = "the report") -> str:
    return path[2:] if len(path) > 1 else whole


def phrase(err: Any, own_codes: frozenset[str] = _OWN_CODES) -> tuple[str, str]:
    """(code, predicate phrase) for one pydantic error, built from the schema, not the input.
    `own_codes`: the custom error types whose message is already a phrase."""
    kind: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    loc = err["loc"]
    name = loc[-1] if loc else ""
    if kind in own_codes:
        return kind, err["msg"]
    if kind == "missing":
        return "missing_field", "is required"
    if name in HASH_FIELDS and kind in ("string_pattern_mismatch", "string_type"):
        return "invalid_hash", (
            "must be a string of 64 hexadecimal characters"
            if name != "md5"
            else "must be a string of 32 hexadecimal characters"
        )
    if kind == "string_pattern_mismatch":
        return "invalid_value", _PATTERN_PHRASES.get(
            ctx.get("pattern", ""), "does not have the expected form"
        )
    if kind == "literal_error":
        return "invalid_value", f"must be one of {ctx.get('expected', 'the listed values')}"
    if kind == "string_too_long":
        return "invalid_value", f"must be at most {ctx.get('max_length')} characters long"
    if kind == "too_long":
        return "too_many_items", f"must hold at most {ctx.get('max_length')} items"
    if kind == "greater_than_equal":
        return "invalid_value", f"must be at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return "invalid_value", f"must be at most {ctx.get('le')}"
    if kind in _TYPE_NAMES:
        return "invalid_type", f"must be {_TYPE_NAMES[kind]}"
    # Not reachable with today's model; kept generic so a new rule cannot leak input values.
    return "invalid_value", f"is not valid ({kind})"


def schema_problems(
    exc: ValidationError, whole: str = "the report", own_codes: frozenset[str] = _OWN_CODES
) -> list[Problem]:
    """One Problem per distinct pydantic error, in the order pydantic found them, naming the
    field (or `whole`), never the value."""
    out: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False, include_input=False, include_context=True):
        path = jsonpath(tuple(err["loc"]))
        code, text = phrase(err, own_codes)
        if (code, path) not in seen:  # e.g. a union reporting the same field twice
            seen.add((code, path))
            out.append(Problem(code, f"{label(path, whole)} {text}.", path))
    return out


def check_signature(
    value: bytes,
    signature_b64: str | None,
    provider_key: Ed25519PublicKey | None,
    require_signature: bool,
) -> tuple[SignatureStatus, list[Problem]]:
    """The signature's status and the problems it causes.

    When signatures are required, a missing signature and a provider without a registered key
    are each a problem. When they are not required, a signature is still refused if a key is
    registered and the signature is present and does not verify: someone may be sending in that
    company's name. An empty header counts as absent."""
    problems: list[Problem] = []
    if not signature_b64:
        if require_signature:
            problems.append(
                Problem(
                    "missing_signature",
                    "A signature header is required: the "
                    "base64 Ed25519 signature of the value bytes.",
                    "$",
                )
            )
            if provider_key is None:
                problems.append(_UNKNOWN_KEY)
        return "absent", problems
    if provider_key is None:
        return "unchecked", [_UNKNOWN_KEY] if require_signature else []
    try:
        provider_key.verify(base64.b64decode(signature_b64, validate=True), value)
    except (binascii.Error, ValueError, InvalidSignature):
        return "invalid", [
            Problem(
                "bad_signature",
                "The signature header is not a base64 "
                "Ed25519 signature of the value bytes by the provider's "
                "registered key.",
                "$",
            )
        ]
    return "valid", []


_UNKNOWN_KEY = Problem(
    "unknown_provider_key",
    "No public key is registered for this provider, "
    "so its signature cannot be checked; register one with the centre.",
    "$",
)
