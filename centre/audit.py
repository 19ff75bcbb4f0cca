"""The audit trail: every step taken on a report, complaint or victim's request, and every
access by staff, kept so that nobody (the centre's operators included) can change, remove,
insert or reorder an entry unnoticed, while the data inside stays encrypted and the data about
a person can be erased when its retention ends. Modelled on Certificate Transparency's signed
tree heads (RFC 6962); CSA Regulation proposal Art. 45, 46, 51.

Flow: a worker builds `AuditEvent`s for its decisions and `emit`s them to `audit.events`
with its other outputs; the audit writer (`centre.audit_writer`) appends them in batches with
`AuditLog.append`. The CLI appends its own entries (reads, purges, key rotations) the same way.

Entry bytes, version 1 (what the hash covers; big-endian; text is UTF-8):

    "CAE1" ‖ u64 seq ‖ u16 len(event_id) ‖ u16 len(at) ‖ u16 len(actor) ‖ u16 len(action)
      ‖ u16 len(subject) ‖ u16 len(person) ‖ u16 len(data_key_id) ‖ u32 len(ciphertext)
      ‖ u32 len(personal) ‖ event_id ‖ at ‖ actor ‖ action ‖ subject ‖ person ‖ data_key_id
      ‖ ciphertext ‖ personal

    hash = SHA-256(prev_hash ‖ entry bytes)        prev_hash of entry 1: 32 zero bytes
    at   = YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC)       person, personal: empty when absent

A tree head (checkpoint every N entries or T seconds, the head row, the head of an export) is
the centre's Ed25519 signature over "centre/audit-tree-head/v1|" ‖ u64 seq ‖ hash ‖ at.
The hash covers ciphertext, never plaintext, so destroying a key erases data without breaking
the chain. Verification needs only the centre's public key(s): recompute every hash in order,
check every signature, and check that the chain reaches the signed head; a changed entry
fails its hash, a removed, inserted or moved one breaks the sequence or the links, a
truncated log misses its signed head, and an entry altered with the chain re-hashed after it
fails the next signed tree head.

Encryption: `details` (decisions, reasons, ids: nothing about a person) are sealed with
AES-256-GCM under a data key made for each appended batch; `personal` (data about a victim,
a suspect, a member of staff) under the person's own key (`audit_subject_keys`). Both kinds of
key are stored only wrapped by the audit key-encryption key (KEK) in
`<keys>/audit/<kek id>.kek`; `centre keys rotate-audit` makes a new current KEK and keeps the
old ones to unwrap older keys, so no entry is rewritten. Deleting a person's key row
(`purge`, after the retention of its kind) erases that person's data from every entry.

Limits, stated: an operator who can rewrite the database and holds the signing key can
forge anything; one who can restore an older database copy with its signed head rolls the
log back, which only a head seen earlier catches (`verify(known_heads=…)`, like CT gossip).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
import re
import secrets
import struct
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Protocol, cast

import orjson
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from prometheus_client import Counter
from sqlalchemy import ColumnElement, Table, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from centre.crypto import key_id
from centre.db import (
    AuditCheckpoint,
    AuditDataKey,
    AuditEntry,
    AuditHead,
    AuditSubjectKey,
    make_engine,
    make_sessionmaker,
)
from centre.keys import PASSPHRASE_ENV, KeySet, _ensure_dir, _write_file
from centre.messages import derived_id
from centre.settings import Settings
from centre.topology import AUDIT_EVENTS

__all__ = [
    "AUDIT_EVENTS", "EVENT_SCHEMA", "EXPORT_FORMAT", "AppendResult", "AuditAccessDenied",
    "AuditError", "AuditEvent", "AuditEventError", "AuditKeyError", "AuditKeyring", "AuditLog",
    "ChainVerifier", "VerifyResult", "at_text", "emit", "entry_hash", "event_id_for",
    "tree_head_message", "verify_file",
]  # fmt: skip

EVENT_SCHEMA: Final = "audit-event/v1"
EXPORT_FORMAT: Final = "centre-audit-export/v1"
ZERO_HASH: Final = bytes(32)
_UTC = dt.timezone.utc
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

ENTRIES = Counter("centre_audit_entries_total", "Entries appended to the audit trail")
CHECKPOINTS = Counter("centre_audit_checkpoints_total", "Signed audit checkpoints written")
SHREDDED = Counter("centre_audit_subjects_shredded_total",
                   "Person keys destroyed by the audit purge (crypto-shredding)")


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


def event_id_for(actor: str, action: str, subject: str, discriminator: str = "",
                 ordered_by: dt.datetime | None = None) -> str:
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


_FIELDS: Final = frozenset({"schema", "event_id", "at", "actor", "action", "subject",
                            "details", "person", "personal"})


def _check(ev: dict[str, Any]) -> list[dict[str, str]]:
    """Every problem of an event given as a dict (wire form); empty when it is well formed."""
    problems: list[dict[str, str]] = []
    unknown = ev.keys() - _FIELDS
    for name in sorted(unknown):
        problems.append(_reason("unknown_field", "field not part of audit-event/v1",
                                f"$.{str(name)[:40]}"))
    if ev.get("schema") != EVENT_SCHEMA:
        problems.append(_reason("schema", f"must be {EVENT_SCHEMA!r}", "$.schema"))
    eid = ev.get("event_id")
    if not isinstance(eid, str) or not _UUID_RE.fullmatch(eid):
        problems.append(_reason("event_id", "must be a lower-case UUID", "$.event_id"))
    for name, rx, what in (("actor", _ACTOR_RE, "an actor name ([a-z][a-z0-9_.:-], ≤100)"),
                           ("action", _ACTION_RE, "an action such as report.received"),
                           ("subject", _REF_RE, "a reference kind:id (no spaces or '@')")):
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
            problems.append(_reason("person", "personal data needs the person it is about",
                                    "$.person"))
    return problems


_WELL_FORMED = re.compile(r"%s\|%s\|%s\|%s" % (
    _UUID_RE.pattern, _ACTOR_RE.pattern, _ACTION_RE.pattern, _REF_RE.pattern))


def _well_formed(ev: dict[str, Any]) -> dt.datetime | None:
    """The event's time when it is well formed, else None: the writer's fast path, the same
    rules as _check (whose patterns exclude '|', so one match covers four fields)."""
    try:
        if ev["schema"] != EVENT_SCHEMA or not ev.keys() <= _FIELDS:
            return None
        eid, actor, action, subject = ev["event_id"], ev["actor"], ev["action"], ev["subject"]
        if (type(eid) is not str or type(actor) is not str or type(action) is not str
                or type(subject) is not str
                or not _WELL_FORMED.fullmatch(f"{eid}|{actor}|{action}|{subject}")):
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
            object.__setattr__(self, "event_id", event_id_for(
                self.actor, self.action, self.subject, self.discriminator, self.ordered_by))
        if not self._plainly_well_formed():
            problems = _check(self._wire(check=True))
            if problems:
                raise AuditEventError(problems)
        object.__setattr__(self, "at", _utc(self.at))

    def _plainly_well_formed(self) -> bool:
        """The common case, checked at the cost of one match (as `_well_formed`): ids and
        names well formed, a zoned time, details a dict, no person. Anything else gets the
        full check, which names each problem."""
        return (self.person is None and self.personal is None
                and type(self.event_id) is str and type(self.actor) is str
                and type(self.action) is str and type(self.subject) is str
                and type(self.details) is dict
                and isinstance(self.at, dt.datetime) and self.at.tzinfo is not None
                and _WELL_FORMED.fullmatch(
                    f"{self.event_id}|{self.actor}|{self.action}|{self.subject}") is not None)

    def _wire(self, check: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"schema": EVENT_SCHEMA, "event_id": self.event_id,
                             "at": self.at if check else at_text(self.at), "actor": self.actor,
                             "action": self.action, "subject": self.subject,
                             "details": self.details}
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
                raise AuditEventError([_reason("not_encodable", "nested too deeply",
                                               f"$.{name}")]) from None
        # Checked: built without __post_init__ checking it all a second time.
        obj = object.__new__(cls)
        fields: tuple[tuple[str, Any], ...] = (("actor", ev["actor"]), ("action", ev["action"]),
                            ("subject", ev["subject"]), ("discriminator", ""),
                            ("details", ev.get("details") or {}), ("person", ev.get("person")),
                            ("personal", ev.get("personal")), ("at", _utc(at)),
                            ("ordered_by", None), ("event_id", ev["event_id"]))
        for name, value in fields:
            object.__setattr__(obj, name, value)
        return obj


class _Producer(Protocol):
    def send(self, topic: str, value: bytes, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None, prefixed: bool = False) -> None: ...


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


def entry_hash(prev_hash: bytes, seq: int, event_id: bytes, at: bytes, actor: bytes,
               action: bytes, subject: bytes, person: bytes, data_key_id: bytes,
               ciphertext: bytes, personal: bytes) -> bytes:
    """SHA-256(prev_hash ‖ entry bytes), the entry bytes as in the module docstring."""
    return hashlib.sha256(b"".join((
        prev_hash,
        _ENTRY.pack(_MAGIC, seq, len(event_id), len(at), len(actor), len(action), len(subject),
                    len(person), len(data_key_id), len(ciphertext), len(personal)),
        event_id, at, actor, action, subject, person, data_key_id, ciphertext, personal,
    ))).digest()


def tree_head_message(seq: int, head_hash: bytes, at: str) -> bytes:
    return b"%s%s%s%s" % (_HEAD_PREFIX, _U64.pack(seq), head_hash, at.encode("ascii"))


def _sign_head(signer: Ed25519PrivateKey, seq: int, head_hash: bytes,
               at: str) -> tuple[str, bytes]:
    return key_id(signer), signer.sign(tree_head_message(seq, head_hash, at))


# -- keys ----------------------------------------------------------------------------------------

_KEK_NAME_RE = re.compile(r"([0-9a-f]{16})\.kek")
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1


class AuditKeyring:
    """The audit key-encryption keys, under `<keys>/audit/`:

        <kid>.kek   one KEK (AES-256), 0600; sealed with CENTRE_KEY_PASSPHRASE (scrypt,
                    AES-256-GCM) when it is set, like the centre's private keys
        current     the id of the KEK that wraps new keys; older KEKs stay, to unwrap older keys

    The `current` file is read for every wrap (a few bytes), so a rotation by
    `centre keys rotate-audit` takes effect from the next batch, without restarting workers.
    """

    def __init__(self, keys_dir: Path, *, passphrase: str | bytes | None = None) -> None:
        self.directory = Path(keys_dir) / "audit"
        if passphrase is None:
            passphrase = os.environ.get(PASSPHRASE_ENV) or None
        self._passphrase = passphrase.encode() if isinstance(passphrase, str) else passphrase
        self._keks: dict[str, AESGCM] = {}

    def current_id(self, *, create: bool = True) -> str:
        path = self.directory / "current"
        try:
            kid = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            if not create:
                raise AuditKeyError(f"no audit key-encryption key under {self.directory}: the "
                                    "audit writer makes one on first use") from None
            kid = self._create_first()
        if not re.fullmatch(r"[0-9a-f]{16}", kid):
            raise AuditKeyError(f"{path} does not hold a key id")
        return kid

    def kek_ids(self) -> list[str]:
        names = os.listdir(self.directory) if self.directory.is_dir() else []
        return sorted(m.group(1) for m in map(_KEK_NAME_RE.fullmatch, names) if m)

    def _create_first(self) -> str:
        kid = self.create()
        # `current` is the commit point: when a concurrent process won, its KEK is the one.
        if not _write_file(self.directory / "current", f"{kid}\n".encode(), 0o644,
                           replace=False):
            (self.directory / f"{kid}.kek").unlink(missing_ok=True)
            return self.current_id(create=False)
        return kid

    def create(self) -> str:
        """A new KEK file (not yet current); returns its id."""
        self.directory.parent.parent.mkdir(parents=True, exist_ok=True)
        _ensure_dir(self.directory.parent)  # 0700 from the start, like KeySet's directories
        _ensure_dir(self.directory)
        key, kid = AESGCM.generate_key(256), secrets.token_hex(8)
        record: dict[str, Any] = {"v": 1, "kid": kid, "alg": "A256"}
        if self._passphrase:
            salt, nonce = os.urandom(16), os.urandom(12)
            wrap = Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
            sealed = AESGCM(wrap.derive(self._passphrase)).encrypt(nonce, key, kid.encode())
            record.update(protection="scrypt-A256GCM", n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                          salt=_b64(salt), nonce=_b64(nonce), key=_b64(sealed))
        else:
            record.update(protection="none", key=_b64(key))
        _write_file(self.directory / f"{kid}.kek", orjson.dumps(record) + b"\n", 0o600,
                    replace=False)
        self._keks[kid] = AESGCM(key)
        return kid

    def make_current(self, kid: str) -> None:
        self.kek(kid)  # refuses an id that has no usable file
        _write_file(self.directory / "current", f"{kid}\n".encode(), 0o644, replace=True)

    def kek(self, kid: str) -> AESGCM:
        cached = self._keks.get(kid)
        if cached is not None:
            return cached
        path = self.directory / f"{kid}.kek"
        if not _KEK_NAME_RE.fullmatch(path.name):
            raise AuditKeyError(f"not an audit key id: {kid[:40]!r}")
        try:
            record = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise AuditKeyError(f"audit key-encryption key {kid} is missing ({path})") from None
        except orjson.JSONDecodeError:
            raise AuditKeyError(f"{path} is not an audit key file") from None
        try:
            if record.get("protection") == "none":
                key = base64.b64decode(record["key"], validate=True)
            else:
                if not self._passphrase:
                    raise AuditKeyError(f"{path} is encrypted: set {PASSPHRASE_ENV}")
                wrap = Scrypt(salt=base64.b64decode(record["salt"]), length=32,
                              n=record["n"], r=record["r"], p=record["p"])
                key = AESGCM(wrap.derive(self._passphrase)).decrypt(
                    base64.b64decode(record["nonce"]), base64.b64decode(record["key"]),
                    kid.encode())
        except InvalidTag:
            raise AuditKeyError(f"cannot open {path}: wrong passphrase") from None
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise AuditKeyError(f"{path} is not an audit key file") from None
        if len(key) != 32:
            raise AuditKeyError(f"{path} does not hold a 256-bit key")
        self._keks[kid] = AESGCM(key)
        return self._keks[kid]

    def wrap(self, key: bytes, aad: bytes) -> tuple[str, bytes]:
        """(KEK id, nonce ‖ AES-256-GCM(key)) under the current KEK."""
        kid = self.current_id()
        nonce = os.urandom(12)
        return kid, nonce + self.kek(kid).encrypt(nonce, key, aad)

    def unwrap(self, kid: str, wrapped: bytes, aad: bytes) -> bytes:
        try:
            return self.kek(kid).decrypt(wrapped[:12], wrapped[12:], aad)
        except InvalidTag:
            raise AuditKeyError(f"a key wrapped by KEK {kid} does not unwrap: altered") from None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _data_key_aad(data_key_id: str) -> bytes:
    return b"centre/audit/data-key|" + data_key_id.encode()


def _subject_key_aad(person: str, skid: str) -> bytes:
    return b"centre/audit/subject-key|%s|%s" % (person.encode(), skid.encode())


# -- verification (no I/O, no private key) ---------------------------------------------------------


class _Broken(Exception):
    def __init__(self, seq: int, message: str) -> None:
        super().__init__(message)
        self.seq = seq


@dataclass
class VerifyResult:
    ok: bool
    entries: int  # entries verified (up to the first broken one)
    checkpoints: int
    head_seq: int
    head_hash: str  # hex
    broken_seq: int | None = None  # the first broken entry
    problem: str | None = None

    def summary(self) -> str:
        if self.ok:
            return (f"intact: {self.entries} entries, {self.checkpoints} signed checkpoints, "
                    f"head {self.head_seq} {self.head_hash}")
        return f"BROKEN at entry {self.broken_seq}: {self.problem}"


_RECENT_MAX: Final = 200_000  # hashes kept since the last verified signature (6.4 MB)


class ChainVerifier:
    """Recomputes the chain entry by entry and checks signed tree heads against it. It keeps
    the running hash and the hashes since the last verified signature (at most N entries in
    a log checkpointed every N, capped at _RECENT_MAX): memory stays flat however long the
    log is. Raises _Broken at the first problem, naming the first entry that does not
    verify."""

    def __init__(self, public_keys: Iterable[Ed25519PublicKey],
                 known_heads: Iterable[tuple[int, bytes]] = ()) -> None:
        self.keys = {key_id(k): k for k in public_keys}
        self.seq, self.hash = 0, ZERO_HASH
        self.checkpoints = 0
        self.signed_seq = 0  # the newest entry covered by a verified signature
        self.known = dict(known_heads)
        self._base = 0  # self._recent[i] is the hash of entry _base + 1 + i
        self._recent: list[bytes] = []

    def entry(self, seq: int, event_id: bytes, at: bytes, actor: bytes, action: bytes,
              subject: bytes, person: bytes, data_key_id: bytes, ciphertext: bytes,
              personal: bytes, prev_hash: bytes, stored_hash: bytes) -> None:
        want = self.seq + 1
        if seq != want:
            if seq > want:
                raise _Broken(want, f"entry {want} is missing (entry {seq} follows entry "
                                    f"{self.seq}): deleted, or moved")
            raise _Broken(want, f"entry {want} expected, found entry {seq} again or out of "
                                "order: inserted or moved")
        if prev_hash != self.hash:
            raise _Broken(seq, f"entry {seq} does not link to entry {self.seq} (its previous "
                               "hash differs): an entry before it was deleted, inserted, moved, "
                               "or altered and re-hashed")
        h = hashlib.sha256(b"".join((
            prev_hash,
            _ENTRY.pack(_MAGIC, seq, len(event_id), len(at), len(actor), len(action),
                        len(subject), len(person), len(data_key_id), len(ciphertext),
                        len(personal)),
            event_id, at, actor, action, subject, person, data_key_id, ciphertext, personal,
        ))).digest()
        if h != stored_hash:
            raise _Broken(seq, f"entry {seq} does not match its hash: altered")
        self.seq, self.hash = seq, h
        self._recent.append(h)
        if len(self._recent) > _RECENT_MAX:
            drop = _RECENT_MAX // 2
            del self._recent[:drop]
            self._base += drop
        if self.known and seq in self.known and self.known.pop(seq) != h:
            raise _Broken(seq, f"entry {seq} differs from the head seen earlier at {seq}")

    def tree_head(self, what: str, seq: int, head_hash: bytes, at: str, kid: str,
                  signature: bytes) -> None:
        """Check a signed (seq, hash) against the chain so far: a checkpoint right after its
        entry, the head after the last entry."""
        key = self.keys.get(kid)
        if key is None:
            raise _Broken(self.signed_seq + 1, f"{what} at entry {seq} is signed by key {kid}, "
                                               "not a centre key")
        try:
            key.verify(signature, tree_head_message(seq, head_hash, at))
        except InvalidSignature:
            raise _Broken(self.signed_seq + 1, f"{what} at entry {seq}: the signature does not "
                                               "verify (forged or altered)") from None
        if seq > self.seq:
            raise _Broken(self.seq + 1, f"the log ends at entry {self.seq} but a {what} is "
                                        f"signed at entry {seq}: entries {self.seq + 1}…{seq} "
                                        "were removed (truncated)")
        if seq < self.seq and what == "head":
            raise _Broken(seq + 1, f"entries {seq + 1}…{self.seq} come after the head signed "
                                   f"at entry {seq}: inserted")
        if seq == self.seq:
            chain_hash = self.hash
        elif seq > self._base:  # a checkpoint after later entries: check it where it belongs
            chain_hash = self._recent[seq - self._base - 1]
        else:
            raise _Broken(seq + 1, f"the {what} signed at entry {seq} comes after entries it "
                                   f"cannot cover (up to entry {self.seq}): inserted or moved")
        if head_hash != chain_hash:
            first = min(self.signed_seq, seq - 1) + 1
            raise _Broken(first, f"entries {first}…{seq} differ from the {what} signed at "
                                 f"entry {seq}: an entry among them was altered, inserted or "
                                 "removed, and the chain re-hashed")
        if seq > self.signed_seq:
            self.signed_seq = seq
            del self._recent[:seq - self._base]
            self._base = seq
        if what == "checkpoint":
            self.checkpoints += 1

    def finish(self) -> None:
        if self.known:
            seq = min(self.known)
            raise _Broken(self.seq + 1, f"the log ends at entry {self.seq}, before the head "
                                        f"seen earlier at entry {seq}: truncated")

    def result(self, problem: _Broken | None = None) -> VerifyResult:
        if problem is None:
            return VerifyResult(True, self.seq, self.checkpoints, self.seq, self.hash.hex())
        return VerifyResult(False, problem.seq - 1 if problem.seq else 0, self.checkpoints,
                            self.seq, self.hash.hex(), problem.seq, str(problem))


def _text(s: str | None) -> bytes:
    return s.encode() if s else b""


def verify_file(path: Path | str, public_keys: Iterable[Ed25519PublicKey],
                known_heads: Iterable[tuple[int, bytes]] = ()) -> VerifyResult:
    """Verify an export (`AuditLog.export`) with only the centre's public key(s), streaming."""
    v = ChainVerifier(public_keys, known_heads)
    b64, fromhex = base64.b64decode, bytes.fromhex
    lineno, head_seen = 0, False
    try:
        with open(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                try:
                    d = orjson.loads(line)
                    kind = d["type"]
                    if head_seen:
                        raise _Broken(v.seq + 1, f"line {lineno}: something follows the signed "
                                                 "head: inserted")
                    if kind == "entry":
                        v.entry(d["seq"], d["event_id"].encode(), d["at"].encode(),
                                d["actor"].encode(), d["action"].encode(),
                                d["subject"].encode(), _text(d["person"]),
                                d["data_key_id"].encode(), b64(d["ciphertext"]),
                                b64(d["personal"]) if d["personal"] else b"",
                                fromhex(d["prev_hash"]), fromhex(d["hash"]))
                    elif kind == "checkpoint" or kind == "head":
                        v.tree_head(kind, d["seq"], fromhex(d["hash"]), d["at"], d["key_id"],
                                    b64(d["signature"]))
                        head_seen = kind == "head"
                    elif kind == "header" and lineno == 1:
                        if d.get("format") != EXPORT_FORMAT:
                            raise _Broken(1, f"not a {EXPORT_FORMAT} file")
                    else:
                        raise _Broken(v.seq + 1, f"line {lineno}: unexpected line")
                except _Broken:
                    raise
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError,
                        AttributeError, binascii.Error, struct.error):
                    raise _Broken(v.seq + 1, f"line {lineno} is not a well-formed export line "
                                             f"(after entry {v.seq})") from None
        if not head_seen:
            raise _Broken(v.seq + 1, f"the export ends after entry {v.seq} without its signed "
                                     "head: truncated")
        v.finish()
    except _Broken as b:
        return v.result(b)
    return v.result()


# -- the database ----------------------------------------------------------------------------------

_E = cast(Table, AuditEntry.__table__)
_CP = cast(Table, AuditCheckpoint.__table__)
_HEAD = cast(Table, AuditHead.__table__)
_DK = cast(Table, AuditDataKey.__table__)
# The statements an append runs while it holds the head (on SQLite, the database's one write
# lock), built once: building them cost more than running them.
_TAKE_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq)
_READ_HEAD = select(_HEAD.c.seq, _HEAD.c.hash, _HEAD.c.checkpoint_seq,
                    _HEAD.c.checkpoint_at).where(_HEAD.c.id == 1)
_NEWEST = select(func.max(_E.c.seq))
_SET_HEAD = update(_HEAD).where(_HEAD.c.id == 1)
_SK = cast(Table, AuditSubjectKey.__table__)
_CHUNK = 5000


@dataclass
class AppendResult:
    appended: int
    duplicates: int
    head_seq: int
    checkpoints: int


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: bytes
    checkpoint_seq: int
    checkpoint_at: dt.datetime | None


_ENTRY_COLUMNS: Final = ("seq", "event_id", "at", "actor", "action", "subject", "person",
                         "data_key_id", "ciphertext", "personal", "prev_hash", "hash")


_COLUMN_LIST: Final = ", ".join(f'"{n}"' for n in _ENTRY_COLUMNS)


@dataclass(slots=True)
class _Chain:
    """Entry rows chained after a head: the rows to insert, (seq, hash) of each, the last."""

    rows: list[tuple[Any, ...]]
    hashes: list[tuple[int, bytes]]
    seq: int
    prev: bytes


def _chain(todo: Sequence[AuditEvent], seq: int, prev: bytes, sealed: dict[str, bytes],
           data_key_id: str, persons: dict[str, tuple[str, AESGCM]]) -> _Chain:
    """The entries of `todo` following the head (`seq`, `prev`): sealed details, personal
    data under its person's key, each entry's hash over the one before."""
    rows: list[tuple[Any, ...]] = []
    hashes: list[tuple[int, bytes]] = []
    dkid = data_key_id.encode()
    for ev in todo:
        seq += 1
        eid, at = ev.event_id.encode(), at_text(ev.at)
        ct = sealed[ev.event_id]
        personal = b""
        if ev.personal is not None:
            assert ev.person is not None
            skid, skey = persons[ev.person]
            pn = os.urandom(12)
            personal = skid.encode() + pn + skey.encrypt(pn, orjson.dumps(ev.personal), eid)
        actor, action, subject = ev.actor.encode(), ev.action.encode(), ev.subject.encode()
        h = entry_hash(prev, seq, eid, at.encode(), actor, action, subject,
                       _text(ev.person), dkid, ct, personal)
        rows.append((seq, ev.event_id, at, ev.actor, ev.action, ev.subject, ev.person,
                     data_key_id, ct, personal or None, prev, h))
        hashes.append((seq, h))
        prev = h
    return _Chain(rows, hashes, seq, prev)


def _insert_entries(c: Any, rows: list[tuple[Any, ...]]) -> None:
    """INSERT the entries straight through the driver, in the caller's transaction:
    SQLAlchemy's per-value processing costs more than everything else an append does, and
    on PostgreSQL an executemany costs a round trip per row where COPY streams them. Times
    are the canonical text: SQLite keeps SQLAlchemy's text form, PostgreSQL parses ISO 8601."""
    conn: Connection = c.connection() if isinstance(c, Session) else c
    dialect = conn.dialect
    if dialect.name == "postgresql":
        with _driver(conn).cursor() as cur, cur.copy(f'COPY "audit" ({_COLUMN_LIST}) FROM STDIN') as copy:
            for r in rows:
                copy.write_row(r)
        return
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = 'INSERT INTO "audit" (%s) VALUES (%s)' % (
        _COLUMN_LIST, ", ".join([mark] * len(_ENTRY_COLUMNS)))
    if dialect.name == "sqlite":  # "YYYY-MM-DD HH:MM:SS.ffffff", from the canonical text
        rows = [(r[0], r[1], f"{r[2][:10]} {r[2][11:26]}", *r[3:]) for r in rows]
    else:
        rows = [(r[0], r[1], dt.datetime.fromisoformat(r[2]), *r[3:]) for r in rows]
    conn.exec_driver_sql(sql, rows)


def _driver(conn: Connection) -> Any:
    """The driver's own connection (psycopg), in the same transaction as `conn`."""
    raw = conn.connection.driver_connection
    assert raw is not None
    return raw


def _existing_ids(c: Any, ids: list[str]) -> set[str]:
    """Which of `ids` are in the log already (PostgreSQL: one array parameter, not one
    parameter per id)."""
    conn: Connection = c.connection() if isinstance(c, Session) else c
    if not ids:
        return set()
    if conn.dialect.name == "postgresql":
        with _driver(conn).cursor() as cur:
            return {r[0] for r in cur.execute(
                'SELECT "event_id" FROM "audit" WHERE "event_id" = ANY(%s)', (ids,))}
    return {eid for chunk in _chunks(ids)
            for (eid,) in conn.execute(select(_E.c.event_id).where(_E.c.event_id.in_(chunk)))}


def _at_from_db(value: Any) -> str:
    """The canonical text of a stored time: SQLite hands back SQLAlchemy's text (reshaped by
    slicing, the fast path), PostgreSQL a datetime."""
    if isinstance(value, str):
        if len(value) == 26 and value[10] == " ":
            return f"{value[:10]}T{value[11:]}Z"
        return at_text(dt.datetime.fromisoformat(value))
    return at_text(value)


def _chunks(items: Sequence[Any], n: int = 900) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


class AuditLog:
    """The audit trail in the database: append, checkpoint, verify, export, show, purge.

    Appends are serialised by a row lock on `audit_head` taken first in the appending
    transaction, which then reads the head, inserts the entries, checkpoints and the new
    signed head, and commits as one: a process killed mid-batch leaves nothing of that batch,
    and the next append continues from the stored head. The audit writer is the one steady
    appender; the CLI's occasional appends (reads, purges, rotations) queue on the same lock.
    """

    def __init__(self, settings: Settings, *, engine: Engine | None = None,
                 keys: KeySet | None = None, keyring: AuditKeyring | None = None) -> None:
        self.settings = settings
        self._own_engine = engine is None
        self.engine = engine if engine is not None else make_engine(settings.database_url)
        self.sessions = make_sessionmaker(self.engine)
        self.keys = keys or KeySet(settings.keys_dir)
        self.keyring = keyring or AuditKeyring(settings.keys_dir)
        self._subject_keys: dict[tuple[str, str], AESGCM] = {}

    def close(self) -> None:
        if self._own_engine:
            self.engine.dispose()

    # -- appending -------------------------------------------------------------------------

    def _lock_head(self, c: Any) -> _Head:
        c = c.connection() if isinstance(c, Session) else c  # Core: no ORM work here
        r = c.execute(_TAKE_HEAD)
        if r.rowcount == 0:
            if c.execute(select(_E.c.seq).limit(1)).first() is not None:
                raise AuditError("the audit head row is missing while entries exist: the log "
                                 "was tampered with (run `centre audit verify`)")
            c.execute(insert(_HEAD).values(id=1, seq=0, hash=ZERO_HASH, checkpoint_seq=0))
        row = c.execute(_READ_HEAD).one()
        # Appends commit entries and head together, so nothing may lie beyond the head. (max:
        # always an index probe; `seq > head LIMIT 1` can be planned as a full scan.)
        newest = c.execute(_NEWEST).scalar()
        if newest is not None and newest > row.seq:
            raise AuditError(f"entries exist beyond the signed head {row.seq}: the log was "
                             "tampered with (run `centre audit verify`); not appending")
        return _Head(row.seq, bytes(row.hash), row.checkpoint_seq, row.checkpoint_at)

    def append(self, c: Any, events: Sequence[AuditEvent], *,
               now: dt.datetime | None = None) -> AppendResult:
        """Append `events` in the caller's transaction `c` (a Session or Connection), which
        must commit for them to count. Events already in the log (same id) are skipped.

        What does not depend on the head being locked is done before it is: which events
        are new, their details encrypted under a new data key, and the hash chain as it would
        follow the head as read then. On SQLite that lock is the database's only write lock,
        which every stage waits for. If the head moved in the meantime, which events are new
        is asked again under the lock and the chain is computed again from the locked head.
        Events with personal data are chained under the lock (their person keys are read and
        made there)."""
        now = _utc(now or _now())
        fresh: dict[str, AuditEvent] = {}
        for ev in events:
            fresh.setdefault(ev.event_id, ev)
        seen = self._head_peek(c)
        for known in _existing_ids(c, list(fresh)):
            del fresh[known]
        data_key, data_key_id = AESGCM.generate_key(256), secrets.token_hex(16)
        aead = AESGCM(data_key)
        sealed: dict[str, bytes] = {}
        for i, ev in enumerate(fresh.values()):
            nonce = _NONCE.pack(i)  # a counter: the data key serves this batch only
            sealed[ev.event_id] = nonce + aead.encrypt(nonce, orjson.dumps(ev.details),
                                                       ev.event_id.encode())

        kek_id, wrapped = self.keyring.wrap(data_key, _data_key_aad(data_key_id))
        ready: _Chain | None = None
        if seen is not None and fresh and all(e.personal is None for e in fresh.values()):
            ready = _chain(list(fresh.values()), seen[0], seen[1], sealed, data_key_id, {})

        head = self._lock_head(c)
        if seen is None or (head.seq, head.hash) != seen:
            ready = None
            if fresh:
                for known in _existing_ids(c, list(fresh)):
                    del fresh[known]
        todo = list(fresh.values())
        if not todo:
            cps = self._checkpoints_due(head, [], now)
            self._finish(c, head, head.seq, head.hash, cps, now)
            return AppendResult(0, len(events), head.seq, len(cps))

        c.execute(insert(_DK).values(key_id=data_key_id, kek_id=kek_id, wrapped=wrapped,
                                     created_at=now))
        if ready is None:
            persons = self._person_keys(c, {e.person for e in todo if e.personal is not None},
                                        now)
            ready = _chain(todo, head.seq, head.hash, sealed, data_key_id, persons)
        _insert_entries(c, ready.rows)
        cps = self._checkpoints_due(head, ready.hashes, now)
        self._finish(c, head, ready.seq, ready.prev, cps, now)
        return AppendResult(len(ready.rows), len(events) - len(ready.rows), ready.seq,
                            len(cps))

    @staticmethod
    def _head_peek(c: Any) -> tuple[int, bytes] | None:
        """The head's sequence number and hash, read without locking it."""
        row = c.execute(select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)).first()
        return None if row is None else (row.seq, bytes(row.hash))

    def _checkpoints_due(self, head: _Head, hashes: list[tuple[int, bytes]],
                         now: dt.datetime) -> list[tuple[int, bytes]]:
        """Every N entries, and at the head when T seconds passed since the last one."""
        every, out = self.settings.audit_checkpoint_every, []
        nxt = head.checkpoint_seq + every
        for seq, h in hashes:
            if seq >= nxt:
                out.append((seq, h))
                nxt = seq + every
        last_seq = hashes[-1][0] if hashes else head.seq
        last_hash = hashes[-1][1] if hashes else head.hash
        last_cp_seq = out[-1][0] if out else head.checkpoint_seq
        overdue = (head.checkpoint_at is None or (now - _utc(head.checkpoint_at)).total_seconds()
                   >= self.settings.audit_checkpoint_seconds)
        if last_seq > last_cp_seq and overdue:
            out.append((last_seq, last_hash))
        return out

    def _finish(self, c: Any, head: _Head, seq: int, head_hash: bytes,
                cps: list[tuple[int, bytes]], now: dt.datetime) -> None:
        if not cps and seq == head.seq:
            return  # nothing changed: the signed head stands
        signer, at = self.keys.centre_signer(), at_text(now)
        if cps:
            rows = []
            for cp_seq, cp_hash in cps:
                kid, sig = _sign_head(signer, cp_seq, cp_hash, at)
                rows.append({"seq": cp_seq, "hash": cp_hash, "at": now, "key_id": kid,
                             "signature": sig})
            c.execute(insert(_CP), rows)
        kid, sig = _sign_head(signer, seq, head_hash, at)
        values: dict[str, Any] = {"seq": seq, "hash": head_hash, "at": now, "key_id": kid,
                                  "signature": sig}
        if cps:
            values.update(checkpoint_seq=cps[-1][0], checkpoint_at=now)
        c.execute(_SET_HEAD.values(**values))

    def checkpoint_if_due(self, now: dt.datetime | None = None) -> bool:
        """A time-based checkpoint when entries wait longer than T seconds for one (the
        writer calls this when idle). Reads before locking, so an idle call costs one read."""
        now = _utc(now or _now())
        with self.engine.connect() as conn:
            row = conn.execute(select(_HEAD.c.seq, _HEAD.c.checkpoint_seq,
                                      _HEAD.c.checkpoint_at).where(_HEAD.c.id == 1)).first()
        if row is None or row.seq <= row.checkpoint_seq:
            return False
        if row.checkpoint_at is not None and (now - _utc(row.checkpoint_at)).total_seconds() \
                < self.settings.audit_checkpoint_seconds:
            return False
        with self.sessions.begin() as s:
            head = self._lock_head(s)
            cps = self._checkpoints_due(head, [], now)
            self._finish(s, head, head.seq, head.hash, cps, now)
        CHECKPOINTS.inc(len(cps))
        return bool(cps)

    def _person_keys(self, c: Any, persons: set[str | None],
                     now: dt.datetime) -> dict[str, tuple[str, AESGCM]]:
        """The key of each person, made when the person has none (or theirs was shredded);
        `last_used_at` moves to now, which restarts their retention."""
        wanted = sorted(p for p in persons if p)
        out: dict[str, tuple[str, AESGCM]] = {}
        if not wanted:
            return out
        found = {r.person: r for chunk in _chunks(wanted) for r in c.execute(
            select(_SK.c.person, _SK.c.key_id, _SK.c.kek_id, _SK.c.wrapped)
            .where(_SK.c.person.in_(chunk)))}
        new = []
        for p in wanted:
            r = found.get(p)
            if r is None:
                key, skid = AESGCM.generate_key(256), secrets.token_hex(8)
                kek_id, wrapped = self.keyring.wrap(key, _subject_key_aad(p, skid))
                new.append({"person": p, "kind": kind_of(p)[:32], "key_id": skid,
                            "kek_id": kek_id, "wrapped": wrapped, "created_at": now,
                            "last_used_at": now})
                aead = AESGCM(key)
            else:
                skid = r.key_id
                aead = self._subject_keys.get((p, skid)) or AESGCM(self.keyring.unwrap(
                    r.kek_id, bytes(r.wrapped), _subject_key_aad(p, skid)))
            if len(self._subject_keys) > 10_000:
                self._subject_keys.clear()
            self._subject_keys[(p, skid)] = aead
            out[p] = (skid, aead)
        if new:
            c.execute(insert(_SK), new)
        for chunk in _chunks([p for p in wanted if p in found]):
            c.execute(update(_SK).where(_SK.c.person.in_(chunk)).values(last_used_at=now))
        return out

    def record(self, events: Sequence[AuditEvent], now: dt.datetime | None = None) -> AppendResult:
        """Append in a transaction of its own (the CLI's entries)."""
        with self.sessions.begin() as s:
            result = self.append(s, events, now=now)
        count_committed(result)
        return result

    # -- reading the chain -------------------------------------------------------------------

    @staticmethod
    def _head_row(conn: Connection) -> Any:
        return conn.execute(select(_HEAD).where(_HEAD.c.id == 1)).first()

    @staticmethod
    def _entries(conn: Connection, upto: int) -> Iterator[Any]:
        """Entries 1…upto in seq order, in chunks (keyset pagination): memory stays flat.
        Read through the driver (verification's hot loop); PostgreSQL sends binary rows (no
        hex-encoded bytea) and the time is formatted here (to_char on the server cost more)."""
        pg = conn.dialect.name == "postgresql"
        cols = _COLUMN_LIST
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        sql = 'SELECT %s FROM "audit" WHERE "seq" > %s AND "seq" <= %s ORDER BY "seq" LIMIT %d' % (
            cols, mark, mark, _CHUNK)
        last = 0
        while True:
            if pg:
                with _driver(conn).cursor(binary=True) as cur:
                    rows = cur.execute(sql, (last, upto)).fetchall()
            else:
                rows = conn.exec_driver_sql(sql, (last, upto)).fetchall()
            if not rows:
                return
            for r in rows:
                yield (r[0], r[1], _at_from_db(r[2]), *r[3:])
            last = rows[-1][0]

    @staticmethod
    def _checkpoint_rows(conn: Connection, upto: int) -> Iterator[Any]:
        last = -1
        while True:
            rows = conn.execute(select(_CP.c.seq, _CP.c.hash, _CP.c.at, _CP.c.key_id,
                                       _CP.c.signature)
                                .where(_CP.c.seq > last, _CP.c.seq <= upto)
                                .order_by(_CP.c.seq).limit(_CHUNK)).all()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]

    def _walk(self, v: ChainVerifier, conn: Connection, upto: int,
              out: IO[bytes] | None = None) -> None:
        """Feed entries and checkpoints 1…upto to `v`, raising _Broken at the first problem.
        With `out`, also write them as export lines, all of them even after a problem (the
        export is evidence), and raise only at the end."""
        cps = self._checkpoint_rows(conn, upto)
        cp = next(cps, None)
        dumps, b64 = orjson.dumps, base64.b64encode
        problem: _Broken | None = None
        for (seq, eid, at_s, actor, action, subject, person, dkid, ct, personal, prev,
             h) in self._entries(conn, upto):
            ct, prev, h = bytes(ct), bytes(prev), bytes(h)
            personal = bytes(personal) if personal else b""
            if out is not None:
                out.write(dumps({
                    "type": "entry", "seq": seq, "event_id": eid, "at": at_s, "actor": actor,
                    "action": action, "subject": subject, "person": person,
                    "data_key_id": dkid, "ciphertext": b64(ct).decode(),
                    "personal": b64(personal).decode() if personal else None,
                    "prev_hash": prev.hex(), "hash": h.hex()}) + b"\n")
            try:
                if problem is None:
                    v.entry(seq, eid.encode(), at_s.encode(), actor.encode(), action.encode(),
                            subject.encode(), _text(person), dkid.encode(), ct, personal, prev,
                            h)
                while cp is not None and cp[0] <= seq:
                    cp_at = at_text(cp[2])
                    if out is not None:
                        out.write(dumps({"type": "checkpoint", "seq": cp[0],
                                         "hash": bytes(cp[1]).hex(), "at": cp_at,
                                         "key_id": cp[3],
                                         "signature": b64(bytes(cp[4])).decode()}) + b"\n")
                    cp_seq, cp_hash, cp_kid, cp_sig = cp[0], bytes(cp[1]), cp[3], bytes(cp[4])
                    cp = next(cps, None)
                    if problem is None:
                        v.tree_head("checkpoint", cp_seq, cp_hash, cp_at, cp_kid, cp_sig)
            except _Broken as b:
                if out is None:
                    raise
                problem = b
        if problem is not None:
            raise problem
        if cp is not None:  # checkpoints beyond the last entry: the tail is gone
            v.tree_head("checkpoint", cp[0], bytes(cp[1]), at_text(cp[2]), cp[3], bytes(cp[4]))

    def _check_head(self, v: ChainVerifier, conn: Connection, head: Any) -> None:
        if head is None:
            if v.seq:
                raise _Broken(1, "the audit head row is missing: the log was tampered with")
        elif head.signature is None:
            if head.seq or v.seq:
                raise _Broken(1, "the head of the log is not signed")
        else:
            v.tree_head("head", head.seq, bytes(head.hash), at_text(head.at), head.key_id,
                        bytes(head.signature))
        # Entries and head commit together, so an entry beyond the head read *after* the
        # newest entry was read is one that no appender wrote.
        newest = conn.execute(select(func.max(_E.c.seq))).scalar() or 0
        now_head = self._head_row(conn)
        head_seq = now_head.seq if now_head is not None else 0
        if newest > head_seq:
            raise _Broken(head_seq + 1, f"entries {head_seq + 1}…{newest} are not covered by "
                                        "the signed head: inserted")

    def verify(self, *, public_keys: Iterable[Ed25519PublicKey] | None = None,
               known_heads: Iterable[tuple[int, bytes]] = ()) -> VerifyResult:
        """Verify the log in the database with only the centre's public key(s): every entry
        up to the signed head read at the start (later appends are left for the next run)."""
        keys = list(public_keys) if public_keys is not None else self.keys.centre_public_keys()
        v = ChainVerifier(keys, known_heads)
        try:
            with self.engine.connect() as conn:
                head = self._head_row(conn)
                self._walk(v, conn, head.seq if head is not None else 2**62)
                self._check_head(v, conn, head)
            v.finish()
        except _Broken as b:
            return v.result(b)
        return v.result()

    def export(self, path: Path | str) -> VerifyResult:
        """Write entries, checkpoints and a head signed now as JSON lines (see `verify_file`),
        verifying as it goes. The file is written whole even when the log is broken (it is
        evidence), but then without a fresh signed head, and the result says what broke."""
        path = Path(path)
        signer = self.keys.centre_signer()
        v = ChainVerifier(self.keys.centre_public_keys())
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        problem: _Broken | None = None
        try:
            with open(tmp, "wb") as out, self.engine.connect() as conn:
                head = self._head_row(conn)
                upto = head.seq if head is not None else 2**62
                out.write(orjson.dumps({
                    "type": "header", "format": EXPORT_FORMAT, "exported_at": at_text(_now()),
                    "entries": upto if head is not None else None,
                    "hash": "SHA-256(prev_hash ‖ entry bytes), see centre/audit.py",
                }) + b"\n")
                try:
                    self._walk(v, conn, upto, out)
                    self._check_head(v, conn, head)
                except _Broken as b:
                    problem = b
                if problem is None:
                    at = at_text(_now())
                    kid, sig = _sign_head(signer, v.seq, v.hash, at)
                    out.write(orjson.dumps({"type": "head", "seq": v.seq, "hash": v.hash.hex(),
                                            "at": at, "key_id": kid,
                                            "signature": _b64(sig)}) + b"\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return v.result(problem)

    # -- reading entries (decrypting) ---------------------------------------------------------

    def show(self, subject: str, *, role: str, reader: str,
             now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """The entries about `subject` (as subject or as the person), decrypted, for an
        authorised role. The read is recorded before anything is decrypted; a refused read is
        recorded too, then AuditAccessDenied is raised."""
        now = _utc(now or _now())
        actor = staff_actor(reader)
        allowed = role in self.settings.audit_reader_roles
        read = AuditEvent(actor=actor, action="audit.read" if allowed else "audit.read_refused",
                          subject=subject, discriminator=f"{at_text(now)}|{uuid.uuid4()}",
                          details={"role": role[:32]}, at=now)
        self.record([read], now=now)
        if not allowed:
            raise AuditAccessDenied(
                f"role {role[:32]!r} may not read the audit trail (allowed: "
                f"{', '.join(self.settings.audit_reader_roles)}); the attempt was recorded")
        out: list[dict[str, Any]] = []
        data_keys: dict[str, AESGCM | None] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(_E).where((_E.c.subject == subject)
                                                 | (_E.c.person == subject))
                                .order_by(_E.c.seq)).all()
            persons = {r.person for r in rows if r.personal}
            person_keys = {r.person: r for chunk in _chunks(sorted(persons)) for r in
                           conn.execute(select(_SK).where(_SK.c.person.in_(chunk)))}
            for r in rows:
                eid = r.event_id.encode()
                at_s = at_text(r.at)
                intact = entry_hash(bytes(r.prev_hash), r.seq, eid, at_s.encode(),
                                    r.actor.encode(), r.action.encode(), r.subject.encode(),
                                    _text(r.person), r.data_key_id.encode(), bytes(r.ciphertext),
                                    bytes(r.personal or b"")) == bytes(r.hash)
                if r.data_key_id not in data_keys:
                    dk = conn.execute(select(_DK).where(_DK.c.key_id == r.data_key_id)).first()
                    data_keys[r.data_key_id] = AESGCM(self.keyring.unwrap(
                        dk.kek_id, bytes(dk.wrapped), _data_key_aad(dk.key_id))) if dk else None
                details = _open(data_keys[r.data_key_id], bytes(r.ciphertext), eid)
                entry: dict[str, Any] = {
                    "seq": r.seq, "at": at_s, "actor": r.actor, "action": r.action,
                    "subject": r.subject, "event_id": r.event_id, "person": r.person,
                    "details": details, "intact": intact}
                if r.personal:
                    blob = bytes(r.personal)
                    skid = blob[:16].decode("ascii", "replace")
                    k = person_keys.get(r.person)
                    if k is None or k.key_id != skid:
                        entry["personal"], entry["personal_erased"] = None, True
                    else:
                        aead = AESGCM(self.keyring.unwrap(k.kek_id, bytes(k.wrapped),
                                                          _subject_key_aad(k.person, k.key_id)))
                        entry["personal"] = _open(aead, blob[16:], eid)
                        entry["personal_erased"] = False
                out.append(entry)
        return out

    # -- retention ------------------------------------------------------------------------

    def purge(self, *, now: dt.datetime | None = None, dry_run: bool = False,
              actor: str = "audit-purge") -> list[dict[str, Any]]:
        """Crypto-shred every person whose data outlived its retention (days since the key was
        last used, per kind; `default` for kinds not configured): delete the key and record
        the shredding in the log, in one transaction. Returns what was (or would be) shredded,
        as references and dates only."""
        now = _utc(now or _now())
        days = dict(self.settings.audit_retention_days)
        default = days.pop("default", 365)
        with self.sessions.begin() as s:
            if not dry_run:
                self._lock_head(s)  # the writer cannot use a key while it is being destroyed
            conds: list[ColumnElement[bool]] = [(_SK.c.kind == k) & (_SK.c.last_used_at <= now - dt.timedelta(days=d))
                     for k, d in days.items()]
            conds.append(_SK.c.kind.not_in(list(days)) if days else _SK.c.kind.is_not(None))
            conds[-1] = conds[-1] & (_SK.c.last_used_at <= now - dt.timedelta(days=default))
            cond = conds[0]
            for extra in conds[1:]:
                cond = cond | extra
            expired = s.execute(select(_SK.c.person, _SK.c.kind, _SK.c.key_id,
                                       _SK.c.last_used_at).where(cond).order_by(_SK.c.person)
                                ).all()
            done = [{"person": r.person, "kind": r.kind, "key_id": r.key_id,
                     "last_used_at": at_text(r.last_used_at),
                     "retention_days": days.get(r.kind, default)} for r in expired]
            if dry_run or not done:
                return done
            for chunk in _chunks([d["person"] for d in done]):
                s.execute(delete(_SK).where(_SK.c.person.in_(chunk)))
            result = self.append(s, [AuditEvent(actor=actor, action="audit.subject_shredded",
                                       subject=d["person"], person=d["person"],
                                       discriminator=d["key_id"], at=now,
                                       details={k: d[k] for k in ("kind", "key_id",
                                                                  "last_used_at",
                                                                  "retention_days")})
                            for d in done], now=now)
            for d in done:
                self._subject_keys.pop((d["person"], d["key_id"]), None)
        count_committed(result)
        SHREDDED.inc(len(done))
        return done

    # -- keys --------------------------------------------------------------------------------

    def rotate_kek(self, *, by: str) -> str:
        """A new audit KEK, current from the next batch on; older KEKs stay to unwrap the
        keys they wrapped, so no entry is rewritten. The rotation is recorded first."""
        old = self.keyring.current_id()
        new = self.keyring.create()
        self.record([AuditEvent(actor=staff_actor(by), action="audit.kek_rotated",
                                subject=f"kek:{new}", details={"previous": old, "current": new})])
        self.keyring.make_current(new)
        return new


def count_committed(result: AppendResult) -> None:
    """Metrics for an append whose transaction committed."""
    ENTRIES.inc(result.appended)
    CHECKPOINTS.inc(result.checkpoints)


def _open(aead: AESGCM | None, blob: bytes, aad: bytes) -> Any:
    if aead is None:
        return {"error": "data key missing"}
    try:
        return orjson.loads(aead.decrypt(blob[:12], blob[12:], aad))
    except (InvalidTag, orjson.JSONDecodeError):
        return {"error": "does not decrypt: altered"}


def staff_actor(name: str) -> str:
    """`staff:<login>` for a member of staff acting through the CLI."""
    login = re.sub(r"[^a-z0-9._-]", "-", (name or "unknown").lower())[:90] or "unknown"
    return f"staff:{login}"
