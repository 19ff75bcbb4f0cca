"""Sealed envelopes and the on-disk key set (centre.crypto, centre.keys)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from centre.crypto import (
    RECIPIENTS,
    ForgedError,
    MalformedError,
    NotForYouError,
    SealError,
    key_id,
    open_envelope,
    peek_header,
    seal,
    sign,
    verify,
)
from centre.keys import KeySet, KeySetError, UnknownKeyError

PLAINTEXT = json.dumps({"schema": "case/v1", "case_id": "c-1", "priority": "P1"}).encode()


@pytest.fixture
def centre_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def liaison_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


@pytest.fixture(autouse=True)
def _no_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CENTRE_KEY_PASSPHRASE", raising=False)


def _seal(centre: Ed25519PrivateKey, liaison: X25519PrivateKey, to: str = "de") -> bytes:
    return seal(PLAINTEXT, recipient_id=to, recipient_public=liaison.public_key(), signer=centre)


def _open(
    env: bytes, centre: Ed25519PrivateKey, liaison: X25519PrivateKey, to: str = "de"
) -> bytes:
    return open_envelope(
        env, recipient_id=to, recipient_private=liaison, centre_public=centre.public_key()
    )


def test_recipients_are_the_27_member_states_and_europol() -> None:
    assert len(RECIPIENTS) == 28 == len(set(RECIPIENTS))
    assert RECIPIENTS[-1] == "europol" and "de" in RECIPIENTS and "gb" not in RECIPIENTS


def test_round_trip(centre_key: Ed25519PrivateKey, liaison_key: X25519PrivateKey) -> None:
    env = _seal(centre_key, liaison_key)
    assert _open(env, centre_key, liaison_key) == PLAINTEXT
    assert PLAINTEXT not in env
    big = os.urandom(1 << 20)
    env = seal(
        big, recipient_id="europol", recipient_public=liaison_key.public_key(), signer=centre_key
    )
    assert _open(env, centre_key, liaison_key, "europol") == big


def test_each_seal_is_fresh(centre_key: Ed25519PrivateKey, liaison_key: X25519PrivateKey) -> None:
    a, b = _seal(centre_key, liaison_key), _seal(centre_key, liaison_key)
    assert a != b and peek_header(a)["epk"] != peek_header(b)["epk"]


def test_header_is_versioned_and_self_describing(
    centre_key: Ed25519PrivateKey, liaison_key: X25519PrivateKey
) -> None:
    env = _seal(centre_key, liaison_key, "fr")
    header = peek_header(env)
    assert header["v"] == 2 and header["leaves"] == 1 and header["leaf"] == 0
    assert header["recipient"] == "fr"
    assert header["kid"] == key_id(liaison_key.public_key()) == key_id(liaison_key)
    assert header["signer"] == key_id(centre_key.public_key())
    assert json.loads(env.split(b"\n", 1)[0]) == header


def test_key_id_is_short_and_stable(liaison_key: X25519PrivateKey) -> None:
    kid = key_id(liaison_key.public_key())
    assert len(kid) == 16 and int(kid, 16) >= 0
    assert kid == key_id(X25519PrivateKey.from_private_bytes(liaison_key.private_bytes_raw()))


def test_other_recipient_cannot_open(
    centre_key: Ed25519PrivateKey, liaison_key: X25519PrivateKey
) -> None:
    env = _seal(centre_key, liaison_key, "de")
    other = X25519PrivateKey.generate()
    with pytest.raises(NotForYouError, match="'de', not 'fr'"):
        _open(env, centre_key, other, "fr")
    with pytest.raises(NotForYouError, match="not held"):
        _open(env, centre_key, other, "de")
    with pytest.raises(NotForYouError):
        open_envelope(
            env,
            recipient_id="de",
            recipient_private={key_id(other): other},
            centre_public=centre_key.public_key(),
        )
    # A key filed under the right id but not matching it is still "not yours", not a crash.
    with pytest.raises(NotForYouError):
        open_envelope(
            env,
            recipient_id="de",
            recipient_private={key_id(liaison_key): other},
            centre_public=centre_key.public_key(),
        )


def test_every_flipped_byte_is_caught(
    centre_key: Ed25519PrivateKey, liaison_key: X25519PrivateKey
) -> None:
    env = _seal(centre_key, liaison_key)
    for i in range(len(env)):
        for mask in (0x01, 0x80):
            tampered = bytearray(env)
            tampered[i] ^= mask
            with pytest.raises((ForgedError, MalformedError)):
                _open(bytes(tampered), centre_key, liaison_key)


def test_truncated_or_extended_is_caught(
    centre_key: Ed25519PrivateKey, liaison_key: X25519PrivateKey
) -> None:
    env = _seal(centre_key, liaison_key)
    for cut in (1, 16, 63, 64, 65, 100, len(env) - 1):
        with pytest.raises((ForgedError, MalformedError)):
            _open(env[:-cut], centre_key, liaison_key)
    with pytest.raises((ForgedError, MalformedError)):
        _open(env + b"\x00", centre_key, liaison_key)


def test_relabelled_header_is_forged(
    centre_key: Ed25519PrivateKey, liaison_key: X25519PrivateKey
) -> None:
    env = _seal(centre_key, liaison_key, "de")
    relabelled = env.replace(b'"recipient":"de"', b'"recipient":"fr"', 1)
    with pytest.raises(ForgedError):
        _open(relabelled, centre_key, liaison_key, "fr")


def test_signed_by_another_key_is_forged(
    centre_key: Ed25519PrivateKey, liaison_key: X25519PrivateKey
) -> None:
    impostor = Ed25519PrivateKey.generate()
    env = _seal(impostor, liaison_key)
    with pytest.raises(ForgedError, match="not a known centre key"):
        _open(env, centre_key, liaison_key)
    # Even when it claims the centre's key id, the signature itself fails.
    claimed = env[:-64].replace(key_id(impostor).encode(), key_id(centre_key).encode())
    with pytest.raises(ForgedError, match="does not verify"):
        _open(claimed + impostor.sign(claimed), centre_key, liaison_key)


def test_several_centre_keys_are_accepted(
    centre_key: Ed25519PrivateKey, liaison_key: X25519PrivateKey
) -> None:
    old = Ed25519PrivateKey.generate()
    env = _seal(old, liaison_key)
    assert (
        open_envelope(
            env,
            recipient_id="de",
            recipient_private=liaison_key,
            centre_public=[centre_key.public_key(), old.public_key()],
        )
        == PLAINTEXT
    )


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"hello",
        b"\n" + b"x" * 200,
        os.urandom(500),
        b"{" * 5000,
        b'{"v":1}\n' + b"x" * 100,
        b'{"v":2,"alg":"X25519-HKDF-SHA256-A256GCM+Ed25519"}\n' + b"x" * 100,
        b'{"v":true}\n' + b"x" * 100,
        b"[1,2]\n" + b"x" * 100,
        b'{"v":1,"alg":"X25519-HKDF-SHA256-A256GCM+Ed25519","recipient":"../x"}\n' + b"x" * 100,
        "not bytes",
    ],
)
def test_garbage_is_malformed(
    garbage: bytes, centre_key: Ed25519PrivateKey, liaison_key: X25519PrivateKey
) -> None:
    with pytest.raises(MalformedError):
        _open(garbage, centre_key, liaison_key)
    with pytest.raises(MalformedError):
        peek_header(garbage)


def test_bad_header_fields_are_malformed(
    centre_key: Ed25519PrivateKey, liaison_key: X25519PrivateKey
) -> None:
    env = _seal(centre_key, liaison_key)
    header, rest = env.split(b"\n", 1)
    fields = json.loads(header)
    for name, value in [
        ("kid", "XYZ"),
        ("signer", 5),
        ("epk", "!!"),
        ("nonce", base64.b64encode(b"short").decode()),
        ("alg", "rot13"),
    ]:
        bad = json.dumps({**fields, name: value}).encode() + b"\n" + rest
        with pytest.raises(MalformedError, match=name if name != "alg" else "algorithm"):
            _open(bad, centre_key, liaison_key)


def test_errors_are_seal_errors_and_carry_no_key_material(
    centre_key: Ed25519PrivateKey, liaison_key: X25519PrivateKey
) -> None:
    env = _seal(centre_key, liaison_key)
    with pytest.raises(SealError) as info:
        _open(env, centre_key, X25519PrivateKey.generate())
    message = str(info.value)
    for secret in (liaison_key.private_bytes_raw(), centre_key.private_bytes_raw()):
        assert secret.hex() not in message and base64.b64encode(secret).decode() not in message


def test_seal_rejects_unknown_recipient(
    centre_key: Ed25519PrivateKey, liaison_key: X25519PrivateKey
) -> None:
    for bad in ("../x", "DE", "gb", ""):
        with pytest.raises(ValueError, match="unknown recipient"):
            _seal(centre_key, liaison_key, bad)


def test_sign_and_verify(centre_key: Ed25519PrivateKey) -> None:
    data = b'{"schema":"report/v1"}'
    signature = sign(data, centre_key)
    assert verify(data, signature, centre_key.public_key())
    assert verify(
        data,
        signature.encode(),
        [Ed25519PrivateKey.generate().public_key(), centre_key.public_key()],
    )
    assert not verify(data + b" ", signature, centre_key.public_key())
    assert not verify(data, signature, Ed25519PrivateKey.generate().public_key())
    assert not verify(data, "not base64!", centre_key.public_key())
    assert not verify(data, base64.b64encode(b"short").decode(), centre_key.public_key())


# -- KeySet ------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_layout_and_is_idempotent(tmp_path: Path) -> None:
    directory = tmp_path / "home" / "keys"
    keys = KeySet.init(directory)
    assert (directory / "centre" / "signing.pem").is_file()
    assert (directory / "centre" / "signing.pub.pem").is_file()
    first = {r: keys.current_key_id(r) for r in RECIPIENTS}
    signer_id = key_id(keys.centre_signer())

    again = KeySet.init(directory)
    assert {r: again.current_key_id(r) for r in RECIPIENTS} == first
    assert key_id(again.centre_signer()) == signer_id == key_id(again.centre_public())
    for r in RECIPIENTS:
        assert again.has_recipient(r)
        assert key_id(again.recipient_public(r)) == first[r]
        assert set(again.recipient_private_keys(r)) == {first[r]}


def test_private_files_0600_and_directories_0700(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    KeySet.init(directory)
    privates = [p for p in directory.rglob("*.pem") if not p.name.endswith(".pub.pem")]
    assert len(privates) == 1 + len(RECIPIENTS)
    assert all(_mode(p) == 0o600 for p in privates)
    dirs = [directory, *(p for p in directory.rglob("*") if p.is_dir())]
    assert all(_mode(d) == 0o700 for d in dirs)
    assert not list(directory.rglob("*.tmp"))


def test_keyset_seal_and_open(tmp_path: Path) -> None:
    keys = KeySet.init(tmp_path / "keys")
    env = seal(
        PLAINTEXT,
        recipient_id="europol",
        recipient_public=keys.recipient_public("europol"),
        signer=keys.centre_signer(),
    )
    liaison = KeySet(tmp_path / "keys")  # a fresh process: nothing cached
    assert (
        open_envelope(
            env,
            recipient_id="europol",
            recipient_private=liaison.recipient_private_keys("europol"),
            centre_public=liaison.centre_public_keys(),
        )
        == PLAINTEXT
    )


def test_rotation_keeps_old_cases_open(tmp_path: Path) -> None:
    keys = KeySet.init(tmp_path / "keys")
    signer = keys.centre_signer()
    old_kid = keys.current_key_id("de")
    old_case = seal(
        PLAINTEXT, recipient_id="de", recipient_public=keys.recipient_public("de"), signer=signer
    )

    # The liaison makes a new key pair and hands the centre only the public half.
    new_private = X25519PrivateKey.generate()
    new_kid = keys.add_recipient("de", new_private.public_key().public_bytes_raw())
    assert new_kid == key_id(new_private) != old_kid
    assert keys.current_key_id("de") == new_kid
    new_case = seal(
        PLAINTEXT, recipient_id="de", recipient_public=keys.recipient_public("de"), signer=signer
    )
    assert peek_header(new_case)["kid"] == new_kid

    held = {**keys.recipient_private_keys("de"), new_kid: new_private}
    assert set(held) == {old_kid, new_kid}
    for case in (old_case, new_case):
        assert (
            open_envelope(
                case, recipient_id="de", recipient_private=held, centre_public=keys.centre_public()
            )
            == PLAINTEXT
        )
    # After rotation, init keeps the liaison's key rather than making a new local one.
    assert KeySet.init(tmp_path / "keys").current_key_id("de") == new_kid


def test_add_recipient_accepts_pem(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    keys = KeySet(tmp_path / "keys")
    assert not keys.has_recipient("mt")
    with pytest.raises(UnknownKeyError, match="no key registered for recipient 'mt'"):
        keys.recipient_public("mt")
    public = X25519PrivateKey.generate().public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert keys.add_recipient("mt", pem) == key_id(public)
    assert keys.has_recipient("mt") and keys.recipient_private_keys("mt") == {}
    with pytest.raises(ValueError, match="X25519"):
        keys.add_recipient("mt", Ed25519PrivateKey.generate().public_key().public_bytes_raw()[:31])


def test_force_replaces_keys_but_keeps_old_ones_usable(tmp_path: Path) -> None:
    keys = KeySet.init(tmp_path / "keys")
    old_signer, old_kid = keys.centre_signer(), keys.current_key_id("it")
    old_case = seal(
        PLAINTEXT,
        recipient_id="it",
        recipient_public=keys.recipient_public("it"),
        signer=old_signer,
    )
    fresh = KeySet.init(tmp_path / "keys", force=True)
    assert key_id(fresh.centre_signer()) != key_id(old_signer)
    assert fresh.current_key_id("it") != old_kid
    assert (
        open_envelope(
            old_case,
            recipient_id="it",
            recipient_private=fresh.recipient_private_keys("it"),
            centre_public=fresh.centre_public_keys(),
        )
        == PLAINTEXT
    )


@pytest.mark.parametrize("bad", ["../x", "..", "de/../fr", "DE", "", "europol/x"])
def test_recipient_id_traversal_rejected(tmp_path: Path, bad: str) -> None:
    keys = KeySet.init(tmp_path / "keys")
    public = X25519PrivateKey.generate().public_key().public_bytes_raw()
    for call in (
        lambda: keys.add_recipient(bad, public),
        lambda: keys.recipient_public(bad),
        lambda: keys.recipient_private_keys(bad),
        lambda: keys.has_recipient(bad),
    ):
        with pytest.raises(ValueError, match="unknown recipient"):
            call()
    assert not (tmp_path / "x").exists()


def test_providers(tmp_path: Path) -> None:
    keys = KeySet(tmp_path / "keys")
    assert keys.provider_public("acme-social") is None
    provider = Ed25519PrivateKey.generate()
    kid = keys.add_provider("acme-social", provider.public_key().public_bytes_raw())
    assert kid == key_id(provider)
    assert (tmp_path / "keys" / "providers" / "acme-social.pub.pem").is_file()
    public = KeySet(tmp_path / "keys").provider_public("acme-social")
    assert public is not None and verify(b"r", sign(b"r", provider), public)
    for bad in ("../evil", ".hidden", "a/b", "Acme", "x" * 101, ""):
        with pytest.raises(ValueError, match="invalid provider id"):
            keys.add_provider(bad, provider.public_key().public_bytes_raw())
        with pytest.raises(ValueError):
            keys.provider_public(bad)


def test_passphrase_encrypts_private_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CENTRE_KEY_PASSPHRASE", "correct horse")
    keys = KeySet.init(tmp_path / "keys")
    signing = (tmp_path / "keys" / "centre" / "signing.pem").read_bytes()
    assert signing.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    signer_id = key_id(keys.centre_signer())
    assert key_id(KeySet(tmp_path / "keys").centre_signer()) == signer_id

    monkeypatch.delenv("CENTRE_KEY_PASSPHRASE")
    with pytest.raises(KeySetError, match="CENTRE_KEY_PASSPHRASE"):
        KeySet(tmp_path / "keys").centre_signer()
    with pytest.raises(KeySetError, match="wrong passphrase") as info:
        KeySet(tmp_path / "keys", passphrase="wrong").recipient_private_keys("de")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    # Public keys stay readable without the passphrase (a liaison verifying cases).
    assert key_id(KeySet(tmp_path / "keys").centre_public()) == signer_id


def test_batch_sealer_envelopes_open_and_never_share_a_nonce() -> None:
    from centre.crypto import Sealer, peek_header

    signer = Ed25519PrivateKey.generate()
    de, fr = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    sealer = Sealer(signer)
    envs = [
        sealer.seal(b"case %d" % i, recipient_id=r, recipient_public=k.public_key())
        for i in range(50)
        for r, k in (("de", de), ("fr", fr))
    ]
    headers = [peek_header(e) for e in envs]
    assert len({h["nonce"] for h in headers}) == len(envs)
    assert len({h["epk"] for h in headers if h["recipient"] == "de"}) == 1  # one key per batch
    for i, e in enumerate(envs):
        rcpt, key = (("de", de), ("fr", fr))[i % 2]
        assert open_envelope(
            e, recipient_id=rcpt, recipient_private=key, centre_public=signer.public_key()
        ) == b"case %d" % (i // 2)
    with pytest.raises(NotForYouError):
        open_envelope(
            envs[0], recipient_id="fr", recipient_private=fr, centre_public=signer.public_key()
        )
    other = Sealer(signer).seal(b"x", recipient_id="de", recipient_public=de.public_key())
    assert peek_header(other)["epk"] != headers[0]["epk"]  # a new batch, a new key


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 100])
def test_batch_signed_envelopes_each_verify_alone(size: int) -> None:
    from centre.crypto import Sealer, peek_header

    signer = Ed25519PrivateKey.generate()
    de = X25519PrivateKey.generate()
    envs = Sealer(signer).seal_batch([(b"case %d" % i, "de", de.public_key()) for i in range(size)])
    sigs = {e[-64:] for e in envs}
    assert len(sigs) == 1  # one signature for the batch
    for i, e in enumerate(envs):
        h = peek_header(e)
        assert (h["leaf"], h["leaves"]) == (i, size)
        assert (
            open_envelope(
                e, recipient_id="de", recipient_private=de, centre_public=signer.public_key()
            )
            == b"case %d" % i
        )


def test_batch_envelope_tampering_is_forgery() -> None:
    from centre.crypto import Sealer

    signer = Ed25519PrivateKey.generate()
    de = X25519PrivateKey.generate()
    envs = Sealer(signer).seal_batch([(b"case %d" % i, "de", de.public_key()) for i in range(6)])
    env = envs[2]
    header, rest = env.split(b"\n", 1)
    depth = env[-65]
    assert depth == 3
    proof_at = len(env) - 65 - 32 * depth
    candidates = {
        "proof byte": env[:proof_at] + bytes([env[proof_at] ^ 1]) + env[proof_at + 1 :],
        "ciphertext byte": header + b"\n" + bytes([rest[0] ^ 1]) + rest[1:],
        "another envelope's proof": env[:proof_at] + envs[3][len(envs[3]) - 65 - 96 :],
        "shorter proof": env[:proof_at] + env[proof_at + 32 : -65] + bytes([depth - 1]) + env[-64:],
        "moved to another leaf": header.replace(b'"leaf":2', b'"leaf":3') + b"\n" + rest,
        "batch said larger": header.replace(b'"leaves":6', b'"leaves":7') + b"\n" + rest,
    }
    for what, bad in candidates.items():
        assert bad != env, what
        with pytest.raises(ForgedError):
            open_envelope(
                bad, recipient_id="de", recipient_private=de, centre_public=signer.public_key()
            )


def test_batch_position_must_be_sane() -> None:
    from centre.crypto import Sealer

    signer = Ed25519PrivateKey.generate()
    de = X25519PrivateKey.generate()
    env = Sealer(signer).seal(b"x", recipient_id="de", recipient_public=de.public_key())
    header, rest = env.split(b"\n", 1)
    for a, b in [
        (b'"leaf":0', b'"leaf":1'),
        (b'"leaf":0', b'"leaf":-1'),
        (b'"leaves":1', b'"leaves":true'),
    ]:
        with pytest.raises(MalformedError, match="position"):
            open_envelope(
                header.replace(a, b) + b"\n" + rest,
                recipient_id="de",
                recipient_private=de,
                centre_public=signer.public_key(),
            )
