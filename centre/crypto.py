"""Sealed envelopes for cases, one recipient each, and the Ed25519 helpers the centre signs with.

A case on `le.<cc>` must be readable only by that liaison (not by other recipients, not by
the broker's operators) and provably from the centre. Each envelope is encrypted with an
X25519 key agreement, HKDF-SHA256 to an AES-256-GCM key, and covered by an Ed25519
signature of the centre.

Envelope, version 2 (the Kafka value, bytes):

    <header: one line of JSON, ASCII> 0x0A <AES-256-GCM ciphertext || 16-byte tag>
        <proof: k × 32 bytes> <k: 1 byte> <signature: 64 bytes>

    header = {"v":2,"alg":"X25519-HKDF-SHA256-A256GCM+Ed25519-Merkle","recipient":"de",
              "kid":<recipient key id>,"signer":<centre key id>,
              "epk":<base64 ephemeral X25519 public key>,"nonce":<base64 12 bytes>,
              "leaf":<index in its batch>,"leaves":<envelopes in the batch>}

Routing seals a whole batch at once and signs it once (an Ed25519 signature costs as much as
all the rest of a seal): every envelope of the batch is a leaf of a Merkle tree,
    leaf = SHA-256(0x00 || header || 0x0A || ciphertext),  node = SHA-256(0x01 || left || right)
(a node without a sibling moves up a level unchanged), and the centre signs
"centre/seal-root/v2|" || root. An envelope carries the sibling hashes from its leaf to the
root, so each one verifies on its own: recompute the root from the envelope and its proof,
then check the signature, as Certificate Transparency's inclusion proofs do. A single seal
is a batch of one (no proof). Changing any byte (header, ciphertext, proof, index) changes
the root and the signature fails. What a recipient learns of the others is only the batch
size, and hashes of ciphertexts it cannot open.

Why this shape: the header stays readable (`head -1`) and says what it is and which key opens
it, while the body is raw, so a 1 MiB report does not grow by a third as base64 would make it.
The header bytes are the AEAD's associated data and are in the leaf, so no field can be
swapped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "ALG", "RECIPIENTS", "VERSION", "ForgedError", "MalformedError", "NotForYouError",
    "SealError", "check_recipient", "key_id", "open_envelope", "peek_header", "seal", "sign",
    "verify",
]  # fmt: skip

MEMBER_STATES: Final[tuple[str, ...]] = (
    "at", "be", "bg", "cy", "cz", "de", "dk", "ee", "es", "fi", "fr", "gr", "hr", "hu",
    "ie", "it", "lt", "lu", "lv", "mt", "nl", "pl", "pt", "ro", "se", "si", "sk",
)  # fmt: skip
RECIPIENTS: Final[tuple[str, ...]] = (*MEMBER_STATES, "europol")
_RECIPIENT_SET: Final[frozenset[str]] = frozenset(RECIPIENTS)

VERSION: Final = 2
ALG: Final = "X25519-HKDF-SHA256-A256GCM+Ed25519-Merkle"
_ROOT_PREFIX: Final = b"centre/seal-root/v2|"
_MAX_PROOF: Final = 40  # a tree of 2^40 envelopes; anything deeper is not ours
_INFO_PREFIX: Final = b"centre/seal/v1|"
_SIG_LEN: Final = 64
_TAG_LEN: Final = 16
_NONCE_LEN: Final = 12
_KEY_LEN: Final = 32
# A real header is ~200 bytes; the bound stops a search for the newline through megabytes of
# garbage and keeps error paths cheap.
_MAX_HEADER: Final = 1024
_HASH_LEN: Final = 32
_KID_RE: Final = re.compile(r"[0-9a-f]{16}")


class SealError(Exception):
    """An envelope cannot be opened. Messages name ids and key ids, never key material."""


class ForgedError(SealError):
    """The signature does not verify with the centre's key: forged, altered, or another signer."""


class NotForYouError(SealError):
    """Genuine, but sealed for another recipient or for a key this recipient does not hold."""


class MalformedError(SealError):
    """Not a version-1 envelope at all (truncated, garbage, unknown version or algorithm)."""


PublicKey = X25519PublicKey | Ed25519PublicKey
AnyKey = PublicKey | X25519PrivateKey | Ed25519PrivateKey


def key_id(public_key: AnyKey) -> str:
    """Short stable id of a key: first 16 hex digits of SHA-256 of its raw public bytes.

    A private key is accepted too and named by its public half, so callers never have to
    derive the public key just to ask which one they hold.
    """
    if isinstance(public_key, (X25519PrivateKey, Ed25519PrivateKey)):
        public_key = public_key.public_key()
    return _kid(public_key.public_bytes_raw())


def _kid(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def check_recipient(recipient_id: object) -> str:
    """Return `recipient_id` if it is one of RECIPIENTS, else raise ValueError.

    Recipient ids become topic names and directory names, so anything else (``../x``) is
    refused before it can reach either.
    """
    if not isinstance(recipient_id, str) or recipient_id not in _RECIPIENT_SET:
        raise ValueError(
            f"unknown recipient id {str(recipient_id)[:40]!r}: expected a lower-case EU member "
            "state code (at, be, …, sk) or 'europol'"
        )
    return recipient_id


def _derive_key(shared: bytes, epk: bytes, rpk: bytes, recipient_id: str, kid: str) -> bytes:
    # Salt and info bind the key to both public keys and to who/which key it is for, so an
    # envelope re-labelled for another recipient or key id cannot decrypt even before the
    # signature is considered.
    info = b"%s%s|%s" % (_INFO_PREFIX, recipient_id.encode("ascii"), kid.encode("ascii"))
    return HKDF(algorithm=hashes.SHA256(), length=_KEY_LEN, salt=epk + rpk, info=info).derive(
        shared
    )


def _leaf_hash(header: bytes, ciphertext: bytes) -> bytes:
    h = hashlib.sha256(b"\x00")  # fed in parts: the ciphertext is not copied
    h.update(header)
    h.update(b"\n")
    h.update(ciphertext)
    return h.digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _merkle(leaves: list[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root and, for each leaf, its proof (sibling hashes from the leaf upwards). A node
    with no sibling moves up unchanged and adds nothing to the proofs below it."""
    levels = [leaves]
    while len(levels[-1]) > 1:
        level = levels[-1]
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        levels.append(nxt)
    proofs: list[list[bytes]] = []
    for i in range(len(leaves)):
        proof, idx = [], i
        for level in levels[:-1]:
            sib = idx ^ 1
            if sib < len(level):
                proof.append(level[sib])
            idx >>= 1
        proofs.append(proof)
    return levels[-1][0], proofs


def _root_from_proof(leaf: bytes, index: int, size: int, proof: list[bytes]) -> bytes | None:
    """The root that `proof` leads to from `leaf` at `index` of `size`; None if the proof
    does not have the shape such a tree gives that index."""
    node, used = leaf, 0
    while size > 1:
        if index % 2:
            if used >= len(proof):
                return None
            node, used = _node(proof[used], node), used + 1
        elif index + 1 < size:
            if used >= len(proof):
                return None
            node, used = _node(node, proof[used]), used + 1
        index, size = index // 2, (size + 1) // 2
    return node if used == len(proof) else None


class Sealer:
    """Seals many messages; one ephemeral key per recipient for the sealer's lifetime.

    Routing makes one per batch: the X25519 key generation and exchange are paid once per
    recipient and batch instead of once per message, and `seal_batch` signs the whole batch
    once. Each message still has its own random nonce; a key shared by a few hundred messages
    leaves the random-nonce collision chance negligible (2^-80 region for 2^8 messages).
    """

    def __init__(self, signer: Ed25519PrivateKey) -> None:
        self._signer = signer
        self._signer_kid = _kid(signer.public_key().public_bytes_raw()).encode("ascii")
        self._per_recipient: dict[tuple[str, bytes], tuple[bytes, bytes, AESGCM]] = {}

    def _encrypt(
        self,
        plaintext: bytes,
        recipient_id: str,
        recipient_public: X25519PublicKey,
        leaf: int,
        leaves: int,
    ) -> tuple[bytes, bytes]:
        rpk = recipient_public.public_bytes_raw()
        cached = self._per_recipient.get((recipient_id, rpk))
        if cached is None:
            check_recipient(recipient_id)
            ephemeral = X25519PrivateKey.generate()
            epk = ephemeral.public_key().public_bytes_raw()
            kid = _kid(rpk)
            key = _derive_key(ephemeral.exchange(recipient_public), epk, rpk, recipient_id, kid)
            cached = (
                b'{"v":%d,"alg":"%s","recipient":"%s","kid":"%s","signer":"%s","epk":"%s",'
                % (
                    VERSION,
                    ALG.encode("ascii"),
                    recipient_id.encode("ascii"),
                    kid.encode("ascii"),
                    self._signer_kid,
                    base64.b64encode(epk),
                ),
                epk,
                AESGCM(key),
            )
            self._per_recipient[(recipient_id, rpk)] = cached
        prefix, _epk, aead = cached
        nonce = os.urandom(_NONCE_LEN)
        # Formatted by hand: every value is an id from a fixed alphabet, base64 or a number,
        # so no JSON escaping is needed, and it is several times cheaper than json.dumps.
        header = b'%s"nonce":"%s","leaf":%d,"leaves":%d}' % (
            prefix,
            base64.b64encode(nonce),
            leaf,
            leaves,
        )
        return header, aead.encrypt(nonce, plaintext, header)

    def seal_batch(self, items: list[tuple[bytes, str, X25519PublicKey]]) -> list[bytes]:
        """Seal (plaintext, recipient_id, recipient_public) items; one signature for all."""
        if not items:
            return []
        parts = [self._encrypt(p, r, k, i, len(items)) for i, (p, r, k) in enumerate(items)]
        root, proofs = _merkle([_leaf_hash(h, c) for h, c in parts])
        signature = self._signer.sign(_ROOT_PREFIX + root)
        return [
            b"%s\n%s%s%c%s" % (h, c, b"".join(proof), len(proof), signature)
            for (h, c), proof in zip(parts, proofs)
        ]

    def seal(
        self, plaintext: bytes, *, recipient_id: str, recipient_public: X25519PublicKey
    ) -> bytes:
        """One envelope, signed on its own (a batch of one)."""
        return self.seal_batch([(plaintext, recipient_id, recipient_public)])[0]


def seal(
    plaintext: bytes,
    *,
    recipient_id: str,
    recipient_public: X25519PublicKey,
    signer: Ed25519PrivateKey,
) -> bytes:
    """Encrypt `plaintext` for one recipient and sign it as the centre; returns the envelope.
    A fresh ephemeral key for this one message (see `Sealer` for many)."""
    return Sealer(signer).seal(
        plaintext, recipient_id=recipient_id, recipient_public=recipient_public
    )


@dataclass(frozen=True, slots=True)
class _Parsed:
    header: dict[str, Any]
    header_bytes: bytes
    ciphertext: bytes
    proof: list[bytes]
    leaf: int
    leaves: int
    signature: bytes
    recipient: str
    kid: str
    signer: str
    epk: bytes
    nonce: bytes


def _b64_field(header: Mapping[str, Any], name: str, length: int) -> bytes:
    value = header.get(name)
    if not isinstance(value, str):
        raise MalformedError(f"envelope header field {name!r} is missing or not a string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedError(f"envelope header field {name!r} is not base64") from None
    if len(raw) != length:
        raise MalformedError(f"envelope header field {name!r} must be {length} bytes")
    return raw


def _kid_field(header: Mapping[str, Any], name: str) -> str:
    value = header.get(name)
    if not isinstance(value, str) or not _KID_RE.fullmatch(value):
        raise MalformedError(f"envelope header field {name!r} is not a 16-hex-digit key id")
    return value


def _parse(envelope: bytes) -> _Parsed:
    if not isinstance(envelope, (bytes, bytearray, memoryview)):
        raise MalformedError(f"an envelope is bytes, not {type(envelope).__name__}")
    envelope = bytes(envelope)
    newline = envelope.find(b"\n", 0, _MAX_HEADER + 1)
    if newline <= 0 or not envelope.startswith(b"{"):
        raise MalformedError("not a sealed envelope: no JSON header line")
    if len(envelope) < newline + 1 + _TAG_LEN + 1 + _SIG_LEN:
        raise MalformedError("sealed envelope is truncated")
    depth = envelope[-_SIG_LEN - 1]
    proof_start = len(envelope) - _SIG_LEN - 1 - depth * _HASH_LEN
    if depth > _MAX_PROOF or proof_start < newline + 1 + _TAG_LEN:
        raise MalformedError("sealed envelope is truncated or its proof is malformed")
    header_bytes = envelope[:newline]
    try:
        header = json.loads(header_bytes)
    except (ValueError, UnicodeDecodeError):
        raise MalformedError("not a sealed envelope: header line is not JSON") from None
    if not isinstance(header, dict):
        raise MalformedError("not a sealed envelope: header is not a JSON object")
    version = header.get("v")
    if type(version) is not int or version != VERSION:  # `type is`: JSON true must not pass as 1
        raise MalformedError(
            f"unsupported envelope version {str(version)[:20]!r} (expected {VERSION})"
        )
    if header.get("alg") != ALG:
        raise MalformedError(f"unsupported envelope algorithm {str(header.get('alg'))[:60]!r}")
    recipient = header.get("recipient")
    if not isinstance(recipient, str) or recipient not in _RECIPIENT_SET:
        raise MalformedError("envelope header names no known recipient")
    leaf, leaves = header.get("leaf"), header.get("leaves")
    if type(leaf) is not int or type(leaves) is not int or not 0 <= leaf < leaves:
        raise MalformedError("envelope header fields 'leaf' and 'leaves' are not a position")
    proof_bytes = envelope[proof_start : -_SIG_LEN - 1]
    return _Parsed(
        header=header,
        header_bytes=header_bytes,
        ciphertext=envelope[newline + 1 : proof_start],
        proof=[proof_bytes[i : i + _HASH_LEN] for i in range(0, len(proof_bytes), _HASH_LEN)],
        leaf=leaf,
        leaves=leaves,
        signature=envelope[-_SIG_LEN:],
        recipient=recipient,
        kid=_kid_field(header, "kid"),
        signer=_kid_field(header, "signer"),
        epk=_b64_field(header, "epk", _KEY_LEN),
        nonce=_b64_field(header, "nonce", _NONCE_LEN),
    )


def peek_header(envelope: bytes) -> dict[str, Any]:
    """The envelope's header (`recipient`, `kid`, `signer`, …) without verifying or decrypting.

    Unauthenticated: good for routing and diagnostics, never for trusting anything.
    """
    return dict(_parse(envelope).header)


def _as_tuple(keys: Ed25519PublicKey | Iterable[Ed25519PublicKey]) -> tuple[Ed25519PublicKey, ...]:
    return (keys,) if isinstance(keys, Ed25519PublicKey) else tuple(keys)


def open_envelope(
    envelope: bytes,
    *,
    recipient_id: str,
    recipient_private: X25519PrivateKey | Mapping[str, X25519PrivateKey],
    centre_public: Ed25519PublicKey | Iterable[Ed25519PublicKey],
) -> bytes:
    """Verify, check the addressee, decrypt. Returns the plaintext or raises a SealError.

    The signature is checked first so that nothing an attacker wrote (recipient, key id,
    ephemeral key) is acted upon before it is known to come from the centre.
    `recipient_private` may map key id -> key so that cases sealed before a rotation still open;
    `centre_public` may list several keys for the same reason on the centre's side.
    """
    check_recipient(recipient_id)
    parsed = _parse(envelope)

    signer = next((k for k in _as_tuple(centre_public) if key_id(k) == parsed.signer), None)
    if signer is None:
        raise ForgedError(f"envelope is signed by key {parsed.signer}, not a known centre key")
    root = _root_from_proof(
        _leaf_hash(parsed.header_bytes, parsed.ciphertext), parsed.leaf, parsed.leaves, parsed.proof
    )
    if root is None:
        raise ForgedError("envelope's proof does not fit its position: forged or altered")
    _verify_root(signer, parsed.signer, root, parsed.signature)

    if parsed.recipient != recipient_id:
        raise NotForYouError(f"envelope is sealed for {parsed.recipient!r}, not {recipient_id!r}")
    if isinstance(recipient_private, X25519PrivateKey):
        private: X25519PrivateKey | None = recipient_private
    else:
        private = recipient_private.get(parsed.kid)
    rpk = private.public_key().public_bytes_raw() if private is not None else b""
    # Compared even for a mapping: a mislabelled entry would otherwise surface as a vague
    # decryption failure instead of "you do not hold that key".
    if private is None or _kid(rpk) != parsed.kid:
        raise NotForYouError(
            f"envelope is sealed for key {parsed.kid} of {recipient_id!r}, which is not held here"
        )

    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(parsed.epk))
    except ValueError:  # low-order point: only a broken sealer could have signed it
        raise SealError("envelope carries an unusable ephemeral key") from None
    key = _derive_key(shared, parsed.epk, rpk, recipient_id, parsed.kid)
    try:
        return AESGCM(key).decrypt(parsed.nonce, parsed.ciphertext, parsed.header_bytes)
    except InvalidTag:
        # Signed by the centre and addressed to a key we hold, yet it does not decrypt: the
        # sealer is at fault, not an attacker, hence the base class.
        raise SealError(
            f"envelope is signed by the centre but does not decrypt with key {parsed.kid}"
        ) from None


_VERIFIED: dict[tuple[str, bytes, bytes], None] = {}  # roots already verified, oldest first


def _verify_root(signer: Ed25519PublicKey, signer_kid: str, root: bytes, signature: bytes) -> None:
    """Check the centre's signature over a batch root; a root seen verified is not rechecked
    (a liaison pulls many envelopes of the same batch)."""
    memo = (signer_kid, root, signature)
    if memo in _VERIFIED:
        return
    try:
        signer.verify(signature, _ROOT_PREFIX + root)
    except InvalidSignature:
        raise ForgedError("envelope signature does not verify: forged or altered") from None
    if len(_VERIFIED) >= 4096:
        del _VERIFIED[next(iter(_VERIFIED))]
    _VERIFIED[memo] = None


def sign(data: bytes, key: Ed25519PrivateKey) -> str:
    """Ed25519 signature of `data`, base64 (as in the `signature` header of report/v1)."""
    return base64.b64encode(key.sign(data)).decode("ascii")


def verify(
    data: bytes,
    signature_b64: str | bytes,
    public: Ed25519PublicKey | Iterable[Ed25519PublicKey],
) -> bool:
    """True when `signature_b64` is a valid signature of `data` by `public` (or any of them).

    Returns False rather than raising on a malformed signature: to a caller, a signature that is
    not base64 is as bad as one that does not verify.
    """
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return False
    if len(signature) != _SIG_LEN:
        return False
    for candidate in _as_tuple(public):
        try:
            candidate.verify(signature, data)
            return True
        except InvalidSignature:
            continue
    return False
