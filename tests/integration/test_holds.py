"""Art. 48(6) holds: recorded, capped at 18 months, and the provider gets a notice/v1."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest
from confluent_kafka import Consumer
from sqlalchemy import select

from centre import samples
from centre.db import make_engine, make_sessionmaker
from centre.kafka import base_config
from centre.stack import Stack
from centre.topology import notices_topic
from routing.tables import Hold
from tests.integration.helpers import cli, ids_of, pull_cases, send_reports

pytestmark = pytest.mark.integration


def test_hold_is_recorded_capped_and_noticed_to_the_provider(stack: Stack) -> None:
    s = stack.settings
    run = uuid.uuid4().hex[:10]
    provider = f"hold-{run[:6]}"
    rep = samples.report(provider, f"{run}-h", media_seed=f"h-{run}", ip_country="de")
    send_reports(s, [rep])
    docs = pull_cases(s, "europol", lambda d: bool(ids_of(d, {rep["provider_report_id"]})))
    case_id = next(
        d["case_id"] for d in docs if d["provider_report_id"] == rep["provider_report_id"]
    )

    for args, says in [
        (["--days", "600", "--no-inform"], "548"),
        (["--days", "30"], "--no-inform"),
        (["--days", "30", "--no-inform", "--reason", " "], "reason"),
    ]:
        full = args if "--reason" in args else args + ["--reason", "ongoing investigation"]
        bad = cli(s, "liaison", "hold", case_id, *full)
        assert bad.returncode == 2 and says in bad.stderr, bad.stderr
    unknown = cli(
        s, "liaison", "hold", str(uuid.uuid4()), "--days", "30", "--no-inform", "--reason", "x"
    )
    assert unknown.returncode == 2 and "no case" in unknown.stderr

    ok = cli(
        s,
        "liaison",
        "hold",
        case_id,
        "--days",
        "548",
        "--no-inform",
        "--no-removal",
        "--reason",
        "covert operation",
        "--by",
        "de",
    )
    assert ok.returncode == 0, ok.stderr

    c = Consumer({**base_config(s), "group.id": f"t-{run}", "auto.offset.reset": "earliest"})
    c.subscribe([s.topic(notices_topic(provider))])
    notices: list[dict] = []
    deadline = time.monotonic() + 30
    while not notices and time.monotonic() < deadline:
        notices += [json.loads(x.value()) for x in c.consume(10, timeout=1.0) if not x.error()]
    c.close()
    assert len(notices) == 1
    n = notices[0]
    assert n["schema"] == "notice/v1" and n["type"] == "hold"
    assert n["provider_report_id"] == rep["provider_report_id"]
    assert n["hold"]["do_not_inform_user"] is True and n["hold"]["do_not_remove"] is True
    assert "covert" not in json.dumps(n)  # the liaison's reason stays with the centre
    until = dt.datetime.fromisoformat(n["hold"]["until"].replace("Z", "+00:00"))
    assert dt.timedelta(days=547) < until - dt.datetime.now(dt.UTC) <= dt.timedelta(days=548)

    engine = make_engine(s.database_url)
    try:
        with make_sessionmaker(engine)() as db:
            h = db.scalars(select(Hold).where(Hold.case_id == case_id)).one()
            assert (h.no_inform, h.no_removal, h.requested_by, h.reason) == (
                True,
                True,
                "de",
                "covert operation",
            )
    finally:
        engine.dispose()
