"""The field types and rules that the centre's ways in share (report/v1, complaint/v1, …):
patterns, strict string types that JSON Schema can state, time stamps kept as sent, and
cross-field rules reported together with the field errors.

Pure: pydantic only. The domains build their messages' models from these.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, StringConstraints, ValidationError, WithJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError

_M = TypeVar("_M")

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Patterns are public so that centre.problems can turn a pattern mismatch into the right reason.
HEX64 = r"^[0-9a-fA-F]{64}$"
HEX32 = r"^[0-9a-fA-F]{32}$"
COUNTRY = r"^[A-Za-z]{2}$"
PROVIDER_ID = r"^[a-z0-9][a-z0-9._-]{0,99}$"  # it names the topic provider.<provider_id>.feedback
NOT_BLANK = r"\S"  # JSON Schema and pydantic both search, so this means "has a visible character"
MAX_PROVIDER_REPORT_ID = 200  # the width of the reports.provider_report_id column
HASH_FIELDS = ("sha256", "md5", "pdq")  # the hashes a content item or complaint may give


def _lower(v: str) -> str:
    return v.lower()


def _upper(v: str) -> str:
    return v.upper()


def _timestamp(v: str) -> str:
    # Kept as the string the company sent: the report is passed on as received, and a
    # re-serialised datetime would differ from the signed bytes for no benefit.
    try:
        parsed = dt.datetime.fromisoformat(v)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise PydanticCustomError(
            "invalid_value",
            "must be an ISO-8601 date-time with a time zone, such as 2026-11-20T10:15:00Z",
        )
    return v


Hex64 = Annotated[str, StringConstraints(pattern=HEX64), AfterValidator(_lower)]
Hex32 = Annotated[str, StringConstraints(pattern=HEX32), AfterValidator(_lower)]
Country = Annotated[str, StringConstraints(pattern=COUNTRY), AfterValidator(_upper)]
Timestamp = Annotated[
    str, AfterValidator(_timestamp), WithJsonSchema({"type": "string", "format": "date-time"})
]
NonBlank = Annotated[str, StringConstraints(pattern=NOT_BLANK)]
ProviderId = Annotated[str, StringConstraints(pattern=PROVIDER_ID)]
ProviderReportId = Annotated[
    str, StringConstraints(pattern=NOT_BLANK, max_length=MAX_PROVIDER_REPORT_ID)
]


def _as_init_error(err: Any) -> InitErrorDetails:
    # Rebuilt as a custom error of the same type: from_exception_data only knows pydantic's own
    # types by name, and ours (invalid_value from _timestamp) would be refused.
    return {
        "type": PydanticCustomError(err["type"], err["msg"], err.get("ctx")),
        "loc": err["loc"],
        "input": err["input"],
    }


def validate_with_rules(
    name: str, data: Any, handler: Callable[[Any], _M], rules: list[InitErrorDetails]
) -> _M:
    """Run pydantic's validation and report its errors together with the cross-field
    `rules` errors, so the sender gets every problem at once."""
    try:
        obj = handler(data)
    except ValidationError as exc:
        if not rules:
            raise
        errors = [_as_init_error(e) for e in exc.errors(include_url=False)]
        raise ValidationError.from_exception_data(name, errors + rules) from None
    if rules:
        raise ValidationError.from_exception_data(name, rules)
    return obj
