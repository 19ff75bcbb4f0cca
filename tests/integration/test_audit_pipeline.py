"""Every worker records its decisions in the audit trail: a report's way from intake to the
liaison is readable by an auditor, and the trail verifies with the centre's public key."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from centre import samples
from centre.stack import Stack
from tests.integration.helpers import FeedbackReader, cli, pull_cases, send_reports

pytestmark = pytest.mark.integration


def _entries(stack: Stack, subject: str, want: set[str], timeout: float = 60) -> list[dict]:
    """The entries about `subject` once every action in `want` is there (the writer is a
    worker of its own: wait for it, bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        res = cli(stack.settings, "audit", "show", "--subject", subject, "--role", "auditor")
        assert res.returncode == 0, res.stderr
        entries = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
        if want <= {e["action"] for e in entries} or time.monotonic() > deadline:
            return entries


def test_a_reports_way_is_in_the_audit_trail_and_the_trail_verifies(stack: Stack) -> None:
    s = stack.settings
    run = uuid.uuid4().hex[:10]
    provider = f"aud-{run[:6]}"
    rep = samples.report(provider, f"{run}-a", media_seed=f"a-{run}", ip_country="de")
    prid = rep["provider_report_id"]
    fb = FeedbackReader(s, provider)
    try:
        send_reports(s, [rep])
        final = fb.final_for({prid})[prid]
    finally:
        fb.close()
    rid = final["report_id"]
    docs = pull_cases(s, "de", lambda d: any(x["provider_report_id"] == prid for x in d))
    case_id = next(x["case_id"] for x in docs if x["provider_report_id"] == prid)

    want = {"report.received", "report.information_requested", "report.triaged", "case.forwarded"}
    entries = _entries(stack, f"report:{rid}", want)
    by_action = {e["action"]: e for e in entries}
    assert want <= set(by_action), sorted(by_action)
    assert by_action["report.received"]["actor"] == "intake"
    triaged = by_action["report.triaged"]["details"]
    assert triaged["category"] == "new_material" and triaged["priority"] == "P2"
    went = by_action["case.forwarded"]["details"]
    assert {d["recipient"] for d in went["deliveries"]} == {"de", "europol"}
    assert went["feedback"] == "forwarded"
    # Nothing of the report's content is in a decision's details.
    assert rep["content"][0]["sha256"] not in json.dumps([e["details"] for e in entries])

    delivered = _entries(stack, f"case:{case_id}", {"case.delivered"})
    assert any(
        e["action"] == "case.delivered" and e["details"]["recipient"] == "de" for e in delivered
    )

    ok = cli(s, "audit", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_a_rejected_message_is_recorded_without_its_content(stack: Stack) -> None:
    s = stack.settings
    run = uuid.uuid4().hex[:10]
    provider = f"aud-{run[:6]}"
    bad = samples.report(provider, f"{run}-bad", media_seed=f"b-{run}")
    del bad["incident"]
    fb = FeedbackReader(s, provider)
    try:
        send_reports(s, [bad])
        fb.final_for({bad["provider_report_id"]})
    finally:
        fb.close()
    # Rejected before it has a report id: recorded under the message's position.
    res = cli(s, "audit", "export", str(s.home / f"export-{run}.jsonl"))
    assert res.returncode == 0, res.stderr
    lines = (s.home / f"export-{run}.jsonl").read_text().splitlines()
    assert any('"report.rejected"' in line for line in lines)
    assert all("synthetic report for testing" not in line for line in lines)  # sealed
