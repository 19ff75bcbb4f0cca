"""A recipient without a registered key: its case waits, visibly, and goes once a key is
registered with `centre keys add-recipient`; everything else keeps flowing."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import select

from centre import samples
from centre.crypto import key_id
from centre.db import Report, make_engine, make_sessionmaker
from centre.stack import Stack
from routing.tables import Delivery
from tests.integration.helpers import (
    FeedbackReader,
    cli,
    ids_of,
    pull_cases,
    send_reports,
    wait_for,
)

pytestmark = pytest.mark.integration


def _states(url: str, prid: str) -> tuple[str, dict[str, str]]:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as s:
            rid, status = s.execute(
                select(Report.report_id, Report.status).where(Report.provider_report_id == prid)
            ).one()
            return status, dict(
                s.execute(
                    select(Delivery.recipient, Delivery.state).where(Delivery.report_id == rid)
                ).all()
            )
    finally:
        engine.dispose()


def test_case_waits_for_a_missing_recipient_key_and_goes_when_it_is_registered(
    stack: Stack, tmp_path: Path
) -> None:
    s = stack.settings
    run = uuid.uuid4().hex[:10]
    shutil.rmtree(s.keys_dir / "recipients" / "mt")  # Malta's liaison has no key yet
    waiting = samples.report(
        "acme-social", f"{run}-mt", media_seed=f"mt-{run}", ip_country=None, suspect_country="MT"
    )
    normal = samples.report("acme-social", f"{run}-de", media_seed=f"de-{run}", ip_country="de")
    send_reports(s, [waiting, normal])
    fb = FeedbackReader(s, "acme-social")
    final = fb.final_for({waiting["provider_report_id"], normal["provider_report_id"]})
    fb.close()
    # Europol has a key: the case is forwarded there; Malta's copy waits, visibly.
    assert final[waiting["provider_report_id"]]["status"] == "forwarded"
    assert final[normal["provider_report_id"]]["status"] == "forwarded"
    status, states = _states(s.database_url, waiting["provider_report_id"])
    assert (status, states) == ("forwarded", {"mt": "awaiting_key", "europol": "forwarded"})
    docs = pull_cases(s, "europol", lambda d: bool(ids_of(d, {waiting["provider_report_id"]})))
    case_id = next(
        d["case_id"] for d in docs if d["provider_report_id"] == waiting["provider_report_id"]
    )

    bad = cli(s, "keys", "add-recipient", "mt", str(tmp_path / "missing.pem"))
    assert bad.returncode == 2 and "cannot read" in bad.stderr
    private = X25519PrivateKey.generate()
    pub = tmp_path / "mt.pub.pem"
    pub.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    res = cli(s, "keys", "add-recipient", "mt", str(pub))
    assert res.returncode == 0, res.stderr
    assert key_id(private) in res.stdout
    # The liaison holds its private key; here it sits where the local key set looks.
    (s.keys_dir / "recipients" / "mt" / f"{key_id(private)}.pem").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    got = pull_cases(s, "mt", lambda d: bool(ids_of(d, {waiting["provider_report_id"]})))
    assert [
        d["case_id"] for d in got if d["provider_report_id"] == waiting["provider_report_id"]
    ] == [case_id]
    # The record follows right after the send (sent first, then recorded).
    wait_for(
        "delivery to mt recorded as forwarded",
        lambda: _states(s.database_url, waiting["provider_report_id"])[1]["mt"] == "forwarded",
        30,
    )
