"""complaint/v1 as typed models, and the validation of one message from `complaints.intake`.

A complaint says that a report (its case) was wrongful: content removed or reported that is
not child sexual abuse material, or a report about the wrong account (CSA Regulation proposal
Art. 10(4)(d), 12, 15, 34). It names the report one of three ways: the centre's `report_id`
(or `case_id`), the company's `provider_id` + `provider_report_id`, or a hash of the content.

Like report/v1: unknown fields are kept, types are strict, every problem is reported at once
with a JSON path, and messages never quote the values (a complaint carries a person's data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from centre.fields import (
    JSON_SCHEMA_DIALECT,
    NOT_BLANK,
    PROVIDER_ID,
    Hex32,
    Hex64,
    ProviderId,
    ProviderReportId,
    Timestamp,
    validate_with_rules,
)
from centre.problems import Problem, parse_key, schema_problems
from centre.topology import MEMBER_STATES

SCHEMA = "complaint/v1"
SCHEMA_ID = "https://centre.europa.eu/schemas/complaint-v1.json"
MAX_COMPLAINT_BYTES = 256 * 1024
MAX_REF = 200
MAX_STATEMENT = 20_000

GROUNDS: tuple[str, ...] = (
    "not_child_sexual_abuse",  # the material or conversation is not child sexual abuse
    "wrongful_removal",  # content removed or access disabled wrongly
    "wrongful_report",  # reported to the centre without grounds
    "wrong_account",  # the report names the wrong user or account
    "other",
)
CHANNELS: tuple[str, ...] = ("provider", "coordinating_authority", "centre")
HASH_KINDS: tuple[str, ...] = ("sha256", "md5", "pdq")

Grounds = Literal[
    "not_child_sexual_abuse", "wrongful_removal", "wrongful_report", "wrong_account", "other"
]
Channel = Literal["provider", "coordinating_authority", "centre"]

_OPEN = ConfigDict(extra="allow", strict=True)


def _member_state(v: str) -> str:
    v = v.lower()
    if v not in MEMBER_STATES:
        raise PydanticCustomError(
            "invalid_value", "must be the ISO 3166-1 alpha-2 code of an EU member state"
        )
    return v


Ref = Annotated[str, StringConstraints(pattern=NOT_BLANK, max_length=MAX_REF)]
MemberState = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z]{2}$"), AfterValidator(_member_state)
]


class Concerns(BaseModel):
    """What the complaint is about: give one of report_id, case_id, provider_report_id (with
    provider_id, which defaults to the filing provider's), or a content hash."""

    model_config = ConfigDict(
        **_OPEN,
        json_schema_extra={
            "anyOf": [
                {"required": [k]}
                for k in ("report_id", "case_id", "provider_report_id", *HASH_KINDS)
            ]
        },
    )
    report_id: Ref | None = Field(None, description="The centre's report_id.")
    case_id: Ref | None = Field(None, description="The centre's case_id.")
    provider_id: ProviderId | None = Field(
        None,
        description="The reporting company; defaults to provider_id of the complaint "
        "when channel is provider.",
    )
    provider_report_id: ProviderReportId | None = Field(
        None, description="The company's own id of the report."
    )
    sha256: Hex64 | None = None
    md5: Hex32 | None = None
    pdq: Hex64 | None = None


class ComplaintV1(BaseModel):
    model_config = ConfigDict(
        **_OPEN,
        title="complaint/v1",
        json_schema_extra={
            "$id": SCHEMA_ID,
            "allOf": [
                {
                    "if": {
                        "properties": {"channel": {"const": "provider"}},
                        "required": ["channel"],
                    },
                    "then": {"required": ["provider_id"]},
                },
                {
                    "if": {
                        "properties": {"channel": {"const": "coordinating_authority"}},
                        "required": ["channel"],
                    },
                    "then": {"required": ["authority"]},
                },
            ],
        },
    )
    schema_: Literal["complaint/v1"] = Field(alias="schema")
    complaint_ref: Ref = Field(
        description="The filer's own reference, unique per filer: a "
        "second message with the same reference is the same complaint."
    )
    channel: Channel = Field(
        description="Who files it and where the answers go: provider (a "
        "company forwarding its user's complaint; answers on "
        "provider.<provider_id>.notices), coordinating_authority (a "
        "member state's coordinating authority), centre (a case handler "
        "of the centre)."
    )
    provider_id: ProviderId | None = Field(
        None, description="Required when channel is provider: the company filing it."
    )
    authority: MemberState | None = Field(
        None, description="Required when channel is coordinating_authority: its member state."
    )
    concerns: Concerns
    grounds: Grounds
    statement: Annotated[str, StringConstraints(max_length=MAX_STATEMENT)] | None = Field(
        None, description="The complainant's words, as forwarded."
    )
    contact_ref: Ref = Field(
        description="A pseudonymous reference through which the filer "
        "reaches the complainant (never an e-mail address or a name)."
    )
    filed_at: Timestamp

    @model_validator(mode="wrap")
    @classmethod
    def _cross_field_rules(
        cls, data: Any, handler: ModelWrapValidatorHandler[ComplaintV1]
    ) -> ComplaintV1:
        return validate_with_rules(
            cls.__name__, data, handler, rule_errors(data) if isinstance(data, dict) else []
        )

    @property
    def filer(self) -> str:
        """Who filed it: the provider, the member state of the authority, or `centre`."""
        if self.channel == "provider":
            assert self.provider_id is not None
            return self.provider_id
        if self.channel == "coordinating_authority":
            assert self.authority is not None
            return self.authority
        return "centre"


def _rule(code: str, phrase: str, loc: tuple[str | int, ...]) -> InitErrorDetails:
    return {"type": PydanticCustomError(code, phrase), "loc": loc, "input": None}


def _absent(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def rule_errors(data: dict[str, Any]) -> list[InitErrorDetails]:
    """Rules across fields, on the raw input. A rule is skipped where a field it reads has the
    wrong type: that is its own error already."""
    out: list[InitErrorDetails] = []
    channel = data.get("channel")
    if channel == "provider" and _absent(data.get("provider_id")):
        out.append(_rule("missing_field", "is required when channel is provider", ("provider_id",)))
    if channel == "coordinating_authority" and _absent(data.get("authority")):
        out.append(
            _rule(
                "missing_field",
                "is required when channel is coordinating_authority",
                ("authority",),
            )
        )
    concerns = data.get("concerns")
    if isinstance(concerns, dict):
        named = [
            k
            for k in ("report_id", "case_id", "provider_report_id", *HASH_KINDS)
            if not _absent(concerns.get(k))
        ]
        if not named:
            out.append(
                _rule(
                    "subject_required",
                    "must name the report: report_id, case_id, "
                    "provider_report_id or a content hash (sha256, md5, pdq)",
                    ("concerns",),
                )
            )
        elif (
            named == ["provider_report_id"]
            and _absent(concerns.get("provider_id"))
            and channel != "provider"
        ):
            out.append(
                _rule(
                    "missing_field",
                    "is required with provider_report_id unless channel is provider",
                    ("concerns", "provider_id"),
                )
            )
    return out


# Codes of the rules above: their message is already a phrase.
_RULE_CODES = {"subject_required", "missing_field"}


def problems_of(exc: ValidationError) -> list[Problem]:
    """One Problem per distinct pydantic error, naming the field, never the value."""
    return schema_problems(exc, "the complaint", frozenset(_RULE_CODES))


@dataclass(slots=True)
class Outcome:
    """What one message from complaints.intake is: a complaint, or problems."""

    complaint: ComplaintV1 | None
    problems: list[Problem] = field(default_factory=list)
    provider_id: str | None = None  # the filing provider, when it can be told (for feedback)
    complaint_ref: str | None = None

    @property
    def accepted(self) -> bool:
        return self.complaint is not None and not self.problems


def _usable(v: Any, pattern: str | None = None) -> str | None:
    import re

    if not isinstance(v, str) or not v.strip() or len(v) > MAX_REF:
        return None
    if pattern and not re.fullmatch(pattern.strip("^$"), v):
        return None
    return v


def validate_complaint(value: bytes | None, key: bytes | None = None) -> Outcome:
    """Decide whether one message is an acceptable complaint/v1; never raises on bad input.

    The Kafka key is `<filer>/<complaint_ref>` (advisory: it addresses the answer to a company
    whose message cannot be read at all)."""
    key_filer, key_ref = parse_key(key)
    out = Outcome(None, [], _usable(key_filer, PROVIDER_ID), _usable(key_ref))
    if not value:
        out.problems.append(
            Problem("invalid_json", "The value is empty; it must be one JSON object.", "$")
        )
        return out
    if len(value) > MAX_COMPLAINT_BYTES:
        out.problems.append(
            Problem(
                "too_large",
                f"The value is {len(value)} bytes; the limit is {MAX_COMPLAINT_BYTES} bytes.",
                "$",
            )
        )
        return out
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
            msg = f"The value is not valid JSON: {exc.msg} at line {exc.lineno}."
            code = "invalid_json"
        except UnicodeDecodeError:
            msg, code = "The value is not valid UTF-8.", "invalid_encoding"
        out.problems.append(Problem(code, msg, "$"))
        return out
    if not isinstance(doc, dict):
        out.problems.append(Problem("not_an_object", "The value must be a JSON object.", "$"))
        return out
    if doc.get("channel") == "provider":
        out.provider_id = _usable(doc.get("provider_id"), PROVIDER_ID) or out.provider_id
    elif "channel" in doc and doc.get("channel") != "provider":
        out.provider_id = None  # not a company: nobody to answer on a provider topic
    out.complaint_ref = _usable(doc.get("complaint_ref")) or out.complaint_ref
    try:
        out.complaint = ComplaintV1.model_validate(doc)
    except ValidationError as exc:
        out.problems += problems_of(exc)
    return out


def complaint_json_schema() -> dict[str, Any]:
    """The JSON Schema of complaint/v1, generated from these models."""
    schema = ComplaintV1.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["$id"] = SCHEMA_ID
    schema["description"] = (
        "complaint/v1: a complaint about a wrongful removal or report, sent to the centre's "
        "topic complaints.intake by a company forwarding its user's complaint or by a "
        "coordinating authority (docs/complaint-v1.md). Unknown fields are allowed and kept. "
        "Generated from complaints/model.py by `python -m complaints.schema_gen`."
    )
    return schema
