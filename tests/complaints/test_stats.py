"""Art. 83 figures about complaints: counts by grounds and decision, average time to decide,
reversed decisions; in `centre stats`, with no personal data."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

from rich.console import Console

from app import stats as centre_stats
from centre.db import make_engine, make_sessionmaker
from complaints import flow
from complaints.model import ComplaintV1
from complaints.stats import complaint_figures, render
from tests.complaints.seed import NOW, add_report, item

CONTACT = "ticket-SECRET-4711"


def _file(
    sessions,
    ref: str,
    prid: str,
    grounds: str,
    now: dt.datetime,  # type: ignore[no-untyped-def]
    channel: str = "provider",
) -> str:
    doc = {
        "schema": "complaint/v1",
        "complaint_ref": ref,
        "channel": channel,
        "concerns": {"provider_id": "acme", "provider_report_id": prid},
        "grounds": grounds,
        "contact_ref": CONTACT,
        "statement": "my name is Jo",
        "filed_at": "2026-11-20T10:00:00Z",
    }
    if channel == "provider":
        doc["provider_id"] = "acme"
    with sessions.begin() as s:
        return flow.file_complaint(
            s, ComplaintV1.model_validate(doc), source="t", actor="t", now=now, sla_days=7
        ).complaint_id


def _decide(sessions, cid: str, uphold: bool, now: dt.datetime) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        flow.assign(s, cid, "hanna", by="lead", now=now)
        flow.decide(s, cid, uphold=uphold, reason="because", by="hanna", now=now)


def test_figures(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        for i in range(5):
            add_report(engine, "acme", f"r{i}", items=[item("f", f"s{i}")])
        t0 = NOW - dt.timedelta(days=20)
        a = _file(sessions, "a", "r0", "wrongful_removal", t0)
        _file(sessions, "a2", "r0", "wrongful_report", t0)  # joins a
        b = _file(sessions, "b", "r1", "not_child_sexual_abuse", t0)
        _file(sessions, "c", "r2", "wrongful_removal", NOW - dt.timedelta(days=2), channel="centre")
        _file(sessions, "late", "r3", "other", NOW - dt.timedelta(days=9))
        _file(sessions, "x", "unknown", "other", NOW, channel="centre")
        _decide(sessions, a, True, t0 + dt.timedelta(hours=10))
        _decide(sessions, b, False, t0 + dt.timedelta(days=8, hours=2))
        with sessions() as s:
            f = complaint_figures(s, now=NOW)
        with engine.connect() as c:
            recent = complaint_figures(c, since=NOW - dt.timedelta(days=3), now=NOW)
        whole = centre_stats.collect(engine)
    finally:
        engine.dispose()
    assert f["filed"] == 6
    assert f["by_grounds"] == {
        "not_child_sexual_abuse": 1,
        "other": 2,
        "wrongful_removal": 2,
        "wrongful_report": 1,
    }
    assert f["by_channel"] == {"centre": 2, "provider": 4}
    assert f["joined_open_complaint"] == 1
    assert f["complaints"] == 5
    assert f["by_state"] == {"received": 3, "under_review": 0, "upheld": 1, "rejected": 1}
    assert f["decisions"] == {"upheld": 1, "rejected": 1} and f["reversed"] == 1
    assert f["average_hours_to_decide"] == round((10 + 8 * 24 + 2) / 2, 2)
    assert f["decided_after_deadline"] == 1
    assert f["unmatched"] == 1
    assert f["open_overdue"] == 1  # `late`: 9 days, deadline 7
    assert f["retractions_sent"] == 0  # queued, not sent in this test
    assert recent["filed"] == 2 and recent["complaints"] == 2
    assert whole["complaints"]["filed"] == 6

    text = json.dumps(whole)
    assert CONTACT not in text and "Jo" not in text and "r0" not in text
    buf = io.StringIO()
    console = Console(file=buf, width=200)
    for t in centre_stats.render(whole):
        console.print(t)
    out = buf.getvalue()
    assert "Complaints (6 filed" in out and "reversed (upheld)" in out
    assert CONTACT not in out


def test_no_complaints_yet(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as c:
            f = complaint_figures(c)
    finally:
        engine.dispose()
    assert f["filed"] == 0 and f["average_hours_to_decide"] is None
    assert render(f)
