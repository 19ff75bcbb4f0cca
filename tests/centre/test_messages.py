"""The deterministic ids: the same text as the standard library's UUID version 5."""

import random
import uuid

from centre import messages as m


def test_uuid5_text_is_the_standard_uuid5() -> None:
    rng = random.Random(3)
    names = ["", "a", "provider/ref-1", "pdq:" + "f" * 64, "ünïcødé/✓"]
    names += [
        "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 80)))
        for _ in range(500)
    ]
    for ns in (m.NS_REPORT, m.NS_CASE, m.NS_CLUSTER, uuid.NAMESPACE_URL):
        for name in names:
            assert m.uuid5_text(ns, name) == str(uuid.uuid5(ns, name))


def test_ids_follow_from_their_inputs() -> None:
    rid = m.report_id_for("prov", "r1")
    assert rid == str(uuid.uuid5(m.NS_REPORT, "prov/r1"))
    assert m.case_id_for(rid) == str(uuid.uuid5(m.NS_CASE, rid))
    assert m.cluster_id_for("sha256", "ab") == str(uuid.uuid5(m.NS_CLUSTER, "sha256:ab"))


def test_time_ordered_ids_lead_with_their_millisecond_and_are_deterministic() -> None:
    import datetime as dt

    ns = uuid.uuid5(uuid.NAMESPACE_URL, "t")
    # A receipt time as intake makes it (from a Kafka timestamp in seconds, a float), and as
    # triage and routing read it back from the envelope (`iso`, milliseconds).
    received = dt.datetime.fromtimestamp(1_795_000_000.123, dt.UTC)
    again = m.parse_time(m.iso(received))
    a = m.time_ordered_text(received, ns, "x")
    assert a == m.time_ordered_text(again, ns, "x")
    assert a == m.time_ordered_text(received.replace(tzinfo=None), ns, "x")  # naive is UTC
    assert a != m.time_ordered_text(received, ns, "y")
    parsed = uuid.UUID(a)
    assert parsed.version == 8 and parsed.variant == uuid.RFC_4122
    assert int(a.replace("-", "")[:12], 16) == 1_795_000_000_123
    # Later times sort later, whatever the name.
    times = [received + dt.timedelta(milliseconds=k) for k in (0, 1, 2, 1000, 86_400_000)]
    rng = random.Random(5)
    ids = [m.time_ordered_text(t, ns, str(rng.random())) for t in times]
    assert ids == sorted(ids)


def test_report_and_case_ids_lead_with_the_receipt_when_intake_gives_it() -> None:
    received = m.from_ms(1_795_000_000_123)
    assert m.iso(received) == "2026-11-18T11:06:40.123Z"
    rid = m.report_id_for("acme", "r-1", received)
    assert rid == m.report_id_for("acme", "r-1", m.parse_time(m.iso(received)))
    assert rid != m.report_id_for("acme", "r-1") != m.report_id_for("acme", "r-2", received)
    case = m.case_id_for(rid, received)
    assert case != rid and case != m.case_id_for(rid)
    assert (
        rid[:13]
        == case[:13]
        == f"{1_795_000_000_123:012x}"[:8] + "-" + f"{1_795_000_000_123:012x}"[8:]
    )
