"""The audit trail: every step taken on a report, complaint or victim's request, and every
access by staff, kept so that nobody (the centre's operators included) can change, remove,
insert or reorder an entry unnoticed, while the data inside stays encrypted and the data about
a person can be erased when its retention ends. Modelled on Certificate Transparency's signed
tree heads (RFC 6962); CSA Regulation proposal Art. 45, 46, 51.

Flow: a worker builds `AuditEvent`s for its decisions and `emit`s them to `audit.events`
with its other outputs; the audit writer (`centre.audit.writer`) appends them in batches with
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

The package, by what each part does (each module imports only those listed above it):

    format   errors, `AuditEvent` and `emit`, the entry bytes, `entry_hash`, tree heads
    keys     `AuditKeyring` (KEKs), wrapping data keys and person keys, opening sealed data
    verify   `ChainVerifier`, `VerifyResult`, `verify_file`: no database, no private key
    store    the tables, `AuditStore` (appending, checkpoints, the head, person keys)
    log      `AuditLog`: the store with verify, export, show, purge and KEK rotation
    writer, sink, cli, bench   the audit writer stage, flows' event sink, `centre audit …`,
                               `centre bench audit`

The names below are re-exported from those modules, loaded on first use: the command line
and the flows import `centre.audit.cli` and `centre.audit.sink` without loading the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from centre.audit.format import ACTIONS as ACTIONS
    from centre.audit.format import EVENT_SCHEMA as EVENT_SCHEMA
    from centre.audit.format import EXPORT_FORMAT as EXPORT_FORMAT
    from centre.audit.format import NS_AUDIT as NS_AUDIT
    from centre.audit.format import ZERO_HASH as ZERO_HASH
    from centre.audit.format import AuditAccessDenied as AuditAccessDenied
    from centre.audit.format import AuditError as AuditError
    from centre.audit.format import AuditEvent as AuditEvent
    from centre.audit.format import AuditEventError as AuditEventError
    from centre.audit.format import AuditKeyError as AuditKeyError
    from centre.audit.format import at_text as at_text
    from centre.audit.format import emit as emit
    from centre.audit.format import entry_hash as entry_hash
    from centre.audit.format import event_id_for as event_id_for
    from centre.audit.format import kind_of as kind_of
    from centre.audit.format import staff_actor as staff_actor
    from centre.audit.format import tree_head_message as tree_head_message
    from centre.audit.keys import AuditKeyring as AuditKeyring
    from centre.audit.log import AuditLog as AuditLog
    from centre.audit.store import CHECKPOINTS as CHECKPOINTS
    from centre.audit.store import ENTRIES as ENTRIES
    from centre.audit.store import SHREDDED as SHREDDED
    from centre.audit.store import AppendResult as AppendResult
    from centre.audit.store import AuditStore as AuditStore
    from centre.audit.store import count_committed as count_committed
    from centre.audit.verify import ChainVerifier as ChainVerifier
    from centre.audit.verify import VerifyResult as VerifyResult
    from centre.audit.verify import _Broken as _Broken
    from centre.audit.verify import verify_file as verify_file
    from centre.topology import AUDIT_EVENTS as AUDIT_EVENTS  # `format`'s, at run time

__all__ = [
    "AUDIT_EVENTS", "EVENT_SCHEMA", "EXPORT_FORMAT", "AppendResult", "AuditAccessDenied",
    "AuditError", "AuditEvent", "AuditEventError", "AuditKeyError", "AuditKeyring", "AuditLog",
    "ChainVerifier", "VerifyResult", "at_text", "emit", "entry_hash", "event_id_for",
    "tree_head_message", "verify_file",
]  # fmt: skip

# Where each re-exported name lives (the submodule of this package).
_HOME: dict[str, str] = {
    **dict.fromkeys((
        "ACTIONS", "AUDIT_EVENTS", "EVENT_SCHEMA", "EXPORT_FORMAT", "NS_AUDIT", "ZERO_HASH",
        "AuditAccessDenied", "AuditError", "AuditEvent", "AuditEventError", "AuditKeyError",
        "at_text", "emit", "entry_hash", "event_id_for", "kind_of", "staff_actor",
        "tree_head_message"), "format"),
    "AuditKeyring": "keys",
    **dict.fromkeys(("ChainVerifier", "VerifyResult", "_Broken", "verify_file"), "verify"),
    **dict.fromkeys(("CHECKPOINTS", "ENTRIES", "SHREDDED", "AppendResult", "AuditStore",
                     "count_committed"), "store"),
    "AuditLog": "log",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
