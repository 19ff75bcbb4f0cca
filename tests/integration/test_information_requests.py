"""Art. 48(5): a report lacking what jurisdiction needs is forwarded anyway with what it has,
the provider is asked for the missing fields, and a supplement completes the case."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from centre import samples
from centre.db import Report, ReportContent, ReportSupplement, make_engine, make_sessionmaker
from centre.stack import Stack
from routing.tables import Delivery
from tests.integration.helpers import FeedbackReader, pull_cases, send_reports

pytestmark = pytest.mark.integration


def test_information_request_then_supplement_updates_the_case_everywhere(stack: Stack) -> None:
    s = stack.settings
    run = uuid.uuid4().hex[:10]
    provider = f"info-{run[:6]}"
    prid = f"{run}-a"
    # No IP event, no user: only the provider's hint says where (NL).
    first = samples.report(provider, prid, media_seed=f"i-{run}", ip_country=None, hint="nl")
    fb = FeedbackReader(s, provider)
    try:
        send_reports(s, [first])
        fb.until(
            lambda items: (
                "forwarded" in [f["status"] for f in items if f["provider_report_id"] == prid]
            )
        )
        assert fb.statuses(prid) == ["received", "information_requested", "forwarded"]
        asked = next(f for f in fb.items if f["status"] == "information_requested")
        assert [(r["code"], r["path"]) for r in asked["reasons"]] == [
            ("missing_ip_events", "$.location.ip_events"),
            ("missing_users", "$.users"),
        ]

        nl = pull_cases(s, "nl", lambda d: any(x["provider_report_id"] == prid for x in d))
        case = next(x for x in nl if x["provider_report_id"] == prid)
        assert "supplement" not in case
        assert case["jurisdiction"]["countries"] == [{"country": "nl", "basis": ["provider_hint"]}]

        # The supplement: the upload came from Germany and the suspect lives in France.
        sup = samples.report(
            provider, prid, media_seed=f"i-{run}", ip_country="de", suspect_country="FR"
        )
        sup["supplement"] = True
        send_reports(s, [sup])
        fb.until(lambda items: fb.statuses(prid).count("forwarded") == 2)
        statuses = fb.statuses(prid)
        assert statuses == [
            "received",
            "information_requested",
            "forwarded",
            "received",
            "forwarded",
        ], statuses  # nothing missing any more
        ack = [f for f in fb.items if f["provider_report_id"] == prid][3]
        assert [r["code"] for r in ack["reasons"]] == ["supplement_received"]
        # Not a duplicate submission, and the feedback ids of the two rounds differ.
        assert len({f["feedback_id"] for f in fb.items}) == len(fb.items)
    finally:
        fb.close()

    # Germany and France now have the case; the Netherlands (which had it) gets the update.
    def updated(docs: list[dict]) -> bool:
        return any(x["provider_report_id"] == prid and x.get("supplement") == 1 for x in docs)

    for cc in ("de", "fr", "nl", "europol"):
        got = pull_cases(s, cc, updated)
        upd = next(x for x in got if x["provider_report_id"] == prid and x.get("supplement"))
        assert upd["case_id"] == case["case_id"]
        assert {c["country"] for c in upd["jurisdiction"]["countries"]} == {"de", "fr"}
        assert upd["report"]["users"][0]["country"] == "FR"
        assert upd["report"]["location"]["country_hint"].lower() == "nl"  # what came first stays

    engine = make_engine(s.database_url)
    try:
        with make_sessionmaker(engine)() as db:
            rep = db.scalars(select(Report).where(Report.provider_report_id == prid)).one()
            assert rep.supplements == 1 and rep.routed_supplements == 1
            assert rep.information_requested == ["$.location.ip_events", "$.users"]
            sups = db.scalars(
                select(ReportSupplement).where(ReportSupplement.report_id == rep.report_id)
            ).all()
            assert [x.seq for x in sups] == [1]
            assert "$.users" in sups[0].added
            body = db.get(ReportContent, rep.report_id).body
            assert body["users"][0]["country"] == "FR" and not body.get("supplement")
            rcpts = set(
                db.scalars(select(Delivery.recipient).where(Delivery.report_id == rep.report_id))
            )
            assert rcpts == {"nl", "de", "fr", "europol"}
    finally:
        engine.dispose()


def test_a_supplement_is_acknowledged_even_when_it_adds_nothing(stack: Stack) -> None:
    s = stack.settings
    run = uuid.uuid4().hex[:10]
    provider = f"info-{run[:6]}"
    prid = f"{run}-b"
    full = samples.report(
        provider, prid, media_seed=f"j-{run}", ip_country="de", suspect_country="DE"
    )
    fb = FeedbackReader(s, provider)
    try:
        send_reports(s, [full])
        fb.until(lambda items: "forwarded" in fb.statuses(prid))
        again = dict(full, supplement=True)
        plain_copy = dict(full)
        send_reports(s, [again, plain_copy])
        fb.until(lambda items: len(fb.statuses(prid)) >= 5)
        statuses = fb.statuses(prid)
        # Intake answers the copy at once; the supplement's final status comes from routing.
        assert statuses[:3] == ["received", "forwarded", "received"], statuses
        assert sorted(statuses[3:]) == ["duplicate_submission", "forwarded"], statuses
    finally:
        fb.close()
