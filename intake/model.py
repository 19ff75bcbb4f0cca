"""report/v1 as typed models, exactly the fields of CONTRACT.md.

Unknown fields are kept and passed on, never an error, so every model allows extras. Types are
strict: a JSON `"yes"` is not a boolean and `"5"` is not an integer, because a company whose
system sends the wrong type should learn it now rather than have us guess.

The rules that span fields (urgent needs a reason, media needs a hash, content or description,
unique content ids) are checked by a wrap validator on `ReportV1` against the raw input, so that
they are reported together with the field errors instead of only after every field is right.

Errors raised here use the codes of `intake.validation.Problem` as their pydantic error type
and a predicate phrase ("must be ...") as their message; validation.py puts the field in front.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    StringConstraints,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from centre.fields import (
    HASH_FIELDS,
    JSON_SCHEMA_DIALECT,
    NOT_BLANK,
    Country,
    Hex32,
    Hex64,
    NonBlank,
    ProviderId,
    ProviderReportId,
    Timestamp,
    validate_with_rules,
)
from intake import limits as L

_M = TypeVar("_M")

SCHEMA_ID = "https://centre.europa.eu/schemas/report-v1.json"

MEDIA_TYPES_NEEDING_HASH = ("image", "video")

# strict: no coercion of strings to numbers or booleans; extra: unknown fields are passed on.
_OPEN = ConfigDict(extra="allow", strict=True)


# The bounds of intake.limits on the known fields, so that the JSON Schema states them too.
Id = Annotated[str, StringConstraints(max_length=L.MAX_ID)]
Url = Annotated[str, StringConstraints(max_length=L.MAX_URL)]
Text = Annotated[str, StringConstraints(max_length=L.MAX_TEXT)]
Email = Annotated[str, StringConstraints(max_length=L.MAX_EMAIL)]
Phone = Annotated[str, StringConstraints(max_length=L.MAX_PHONE)]
_T = TypeVar("_T")
Bounded = Annotated[list[_T], Field(max_length=L.MAX_ANNOTATIONS)]

Kind = Literal["known_material", "new_material", "solicitation"]
IncidentAnnotation = Literal[
    "sextortion", "minor_to_minor", "sadistic_exploitation", "csam_solicitation"
]
Detection = Literal[
    "detection_order", "public_authority", "trusted_flagger", "user_flag", "own_initiative", "other"
]
ServiceType = Literal["hosting", "interpersonal_communications"]
MediaType = Literal["image", "video", "text", "url"]
ContentAnnotation = Literal[
    "viral",
    "potential_meme",
    "generative_ai",
    "possible_self_production",
    "infant",
    "live_streaming",
    "physical_harm",
    "animated",
]
IndustryClassification = Literal["A1", "A2", "B1", "B2"]
IpEventKind = Literal["upload", "login", "registration", "other"]
Role = Literal["suspect", "victim", "recipient"]
AgeBand = Literal["child", "teen", "adult", "unknown"]
AccountAction = Literal["none", "suspended", "terminated"]


class Service(BaseModel):
    model_config = _OPEN
    type: ServiceType | None = None
    url: Url | None = None


class Incident(BaseModel):
    model_config = ConfigDict(
        **_OPEN,
        json_schema_extra={
            "if": {"properties": {"urgent": {"const": True}}, "required": ["urgent"]},
            "then": {
                "required": ["urgent_reason"],
                "properties": {"urgent_reason": {"type": "string", "pattern": NOT_BLANK}},
            },
        },
    )
    kind: Kind
    occurred_at: Timestamp
    urgent: bool = False
    urgent_reason: Text | None = Field(
        None, description="Required and not empty when urgent is true."
    )
    annotations: Bounded[IncidentAnnotation] | None = None
    detection: Detection | None = None
    service: Service | None = None
    description: Text | None = None


class ContentItem(BaseModel):
    model_config = ConfigDict(
        **_OPEN,
        json_schema_extra={
            "if": {
                "properties": {"media_type": {"enum": list(MEDIA_TYPES_NEEDING_HASH)}},
                "required": ["media_type"],
            },
            "then": {
                "anyOf": [
                    {"required": [h], "properties": {h: {"type": "string"}}} for h in HASH_FIELDS
                ]
            },
        },
    )
    content_id: Annotated[NonBlank, StringConstraints(max_length=L.MAX_ID)] = Field(
        description="Unique within the report."
    )
    media_type: MediaType
    sha256: Hex64 | None = None
    md5: Hex32 | None = None
    pdq: Hex64 | None = None
    pdq_quality: Annotated[int, Field(ge=0, le=100)] | None = None
    url: Url | None = None
    text: Text | None = None
    publicly_available: bool | None = None
    removed: bool | None = None
    annotations: Bounded[ContentAnnotation] | None = None
    industry_classification: IndustryClassification | None = None


class IpEvent(BaseModel):
    model_config = _OPEN
    # Any string: routing records a malformed address as a reason instead of losing the report.
    ip: Id | None = None
    port: Annotated[int, Field(ge=0, le=65535)] | None = None
    at: Timestamp | None = None
    event: IpEventKind | None = None


class Location(BaseModel):
    model_config = _OPEN
    ip_events: Annotated[list[IpEvent], Field(max_length=L.MAX_IP_EVENTS)] | None = None
    country_hint: Country | None = None


class User(BaseModel):
    model_config = _OPEN
    role: Role | None = None
    account_id: Id | None = None
    username: Id | None = None
    email: Email | None = None
    phone: Phone | None = None
    country: Country | None = None
    age_band: AgeBand | None = None
    account_action: AccountAction | None = None


class ReportedElsewhere(BaseModel):
    model_config = _OPEN
    authority: Id | None = None
    country: Country | None = None
    reference: Id | None = None


class Batch(BaseModel):
    model_config = _OPEN
    reason: Id | None = None
    user_count: Annotated[int, Field(ge=0)] | None = None


def _absent_or_blank(v: Any) -> bool:
    # A value of another type is not "absent": its type error is the reason to give.
    return v is None or (isinstance(v, str) and (v == "" or v.isspace()))


def _rule(code: str, phrase: str, loc: tuple[str | int, ...]) -> InitErrorDetails:
    return {"type": PydanticCustomError(code, phrase), "loc": loc, "input": None}


def rule_errors(data: dict[str, Any]) -> list[InitErrorDetails]:
    """The rules across fields, on the raw input so they hold whatever else is wrong.

    A rule is skipped where the field it reads has the wrong type: that is already an error of
    its own, and one issue gets one reason."""
    out: list[InitErrorDetails] = []
    incident = data.get("incident")
    incident = incident if isinstance(incident, dict) else {}
    if incident.get("urgent") is True and _absent_or_blank(incident.get("urgent_reason")):
        out.append(
            _rule(
                "urgent_reason_required",
                "is required and must not be empty when incident.urgent is true",
                ("incident", "urgent_reason"),
            )
        )
    content = data.get("content")
    description = incident.get("description")
    if (content is None or content == []) and _absent_or_blank(description):
        out.append(
            _rule(
                "content_or_description_required",
                "must hold at least one item when incident.description is absent or empty",
                ("content",),
            )
        )
    if not isinstance(content, list):
        return out
    seen: set[str] = set()
    for i, item in enumerate(content):
        if not isinstance(item, dict):
            continue
        if item.get("media_type") in MEDIA_TYPES_NEEDING_HASH and all(
            item.get(h) is None for h in HASH_FIELDS
        ):
            out.append(
                _rule(
                    "missing_hash",
                    "needs at least one of sha256, md5 or pdq when media_type is image or video",
                    ("content", i),
                )
            )
        cid = item.get("content_id")
        if isinstance(cid, str):
            if cid in seen:
                out.append(
                    _rule(
                        "duplicate_content_id",
                        "repeats an earlier content_id; content_id must be unique within a report",
                        ("content", i, "content_id"),
                    )
                )
            seen.add(cid)
    return out


class ReportV1(BaseModel):
    model_config = ConfigDict(
        **_OPEN,
        title="report/v1",
        json_schema_extra={
            "$id": SCHEMA_ID,
            "anyOf": [
                {
                    "required": ["content"],
                    "properties": {"content": {"type": "array", "minItems": 1}},
                },
                {
                    "required": ["incident"],
                    "properties": {
                        "incident": {
                            "required": ["description"],
                            "properties": {"description": {"type": "string", "pattern": NOT_BLANK}},
                        }
                    },
                },
            ],
        },
    )
    schema_: Literal["report/v1"] = Field(alias="schema")
    provider_id: ProviderId = Field(
        description="Names the provider's Kafka topics, so it is "
        "lower case letters, digits, '.', '_' and '-'."
    )
    provider_report_id: ProviderReportId
    submitted_at: Timestamp
    incident: Incident
    content: Annotated[list[ContentItem], Field(max_length=L.MAX_CONTENT_ITEMS)] | None = None
    location: Location | None = None
    users: Annotated[list[User], Field(max_length=L.MAX_USERS)] | None = None
    reported_elsewhere: (
        Annotated[list[ReportedElsewhere], Field(max_length=L.MAX_REPORTED_ELSEWHERE)] | None
    ) = None
    batch: Batch | None = None
    supplement: bool = False

    @model_validator(mode="wrap")
    @classmethod
    def _cross_field_rules(
        cls, data: Any, handler: ModelWrapValidatorHandler[ReportV1]
    ) -> ReportV1:
        return validate_with_rules(
            cls.__name__, data, handler, rule_errors(data) if isinstance(data, dict) else []
        )


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema of report/v1 for companies, generated from these models.

    It cannot say that content ids are unique within a report; the description does."""
    schema = ReportV1.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["$id"] = SCHEMA_ID
    schema["description"] = (
        "report/v1: a company's report to the EU centre (CONTRACT.md). Unknown fields are "
        "allowed and passed on. Hashes are hexadecimal in either case; country codes are ISO "
        "3166-1 alpha-2 in either case. content_id must be unique within a report. The value "
        f"is at most 1 MiB of UTF-8, nests objects and arrays at most {L.MAX_DEPTH} deep, "
        f"holds at most {L.MAX_VALUES} object members and array elements in all, and every "
        f"string (unknown fields' too) is at most {L.MAX_STRING} characters, every member "
        f"name at most {L.MAX_NAME}; the Kafka key is at most {L.MAX_KEY_BYTES} bytes. "
        "Generated from intake/model.py by "
        "`python -m intake.schema_gen`."
    )
    return schema
