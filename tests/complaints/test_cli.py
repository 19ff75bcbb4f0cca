"""`centre complaints …` through typer's runner: every command, and bad input exiting 2 with
a message that says what to give instead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from centre.keys import KeySet
from complaints.cli import complaints_app
from tests.complaints.seed import add_report, item

runner = CliRunner()


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    # No broker here: the commands below send nothing (centre channel, rejected).
    KeySet.init(tmp_path / "keys")  # the centre's signing key signs the audit trail's head
    return {
        "CENTRE_DATABASE_URL": db_url,
        "CENTRE_HOME": str(tmp_path),
        "CENTRE_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "USER": "hanna",
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    r = runner.invoke(complaints_app, list(args), env=env)
    return r.exit_code, r.output + (r.stderr if r.stderr_bytes is not None else "")


def test_help_for_every_command() -> None:
    code, out = run({}, "--help")
    assert code == 0
    for cmd in ("file", "list", "show", "assign", "note", "decide", "link"):
        assert cmd in out
        c, text = run({}, cmd, "--help")
        assert c == 0 and len(text) > 200, cmd


def test_a_complaint_from_filing_to_decision(env: dict[str, str], db_url: str) -> None:
    from centre.db import make_engine

    engine = make_engine(db_url)
    _rid, case = add_report(engine, "acme", "r1", items=[item("f1", "a")])
    engine.dispose()
    code, out = run(
        env,
        "file",
        "--provider-id",
        "acme",
        "--provider-report-id",
        "r1",
        "--grounds",
        "wrongful_report",
        "--contact-ref",
        "letter-2026-17",
        "--statement",
        "that is my holiday photo",
        "--json",
    )
    assert code == 0, out
    filed = json.loads(out)
    cid = filed["complaint_id"]
    assert filed["state"] == "received" and filed["case_id"] == case and filed["matched"]

    code, out = run(env, "list", "--json")
    (row,) = [json.loads(x) for x in out.splitlines()]
    assert row["complaint_id"] == cid and row["grounds"] == ["wrongful_report"]
    assert "letter-2026-17" not in out  # the list shows no contact references

    code, out = run(env, "decide", cid, "--reject", "--reason", "x")
    assert code == 2 and "assign" in out
    assert run(env, "assign", cid, "omar")[0] == 0
    assert run(env, "note", cid, "asked acme for the original")[0] == 0
    code, out = run(env, "decide", cid, "--reject", "--reason", "it is what was reported")
    assert code == 0 and "rejected" in out, out
    code, out = run(env, "decide", cid, "--uphold", "--reason", "changed my mind")
    assert code == 2 and "final" in out

    code, out = run(env, "show", cid, "--json")
    shown = json.loads(out)
    assert shown["state"] == "rejected" and shown["assignee"] == "omar"
    assert [h["action"] for h in shown["history"]] == ["filed", "assigned", "noted", "decided"]
    assert shown["history"][1]["actor"] == "hanna"
    assert shown["filings"][0]["contact_ref"] == "letter-2026-17"
    code, out = run(env, "show", cid)
    assert code == 0 and "rejected" in out and "letter-2026-17" in out
    code, out = run(env, "list", "--state", "rejected")
    assert code == 0 and cid in out

    # every step is in the audit trail, which still verifies
    from sqlalchemy import select

    from centre.audit import AuditLog
    from centre.audit.tables import AuditEntry
    from centre.settings import Settings

    log = AuditLog(
        Settings(home=Path(env["CENTRE_HOME"]), kafka_bootstrap=None, database_url=db_url)
    )
    try:
        with log.engine.connect() as c:
            rows = c.execute(
                select(AuditEntry.actor, AuditEntry.action)
                .where(AuditEntry.subject == f"complaint:{cid}")
                .order_by(AuditEntry.seq)
            ).all()
        assert [tuple(r) for r in rows] == [
            ("staff:hanna", "complaint.filed"),
            ("staff:hanna", "complaint.assigned"),
            ("staff:hanna", "complaint.noted"),
            ("staff:hanna", "complaint.decided"),
        ]
        assert log.verify().ok
    finally:
        log.close()


def test_unmatched_is_filed_and_said(env: dict[str, str]) -> None:
    code, out = run(env, "file", "--sha256", "a" * 64, "--grounds", "other", "--contact-ref", "t-1")
    assert code == 0 and "unmatched" in out


@pytest.mark.parametrize(
    "args,says",
    [
        (["file", "--grounds", "other", "--contact-ref", "t"], "--report-id"),
        (["file", "--report-id", "x", "--grounds", "meh", "--contact-ref", "t"], "--grounds"),
        (["file", "--report-id", "x", "--grounds", "other", "--contact-ref", " "], "--contact-ref"),
        (
            [
                "file",
                "--report-id",
                "x",
                "--grounds",
                "other",
                "--contact-ref",
                "t",
                "--channel",
                "email",
            ],
            "--channel",
        ),
        (
            [
                "file",
                "--report-id",
                "x",
                "--grounds",
                "other",
                "--contact-ref",
                "t",
                "--channel",
                "authority:us",
            ],
            "member state",
        ),
        (["file", "--sha256", "zz", "--grounds", "other", "--contact-ref", "t"], "--sha256"),
        (
            [
                "file",
                "--report-id",
                "x",
                "--grounds",
                "other",
                "--contact-ref",
                "t",
                "--filed-at",
                "yesterday",
            ],
            "--filed-at",
        ),
        (["list", "--state", "open"], "unknown state"),
        (["list", "--limit", "0"], "--limit"),
        (["show", "no-such-id"], "no complaint"),
        (["assign", "no-such-id", "omar"], "no complaint"),
        (["decide", "no-such-id", "--reason", "x"], "exactly one"),
        (["decide", "no-such-id", "--uphold", "--reject", "--reason", "x"], "exactly one"),
        (["decide", "no-such-id", "--uphold", "--reason", "x"], "no complaint"),
        (["link", "no-such-id"], "--report-id"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    env: dict[str, str], args: list[str], says: str
) -> None:
    code, out = run(env, *args)
    assert code == 2, out
    assert says in out, out


def test_no_step_without_its_audit_entry(db_url: str, tmp_path: Path) -> None:
    env = {"CENTRE_DATABASE_URL": db_url, "CENTRE_HOME": str(tmp_path / "no-keys")}
    code, out = run(env, "file", "--report-id", "x", "--grounds", "other", "--contact-ref", "t")
    assert code == 1 and "audit trail" in out
    env["CENTRE_HOME"] = str(tmp_path)
    KeySet.init(tmp_path / "keys")
    code, out = run(env, "list", "--json")
    assert code == 0 and out.strip() == ""  # nothing was filed


def test_a_database_not_migrated_exits_1(tmp_path: Path) -> None:
    env = {
        "CENTRE_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
        "CENTRE_HOME": str(tmp_path),
    }
    code, out = run(env, "list")
    assert code == 1 and "migration" in out
