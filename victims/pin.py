"""The PIN of a victim's request: made on the case handler's machine, shown once, kept by the
centre only as a slow hash (scrypt), compared in constant time.

    pin = new_pin()                      # "7KQ2-M9XD-4HTR" (60 bits, Crockford base32)
    stored = hash_pin(pin)               # "scrypt$15$8$1$<salt>$<hash>"
    check_pin(pin, stored)               # True
    check_pin(pin, None)                 # False, after the same work as a real check

An unknown request id and a wrong PIN cost the same time and give the same answer: the
caller compares against `DUMMY` when there is no request, so nobody can tell whether an id
exists by timing the answer.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

# Crockford's base32: no I, L, O, U (they read as 1, 1, 0, V), so a PIN read out over the
# phone survives.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
GROUPS, GROUP_LEN = 3, 4  # 12 characters, 60 bits
_N_LOG2, _R, _P = 15, 8, 1  # ~32 MiB and ~0.1 s per check on a current core
_SALT = 16
_LEN = 32
_FORMAT = re.compile(
    r"scrypt\$(\d{1,2})\$(\d{1,2})\$(\d{1,2})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)"
)
_FOLD = str.maketrans({"O": "0", "I": "1", "L": "1", "U": "V"})


class PinFormatError(ValueError):
    """A stored PIN hash that is not in the expected format."""


def new_pin() -> str:
    chars = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LEN))
    return "-".join(chars[i : i + GROUP_LEN] for i in range(0, len(chars), GROUP_LEN))


def normalise(pin: str) -> str:
    """Upper case, without spaces or dashes, with look-alike letters read as digits."""
    return re.sub(r"[\s\-]", "", (pin or "")).upper().translate(_FOLD)


def _kdf(salt: bytes, n_log2: int, r: int, p: int) -> Scrypt:
    return Scrypt(salt=salt, length=_LEN, n=1 << n_log2, r=r, p=p)


def hash_pin(pin: str, *, n_log2: int = _N_LOG2) -> str:
    """The stored form: scrypt with a random salt, parameters included."""
    salt = secrets.token_bytes(_SALT)
    digest = _kdf(salt, n_log2, _R, _P).derive(normalise(pin).encode())
    return "$".join(
        [
            "scrypt",
            str(n_log2),
            str(_R),
            str(_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def well_formed(stored: str) -> bool:
    m = _FORMAT.fullmatch(stored or "")
    if not m:
        return False
    n_log2, r, p = int(m[1]), int(m[2]), int(m[3])
    return 14 <= n_log2 <= 17 and r == 8 and p == 1 and len(stored) <= 200


def check_pin(pin: str, stored: str | None) -> bool:
    """Whether `pin` is the one `stored` was made from. With `stored` None (no such request)
    the same work is done against DUMMY and False returned."""
    target = stored if stored and well_formed(stored) else DUMMY
    m = _FORMAT.fullmatch(target)
    assert m is not None
    salt, want = base64.b64decode(m[4]), base64.b64decode(m[5])
    got = _kdf(salt, int(m[1]), int(m[2]), int(m[3])).derive(normalise(pin).encode()[:200])
    same = hmac.compare_digest(got, want)
    return same and target is stored


# Compared against when there is no request: the same parameters as a real one.
DUMMY = "$".join(
    [
        "scrypt",
        str(_N_LOG2),
        str(_R),
        str(_P),
        base64.b64encode(b"\0" * _SALT).decode(),
        base64.b64encode(b"\0" * _LEN).decode(),
    ]
)
