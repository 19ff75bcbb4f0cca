"""The audit trail's canonical format: what an entry is and how the chain binds entries
together. It holds the errors, the event (`AuditEvent`, audit-event/v1 on `audit.events`: its
checks, its deterministic id, `emit`), the canonical time and actor names, the entry bytes and
their hash (`entry_hash`; the layout is in the package docstring, `centre/audit/__init__.py`)
and the message a signed tree head covers. No database, no keys: everything else in the
package builds on this module.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import struct
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from centre.crypto import key_id
from centre.messages import derived_id
from centre.topology import AUDIT_EVENTS

EVENT_SCHEMA: Final = "audit-event/v1"
EXPORT_FORMAT: Final = "centre-audit-export/v1"
ZERO_HASH: Final = bytes(32)
_UTC = dt.UTC
# The root namespace of centre.messages, so that every id of the centre derives from one root.
NS_AUDIT: Final = uuid.uuid5(uuid.UUID("6f1c3c52-8a47-4f4e-9d0c-7d2b1f0e5a11"), "audit")

_ACTOR_RE = re.compile(r"[a-z][a-z0-9_.:-]{0,99}")
_ACTION_RE = re.compile(r"[a-z][a-z0-9_]{0,30}(\.[a-z][a-z0-9_]{0,30})?")
# A reference, never data: `report:<uuid>`, `victim:<request id>`, `kek:<id>`. No spaces, no
# '@', so an e-mail address or a name cannot pass for one.
_REF_RE = re.compile(r"([a-z][a-z0-9_-]{0,31}):[A-Za-z0-9._:/-]{1,200}")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MAX_EVENT = 256 * 1024  # bytes of an audit-event/v1 message

# Actions the centre's workers use; flows added later bring their own (any name matching
# _ACTION_RE is accepted): the vocabulary is documentation, not a gate.
ACTIONS: Final = (
    "report.received", "report.rejected", "report.duplicate_submission", "report.clustered",
    "report.indicator_match", "report.categorised", "report.prioritised", "case.forwarded",
    "case.delivered", "feedback.sent", "keys.rotated", "audit.read", "audit.read_refused",
    "audit.subject_shredded", "audit.event_rejected", "audit.kek_rotated",
)  # fmt: skip


class AuditError(Exception):
    """The audit trail cannot do what was asked; the message says why, without any data."""


class AuditEventError(AuditError, ValueError):
    """An event is malformed; `reasons` lists each problem as {code, message, path}."""

    def __init__(self, reasons: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{r['path']}: {r['message']}" for r in reasons))
        self.reasons = reasons


class AuditAccessDenied(AuditError):
    """The role may not read decrypted entries (the refusal itself was recorded)."""


class AuditKeyError(AuditError):
    """An audit key-encryption key is missing or unusable."""


def _reason(code: str, message: str, path: str) -> dict[str, str]:
    return {"code": code, "message": message, "path": path}


# -- events ------------------------------------------------------------------------------------


def event_id_for(
    actor: str,
    action: str,
    subject: str,
    discriminator: str = "",
    ordered_by: dt.datetime | None = None,
) -> str:
    """The deterministic id of an event: the same decision on the same input, taken again after
    a crash, has the same id and is appended once. `discriminator` tells apart events that
    share actor, action and subject (a supplement number, a content id, a Kafka offset).

    `ordered_by`: a time that is the same whenever the event is made again (a report's
    receipt), which then leads the id (`messages.time_ordered_text`): the trail's unique
    index on event ids takes a busy stage's events at its end, not each at a random page."""
    return derived_id(NS_AUDIT, f"{actor}|{action}|{subject}|{discriminator}", ordered_by)


def at_text(t: dt.datetime) -> str:
    """The canonical time of the entry bytes: UTC, microseconds, `Z`."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=_UTC)
    elif t.utcoffset():
        t = t.astimezone(_UTC)
    return t.isoformat(timespec="microseconds")[:26] + "Z"


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=_UTC) if t.tzinfo is None else t.astimezone(_UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(_UTC)


def kind_of(person: str) -> str:
    """The kind of person a reference names (`victim:…` → victim): it selects the retention."""
    return person.split(":", 1)[0]


_FIELDS: Final = frozenset(
    {"schema", "event_id", "at", "actor", "action", "subject", "details", "person", "personal"}
)


def _check(ev: dict[str, Any]) -> list[dict[str, str]]:
    """Every problem of an event given as a dict (wire form); empty when it is well formed."""
    problems: list[dict[str, str]] = []
    unknown = ev.keys() - _FIELDS
    for name in sorted(unknown):
        problems.append(
            _reason("unknown_field", "field not part of audit-event/v1", f"$.{str(name)[:40]}")
        )
    if ev.get("schema") != EVENT_SCHEMA:
        problems.append(_reason("schema", f"must be {EVENT_SCHEMA!r}", "$.schema"))
    eid = ev.get("event_id")
    if not isinstance(eid, str) or not _UUID_RE.fullmatch(eid):
        problems.append(_reason("event_id", "must be a lower-case UUID", "$.event_id"))
    for name, rx, what in (
        ("actor", _ACTOR_RE, "an actor name ([a-z][a-z0-9_.:-], ≤100)"),
        ("action", _ACTION_RE, "an action such as report.received"),
        ("subject", _REF_RE, "a reference kind:id (no spaces or '@')"),
    ):
        v = ev.get(name)
        if not isinstance(v, str) or not rx.fullmatch(v):
            problems.append(_reason(name, f"must be {what}", f"$.{name}"))
    at = ev.get("at")
    if isinstance(at, dt.datetime):
        if at.tzinfo is None:
            problems.append(_reason("at", "must carry a time zone", "$.at"))
    elif not isinstance(at, str):
        problems.append(_reason("at", "must be an ISO 8601 time with a zone", "$.at"))
    else:
        try:
            if dt.datetime.fromisoformat(at).tzinfo is None:
                problems.append(_reason("at", "must carry a time zone", "$.at"))
        except ValueError:
            problems.append(_reason("at", "must be an ISO 8601 time with a zone", "$.at"))
    if not isinstance(ev.get("details", {}), Mapping):
        problems.append(_reason("details", "must be a JSON object", "$.details"))
    person, personal = ev.get("person"), ev.get("personal")
    if person is not None and (not isinstance(person, str) or not _REF_RE.fullmatch(person)):
        problems.append(_reason("person", "must be a reference kind:id", "$.person"))
    if personal is not None:
        if not isinstance(personal, Mapping):
            problems.append(_reason("personal", "must be a JSON object", "$.personal"))
        if person is None:
            problems.append(
                _reason("person", "personal data needs the person it is about", "$.person")
            )
    return problems


_WELL_FORMED = re.compile(
    r"%s\|%s\|%s\|%s" % (_UUID_RE.pattern, _ACTOR_RE.pattern, _ACTION_RE.pattern, _REF_RE.pattern)
)


def _well_formed(ev: dict[str, Any]) -> dt.datetime | None:
    """The event's time when it is well formed, else None: the writer's fast path, the same
    rules as _check (whose patterns exclude '|', so one match covers four fields)."""
    try:
        if ev["schema"] != EVENT_SCHEMA or not ev.keys() <= _FIELDS:
            return None
        eid, actor, action, subject = ev["event_id"], ev["actor"], ev["action"], ev["subject"]
        if (
            type(eid) is not str
            or type(actor) is not str
            or type(action) is not str
            or type(subject) is not str
            or not _WELL_FORMED.fullmatch(f"{eid}|{actor}|{action}|{subject}")
        ):
            return None
        if type(ev.get("details", {})) is not dict:
            return None
        person, personal = ev.get("person"), ev.get("personal")
        if person is not None and (type(person) is not str or not _REF_RE.fullmatch(person)):
            return None
        if personal is not None and (type(personal) is not dict or person is None):
            return None
        at = dt.datetime.fromisoformat(ev["at"])
        return at if at.tzinfo is not None else None
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One step or access to record. Build it where the decision is taken and `emit` it.

    `subject` names what the step was about (`report:<id>`, `case:<id>`, `victim:<id>`);
    `details` hold the decision and its reasons (codes, ids, outcomes: nothing about a
    person); data about a person goes into `personal`, with `person` naming them
    (`victim:<id>`, `suspect:<report id>/<n>`, `staff:<login>`): it is sealed under that
    person's key and erased with it. The id is derived from actor, action, subject and
    `discriminator`, so the same event sent twice is recorded once.
    """

    actor: str
    action: str
    subject: str
    discriminator: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    person: str | None = None
    personal: Mapping[str, Any] | None = None
    at: dt.datetime = field(default_factory=_now)
    ordered_by: dt.datetime | None = None  # see `event_id_for`; not sent
    event_id: str = ""

    def __post_init__(self) -> None:
        if not self.event_id:
            object.__setattr__(
                self,
                "event_id",
                event_id_for(
                    self.actor, self.action, self.subject, self.discriminator, self.ordered_by
                ),
            )
        if not self._plainly_well_formed():
            problems = _check(self._wire(check=True))
            if problems:
                raise AuditEventError(problems)
        object.__setattr__(self, "at", _utc(self.at))

    def _plainly_well_formed(self) -> bool:
        """The common case, checked at the cost of one match (as `_well_formed`): ids and
        names well formed, a zoned time, details a dict, no person. Anything else gets the
        full check, which names each problem."""
        return (
            self.person is None
            and self.personal is None
            and type(self.event_id) is str
            and type(self.actor) is str
            and type(self.action) is str
            and type(self.subject) is str
            and type(self.details) is dict
            and isinstance(self.at, dt.datetime)
            and self.at.tzinfo is not None
            and _WELL_FORMED.fullmatch(f"{self.event_id}|{self.actor}|{self.action}|{self.subject}")
            is not None
        )

    def _wire(self, check: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": EVENT_SCHEMA,
            "event_id": self.event_id,
            "at": self.at if check else at_text(self.at),
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": self.details,
        }
        if self.person is not None:
            d["person"] = self.person
        if self.personal is not None:
            d["personal"] = self.personal
        return d

    def to_json(self) -> bytes:
        """audit-event/v1, the value on `audit.events`."""
        return orjson.dumps(self._wire())

    @classmethod
    def from_json(cls, value: bytes | None) -> AuditEvent:
        """Parse and check an audit-event/v1; raises AuditEventError naming every problem."""
        if not value:
            raise AuditEventError([_reason("empty", "no value", "$")])
        if len(value) > _MAX_EVENT:
            raise AuditEventError([_reason("too_large", f"over {_MAX_EVENT} bytes", "$")])
        try:
            ev = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise AuditEventError([_reason("invalid_json", "not JSON (UTF-8)", "$")]) from None
        if not isinstance(ev, dict):
            raise AuditEventError([_reason("not_object", "not a JSON object", "$")])
        at = _well_formed(ev)
        if at is None:  # the slow path names every problem
            problems = _check(ev)
            if problems:
                raise AuditEventError(problems)
            at = dt.datetime.fromisoformat(ev["at"])
        for name in ("details", "personal"):  # what parses but cannot be sealed (too deep)
            try:
                orjson.dumps(ev.get(name))
            except TypeError:
                raise AuditEventError(
                    [_reason("not_encodable", "nested too deeply", f"$.{name}")]
                ) from None
        # Checked: built without __post_init__ checking it all a second time.
        obj = object.__new__(cls)
        fields: tuple[tuple[str, Any], ...] = (
            ("actor", ev["actor"]),
            ("action", ev["action"]),
            ("subject", ev["subject"]),
            ("discriminator", ""),
            ("details", ev.get("details") or {}),
            ("person", ev.get("person")),
            ("personal", ev.get("personal")),
            ("at", _utc(at)),
            ("ordered_by", None),
            ("event_id", ev["event_id"]),
        )
        for name, value in fields:
            object.__setattr__(obj, name, value)
        return obj


class _Producer(Protocol):
    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        prefixed: bool = False,
    ) -> None: ...


def emit(producer: _Producer, events: Iterable[AuditEvent]) -> int:
    """Queue events on `audit.events` (the producer adds the topic prefix); returns how many.
    Like a stage's other outputs they are durable after the stage's `flush_or_raise`, before
    its input is acknowledged: a crash in between sends them again, with the same ids."""
    n = 0
    for ev in events:
        value = ev.to_json()
        if len(value) > _MAX_EVENT:  # the writer would refuse it: say so where it is made
            raise AuditEventError([_reason("too_large", f"over {_MAX_EVENT} bytes", "$")])
        producer.send(AUDIT_EVENTS, value, key=ev.subject.encode())
        n += 1
    return n


# -- entry bytes, hashes, tree heads -------------------------------------------------------------

_ENTRY: Final = struct.Struct(">4sQHHHHHHHII")
_MAGIC: Final = b"CAE1"
_HEAD_PREFIX: Final = b"centre/audit-tree-head/v1|"
_U64: Final = struct.Struct(">Q")
_NONCE: Final = struct.Struct(">4xQ")  # counter nonce under a data key used for one batch


def entry_hash(
    prev_hash: bytes,
    seq: int,
    event_id: bytes,
    at: bytes,
    actor: bytes,
    action: bytes,
    subject: bytes,
    person: bytes,
    data_key_id: bytes,
    ciphertext: bytes,
    personal: bytes,
) -> bytes:
    """SHA-256(prev_hash ‖ entry bytes), the entry bytes as in the package docstring."""
    return hashlib.sha256(
        b"".join(
            (
                prev_hash,
                _ENTRY.pack(
                    _MAGIC,
                    seq,
                    len(event_id),
                    len(at),
                    len(actor),
                    len(action),
                    len(subject),
                    len(person),
                    len(data_key_id),
                    len(ciphertext),
                    len(personal),
                ),
                event_id,
                at,
                actor,
                action,
                subject,
                person,
                data_key_id,
                ciphertext,
                personal,
            )
        )
    ).digest()


def tree_head_message(seq: int, head_hash: bytes, at: str) -> bytes:
    return b"%s%s%s%s" % (_HEAD_PREFIX, _U64.pack(seq), head_hash, at.encode("ascii"))


def _sign_head(signer: Ed25519PrivateKey, seq: int, head_hash: bytes, at: str) -> tuple[str, bytes]:
    return key_id(signer), signer.sign(tree_head_message(seq, head_hash, at))


def _text(s: str | None) -> bytes:
    return s.encode() if s else b""


def staff_actor(name: str) -> str:
    """`staff:<login>` for a member of staff acting through the CLI."""
    login = re.sub(r"[^a-z0-9._-]", "-", (name or "unknown").lower())[:90] or "unknown"
    return f"staff:{login}"
