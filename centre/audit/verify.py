"""Verification of the audit chain with only the centre's public key(s): no database, no
private key. `ChainVerifier` recomputes every entry's hash in order and checks each signed
tree head against the chain, `VerifyResult` says what it found (the first entry that does not
verify), and `verify_file` streams an export file (centre-audit-export/v1) through it.
`AuditLog.verify` and `AuditLog.export` (in `log`) feed it from the database.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from centre.audit.format import (
    EXPORT_FORMAT,
    ZERO_HASH,
    _text,
    entry_hash,
    tree_head_message,
)
from centre.crypto import key_id

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
            return (
                f"intact: {self.entries} entries, {self.checkpoints} signed checkpoints, "
                f"head {self.head_seq} {self.head_hash}"
            )
        return f"BROKEN at entry {self.broken_seq}: {self.problem}"


_RECENT_MAX: Final = 200_000  # hashes kept since the last verified signature (6.4 MB)


class ChainVerifier:
    """Recomputes the chain entry by entry and checks signed tree heads against it. It keeps
    the running hash and the hashes since the last verified signature (at most N entries in
    a log checkpointed every N, capped at _RECENT_MAX): memory stays flat however long the
    log is. Raises _Broken at the first problem, naming the first entry that does not
    verify."""

    def __init__(
        self, public_keys: Iterable[Ed25519PublicKey], known_heads: Iterable[tuple[int, bytes]] = ()
    ) -> None:
        self.keys = {key_id(k): k for k in public_keys}
        self.seq, self.hash = 0, ZERO_HASH
        self.checkpoints = 0
        self.signed_seq = 0  # the newest entry covered by a verified signature
        self.known = dict(known_heads)
        self._base = 0  # self._recent[i] is the hash of entry _base + 1 + i
        self._recent: list[bytes] = []

    def entry(
        self,
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
        prev_hash: bytes,
        stored_hash: bytes,
    ) -> None:
        want = self.seq + 1
        if seq != want:
            if seq > want:
                raise _Broken(
                    want,
                    f"entry {want} is missing (entry {seq} follows entry "
                    f"{self.seq}): deleted, or moved",
                )
            raise _Broken(
                want,
                f"entry {want} expected, found entry {seq} again or out of "
                "order: inserted or moved",
            )
        if prev_hash != self.hash:
            raise _Broken(
                seq,
                f"entry {seq} does not link to entry {self.seq} (its previous "
                "hash differs): an entry before it was deleted, inserted, moved, "
                "or altered and re-hashed",
            )
        # The same bytes the appender hashed (format.entry_hash): one definition of an entry.
        h = entry_hash(
            prev_hash,
            seq,
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

    def tree_head(
        self, what: str, seq: int, head_hash: bytes, at: str, kid: str, signature: bytes
    ) -> None:
        """Check a signed (seq, hash) against the chain so far: a checkpoint right after its
        entry, the head after the last entry."""
        key = self.keys.get(kid)
        if key is None:
            raise _Broken(
                self.signed_seq + 1,
                f"{what} at entry {seq} is signed by key {kid}, not a centre key",
            )
        try:
            key.verify(signature, tree_head_message(seq, head_hash, at))
        except InvalidSignature:
            raise _Broken(
                self.signed_seq + 1,
                f"{what} at entry {seq}: the signature does not verify (forged or altered)",
            ) from None
        if seq > self.seq:
            raise _Broken(
                self.seq + 1,
                f"the log ends at entry {self.seq} but a {what} is "
                f"signed at entry {seq}: entries {self.seq + 1}…{seq} "
                "were removed (truncated)",
            )
        if seq < self.seq and what == "head":
            raise _Broken(
                seq + 1,
                f"entries {seq + 1}…{self.seq} come after the head signed at entry {seq}: inserted",
            )
        if seq == self.seq:
            chain_hash = self.hash
        elif seq > self._base:  # a checkpoint after later entries: check it where it belongs
            chain_hash = self._recent[seq - self._base - 1]
        else:
            raise _Broken(
                seq + 1,
                f"the {what} signed at entry {seq} comes after entries it "
                f"cannot cover (up to entry {self.seq}): inserted or moved",
            )
        if head_hash != chain_hash:
            first = min(self.signed_seq, seq - 1) + 1
            raise _Broken(
                first,
                f"entries {first}…{seq} differ from the {what} signed at "
                f"entry {seq}: an entry among them was altered, inserted or "
                "removed, and the chain re-hashed",
            )
        if seq > self.signed_seq:
            self.signed_seq = seq
            del self._recent[: seq - self._base]
            self._base = seq
        if what == "checkpoint":
            self.checkpoints += 1

    def finish(self) -> None:
        if self.known:
            seq = min(self.known)
            raise _Broken(
                self.seq + 1,
                f"the log ends at entry {self.seq}, before the head "
                f"seen earlier at entry {seq}: truncated",
            )

    def result(self, problem: _Broken | None = None) -> VerifyResult:
        if problem is None:
            return VerifyResult(True, self.seq, self.checkpoints, self.seq, self.hash.hex())
        return VerifyResult(
            False,
            problem.seq - 1 if problem.seq else 0,
            self.checkpoints,
            self.seq,
            self.hash.hex(),
            problem.seq,
            str(problem),
        )


def verify_file(
    path: Path | str,
    public_keys: Iterable[Ed25519PublicKey],
    known_heads: Iterable[tuple[int, bytes]] = (),
) -> VerifyResult:
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
                        raise _Broken(
                            v.seq + 1, f"line {lineno}: something follows the signed head: inserted"
                        )
                    if kind == "entry":
                        v.entry(
                            d["seq"],
                            d["event_id"].encode(),
                            d["at"].encode(),
                            d["actor"].encode(),
                            d["action"].encode(),
                            d["subject"].encode(),
                            _text(d["person"]),
                            d["data_key_id"].encode(),
                            b64(d["ciphertext"]),
                            b64(d["personal"]) if d["personal"] else b"",
                            fromhex(d["prev_hash"]),
                            fromhex(d["hash"]),
                        )
                    elif kind == "checkpoint" or kind == "head":
                        v.tree_head(
                            kind,
                            d["seq"],
                            fromhex(d["hash"]),
                            d["at"],
                            d["key_id"],
                            b64(d["signature"]),
                        )
                        head_seen = kind == "head"
                    elif kind == "header" and lineno == 1:
                        if d.get("format") != EXPORT_FORMAT:
                            raise _Broken(1, f"not a {EXPORT_FORMAT} file")
                    else:
                        raise _Broken(v.seq + 1, f"line {lineno}: unexpected line")
                except _Broken:
                    raise
                except (
                    orjson.JSONDecodeError,
                    KeyError,
                    TypeError,
                    ValueError,
                    AttributeError,
                    binascii.Error,
                    struct.error,
                ):
                    raise _Broken(
                        v.seq + 1,
                        f"line {lineno} is not a well-formed export line (after entry {v.seq})",
                    ) from None
        if not head_seen:
            raise _Broken(
                v.seq + 1, f"the export ends after entry {v.seq} without its signed head: truncated"
            )
        v.finish()
    except _Broken as b:
        return v.result(b)
    return v.result()
