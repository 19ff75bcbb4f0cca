"""The key set on disk: the centre's signing key, recipients' X25519 keys, providers' keys.

Layout under the directory the caller passes (`CENTRE_HOME/keys`):

    centre/signing.pem              centre's Ed25519 private key, PKCS8 PEM, 0600
    centre/signing.pub.pem          its public key (what liaisons verify cases with)
    centre/previous/<kid>.pub.pem   public keys replaced by `init(force=True)`, so older cases
                                    still verify
    recipients/<id>/<kid>.pub.pem   every X25519 public key registered for <id>
    recipients/<id>/<kid>.pem       private key, only for keys made here (local work, demo), 0600
    recipients/<id>/current         key id new cases are sealed to
    providers/<provider>.pub.pem    provider's Ed25519 public key for report/v1 signatures

Private keys are written 0600 and directories 0700 at creation (never chmod'ed afterwards, so
there is no moment where they are readable by others), and encrypted with
`CENTRE_KEY_PASSPHRASE` when it is set. Files appear atomically (written aside, then linked or
renamed into place), so concurrent workers starting together never see half a key.
Loaded keys are cached; call `reload()` to see changes another process made.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from centre.crypto import RECIPIENTS, check_recipient, key_id

PASSPHRASE_ENV = "CENTRE_KEY_PASSPHRASE"
_PROVIDER_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_PRIVATE_NAME_RE = re.compile(r"([0-9a-f]{16})\.pem")
_KID_RE = re.compile(r"[0-9a-f]{16}")
_K = TypeVar("_K")


class KeySetError(Exception):
    """A key file is unusable (encrypted without passphrase, wrong passphrase, wrong kind)."""


class UnknownKeyError(KeyError):
    """No key is registered under that name."""

    def __str__(self) -> str:  # KeyError's str() is the repr of its argument: keep it readable
        return str(self.args[0]) if self.args else ""


def check_provider(provider_id: object) -> str:
    """Return `provider_id` if it is a safe provider id (it becomes a file name), else raise."""
    if not isinstance(provider_id, str) or not _PROVIDER_RE.fullmatch(provider_id):
        raise ValueError(
            f"invalid provider id {str(provider_id)[:40]!r}: expected [a-z0-9][a-z0-9._-]{{0,99}}"
        )
    return provider_id


def _ensure_dir(path: Path) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not path.is_dir():
            raise KeySetError(f"{path} exists and is not a directory") from None


def _write_file(path: Path, data: bytes, mode: int, *, replace: bool) -> bool:
    """Write `data` to `path` atomically with `mode` from the start.

    With replace=False an existing file wins and False is returned: two processes running
    `init` at once then agree on one key instead of overwriting each other's.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic create-if-absent, unlike rename
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _public_pem(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _parse_public(data: bytes, from_raw: Callable[[bytes], PublicKeyTypes]) -> object:
    """A public key from PEM, DER or raw bytes; None when it is none of them."""
    data = bytes(data)
    try:
        if len(data) == 32:
            return from_raw(data)
        if data.lstrip().startswith(b"-----BEGIN"):
            return serialization.load_pem_public_key(data.strip())
        return serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        return None  # the caller names the kind it wanted; the bytes stay out of the message


def _x25519_public(data: bytes) -> X25519PublicKey:
    key = _parse_public(data, X25519PublicKey.from_public_bytes)
    if not isinstance(key, X25519PublicKey):
        raise ValueError("not an X25519 public key (PEM, DER or 32 raw bytes)")
    return key


def _ed25519_public(data: bytes) -> Ed25519PublicKey:
    key = _parse_public(data, Ed25519PublicKey.from_public_bytes)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key (PEM, DER or 32 raw bytes)")
    return key


class KeySet:
    """Keys under one directory. See the module docstring for the layout."""

    def __init__(self, directory: Path, *, passphrase: str | bytes | None = None) -> None:
        self.directory = Path(directory)
        if passphrase is None:
            passphrase = os.environ.get(PASSPHRASE_ENV) or None
        self._passphrase = passphrase.encode() if isinstance(passphrase, str) else passphrase
        self._signer: Ed25519PrivateKey | None = None
        self._centre_public: Ed25519PublicKey | None = None
        self._current: dict[str, X25519PublicKey] = {}
        self._privates: dict[str, dict[str, X25519PrivateKey]] = {}
        self._providers: dict[str, Ed25519PublicKey] = {}

    def __repr__(self) -> str:
        return f"KeySet({str(self.directory)!r})"

    @classmethod
    def init(cls, directory: Path, *, force: bool = False) -> KeySet:
        """Create whatever keys are missing; existing ones are kept.

        With force, every key is replaced: a new centre signing key (the old public key moves to
        centre/previous/) and a new current key per recipient (old ones stay as previous, so
        cases already sealed still open).
        """
        keys = cls(directory)
        Path(directory).parent.mkdir(parents=True, exist_ok=True)
        for sub in ("", "centre", "centre/previous", "recipients", "providers"):
            _ensure_dir(keys.directory / sub)
        keys._init_centre(force)
        for recipient_id in RECIPIENTS:
            if force or not keys.has_recipient(recipient_id):
                keys._generate_recipient(recipient_id, replace=force)
        keys.reload()
        return keys

    def reload(self) -> None:
        """Forget cached keys, e.g. after another process rotated one."""
        self._signer = self._centre_public = None
        self._current.clear()
        self._privates.clear()
        self._providers.clear()

    # -- centre --------------------------------------------------------------------------

    def centre_signer(self) -> Ed25519PrivateKey:
        if self._signer is None:
            path = self.directory / "centre" / "signing.pem"
            if not path.exists():
                raise UnknownKeyError(f"no centre signing key at {path}: run `centre keys init`")
            signer = self._load_private(path)
            if not isinstance(signer, Ed25519PrivateKey):
                raise KeySetError(f"{path} is not an Ed25519 private key")
            self._signer = signer
        return self._signer

    def centre_public(self) -> Ed25519PublicKey:
        if self._centre_public is None:
            path = self.directory / "centre" / "signing.pub.pem"
            if path.exists():  # a liaison's machine has only this file, no private key
                self._centre_public = self._load_public(path, _ed25519_public)
            else:
                self._centre_public = self.centre_signer().public_key()
        return self._centre_public

    def centre_public_keys(self) -> list[Ed25519PublicKey]:
        """The current centre key first, then previous ones (to verify cases from before a
        rotation)."""
        previous = sorted((self.directory / "centre" / "previous").glob("*.pub.pem"))
        return [self.centre_public()] + [self._load_public(p, _ed25519_public) for p in previous]

    def _init_centre(self, force: bool) -> None:
        centre = self.directory / "centre"
        path, pub_path = centre / "signing.pem", centre / "signing.pub.pem"
        if path.exists() and not force:
            if not pub_path.exists():  # an earlier init stopped between the two files
                pub = _public_pem(self.centre_signer().public_key())
                _write_file(pub_path, pub, 0o644, replace=False)
            return
        if force and (path.exists() or pub_path.exists()):
            old = self.centre_public()
            previous = centre / "previous" / f"{key_id(old)}.pub.pem"
            _write_file(previous, _public_pem(old), 0o644, replace=False)
        signer = Ed25519PrivateKey.generate()
        if _write_file(path, self._private_pem(signer), 0o600, replace=force):
            _write_file(pub_path, _public_pem(signer.public_key()), 0o644, replace=True)

    # -- recipients ----------------------------------------------------------------------

    def _recipient_dir(self, recipient_id: str) -> Path:
        return self.directory / "recipients" / check_recipient(recipient_id)

    def has_recipient(self, recipient_id: str) -> bool:
        directory = self._recipient_dir(recipient_id)  # validates before the cache is consulted
        return (directory / "current").exists()

    def current_key_id(self, recipient_id: str) -> str:
        path = self._recipient_dir(recipient_id) / "current"
        try:
            kid = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            raise UnknownKeyError(
                f"no key registered for recipient {recipient_id!r} under {self.directory}: "
                "run `centre keys init` or register the liaison's public key"
            ) from None
        if not _KID_RE.fullmatch(kid):
            raise KeySetError(f"{path} does not hold a key id")
        return kid

    def recipient_public(self, recipient_id: str) -> X25519PublicKey:
        """The key new cases for `recipient_id` are sealed to. The `current` file is read on
        every call (a few bytes), so a key registered by `centre keys add-recipient` is used
        from the next batch on, without a restart; keys are cached by key id."""
        kid = self.current_key_id(recipient_id)
        cached = self._current.get(f"{recipient_id}/{kid}")
        if cached is None:
            path = self._recipient_dir(recipient_id) / f"{kid}.pub.pem"
            cached = self._load_public(path, _x25519_public)
            if key_id(cached) != kid:
                raise KeySetError(f"{path} does not hold key {kid}")
            self._current[f"{recipient_id}/{kid}"] = cached
        return cached

    def recipient_private_keys(self, recipient_id: str) -> dict[str, X25519PrivateKey]:
        """Every private key held here for `recipient_id`, by key id (empty if none).

        Local work and demo only: in production a liaison holds just its own keys.
        """
        cached = self._privates.get(recipient_id)
        if cached is None:
            directory = self._recipient_dir(recipient_id)
            names = sorted(os.listdir(directory)) if directory.is_dir() else []
            cached = {}
            for name in filter(_PRIVATE_NAME_RE.fullmatch, names):
                key = self._load_private(directory / name)
                if not isinstance(key, X25519PrivateKey):
                    raise KeySetError(f"{directory / name} is not an X25519 private key")
                # Keyed by the id computed from the key, so a renamed file cannot mislabel it.
                cached[key_id(key)] = key
            self._privates[recipient_id] = cached
        return dict(cached)

    def add_recipient(self, recipient_id: str, public_pem_or_raw: bytes) -> str:
        """Register a liaison's X25519 public key as current; earlier keys remain as previous."""
        directory = self._recipient_dir(recipient_id)
        public = _x25519_public(public_pem_or_raw)
        kid = key_id(public)
        self._ensure_tree("recipients")
        _ensure_dir(directory)
        # Same name means same key (the name is its hash), so an existing file is fine.
        _write_file(directory / f"{kid}.pub.pem", _public_pem(public), 0o644, replace=False)
        _write_file(directory / "current", f"{kid}\n".encode(), 0o644, replace=True)
        return kid

    def _generate_recipient(self, recipient_id: str, *, replace: bool) -> None:
        directory = self._recipient_dir(recipient_id)
        _ensure_dir(directory)
        private = X25519PrivateKey.generate()
        kid = key_id(private)
        files = [directory / f"{kid}.pem", directory / f"{kid}.pub.pem"]
        _write_file(files[0], self._private_pem(private), 0o600, replace=False)
        _write_file(files[1], _public_pem(private.public_key()), 0o644, replace=False)
        # `current` is the commit point; if a concurrent init won, nothing was ever sealed to
        # our key, so it is removed rather than left as a stray "previous" key.
        if not _write_file(directory / "current", f"{kid}\n".encode(), 0o644, replace=replace):
            for path in files:
                path.unlink(missing_ok=True)

    # -- providers -----------------------------------------------------------------------

    def provider_public(self, provider_id: str) -> Ed25519PublicKey | None:
        cached = self._providers.get(provider_id)
        if cached is None:
            path = self.directory / "providers" / f"{check_provider(provider_id)}.pub.pem"
            if not path.exists():
                return None  # not cached: the provider may register later
            cached = self._load_public(path, _ed25519_public)
            self._providers[provider_id] = cached
        return cached

    def add_provider(self, provider_id: str, public_bytes: bytes) -> str:
        """Register (or replace) a provider's Ed25519 public key; returns its key id."""
        check_provider(provider_id)
        public = _ed25519_public(public_bytes)
        self._ensure_tree("providers")
        path = self.directory / "providers" / f"{provider_id}.pub.pem"
        _write_file(path, _public_pem(public), 0o644, replace=True)
        self._providers[provider_id] = public
        return key_id(public)

    # -- files ---------------------------------------------------------------------------

    def _ensure_tree(self, sub: str) -> None:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        _ensure_dir(self.directory)
        _ensure_dir(self.directory / sub)

    def _private_pem(self, key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(self._passphrase)
            if self._passphrase
            else serialization.NoEncryption()
        )
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def _load_private(self, path: Path) -> PrivateKeyTypes:
        data = path.read_bytes()
        encrypted = data.lstrip().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        if encrypted and not self._passphrase:
            raise KeySetError(f"{path} is encrypted: set {PASSPHRASE_ENV}")
        try:
            return serialization.load_pem_private_key(
                data, password=self._passphrase if encrypted else None
            )
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # `from None`: the underlying error must not drag key bytes into a traceback.
            raise KeySetError(
                f"cannot load private key {path}: wrong passphrase or not PKCS8 PEM"
            ) from None

    @staticmethod
    def _load_public(path: Path, parse: Callable[[bytes], _K]) -> _K:
        try:
            return parse(path.read_bytes())
        except ValueError as exc:
            raise KeySetError(f"{path}: {exc}") from None


def load_private_x25519(path: Path) -> dict[str, X25519PrivateKey]:
    """A liaison's own private key from a PEM file, by key id (for `liaison pull --key`)."""
    key = KeySet(path.parent)._load_private(path)
    if not isinstance(key, X25519PrivateKey):
        raise KeySetError(f"{path} is not an X25519 private key")
    return {key_id(key): key}
