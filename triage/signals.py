"""Hash kinds as plug-ins. A kind knows its name, how to validate and normalise a signal
string, how far apart two signals are, and the index that serves it (None: equal values
only, looked up in the database by value); adding a kind (video PDQ, PhotoDNA when
licensed) is one new class here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Protocol


class SignalType(Protocol):
    name: str
    max_distance: int  # 0: only equal signals match

    def normalise(self, value: str) -> str:
        """The canonical form; raises ValueError with a clear message when invalid."""
        ...

    def distance(self, a: str, b: str) -> int: ...

    def new_index(self) -> Any | None:
        """An empty in-memory index with add / remove / query(values) -> [(id, distance)],
        or None when exact lookup by value serves the kind."""
        ...


class _HexDigest:
    name = ""
    length = 0
    max_distance = 0

    def normalise(self, value: str) -> str:
        v = value.strip().lower()
        if len(v) != self.length or not re.fullmatch(r"[0-9a-f]+", v):
            raise ValueError(f"{self.name} must be {self.length} hexadecimal characters")
        return v

    def distance(self, a: str, b: str) -> int:
        return 0 if a == b else 1 << 16

    def new_index(self) -> Any | None:
        return None


class SHA256(_HexDigest):
    name, length = "sha256", 64


class MD5(_HexDigest):
    name, length = "md5", 32


class PDQ(_HexDigest):
    """256-bit PDQ perceptual hash: near when the Hamming distance is at most 31."""

    name, length, max_distance = "pdq", 64, 31
    min_quality = 50

    def distance(self, a: str, b: str) -> int:
        return (int(a, 16) ^ int(b, 16)).bit_count()

    def new_index(self) -> Any:
        from triage.pdq_index import PDQIndex  # numpy only where PDQ is searched

        return PDQIndex(self.max_distance)


SIGNAL_TYPES: dict[str, SignalType] = {t.name: t for t in (SHA256(), MD5(), PDQ())}


def content_signals(item: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The (kind, value) signals of one content item, in a stable order.

    A PDQ hash below quality 50 says little about the image, so it is not used for matching.
    """
    for kind in SIGNAL_TYPES:
        value = item.get(kind)
        if not isinstance(value, str) or not value:
            continue
        if kind == "pdq":
            q = item.get("pdq_quality")
            if isinstance(q, int) and q < PDQ.min_quality:
                continue
        yield kind, value.lower()
