"""A worker killed with SIGKILL mid-stream and restarted loses no report and delivers none
twice to a liaison (checked by case_id)."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select

from centre import samples
from centre.db import Report, make_engine, make_sessionmaker
from centre.stack import Stack
from tests.integration.helpers import FeedbackReader, pull_cases, send_reports, wait_for

pytestmark = pytest.mark.integration


def _count(stack: Stack, status: str, prefix: str) -> int:
    engine = make_engine(stack.settings.database_url)
    with make_sessionmaker(engine)() as db:
        n = db.scalar(
            select(func.count())
            .select_from(Report)
            .where(Report.status == status, Report.provider_report_id.like(f"{prefix}%"))
        )
    engine.dispose()
    return int(n or 0)


@pytest.mark.parametrize("victim", ["intake", "triage", "routing"])
def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(stack: Stack, victim: str) -> None:
    s = stack.settings
    run = f"kill-{victim}-{uuid.uuid4().hex[:6]}"
    n = 600
    reports = [
        samples.report("crash-co", f"{run}-{i:04d}", media_seed=f"{run}-{i % 50}", ip_country="de")
        for i in range(n)
    ]
    send_reports(s, reports[: n // 2])
    # Kill while the first half is being worked on: some reports already forwarded, not all.
    wait_for(
        "first cases forwarded", lambda: _count(stack, "forwarded", run) >= 20, 120, every=0.05
    )
    worker = stack.workers[victim]
    old_pid = worker.pid
    worker.kill()
    send_reports(s, reports[n // 2 :])
    wait_for(
        f"{victim} restarted", lambda: worker.alive() and worker.pid != old_pid, 120, every=0.05
    )

    prids = {r["provider_report_id"] for r in reports}
    fb = FeedbackReader(s, "crash-co")
    final = fb.final_for(prids, timeout=240)
    assert {f["status"] for f in final.values()} == {"forwarded"}
    fb.close()

    docs = pull_cases(
        s, "europol", lambda d: prids <= {x["provider_report_id"] for x in d}, timeout=240
    )
    mine = [d for d in docs if d["provider_report_id"] in prids]
    per_case = Counter(d["case_id"] for d in mine)
    assert len(per_case) == n, "a report was lost"
    assert max(per_case.values()) == 1, "a case was delivered twice"
    # Every report counted once in its cluster, however often it was processed.
    per_cluster: dict[str, int] = {}
    for d in mine:
        cid = d["duplicates"]["cluster_ids"][0]
        per_cluster[cid] = max(per_cluster.get(cid, 0), d["duplicates"]["times_reported"])
    assert sorted(per_cluster.values()) == [n // 50] * 50
