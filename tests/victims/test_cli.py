"""`centre victims …` through typer's runner, without a broker: bad lists refused before
anything is sent, an unknown id and a wrong PIN answered alike, every refusal and every read
in the audit trail; status and withdrawal with the right PIN."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from centre.audit.tables import AuditEntry
from centre.db import make_engine, make_sessionmaker
from centre.keys import KeySet
from tests.victims.seed import NOW, add_report, hashes, public_item, request_doc
from victims import flow
from victims.cli import victims_app
from victims.model import Item
from victims.tables import VictimRequest

runner = CliRunner()


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    KeySet.init(tmp_path / "keys")  # the centre's signing key signs the audit trail's head
    return {
        "CENTRE_DATABASE_URL": db_url,
        "CENTRE_HOME": str(tmp_path),
        "CENTRE_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "USER": "hanna",
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    r = runner.invoke(victims_app, list(args), env=env)
    return r.exit_code, r.output + (r.stderr if r.stderr_bytes is not None else "")


def audit_actions(db_url: str) -> list[tuple[str, str, str]]:
    engine = make_engine(db_url)
    with engine.connect() as c:
        rows = c.execute(
            select(AuditEntry.actor, AuditEntry.action, AuditEntry.subject).order_by(AuditEntry.seq)
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_help_for_every_command() -> None:
    code, out = run({}, "--help")
    assert code == 0
    for cmd in ("hash", "request", "status", "withdraw", "list", "escalations"):
        assert cmd in out
        c, text = run({}, cmd, "--help")
        assert c == 0 and len(text) > 200, cmd


@pytest.mark.parametrize(
    "content, says",
    [
        ("", "holds no hashes"),
        ('{"file": "a.jpg", "sha256": "not-a-hash"}\n', "line 1.sha256: sha256 must be 64"),
        ('{"file": "a.jpg"}\n', "has no sha256, md5 or pdq"),
    ],
)
def test_bad_lists_are_refused_and_nothing_is_sent(
    env: dict[str, str], db_url: str, tmp_path: Path, content: str, says: str
) -> None:
    f = tmp_path / "hashes.jsonl"
    f.write_text(content)
    code, out = run(env, "request", "--hashes", str(f), "--representative", "Jane Doe")
    assert code == 2 and says in out and "Nothing was sent" in out, out
    assert "Jane" not in out and "not-a-hash" not in out
    assert audit_actions(db_url) == [("staff:hanna", "victim.request_refused", "victims:request")]
    code, out = run(env, "request", "--hashes", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "cannot read" in out


def test_a_bad_identity_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "hashes.jsonl"
    f.write_text(json.dumps({"sha256": "a" * 64}) + "\n")
    code, out = run(env, "request", "--hashes", str(f), "--identity-ref", "x" * 300)
    assert code == 2 and "at most 200" in out


def test_status_and_withdrawal_need_the_pin_and_never_say_which_was_wrong(
    env: dict[str, str], db_url: str
) -> None:
    engine = make_engine(db_url)
    add_report(engine, "acme", "a1", items=[public_item("f1", "pic")], cluster="c1")
    h = hashes("pic")
    rid = str(uuid.uuid4())
    items = [Item(1, "image", h["sha256"], h["md5"], h["pdq"], 100)]
    with make_sessionmaker(engine).begin() as s:
        flow.file_request(
            s, request_doc(rid, items, pin="7KQ2-M9XD-4HTR"), items, source="t/0/0", now=NOW
        )
    engine.dispose()

    wrong = run(env, "status", rid, "--pin", "0000-0000-0000")
    unknown = run(env, "status", str(uuid.uuid4()), "--pin", "7KQ2-M9XD-4HTR")
    garbage = run(env, "status", "not an id", "--pin", "7KQ2-M9XD-4HTR")
    assert wrong[0] == unknown[0] == garbage[0] == 3
    assert wrong[1] == unknown[1] == garbage[1]
    assert "no request with this id and PIN" in wrong[1]
    refused = [a for a in audit_actions(db_url) if a[1] == "victim.access_refused"]
    assert [s for _a, _x, s in refused] == [f"victim:{rid}", refused[1][2], "victim:malformed-id"]

    code, out = run(env, "status", rid, "--pin", "7kq2 m9xd 4htr", "--json")
    assert code == 0, out
    st = json.loads(out)
    assert st["reports_holding_your_material"] == 1 and st["removal_notices"]["not_sent_yet"] == 1
    code, out = run(env, "status", rid, "--pin", "7KQ2-M9XD-4HTR")
    assert code == 0 and "acme" in out and "removal notices: 1" in out, out
    assert ("staff:hanna", "victim.status_shown", f"victim:{rid}") in audit_actions(db_url)

    assert run(env, "withdraw", rid, "--pin", "0000-0000-0000")[0] == 3
    code, out = run(env, "withdraw", rid, "--pin", "7KQ2-M9XD-4HTR")
    assert code == 0 and "withdrawn" in out and "1 notice(s) cancelled" in out, out
    code, out = run(env, "withdraw", rid, "--pin", "7KQ2-M9XD-4HTR")
    assert code == 0 and "already withdrawn" in out
    engine = make_engine(db_url)
    with engine.connect() as c:
        assert c.execute(select(VictimRequest.state)).scalar() == "withdrawn"
    engine.dispose()
    code, out = run(env, "list", "--json")
    (row,) = [json.loads(x) for x in out.splitlines()]
    assert row["state"] == "withdrawn" and row["matches"] == 1
    code, out = run(env, "escalations", "--json")
    assert code == 0 and out == ""
    assert run(env, "list", "--state", "closed")[0] == 2
