"""Audit events, entry bytes and the chain verifier: pure functions, no database."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from centre.audit import (
    AUDIT_EVENTS,
    ZERO_HASH,
    AuditEvent,
    AuditEventError,
    ChainVerifier,
    _Broken,
    at_text,
    emit,
    entry_hash,
    event_id_for,
    tree_head_message,
)
from centre.crypto import key_id
from centre.kafka import BatchProducer
from centre.settings import Settings


def test_event_id_is_deterministic_and_depends_on_every_part() -> None:
    a = AuditEvent(
        actor="intake",
        action="report.received",
        subject="report:r1",
        discriminator="0/5",
        details={"x": 1},
    )
    b = AuditEvent(
        actor="intake",
        action="report.received",
        subject="report:r1",
        discriminator="0/5",
        details={"x": 2},
    )
    assert a.event_id == b.event_id == event_id_for("intake", "report.received", "report:r1", "0/5")
    ids = {
        event_id_for(*parts)
        for parts in [
            ("intake", "report.received", "report:r1", "0/5"),
            ("triage", "report.received", "report:r1", "0/5"),
            ("intake", "report.rejected", "report:r1", "0/5"),
            ("intake", "report.received", "report:r2", "0/5"),
            ("intake", "report.received", "report:r1", "0/6"),
        ]
    }
    assert len(ids) == 5


def test_an_event_ordered_by_a_time_gets_an_id_that_leads_with_it() -> None:
    """A stage's events about a report lead with the report's receipt: made again after a
    crash, the same id; another time, another id; no time, the plain derived id."""
    import datetime as dt

    t = dt.datetime(2026, 11, 24, 1, 2, 3, 456789, tzinfo=dt.UTC)
    parts = ("triage", "report.triaged", "report:r1", "supplement/0")
    a = AuditEvent(
        actor=parts[0], action=parts[1], subject=parts[2], discriminator=parts[3], ordered_by=t
    )
    assert a.event_id == event_id_for(*parts, ordered_by=t)
    assert a.event_id != event_id_for(*parts)
    assert a.event_id != event_id_for(*parts, ordered_by=t + dt.timedelta(milliseconds=1))
    assert (
        a.event_id[:13] == f"{1_795_482_123_456:012x}"[:8] + "-" + f"{1_795_482_123_456:012x}"[8:]
    )
    back = AuditEvent.from_json(a.to_json())  # the id travels; the time it came from does not
    assert back.event_id == a.event_id and back.ordered_by is None


def test_wire_form_round_trips() -> None:
    at = dt.datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    ev = AuditEvent(
        actor="victims",
        action="victim.request_received",
        subject="victim:q-1",
        details={"hashes": 3},
        person="victim:q-1",
        personal={"email": "v@x.eu"},
        at=at,
    )
    wire = orjson.loads(ev.to_json())
    assert wire["schema"] == "audit-event/v1" and wire["at"] == "2026-11-23T09:00:00.123456Z"
    back = AuditEvent.from_json(ev.to_json())
    assert back == ev and back.at.tzinfo == dt.UTC


@pytest.mark.parametrize(
    "change,path",
    [
        ({"actor": "Intake Stage"}, "$.actor"),
        ({"action": "received!"}, "$.action"),
        ({"subject": "jane.doe@example.org"}, "$.subject"),
        ({"subject": "report: with space"}, "$.subject"),
        ({"event_id": "not-a-uuid"}, "$.event_id"),
        ({"at": "2026-11-23T10:00:00"}, "$.at"),
        ({"at": "yesterday"}, "$.at"),
        ({"details": [1, 2]}, "$.details"),
        ({"personal": {"name": "x"}}, "$.person"),
        ({"person": "Jane Doe", "personal": {"x": 1}}, "$.person"),
        ({"schema": "audit-event/v0"}, "$.schema"),
        ({"extra": 1}, "$.extra"),
    ],
)
def test_malformed_events_are_refused_with_the_field_named(
    change: dict[str, Any], path: str
) -> None:
    good = orjson.loads(
        AuditEvent(actor="intake", action="report.received", subject="report:r1").to_json()
    )
    with pytest.raises(AuditEventError) as exc:
        AuditEvent.from_json(orjson.dumps({**good, **change}))
    assert path in [r["path"] for r in exc.value.reasons]


@pytest.mark.parametrize("value", [None, b"", b"{", b"[1]", b"\xff\xfe", b'"x"'])
def test_unparseable_values_are_refused(value: bytes | None) -> None:
    with pytest.raises(AuditEventError):
        AuditEvent.from_json(value)


def test_what_parses_but_could_never_be_sealed_is_refused_not_retried_forever() -> None:
    good = orjson.loads(
        AuditEvent(actor="intake", action="report.received", subject="report:r1").to_json()
    )
    deep = orjson.dumps(good).replace(
        b'"details":{}', b'"details":{"a":' + b"[" * 300 + b"]" * 300 + b"}"
    )
    with pytest.raises(AuditEventError) as exc:
        AuditEvent.from_json(deep)
    assert exc.value.reasons[0]["code"] == "not_encodable"
    huge = AuditEvent(
        actor="intake", action="report.received", subject="report:r1", details={"x": "a" * 300_000}
    )
    with pytest.raises(AuditEventError, match="too_large|over"):
        AuditEvent.from_json(huge.to_json())
    with pytest.raises(AuditEventError):
        emit(_Recorder(), [huge])


def test_building_a_bad_event_fails_where_it_is_built() -> None:
    with pytest.raises(AuditEventError, match="subject"):
        AuditEvent(actor="intake", action="report.received", subject="no colon")
    with pytest.raises(AuditEventError, match="person"):
        AuditEvent(actor="intake", action="report.received", subject="report:r1", personal={"x": 1})


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        prefixed: bool = False,
    ) -> None:
        self.sent.append((topic, value, key))


def test_emit_sends_to_the_unprefixed_topic_name_keyed_by_subject() -> None:
    p = _Recorder()
    evs = [
        AuditEvent(actor="intake", action="report.received", subject=f"report:r{i}")
        for i in range(3)
    ]
    assert emit(p, evs) == 3
    assert [(t, k) for t, _v, k in p.sent] == [
        (AUDIT_EVENTS, f"report:r{i}".encode()) for i in range(3)
    ]
    assert AuditEvent.from_json(p.sent[0][1]) == evs[0]


def test_the_batch_producer_adds_the_topic_prefix(tmp_path: Any) -> None:
    # BatchProducer.send prefixes unprefixed names: what emit relies on.
    s = Settings(
        home=tmp_path, kafka_bootstrap="127.0.0.1:1", database_url="sqlite://", topic_prefix="eu."
    )
    p = BatchProducer(s)
    seen: list[str] = []
    p._producer = type(
        "P",
        (),
        {
            "produce": lambda self, name, **kw: seen.append(name),
            "poll": lambda self, t: 0,
            "flush": lambda self, t: 0,
        },
    )()
    emit(p, [AuditEvent(actor="intake", action="report.received", subject="report:r1")])
    assert seen == ["eu.audit.events"]


def test_at_text_is_utc_microseconds() -> None:
    t = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
    assert at_text(t) == "2026-01-02T05:04:05.000000Z"
    assert at_text(dt.datetime(2026, 1, 2, 3, 4, 5, 7)) == "2026-01-02T03:04:05.000007Z"


_FIELDS = dict(
    seq=1,
    event_id=b"e",
    at=b"t",
    actor=b"a",
    action=b"b",
    subject=b"s",
    person=b"",
    data_key_id=b"k",
    ciphertext=b"c",
    personal=b"",
)


def test_every_field_is_in_the_hash_and_fields_cannot_trade_bytes() -> None:
    base = entry_hash(ZERO_HASH, **_FIELDS)  # type: ignore[arg-type]
    for name, value in _FIELDS.items():
        other = dict(_FIELDS, **{name: 2 if name == "seq" else value + b"x"})
        assert entry_hash(ZERO_HASH, **other) != base, name  # type: ignore[arg-type]
    # "ab"+"c" and "a"+"bc" are different entries: lengths are part of the bytes.
    moved = dict(_FIELDS, actor=b"ab", action=b"c")
    moved2 = dict(_FIELDS, actor=b"a", action=b"bc")
    assert entry_hash(ZERO_HASH, **moved) != entry_hash(ZERO_HASH, **moved2)  # type: ignore[arg-type]
    assert entry_hash(b"\x01" * 32, **_FIELDS) != base  # type: ignore[arg-type]


def _chain(n: int) -> list[dict[str, Any]]:
    out, prev = [], ZERO_HASH
    for i in range(1, n + 1):
        f = dict(_FIELDS, seq=i, event_id=f"e{i}".encode())
        h = entry_hash(prev, **f)  # type: ignore[arg-type]
        out.append(dict(f, prev_hash=prev, stored_hash=h))
        prev = h
    return out


def _feed(v: ChainVerifier, entries: list[dict[str, Any]]) -> None:
    for e in entries:
        v.entry(**e)


def test_verifier_accepts_a_chain_and_its_signed_heads() -> None:
    signer = Ed25519PrivateKey.generate()
    chain = _chain(5)
    v = ChainVerifier([signer.public_key()])
    _feed(v, chain)
    h = chain[-1]["stored_hash"]
    v.tree_head("head", 5, h, "t", key_id(signer), signer.sign(tree_head_message(5, h, "t")))
    assert v.result().ok and v.result().entries == 5


@pytest.mark.parametrize(
    "tamper,seq",
    [
        (lambda c: c.pop(2), 3),  # deletion
        (lambda c: c.insert(2, dict(c[1])), 3),  # insertion (a copy)
        (lambda c: c.__setitem__(slice(2, 4), [c[3], c[2]]), 3),  # reordering
        (lambda c: c[2].__setitem__("actor", b"z"), 3),  # modification
    ],
)
def test_verifier_names_the_first_broken_entry(tamper: Any, seq: int) -> None:
    chain = _chain(6)
    tamper(chain)
    v = ChainVerifier([])
    with pytest.raises(_Broken) as exc:
        _feed(v, chain)
    assert exc.value.seq == seq


def test_verifier_refuses_a_head_signed_by_another_key_or_over_other_bytes() -> None:
    signer, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    chain = _chain(3)
    h = chain[-1]["stored_hash"]
    for kid, sig, word in (
        (key_id(other), other.sign(tree_head_message(3, h, "t")), "not a centre key"),
        (key_id(signer), signer.sign(tree_head_message(3, h, "u")), "does not verify"),
        (key_id(signer), signer.sign(tree_head_message(2, h, "t")), "does not verify"),
    ):
        v = ChainVerifier([signer.public_key()])
        _feed(v, chain)
        with pytest.raises(_Broken, match=word):
            v.tree_head("head", 3, h, "t", kid, sig)


def test_a_re_hashed_chain_fails_at_the_next_signed_checkpoint() -> None:
    signer = Ed25519PrivateKey.generate()
    chain = _chain(6)
    cp_hash = chain[3]["stored_hash"]  # signed at entry 4
    sig = signer.sign(tree_head_message(4, cp_hash, "t"))
    forged, prev = [], ZERO_HASH  # entry 3 altered, everything re-hashed after it
    for e in chain:
        f = {k: v for k, v in e.items() if k not in ("prev_hash", "stored_hash")}
        if f["seq"] == 3:
            f["actor"] = b"forged"
        h = entry_hash(prev, **f)
        forged.append(dict(f, prev_hash=prev, stored_hash=h))
        prev = h
    v = ChainVerifier([signer.public_key()])
    _feed(v, forged[:4])
    with pytest.raises(_Broken, match=r"entries 1…4 differ from the checkpoint") as exc:
        v.tree_head("checkpoint", 4, cp_hash, "t", key_id(signer), sig)
    assert exc.value.seq == 1
