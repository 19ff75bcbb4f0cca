"""`centre audit …` as an operator and an auditor use it (typer's runner, real database)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from centre.audit import AuditEvent, AuditKeyring
from centre.audit.cli import audit_app, rotate_audit_kek
from tests.centre.audit.conftest import Env, events

runner = CliRunner()


def _run(env: Env, *args: str) -> tuple[int, str, str]:
    r = runner.invoke(
        audit_app,
        list(args),
        env={
            "CENTRE_HOME": str(env.settings.home),
            "CENTRE_DATABASE_URL": env.settings.database_url,
            "CENTRE_AUDIT_READER_ROLES": "auditor,dpo",
            "CENTRE_AUDIT_RETENTION": "victim=30",
        },
    )
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.parametrize("command", [[], ["export"], ["verify"], ["show"], ["purge"]])
def test_help_is_plain_prose(command: list[str]) -> None:
    r = runner.invoke(audit_app, [*command, "--help"])
    assert r.exit_code == 0 and "Usage" in r.stdout


def test_export_then_verify_the_file_and_the_database(env: Env, tmp_path: Path) -> None:
    env.log.record(events(25))
    out = tmp_path / "audit.jsonl"
    code, stdout, _ = _run(env, "export", str(out))
    assert code == 0 and "25 entries" in stdout
    code, stdout, _ = _run(env, "verify", "--file", str(out))
    assert code == 0 and stdout.startswith("intact: 25 entries")
    head = stdout.split()[-1]
    assert _run(env, "verify", "--known-head", f"25:{head}")[0] == 0
    assert _run(env, "verify")[0] == 0
    pub = env.settings.keys_dir / "centre" / "signing.pub.pem"
    assert _run(env, "verify", "--file", str(out), "--public-key", str(pub))[0] == 0

    lines = out.read_text().splitlines()
    del lines[10]  # entry 10 (line 0 is the header)
    out.write_text("\n".join(lines) + "\n")
    code, stdout, _ = _run(env, "verify", "--file", str(out))
    assert code == 1 and "BROKEN at entry 10" in stdout


def test_verify_with_a_wrong_key_or_bad_input_fails(env: Env, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    env.log.record(events(3))
    out = tmp_path / "audit.jsonl"
    assert _run(env, "export", str(out))[0] == 0
    other = tmp_path / "other.pub"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    code, stdout, _ = _run(env, "verify", "--file", str(out), "--public-key", str(other))
    assert code == 1 and "not a centre key" in stdout
    assert _run(env, "verify", "--file", str(tmp_path / "missing.jsonl"))[0] == 2
    not_a_key = tmp_path / "x.pem"
    not_a_key.write_text("hello")
    assert _run(env, "verify", "--public-key", str(not_a_key))[0] == 2
    assert _run(env, "verify", "--known-head", "3:abc")[0] == 2


def test_show_prints_json_lines_for_a_reader_role_and_refuses_others(env: Env) -> None:
    env.log.record(
        [
            AuditEvent(
                actor="victims",
                action="victim.request_received",
                subject="victim:q-1",
                person="victim:q-1",
                personal={"email": "v@example.org"},
                details={"hashes": 2},
            )
        ]
    )
    code, stdout, _ = _run(
        env, "show", "--subject", "victim:q-1", "--role", "dpo", "--by", "dpo-anna"
    )
    assert code == 0
    shown = [json.loads(line) for line in stdout.splitlines()]
    assert shown[0]["personal"] == {"email": "v@example.org"}
    assert shown[-1]["action"] == "audit.read" and shown[-1]["actor"] == "staff:dpo-anna"
    code, stdout, stderr = _run(
        env, "show", "--subject", "victim:q-1", "--role", "support", "--by", "mallory"
    )
    assert code == 1 and stdout == "" and "may not read" in stderr
    code, stdout, _ = _run(env, "show", "--subject", "victim:q-1", "--role", "auditor")
    assert [json.loads(line)["action"] for line in stdout.splitlines()] == [
        "victim.request_received",
        "audit.read",
        "audit.read_refused",
        "audit.read",
    ]


def test_purge_lists_then_erases_and_verify_still_passes(env: Env) -> None:
    old = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    env.log.record(
        [
            AuditEvent(
                actor="victims",
                action="victim.request_received",
                subject="victim:q-1",
                person="victim:q-1",
                personal={"email": "v@example.org"},
                at=old,
            )
        ],
        now=old,
    )
    code, stdout, _ = _run(env, "purge", "--dry-run", "--now", "2026-01-20T00:00:00Z")
    assert code == 0 and stdout.endswith("0 person key(s) would be erased\n")
    code, stdout, _ = _run(env, "purge", "--dry-run", "--now", "2026-03-01T00:00:00Z")
    assert "victim:q-1" in stdout and "1 person key(s) would be erased" in stdout
    assert "v@example.org" not in stdout
    code, stdout, _ = _run(env, "purge", "--now", "2026-03-01T00:00:00Z")
    assert code == 0 and "1 person key(s) erased" in stdout
    code, stdout, _ = _run(env, "show", "--subject", "victim:q-1", "--role", "auditor")
    assert json.loads(stdout.splitlines()[0])["personal_erased"] is True
    assert _run(env, "verify")[0] == 0
    assert _run(env, "purge", "--now", "not a time")[0] == 2


def test_rotate_audit_kek_makes_a_new_current_key_and_records_it(env: Env) -> None:
    env.log.record(events(2))
    before = AuditKeyring(env.settings.keys_dir).current_id()
    kid = rotate_audit_kek(env.settings, by="ops")
    assert kid != before and AuditKeyring(env.settings.keys_dir).current_id() == kid
    assert (env.settings.keys_dir / "audit" / f"{before}.kek").exists()
    code, stdout, _ = _run(env, "show", "--subject", f"kek:{kid}", "--role", "auditor")
    assert json.loads(stdout.splitlines()[0])["actor"] == "staff:ops"
    assert _run(env, "verify")[0] == 0
