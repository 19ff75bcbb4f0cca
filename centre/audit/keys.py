"""The audit trail's keys: the key-encryption keys (KEKs) under `<keys>/audit/`
(`AuditKeyring`: made, sealed with the passphrase, rotated, and used to wrap and unwrap the
data key of each batch and each person's own key), the associated data that binds a wrapped
key to what it seals, and opening a sealed blob. Where the wrapped keys are stored, and
crypto-shredding (deleting a person's key), is the database side: `store` and `log`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from centre.audit.format import AuditKeyError
from centre.keys import PASSPHRASE_ENV, _ensure_dir, _write_file

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
                raise AuditKeyError(
                    f"no audit key-encryption key under {self.directory}: the "
                    "audit writer makes one on first use"
                ) from None
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
        if not _write_file(self.directory / "current", f"{kid}\n".encode(), 0o644, replace=False):
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
            record.update(
                protection="scrypt-A256GCM",
                n=_SCRYPT_N,
                r=_SCRYPT_R,
                p=_SCRYPT_P,
                salt=_b64(salt),
                nonce=_b64(nonce),
                key=_b64(sealed),
            )
        else:
            record.update(protection="none", key=_b64(key))
        _write_file(
            self.directory / f"{kid}.kek", orjson.dumps(record) + b"\n", 0o600, replace=False
        )
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
                wrap = Scrypt(
                    salt=base64.b64decode(record["salt"]),
                    length=32,
                    n=record["n"],
                    r=record["r"],
                    p=record["p"],
                )
                key = AESGCM(wrap.derive(self._passphrase)).decrypt(
                    base64.b64decode(record["nonce"]), base64.b64decode(record["key"]), kid.encode()
                )
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


def _open(aead: AESGCM | None, blob: bytes, aad: bytes) -> Any:
    if aead is None:
        return {"error": "data key missing"}
    try:
        return orjson.loads(aead.decrypt(blob[:12], blob[12:], aad))
    except (InvalidTag, orjson.JSONDecodeError):
        return {"error": "does not decrypt: altered"}
