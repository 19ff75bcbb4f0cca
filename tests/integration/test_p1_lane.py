"""Under a backlog a liaison pulls a P1 case before the P2/P3 cases queued ahead of it."""

from __future__ import annotations

import json
import uuid

import pytest

from centre import samples
from centre.stack import Stack
from tests.integration.helpers import FeedbackReader, cli, send_reports

pytestmark = pytest.mark.integration


def test_p1_is_pulled_before_a_queued_backlog(stack: Stack) -> None:
    s = stack.settings
    run = uuid.uuid4().hex[:10]
    backlog = [
        samples.report(
            "blue-cloud",
            f"{run}-b{i}",
            media_seed=f"b-{run}-{i}",
            ip_country=None,
            suspect_country="SI",
        )
        for i in range(300)
    ]
    urgent = samples.report(
        "blue-cloud",
        f"{run}-p1",
        media_seed=f"p1-{run}",
        urgent=True,
        ip_country=None,
        suspect_country="SI",
    )
    send_reports(s, backlog)
    fb = FeedbackReader(s, "blue-cloud")
    fb.final_for({r["provider_report_id"] for r in backlog})  # all queued on le.si
    send_reports(s, [urgent])
    assert (
        fb.final_for({urgent["provider_report_id"]})[urgent["provider_report_id"]]["status"]
        == "forwarded"
    )
    fb.close()
    first = cli(s, "liaison", "pull", "--country", "si", "--max", "1", "--timeout", "10")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout.splitlines()[0])
    assert doc["provider_report_id"] == urgent["provider_report_id"] and doc["priority"] == "P1"
    # The rest follows, and the P1 case (also on le.si for tools that read only that) is not
    # shown a second time.
    rest = cli(s, "liaison", "pull", "--country", "si", "--timeout", "3")
    assert rest.returncode == 0, rest.stderr
    ids = [json.loads(line)["provider_report_id"] for line in rest.stdout.splitlines()]
    assert sorted(ids) == sorted(r["provider_report_id"] for r in backlog)
