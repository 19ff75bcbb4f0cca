"""`centre liaison pull` acknowledges what it pulled; the record shows delivered-at per
recipient, and `centre cases overdue` lists only what was not pulled."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from sqlalchemy import select

from centre import samples
from centre.db import Report, make_engine, make_sessionmaker
from centre.stack import Stack
from routing.tables import Delivery
from tests.integration.helpers import FeedbackReader, cli, send_reports, wait_for

pytestmark = pytest.mark.integration


def _delivered(url: str, prid: str) -> dict[str, object]:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as s:
            rid = s.scalar(select(Report.report_id).where(Report.provider_report_id == prid))
            return dict(
                s.execute(
                    select(Delivery.recipient, Delivery.delivered_at).where(
                        Delivery.report_id == rid
                    )
                ).all()
            )
    finally:
        engine.dispose()


def test_pull_is_recorded_and_overdue_lists_the_rest(stack: Stack) -> None:
    s = stack.settings
    run = uuid.uuid4().hex[:10]
    rep = samples.report(
        "chat-app", f"{run}-ack", media_seed=f"ack-{run}", ip_country=None, suspect_country="HR"
    )
    send_reports(s, [rep])
    fb = FeedbackReader(s, "chat-app")
    fb.final_for({rep["provider_report_id"]})
    fb.close()
    over = cli(s, "cases", "overdue", "--hours", "0", "--json")
    assert over.returncode == 0, over.stderr
    listed = {(d["case_id"], d["recipient"]) for d in map(json.loads, over.stdout.splitlines())}
    case_id = next(c for c, r in listed if r == "hr")
    assert (case_id, "europol") in listed

    got: list[dict] = []
    deadline = time.monotonic() + 60
    while not any(d.get("case_id") == case_id for d in got):
        assert time.monotonic() < deadline
        out = cli(s, "liaison", "pull", "--country", "hr", "--timeout", "2")
        assert out.returncode == 0, out.stderr
        got += [json.loads(line) for line in out.stdout.splitlines()]
    # the routing worker records acks between batches
    wait_for(
        "the pull recorded",
        lambda: _delivered(s.database_url, rep["provider_report_id"])["hr"] is not None,
        30,
    )
    assert _delivered(s.database_url, rep["provider_report_id"])["europol"] is None
    over = cli(s, "cases", "overdue", "--hours", "0", "--json")
    listed = {(d["case_id"], d["recipient"]) for d in map(json.loads, over.stdout.splitlines())}
    assert (case_id, "hr") not in listed and (case_id, "europol") in listed
    assert cli(s, "cases", "overdue", "--hours", "-1").returncode == 2
