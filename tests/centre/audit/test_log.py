"""The audit trail in the database: appending, checkpoints, encryption, reading, erasing."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest
from sqlalchemy import delete, func, select

from centre.audit import (
    AuditAccessDenied,
    AuditEvent,
    AuditKeyError,
    AuditKeyring,
    verify_file,
)
from centre.audit.tables import (
    AuditCheckpoint,
    AuditDataKey,
    AuditEntry,
    AuditHead,
    AuditSubjectKey,
)
from tests.centre.audit.conftest import Env, events

UTC = dt.UTC


def _seqs(env: Env) -> list[int]:
    with env.log.engine.connect() as c:
        return list(c.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)))


def _count(env: Env, model: type) -> int:
    with env.log.engine.connect() as c:
        return int(c.scalar(select(func.count()).select_from(model)) or 0)


def test_an_empty_log_verifies_and_exports(env: Env, tmp_path: os.PathLike[str]) -> None:
    assert env.log.verify().ok
    out = tmp_path / "empty.jsonl"  # type: ignore[operator]
    assert env.log.export(out).ok
    assert verify_file(out, env.public_keys()).ok


def test_appends_are_numbered_without_gaps_and_verify(env: Env) -> None:
    for i in range(0, 35, 7):
        env.log.record(events(7, i))
    assert _seqs(env) == list(range(1, 36))
    result = env.log.verify()
    assert result.ok and result.entries == 35 and result.head_seq == 35, result.summary()


def test_the_same_event_twice_is_one_entry(env: Env) -> None:
    first = env.log.record(events(5))
    again = env.log.record(events(5) + events(5) + events(2, 5))  # repeats, in and across batches
    assert (first.appended, again.appended, again.duplicates) == (5, 2, 10)
    assert _seqs(env) == list(range(1, 8))
    nothing = env.log.record(events(7))
    assert nothing.appended == 0 and nothing.head_seq == 7
    assert env.log.verify().ok


def test_events_appended_by_another_writer_meanwhile_are_not_appended_twice(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is new is found before the head is locked; when another writer appended in
    between (the head moved), it is asked again under the lock."""
    from centre.audit import store as audit

    other = env.fresh_log()
    real = audit._existing_ids
    looks: list[int] = []

    def first_look_then_overtaken(c, ids):  # type: ignore[no-untyped-def]
        found = real(c, ids)
        looks.append(len(found))
        if len(looks) == 1:
            other.record(events(3, 2))  # committed by another writer after the first look
        return found

    monkeypatch.setattr(audit, "_existing_ids", first_look_then_overtaken)
    result = env.log.record(events(5))
    # ours, the other writer's, ours again under the lock, where the three are found
    assert looks == [0, 0, 3]
    assert (result.appended, result.duplicates, result.head_seq) == (2, 3, 5)
    assert _seqs(env) == list(range(1, 6))
    assert env.log.verify().ok
    other.close()


def test_checkpoints_every_n_entries_and_after_t_seconds(env: Env) -> None:
    t0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    env.log.record(events(3), now=t0)  # the first batch: no checkpoint yet, so one now
    env.log.record(events(25, 3), now=t0 + dt.timedelta(seconds=1))
    with env.log.engine.connect() as c:
        assert list(c.scalars(select(AuditCheckpoint.seq).order_by(AuditCheckpoint.seq))) == [
            3,
            13,
            23,
        ]
    # 5 entries wait past T (3600 s here): the idle check signs them.
    assert not env.log.checkpoint_if_due(now=t0 + dt.timedelta(seconds=60))
    assert env.log.checkpoint_if_due(now=t0 + dt.timedelta(hours=2))
    assert not env.log.checkpoint_if_due(now=t0 + dt.timedelta(hours=3))  # nothing new
    with env.log.engine.connect() as c:
        assert max(c.scalars(select(AuditCheckpoint.seq))) == 28
        head = c.execute(select(AuditHead)).one()
    assert head.seq == 28 and head.checkpoint_seq == 28 and head.signature
    result = env.log.verify()
    assert result.ok and result.checkpoints == 4, result.summary()


def test_payloads_are_encrypted_and_no_key_is_stored_in_clear(env: Env) -> None:
    secret = "sextortion-case-details-42"
    env.log.record(
        [
            AuditEvent(
                actor="victims",
                action="victim.request_received",
                subject="victim:q-1",
                details={"note": secret},
                person="victim:q-1",
                personal={"email": "v@example.org"},
            )
        ]
    )
    with env.log.engine.connect() as c:
        row = c.execute(select(AuditEntry)).one()
        dk = c.execute(select(AuditDataKey)).one()
        sk = c.execute(select(AuditSubjectKey)).one()
    assert secret.encode() not in row.ciphertext and b"v@example.org" not in row.personal
    kek_id = AuditKeyring(env.settings.keys_dir).current_id()
    assert dk.kek_id == kek_id and sk.kek_id == kek_id
    # A wrapped key is nonce + 32-byte key + 16-byte tag, never the bare 32 bytes.
    assert len(dk.wrapped) == 12 + 32 + 16 and len(sk.wrapped) == 12 + 32 + 16
    kek_file = env.settings.keys_dir / "audit" / f"{kek_id}.kek"
    assert stat.S_IMODE(kek_file.stat().st_mode) == 0o600


def test_show_decrypts_for_an_authorised_role_and_records_the_read(env: Env) -> None:
    env.log.record(
        [
            AuditEvent(
                actor="routing",
                action="case.forwarded",
                subject="report:r-1",
                details={"recipients": ["de", "europol"]},
            )
        ]
    )
    shown = env.log.show("report:r-1", role="auditor", reader="Alice Smith")
    assert shown[0]["details"] == {"recipients": ["de", "europol"]} and shown[0]["intact"]
    # The read is itself an entry, about the same subject, by the reader, in the chain.
    assert shown[-1]["action"] == "audit.read" and shown[-1]["actor"] == "staff:alice-smith"
    assert shown[-1]["details"] == {"role": "auditor"}
    assert env.log.verify().ok


def test_a_refused_read_is_recorded_and_shows_nothing(env: Env) -> None:
    env.log.record(events(1))
    with pytest.raises(AuditAccessDenied, match="may not read"):
        env.log.show("report:r-000000", role="intern", reader="bob")
    with env.log.engine.connect() as c:
        last = c.execute(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
    assert last.action == "audit.read_refused" and last.actor == "staff:bob"
    assert env.log.verify().ok


def test_deleting_a_persons_key_erases_their_data_and_the_chain_still_verifies(env: Env) -> None:
    env.log.record(
        [
            AuditEvent(
                actor="victims",
                action="victim.request_received",
                subject="victim:q-1",
                person="victim:q-1",
                personal={"email": "v@example.org"},
                details={"hashes": 2},
            ),
            AuditEvent(
                actor="victims",
                action="victim.request_received",
                subject="victim:q-2",
                person="victim:q-2",
                personal={"email": "w@example.org"},
            ),
        ]
    )
    with env.log.sessions.begin() as s:
        s.execute(delete(AuditSubjectKey).where(AuditSubjectKey.person == "victim:q-1"))
    gone = env.log.show("victim:q-1", role="dpo", reader="dpo1")[0]
    kept = env.log.show("victim:q-2", role="dpo", reader="dpo1")[0]
    assert gone["personal"] is None and gone["personal_erased"] is True
    assert gone["details"] == {"hashes": 2} and gone["intact"]
    assert kept["personal"] == {"email": "w@example.org"} and not kept["personal_erased"]
    assert env.log.verify().ok
    # A new event about the erased person gets a new key; the old data stays erased.
    env.log.record(
        [
            AuditEvent(
                actor="victims",
                action="victim.status_requested",
                subject="victim:q-1",
                person="victim:q-1",
                personal={"phone": "+49 1"},
            )
        ]
    )
    shown = env.log.show("victim:q-1", role="dpo", reader="dpo1")
    assert [e["personal_erased"] for e in shown if "personal" in e] == [True, False]


def test_rotating_the_kek_keeps_old_entries_readable_and_seals_new_ones_under_it(env: Env) -> None:
    other = env.fresh_log()  # another process (the writer), running across the rotation
    other.record(
        [
            AuditEvent(
                actor="victims",
                action="victim.request_received",
                subject="victim:q-9",
                person="victim:q-9",
                personal={"email": "old@example.org"},
                details={"n": 1},
            )
        ]
    )
    old = AuditKeyring(env.settings.keys_dir).current_id()
    new = env.log.rotate_kek(by="operator")
    assert new != old and AuditKeyring(env.settings.keys_dir).current_id() == new
    other.record(
        [
            AuditEvent(
                actor="triage", action="report.categorised", subject="report:x", details={"n": 2}
            ),
            AuditEvent(
                actor="victims",
                action="victim.status_requested",
                subject="victim:q-10",
                person="victim:q-10",
                personal={"email": "new@example.org"},
            ),
        ]
    )
    with env.log.engine.connect() as c:
        keks = list(c.scalars(select(AuditDataKey.kek_id).order_by(AuditDataKey.created_at)))
        subject_keks = {
            p: k for p, k in c.execute(select(AuditSubjectKey.person, AuditSubjectKey.kek_id))
        }
    assert keks[0] == old and keks[-1] == new
    assert subject_keks == {"victim:q-9": old, "victim:q-10": new}
    reader = env.fresh_log()
    assert reader.show("victim:q-9", role="auditor", reader="a")[0]["personal"] == {
        "email": "old@example.org"
    }
    assert reader.show("victim:q-10", role="auditor", reader="a")[0]["personal"] == {
        "email": "new@example.org"
    }
    rotation = reader.show(f"kek:{new}", role="auditor", reader="a")[0]
    assert rotation["action"] == "audit.kek_rotated" and rotation["details"] == {
        "previous": old,
        "current": new,
    }
    assert reader.verify().ok
    other.close()
    reader.close()


def test_a_missing_kek_is_named_not_guessed(env: Env) -> None:
    env.log.record(events(1))
    kid = AuditKeyring(env.settings.keys_dir).current_id()
    (env.settings.keys_dir / "audit" / f"{kid}.kek").unlink()
    with pytest.raises(AuditKeyError, match=kid):
        env.fresh_log().show("report:r-000000", role="auditor", reader="a")


def test_a_passphrase_protects_the_kek_file(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    ring = AuditKeyring(env.settings.keys_dir / "p", passphrase="correct horse")
    kid = ring.create()
    text = (env.settings.keys_dir / "p" / "audit" / f"{kid}.kek").read_text()
    assert '"protection":"scrypt-A256GCM"' in text
    ring.make_current(kid)
    kek_id, blob = ring.wrap(b"k" * 32, b"aad")
    assert (
        AuditKeyring(env.settings.keys_dir / "p", passphrase="correct horse").unwrap(
            kek_id, blob, b"aad"
        )
        == b"k" * 32
    )
    monkeypatch.delenv("CENTRE_KEY_PASSPHRASE", raising=False)
    with pytest.raises(AuditKeyError, match="CENTRE_KEY_PASSPHRASE"):
        AuditKeyring(env.settings.keys_dir / "p").kek(kid)
    with pytest.raises(AuditKeyError, match="wrong passphrase"):
        AuditKeyring(env.settings.keys_dir / "p", passphrase="wrong").kek(kid)


def test_purge_shreds_by_retention_per_kind_and_records_it(env: Env) -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
    log = env.fresh_log(audit_retention_days={"victim": 30, "default": 365})
    for person, when in (
        ("victim:old", t0),
        ("victim:new", t0 + dt.timedelta(days=20)),
        ("suspect:s1", t0),
    ):
        log.record(
            [
                AuditEvent(
                    actor="victims",
                    action="victim.request_received",
                    subject=person,
                    person=person,
                    personal={"x": person},
                    at=when,
                )
            ],
            now=when,
        )
    later = t0 + dt.timedelta(days=40)
    assert [d["person"] for d in log.purge(now=later, dry_run=True)] == ["victim:old"]
    assert _count(env, AuditSubjectKey) == 3  # a dry run changes nothing
    done = log.purge(now=later)
    assert [(d["person"], d["retention_days"]) for d in done] == [("victim:old", 30)]
    assert log.purge(now=later) == []  # nothing left to do
    shown = log.show("victim:old", role="auditor", reader="a", now=later)
    assert shown[0]["personal_erased"] is True
    assert [e["action"] for e in shown] == [
        "victim.request_received",
        "audit.subject_shredded",
        "audit.read",
    ]
    assert shown[1]["actor"] == "audit-purge" and shown[1]["details"]["kind"] == "victim"
    # suspect falls under default (365 days): kept until then.
    assert [d["person"] for d in log.purge(now=t0 + dt.timedelta(days=366))] == [
        "suspect:s1",
        "victim:new",
    ]
    assert log.verify().ok
    log.close()


def test_using_a_persons_key_restarts_their_retention(env: Env) -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
    log = env.fresh_log(audit_retention_days={"default": 30})
    for days in (0, 25):
        when = t0 + dt.timedelta(days=days)
        log.record(
            [
                AuditEvent(
                    actor="victims",
                    action="victim.status_requested",
                    subject="victim:q",
                    discriminator=str(days),
                    person="victim:q",
                    personal={"d": days},
                    at=when,
                )
            ],
            now=when,
        )
    assert log.purge(now=t0 + dt.timedelta(days=40)) == []
    assert len(log.purge(now=t0 + dt.timedelta(days=56))) == 1
    log.close()
