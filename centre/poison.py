"""No poison message: one that keeps making a stage fail is set aside, and the stage goes on.

A worker that dies with a batch in flight (an error it cannot get past, or an abort inside a
C library that no `except` sees) leaves behind a note of the batch's positions. Its next life
reads the note: those messages are suspects. A suspect is processed in a small group the first
time again, alone the time after, so the one that kills the worker is found; a message that
was in flight at `attempts` crashes, the last of them alone, is quarantined: handed to the
stage's `quarantine` (kept whole in the dead-letter store, its company told, audited, counted
by `centre_quarantined_total`) and committed past. A poison message costs a few restarts of
one worker, never the pipeline.

Failures of the world rather than of a message (the database or the broker unreachable) do
not count against the messages in flight: the runtime forgets the note (`excuse`) before it
stops on one, and the restarted worker takes the batch as usual.

The note is a small JSON file per worker (`CENTRE_HOME/run/<stage>-<n>.inflight`), written
before each batch and after it; it never holds more than message positions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from sqlalchemy import exc as sa_exc

Position = tuple[str, int, int]  # topic, partition, offset


class _Positioned(Protocol):
    """Where a record was read (read-only: records are frozen)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


def transient(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is the world failing, not the message: the database
    or the broker unreachable, a time-out waiting for either."""
    from confluent_kafka import KafkaException

    from centre.kafka import DeliveryError

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(
            e,
            (
                sa_exc.OperationalError,
                sa_exc.InterfaceError,
                sa_exc.DisconnectionError,
                sa_exc.TimeoutError,
                DeliveryError,
                KafkaException,
                ConnectionError,
                TimeoutError,
                BufferError,
            ),
        ):
            return True
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        e = e.__cause__ or e.__context__
    return False


def _ranges(positions: Iterable[Position]) -> list[list[object]]:
    """Positions as [topic, partition, first, last] runs of consecutive offsets."""
    out: list[list[object]] = []
    for topic, part, off in sorted(positions):
        last = out[-1] if out else None
        if last and last[0] == topic and last[1] == part and last[3] == off - 1:
            last[3] = off
        else:
            out.append([topic, part, off, off])
    return out


class PoisonGuard:
    """The messages in flight and the suspects of one worker, kept in `path` (None: in memory
    only, as for a stage run inside a test)."""

    def __init__(self, path: Path | None, attempts: int = 3, group: int = 32) -> None:
        self.path = path
        self.max_attempts = max(2, attempts)
        self.group = group
        self.suspects: dict[Position, int] = {}  # position -> crashes it was in flight at
        self.inflight: dict[int, set[Position]] = {}
        self._tokens = 0
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        for topic, part, lo, hi, n in data.get("suspects", []):
            for off in range(int(lo), int(hi) + 1):
                self.suspects[(str(topic), int(part), off)] = int(n)
        # What was in flight when the worker died was there at one more crash.
        crashed: set[Position] = set()
        for ranges in data.get("inflight", []):
            for topic, part, lo, hi in ranges:
                crashed.update((str(topic), int(part), off) for off in range(int(lo), int(hi) + 1))
        for pos in crashed:
            self.suspects[pos] = self.suspects.get(pos, 0) + 1
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        by_count: dict[int, list[Position]] = {}
        for pos, n in self.suspects.items():
            by_count.setdefault(n, []).append(pos)
        data = {
            "suspects": [r + [n] for n, ps in sorted(by_count.items()) for r in _ranges(ps)],
            "inflight": [_ranges(ps) for ps in self.inflight.values()],
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    # -- what the runtime asks -------------------------------------------------------------

    def attempts(self, rec: _Positioned) -> int:
        return self.suspects.get((rec.topic, rec.partition, rec.offset), 0)

    def any_suspect(self, records: Iterable[_Positioned]) -> bool:
        return bool(self.suspects) and any(self.attempts(r) for r in records)

    def begin(self, records: Iterable[_Positioned]) -> int:
        """Note `records` as in flight (before the stage sees them); returns a token."""
        self._tokens += 1
        self.inflight[self._tokens] = {(r.topic, r.partition, r.offset) for r in records}
        self._save()
        return self._tokens

    def end(self, token: int) -> None:
        """The records of `token` are done: neither in flight nor suspects any more."""
        done = self.inflight.pop(token, set())
        for pos in done:
            self.suspects.pop(pos, None)
        self._save()

    def excuse(self) -> None:
        """Forget what is in flight without counting a crash against it (the world failed)."""
        self.inflight.clear()
        self._save()

    def quarantined(self, rec: _Positioned) -> None:
        self.suspects.pop((rec.topic, rec.partition, rec.offset), None)
        self._save()

    def plan(self, records: list[_Positioned]) -> list[tuple[str, list[_Positioned]]]:
        """How to take a batch that holds suspects, in order: ("batch", records) for runs of
        the innocent, ("group", …) for suspects at their first crash (small groups),
        ("alone", [r]) for those at more, ("quarantine", [r]) for those at the limit."""
        out: list[tuple[str, list[_Positioned]]] = []
        for r in records:
            n = self.attempts(r)
            if n >= self.max_attempts:
                out.append(("quarantine", [r]))
                continue
            kind = "batch" if n == 0 else ("alone" if n >= self.max_attempts - 1 else "group")
            last = out[-1] if out else None
            if (
                last
                and last[0] == kind
                and kind != "alone"
                and (kind == "batch" or len(last[1]) < self.group)
            ):
                last[1].append(r)
            else:
                out.append((kind, [r]))
        return out
