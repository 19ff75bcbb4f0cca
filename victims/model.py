"""The victims' messages, checked by hand (they are small): the victim's hash list as
`centre victims hash` writes it, `victim-request/v1` on `victims.requests`, and
`notice-response/v1` on `notices.responses`. Formats: docs/victim-request-v1.md.

Problems are reported like everywhere else in the centre, one per problem with a code, a
message and a JSON path (for the hash list: the line), and never quote a value: a hash of a
victim's picture is not something to echo into a terminal log or a dead-letter reason.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from victims import pin as pins

REQUEST_SCHEMA = "victim-request/v1"
RESPONSE_SCHEMA = "notice-response/v1"
MAX_ITEMS = 5000  # lines of one victim's list (a request stays well under the topic's 4 MiB)
MAX_ITEM_NO = 1_000_000  # an item is numbered by its line in the list (blank lines count)
MAX_LIST_BYTES = 16 * 1024 * 1024
MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_RESPONSE_BYTES = 64 * 1024
MAX_REASON = 2000
HASH_KINDS: tuple[str, ...] = ("sha256", "md5", "pdq")
MEDIA_TYPES = ("image", "video")
ANSWERS = ("removed", "not_found", "refused")
PDQ_MIN_QUALITY = 50  # as triage: a PDQ below this says too little to match on

_HEX = {
    "sha256": re.compile(r"[0-9a-fA-F]{64}"),
    "md5": re.compile(r"[0-9a-fA-F]{32}"),
    "pdq": re.compile(r"[0-9a-fA-F]{64}"),
}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PROVIDER_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_LOGIN = re.compile(r"[A-Za-z0-9._@-]{1,100}")


def problem(code: str, message: str, path: str = "$") -> dict[str, str]:
    return {"code": code, "message": message, "path": path}


def is_request_id(value: Any) -> bool:
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


# ------------------------------------------------------------------------------- hash list


class HashListError(ValueError):
    """The victim's hash list cannot be used; `problems` names each line and field."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        self.problems = problems
        shown = "; ".join(f"{p['path']}: {p['message']}" for p in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(shown + more)

    @property
    def codes(self) -> list[str]:
        return sorted({p["code"] for p in self.problems})


@dataclass(slots=True)
class Item:
    """One line of the victim's list: its hashes (lower case) and what it is."""

    item: int
    media_type: str | None = None
    sha256: str | None = None
    md5: str | None = None
    pdq: str | None = None
    pdq_quality: int | None = None

    def hashes(self) -> list[tuple[str, str]]:
        return [(k, v) for k in HASH_KINDS if (v := getattr(self, k))]

    def signals(self) -> list[tuple[str, str]]:
        """What is matched on: exact hashes always, PDQ only at quality 50 or more (or when
        the quality is not known, as triage does)."""
        out = []
        for k, v in self.hashes():
            if k == "pdq" and self.pdq_quality is not None and self.pdq_quality < PDQ_MIN_QUALITY:
                continue
            out.append((k, v))
        return out

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"item": self.item}
        for k in ("media_type", *HASH_KINDS, "pdq_quality"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        return d


def _item_problems(doc: Any, where: str, item_no: int) -> tuple[Item | None, list[dict[str, str]]]:
    if not isinstance(doc, dict):
        return None, [
            problem(
                "not_an_object",
                "must be a JSON object with sha256, md5 and/or "
                "pdq (as `centre victims hash` writes them)",
                where,
            )
        ]
    out: list[dict[str, str]] = []
    it = Item(item_no)
    for kind in HASH_KINDS:
        v = doc.get(kind)
        if v is None:
            continue
        if not isinstance(v, str) or not _HEX[kind].fullmatch(v):
            n = 32 if kind == "md5" else 64
            out.append(
                problem(
                    "invalid_hash", f"{kind} must be {n} hexadecimal characters", f"{where}.{kind}"
                )
            )
            continue
        setattr(it, kind, v.lower())
    q = doc.get("pdq_quality")
    if q is not None:
        if type(q) is not int or not 0 <= q <= 100:
            out.append(
                problem(
                    "invalid_value",
                    "pdq_quality must be a whole number from 0 to 100",
                    f"{where}.pdq_quality",
                )
            )
        else:
            it.pdq_quality = q
    mt = doc.get("media_type")
    if mt is not None:
        if mt not in MEDIA_TYPES:
            out.append(
                problem("invalid_value", "media_type must be image or video", f"{where}.media_type")
            )
        else:
            it.media_type = mt
    if not out and not it.hashes():
        out.append(problem("no_hash", "has no sha256, md5 or pdq", where))
    if not out and it.pdq and it.media_type == "video":
        out.append(
            problem("invalid_value", "a video has no PDQ here (only pictures do)", f"{where}.pdq")
        )
    return (None if out else it), out


def parse_hash_list(data: bytes) -> list[Item]:
    """The items of a hash list: JSON lines (or one JSON array) of objects with `sha256`,
    `md5`, `pdq`, `pdq_quality`, `media_type`; other fields (the file name) are ignored and
    never leave this function. Raises HashListError naming every bad line."""
    if len(data) > MAX_LIST_BYTES:
        raise HashListError([problem("too_large", f"the list is over {MAX_LIST_BYTES} bytes")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HashListError([problem("invalid_encoding", "the list is not UTF-8 text")]) from None
    docs: list[tuple[str, Any, int]] = []
    problems: list[dict[str, str]] = []
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            arr = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise HashListError(
                [problem("invalid_json", f"the list is not valid JSON (line {exc.lineno})")]
            ) from None
        docs = [(f"$[{i}]", d, i + 1) for i, d in enumerate(arr)]
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                docs.append((f"line {n}", orjson.loads(line), n))
            except orjson.JSONDecodeError:
                problems.append(problem("invalid_json", "is not a JSON object", f"line {n}"))
    if not docs and not problems:
        raise HashListError(
            [
                problem(
                    "empty",
                    "the list holds no hashes; make it with `centre victims hash PATH… --out FILE`",
                )
            ]
        )
    if len(docs) > MAX_ITEMS:
        raise HashListError(
            [
                problem(
                    "too_many",
                    f"the list has {len(docs)} entries; one "
                    f"request takes at most {MAX_ITEMS} (file several)",
                )
            ]
        )
    items: list[Item] = []
    seen: set[tuple[str, str]] = set()
    for where, doc, no in docs:  # an item is numbered by its line (or place) in the list
        it, errs = _item_problems(doc, where, no)
        problems += errs
        if it is None:
            continue
        if all(h in seen for h in it.hashes()):
            continue  # the same picture twice in the list: once is enough
        seen.update(it.hashes())
        items.append(it)
    if problems:
        raise HashListError(problems)
    return items


# ------------------------------------------------------------------------------- request


def build_request(
    *,
    request_id: str,
    items: Iterable[Item],
    pin_hash: str,
    filed_by: str,
    requested_at: dt.datetime,
    identity_recorded: bool,
) -> dict[str, Any]:
    """victim-request/v1. It carries hashes, the PIN's slow hash and who filed it (a case
    handler's login): never the victim's identity, which the filing command seals into the
    audit trail instead (`identity_recorded` says whether it did)."""
    from centre import messages as m

    return {
        "schema": REQUEST_SCHEMA,
        "request_id": request_id,
        "requested_at": m.iso(requested_at),
        "filed_by": filed_by,
        "pin": pin_hash,
        "identity_recorded": identity_recorded,
        "items": [i.as_dict() for i in items],
    }


@dataclass(slots=True)
class RequestOutcome:
    request: dict[str, Any] | None
    items: list[Item] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.request is not None and not self.problems


# Fields that would carry who the victim is: refused on the topic (they belong in the audit
# trail, sealed under the victim's key, which `centre victims request` writes directly).
_IDENTITY_FIELDS = (
    "representative",
    "identity_ref",
    "identity",
    "name",
    "email",
    "phone",
    "date_of_birth",
)


_REQUEST_FIELDS = frozenset(
    {"schema", "request_id", "requested_at", "filed_by", "pin", "identity_recorded", "items"}
)
_ITEM_FIELDS = frozenset({"item", "media_type", "sha256", "md5", "pdq", "pdq_quality"})


def _safe_name(name: str) -> str:
    """A field name as a problem's path may show it: short, plain (never a value)."""
    return name if re.fullmatch(r"[A-Za-z0-9_]{1,40}", name) else "<field>"


def _json_object(
    value: bytes | None, max_bytes: int, problems: list[dict[str, str]]
) -> dict[str, Any] | None:
    """A message's value as a JSON object, or None with the problem added."""
    if not value:
        problems.append(problem("invalid_json", "the value is empty"))
        return None
    if len(value) > max_bytes:
        problems.append(problem("too_large", f"over {max_bytes} bytes"))
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        problems.append(problem("invalid_json", "the value is not JSON (UTF-8)"))
        return None
    if not isinstance(doc, dict):
        problems.append(problem("not_an_object", "the value must be a JSON object"))
        return None
    return doc


def validate_request(value: bytes | None) -> RequestOutcome:
    """Whether one message of victims.requests is an acceptable victim-request/v1; never
    raises on bad input."""
    out = RequestOutcome(None)
    doc = _json_object(value, MAX_REQUEST_BYTES, out.problems)
    if doc is None:
        return out
    p = out.problems
    if doc.get("schema") != REQUEST_SCHEMA:
        p.append(problem("invalid_value", f"schema must be {REQUEST_SCHEMA}", "$.schema"))
    if not is_request_id(doc.get("request_id")):
        p.append(problem("invalid_value", "request_id must be a lower-case UUID", "$.request_id"))
    if not isinstance(doc.get("requested_at"), str) or _time(doc["requested_at"]) is None:
        p.append(
            problem("invalid_value", "requested_at must be a time with its zone", "$.requested_at")
        )
    if not isinstance(doc.get("filed_by"), str) or not _LOGIN.fullmatch(doc["filed_by"]):
        p.append(
            problem("invalid_value", "filed_by must be the case handler's login", "$.filed_by")
        )
    if not isinstance(doc.get("pin"), str) or not pins.well_formed(doc["pin"]):
        p.append(
            problem(
                "invalid_value",
                "pin must be the PIN's scrypt hash (scrypt$n$r$p$salt$hash), never the PIN",
                "$.pin",
            )
        )
    if not isinstance(doc.get("identity_recorded", False), bool):
        p.append(
            problem(
                "invalid_value", "identity_recorded must be true or false", "$.identity_recorded"
            )
        )
    for name in sorted(set(doc) - _REQUEST_FIELDS):  # nothing but hashes travels
        if name in _IDENTITY_FIELDS:
            p.append(
                problem(
                    "identity_not_allowed",
                    "the victim's identity must not travel on "
                    "the topic; `centre victims request` seals it into the audit "
                    "trail",
                    f"$.{name}",
                )
            )
        else:
            p.append(
                problem(
                    "unknown_field",
                    "victim-request/v1 has no such field (it could carry what must not travel)",
                    f"$.{_safe_name(name)}",
                )
            )
    raw_items = doc.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        p.append(problem("no_hash", "items must be a non-empty list of hashes", "$.items"))
    elif len(raw_items) > MAX_ITEMS:
        p.append(problem("too_many", f"at most {MAX_ITEMS} items", "$.items"))
    else:
        numbers: set[int] = set()
        for i, raw in enumerate(raw_items):
            where = f"$.items[{i}]"
            no = raw.get("item") if isinstance(raw, dict) else None
            if type(no) is not int or not 1 <= no <= MAX_ITEM_NO or no in numbers:
                p.append(
                    problem(
                        "invalid_value",
                        f"item must be a distinct whole number from 1 to {MAX_ITEM_NO}",
                        f"{where}.item",
                    )
                )
                continue
            numbers.add(no)
            for name in sorted(set(raw) - _ITEM_FIELDS):  # e.g. a file name: never sent
                p.append(
                    problem(
                        "unknown_field",
                        "an item holds only item, media_type, "
                        "sha256, md5, pdq and pdq_quality (file names stay on the "
                        "victim's side)",
                        f"{where}.{_safe_name(name)}",
                    )
                )
            it, errs = _item_problems(raw, where, no)
            p += errs
            if it is not None:
                out.items.append(it)
    if not p:
        out.request = doc
    else:
        out.items = []
    return out


def _time(text: str) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


# ------------------------------------------------------------------------------- responses


@dataclass(slots=True)
class ResponseOutcome:
    response: dict[str, Any] | None
    problems: list[dict[str, str]] = field(default_factory=list)
    provider_id: str | None = None  # who says they answer, when it can be told
    notice_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.response is not None and not self.problems


def validate_response(value: bytes | None) -> ResponseOutcome:
    """notice-response/v1 from a provider: `notice_id`, `provider_id`, `status` (removed,
    not_found, refused), `reason` (required when refused), `removed_at` (optional), `at`."""
    out = ResponseOutcome(None)
    doc = _json_object(value, MAX_RESPONSE_BYTES, out.problems)
    if doc is None:
        return out
    p = out.problems
    pid = doc.get("provider_id")
    if isinstance(pid, str) and _PROVIDER_ID.fullmatch(pid):
        out.provider_id = pid
    else:
        p.append(problem("invalid_value", "provider_id must be your provider id", "$.provider_id"))
    nid = doc.get("notice_id")
    if is_request_id(nid):
        out.notice_id = nid
    else:
        p.append(
            problem(
                "invalid_value",
                "notice_id must be the notice_id of the notice you answer",
                "$.notice_id",
            )
        )
    if doc.get("schema") != RESPONSE_SCHEMA:
        p.append(problem("invalid_value", f"schema must be {RESPONSE_SCHEMA}", "$.schema"))
    status = doc.get("status")
    if status not in ANSWERS:
        p.append(
            problem("invalid_value", "status must be removed, not_found or refused", "$.status")
        )
    reason = doc.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        p.append(
            problem(
                "invalid_value",
                f"reason must be text of at most {MAX_REASON} characters",
                "$.reason",
            )
        )
    elif status == "refused" and not (isinstance(reason, str) and reason.strip()):
        p.append(problem("missing_field", "reason is required when status is refused", "$.reason"))
    for name in ("at", "removed_at"):
        v = doc.get(name)
        if v is None and name == "removed_at":
            continue
        if not isinstance(v, str) or _time(v) is None:
            p.append(
                problem(
                    "invalid_value" if v is not None else "missing_field",
                    f"{name} must be a time with its zone (RFC 3339)",
                    f"$.{name}",
                )
            )
    if not p:
        out.response = doc
    return out


def response_time(doc: dict[str, Any], name: str) -> dt.datetime | None:
    v = doc.get(name)
    return _time(v) if isinstance(v, str) else None
