"""Tampering with an export and with the table, in each of the five ways (modification,
deletion, insertion, reordering, truncation), is detected and the first broken entry named;
an intact log always verifies."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import delete, insert, select, update

from centre.audit import AuditError, VerifyResult, entry_hash, verify_file
from centre.audit.tables import AuditCheckpoint, AuditEntry, AuditHead
from tests.centre.audit.conftest import Env, events

E = AuditEntry.__table__


@pytest.fixture
def log30(env: Env) -> Env:
    """30 entries in batches of 10: checkpoints signed at 10, 20 and 30, head at 30."""
    for i in range(0, 30, 10):
        env.log.record(events(10, i))
    return env


# -- the export file ---------------------------------------------------------------------------


def _lines(env: Env, tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "audit.jsonl"
    assert env.log.export(path).ok
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _index(lines: list[dict[str, Any]], seq: int) -> int:
    return next(i for i, d in enumerate(lines) if d["type"] == "entry" and d["seq"] == seq)


def _verify_lines(env: Env, tmp_path: Path, lines: list[dict[str, Any]]) -> VerifyResult:
    path = tmp_path / "tampered.jsonl"
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in lines))
    return verify_file(path, env.public_keys())


def _rehashed(lines: list[dict[str, Any]], start: int) -> None:
    """What a forger does next: recompute every link and hash from line `start` on."""
    prev = (
        bytes.fromhex(lines[start - 1]["hash"])
        if lines[start - 1]["type"] == "entry"
        else bytes.fromhex(next(d for d in reversed(lines[:start]) if d["type"] == "entry")["hash"])
    )
    for d in lines[start:]:
        if d["type"] != "entry":
            continue
        d["prev_hash"] = prev.hex()
        h = entry_hash(
            prev,
            d["seq"],
            d["event_id"].encode(),
            d["at"].encode(),
            d["actor"].encode(),
            d["action"].encode(),
            d["subject"].encode(),
            (d["person"] or "").encode(),
            d["data_key_id"].encode(),
            base64.b64decode(d["ciphertext"]),
            base64.b64decode(d["personal"]) if d["personal"] else b"",
        )
        d["hash"] = h.hex()
        prev = h


def test_an_intact_export_verifies(log30: Env, tmp_path: Path) -> None:
    lines = _lines(log30, tmp_path)
    kinds = [d["type"] for d in lines]
    assert kinds[0] == "header" and kinds[-1] == "head" and kinds.count("entry") == 30
    assert kinds.count("checkpoint") == 3
    result = _verify_lines(log30, tmp_path, lines)
    assert result.ok and result.entries == 30 and result.checkpoints == 3, result.summary()


def _modify(lines: list[dict[str, Any]]) -> None:
    lines[_index(lines, 15)]["actor"] = "someone-else"


def _modify_ciphertext(lines: list[dict[str, Any]]) -> None:
    d = lines[_index(lines, 15)]
    ct = bytearray(base64.b64decode(d["ciphertext"]))
    ct[-1] ^= 1
    d["ciphertext"] = base64.b64encode(bytes(ct)).decode()


def _delete(lines: list[dict[str, Any]]) -> None:
    del lines[_index(lines, 15)]


def _insert_copy(lines: list[dict[str, Any]]) -> None:
    i = _index(lines, 15)
    lines.insert(i + 1, dict(lines[i]))


def _insert_forged(lines: list[dict[str, Any]]) -> None:
    """A new entry 16 that links correctly to entry 15, the rest left as they were."""
    i = _index(lines, 15)
    forged = dict(
        lines[i],
        seq=16,
        event_id="00000000-0000-5000-8000-000000000000",
        prev_hash=lines[i]["hash"],
    )
    lines.insert(i + 1, forged)
    _rehashed(lines[: i + 2], i + 1)


def _insert_and_renumber(lines: list[dict[str, Any]]) -> None:
    """The same, every later entry renumbered and the whole chain re-hashed after it."""
    i = _index(lines, 15)
    forged = dict(lines[i], event_id="00000000-0000-5000-8000-000000000000")
    lines.insert(i + 1, forged)
    for d in lines[i + 1 :]:
        if d["type"] == "entry":
            d["seq"] += 1
    _rehashed(lines, i + 1)


def _modify_and_rehash(lines: list[dict[str, Any]]) -> None:
    i = _index(lines, 15)
    lines[i]["actor"] = "someone-else"
    _rehashed(lines, i)


def _reorder(lines: list[dict[str, Any]]) -> None:
    i, j = _index(lines, 15), _index(lines, 16)
    lines[i], lines[j] = lines[j], lines[i]


def _truncate(lines: list[dict[str, Any]]) -> None:
    del lines[_index(lines, 26) :]


def _truncate_keep_head(lines: list[dict[str, Any]]) -> None:
    head = lines[-1]
    del lines[_index(lines, 26) :]
    lines.append(head)


@pytest.mark.parametrize(
    "tamper,broken,word",
    [
        (_modify, 15, "altered"),
        (_modify_ciphertext, 15, "altered"),
        (_delete, 15, "missing"),
        (_insert_copy, 16, "inserted"),
        (_insert_forged, 17, "inserted"),
        (_insert_and_renumber, 11, "differ from the checkpoint signed at entry 20"),
        (_modify_and_rehash, 11, "differ from the checkpoint signed at entry 20"),
        (_reorder, 15, "missing"),
        (_truncate, 26, "truncated"),
        (_truncate_keep_head, 26, "truncated"),
    ],
    ids=lambda x: getattr(x, "__name__", str(x)),
)
def test_tampering_with_an_export_is_detected(
    log30: Env,
    tmp_path: Path,
    tamper: Callable[[list[dict[str, Any]]], None],
    broken: int,
    word: str,
) -> None:
    lines = _lines(log30, tmp_path)
    tamper(lines)
    result = _verify_lines(log30, tmp_path, lines)
    assert not result.ok
    assert result.broken_seq == broken, result.summary()
    assert word in (result.problem or ""), result.summary()
    assert f"entry {broken}" in result.summary()


def test_an_export_signed_by_another_key_or_with_a_forged_head_fails(
    log30: Env, tmp_path: Path
) -> None:
    lines = _lines(log30, tmp_path)
    lines[-1]["seq"] = 29
    assert "does not verify" in (_verify_lines(log30, tmp_path, lines).problem or "")
    lines = _lines(log30, tmp_path)
    lines[-1]["key_id"] = "0123456789abcdef"
    assert "not a centre key" in (_verify_lines(log30, tmp_path, lines).problem or "")
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"not json\n")
    assert not verify_file(garbage, log30.public_keys()).ok


# -- the table ---------------------------------------------------------------------------------


def _sql(env: Env, *statements: Any) -> None:
    with env.log.engine.begin() as c:
        for st in statements:
            c.execute(st)


def _row(env: Env, seq: int) -> dict[str, Any]:
    with env.log.engine.connect() as c:
        return dict(c.execute(select(E).where(E.c.seq == seq)).one()._mapping)


def _t_modify(env: Env) -> None:
    _sql(env, update(E).where(E.c.seq == 15).values(actor="someone-else"))


def _t_modify_ciphertext(env: Env) -> None:
    ct = bytearray(_row(env, 15)["ciphertext"])
    ct[0] ^= 1
    _sql(env, update(E).where(E.c.seq == 15).values(ciphertext=bytes(ct)))


def _t_delete(env: Env) -> None:
    _sql(env, delete(E).where(E.c.seq == 15))


def _t_insert_after_head(env: Env) -> None:
    row = _row(env, 30)
    _sql(
        env,
        insert(E).values(
            dict(
                row, seq=31, event_id="00000000-0000-5000-8000-00000000001f", prev_hash=row["hash"]
            )
        ),
    )


def _t_insert_and_renumber(env: Env) -> None:
    row = _row(env, 15)
    forged = dict(
        row, seq=16, event_id="00000000-0000-5000-8000-000000000010", prev_hash=row["hash"]
    )
    forged["hash"] = entry_hash(
        row["hash"], 16, forged["event_id"].encode(), b"x", b"", b"", b"", b"", b"", b"", b""
    )
    _sql(
        env,
        update(E).where(E.c.seq >= 16).values(seq=E.c.seq + 1000),
        update(E).where(E.c.seq >= 1016).values(seq=E.c.seq - 999),
        insert(E).values(forged),
    )


def _t_reorder(env: Env) -> None:
    _sql(
        env,
        update(E).where(E.c.seq == 15).values(seq=-15),
        update(E).where(E.c.seq == 16).values(seq=15),
        update(E).where(E.c.seq == -15).values(seq=16),
    )


def _t_truncate(env: Env) -> None:
    _sql(env, delete(E).where(E.c.seq > 25))


def _t_truncate_and_move_head(env: Env) -> None:
    """Entries, checkpoint and head cut back to 25; the head keeps its (now wrong) signature."""
    h25 = _row(env, 25)["hash"]
    _sql(
        env,
        delete(E).where(E.c.seq > 25),
        delete(AuditCheckpoint.__table__).where(AuditCheckpoint.seq > 25),
        update(AuditHead.__table__).values(seq=25, hash=h25, checkpoint_seq=20),
    )


@pytest.mark.parametrize(
    "tamper,broken,word",
    [
        (_t_modify, 15, "altered"),
        (_t_modify_ciphertext, 15, "altered"),
        (_t_delete, 15, "missing"),
        (_t_insert_after_head, 31, "not covered by the signed head"),
        (_t_insert_and_renumber, 16, "altered"),
        (_t_reorder, 15, "does not link"),
        (_t_truncate, 26, "truncated"),
        (_t_truncate_and_move_head, 21, "does not verify"),
    ],
    ids=lambda x: getattr(x, "__name__", str(x)),
)
def test_tampering_with_the_table_is_detected(
    log30: Env, tmp_path: Path, tamper: Callable[[Env], None], broken: int, word: str
) -> None:
    assert log30.log.verify().ok
    tamper(log30)
    result = log30.fresh_log().verify()
    assert not result.ok
    assert result.broken_seq == broken, result.summary()
    assert word in (result.problem or ""), result.summary()
    # An export of the tampered table says so, and its file fails verification too.
    out = tmp_path / "evidence.jsonl"
    exported = log30.log.export(out)
    assert not exported.ok and exported.broken_seq == broken
    assert not verify_file(out, log30.public_keys()).ok


def test_the_writer_refuses_to_extend_a_log_with_entries_beyond_its_head(log30: Env) -> None:
    _t_insert_after_head(log30)
    with pytest.raises(AuditError, match="beyond the signed head"):
        log30.log.record(events(1, 100))


def test_a_rollback_to_an_older_signed_head_is_caught_only_by_a_head_seen_before(env: Env) -> None:
    env.log.record(events(10))
    with env.log.engine.connect() as c:
        old_head = dict(c.execute(select(AuditHead.__table__)).one()._mapping)
    env.log.record(events(5, 10))
    seen = env.log.verify()
    assert seen.ok and seen.head_seq == 15
    # Restore the older state whole (entries, checkpoints, signed head): consistent in itself.
    _sql(
        env,
        delete(E).where(E.c.seq > 10),
        delete(AuditCheckpoint.__table__).where(AuditCheckpoint.seq > 10),
        update(AuditHead.__table__).values(old_head),
    )
    assert env.log.verify().ok  # the stated limit: nothing in the database tells
    caught = env.log.verify(known_heads=[(15, bytes.fromhex(seen.head_hash))])
    assert not caught.ok and caught.broken_seq == 11 and "truncated" in (caught.problem or "")
