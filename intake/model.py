"""report/v1 as typed models (CONTRACT.md). Unknown fields are kept and passed on, never an
error: every model allows extras. Rules across fields (urgent needs a reason, media needs a
hash, content or description) are in intake/validation.py, so that every problem is reported
even when a field has errors of its own."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt,
    StringConstraints,
)

SCHEMA_ID = "https://centre.europa.eu/schemas/report-v1.json"

_open = ConfigDict(extra="allow", str_strip_whitespace=False)


def _lower(v: str) -> str:
    return v.lower()


def _upper(v: str) -> str:
    return v.upper()


Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$"), AfterValidator(_lower)]
Hex32 = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{32}$"), AfterValidator(_lower)]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$"), AfterValidator(_upper)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ProviderId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")]


class Service(BaseModel):
    model_config = _open
    type: Literal["hosting", "interpersonal_communications"] | None = None
    url: str | None = None


class Incident(BaseModel):
    model_config = _open
    kind: Literal["known_material", "new_material", "solicitation"]
    occurred_at: AwareDatetime
    urgent: StrictBool = False
    urgent_reason: str | None = None
    annotations: list[Literal["sextortion", "minor_to_minor", "sadistic_exploitation",
                              "csam_solicitation"]] | None = None
    detection: Literal["detection_order", "public_authority", "trusted_flagger", "user_flag",
                       "own_initiative", "other"] | None = None
    service: Service | None = None
    description: str | None = None


class ContentItem(BaseModel):
    model_config = _open
    content_id: NonEmpty
    media_type: Literal["image", "video", "text", "url"]
    sha256: Hex64 | None = None
    md5: Hex32 | None = None
    pdq: Hex64 | None = None
    pdq_quality: Annotated[StrictInt, Field(ge=0, le=100)] | None = None
    url: str | None = None
    text: str | None = None
    publicly_available: StrictBool | None = None
    removed: StrictBool | None = None
    annotations: list[Literal["viral", "potential_meme", "generative_ai",
                              "possible_self_production", "infant", "live_streaming",
                              "physical_harm", "animated"]] | None = None
    industry_classification: Literal["A1", "A2", "B1", "B2"] | None = None


class IpEvent(BaseModel):
    model_config = _open
    ip: str
    port: Annotated[StrictInt, Field(ge=0, le=65535)] | None = None
    at: AwareDatetime | None = None
    event: Literal["upload", "login", "registration", "other"] | None = None


class Location(BaseModel):
    model_config = _open
    ip_events: list[IpEvent] | None = None
    country_hint: Country | None = None


class User(BaseModel):
    model_config = _open
    role: Literal["suspect", "victim", "recipient"]
    account_id: str | None = None
    username: str | None = None
    email: str | None = None
    phone: str | None = None
    country: Country | None = None
    age_band: Literal["child", "teen", "adult", "unknown"] | None = None
    account_action: Literal["none", "suspended", "terminated"] | None = None


class ReportedElsewhere(BaseModel):
    model_config = _open
    authority: str
    country: Country | None = None
    reference: str | None = None


class Batch(BaseModel):
    model_config = _open
    reason: str | None = None
    user_count: Annotated[StrictInt, Field(ge=0)] | None = None


class ReportV1(BaseModel):
    model_config = ConfigDict(extra="allow", title="report/v1",
                              json_schema_extra={"$id": SCHEMA_ID})
    schema_: Literal["report/v1"] = Field(alias="schema")
    provider_id: ProviderId
    provider_report_id: NonEmpty
    submitted_at: AwareDatetime
    incident: Incident
    content: list[ContentItem] | None = None
    location: Location | None = None
    users: list[User] | None = None
    reported_elsewhere: list[ReportedElsewhere] | None = None
    batch: Batch | None = None
    supplement: StrictBool = False


def report_json_schema() -> dict[str, Any]:
    schema = ReportV1.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["description"] = (
        "report/v1: a provider's report to the EU centre (CONTRACT.md). Unknown fields are "
        "allowed and passed on. Generated from intake/model.py by `python -m intake.schema_gen`.")
    return schema
