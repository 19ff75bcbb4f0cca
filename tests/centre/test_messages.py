"""The deterministic ids: the same text as the standard library's UUID version 5."""

import random
import uuid

from centre import messages as m


def test_uuid5_text_is_the_standard_uuid5() -> None:
    rng = random.Random(3)
    names = ["", "a", "provider/ref-1", "pdq:" + "f" * 64, "ünïcødé/✓"]
    names += ["".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 80)))
              for _ in range(500)]
    for ns in (m.NS_REPORT, m.NS_CASE, m.NS_CLUSTER, uuid.NAMESPACE_URL):
        for name in names:
            assert m.uuid5_text(ns, name) == str(uuid.uuid5(ns, name))


def test_ids_follow_from_their_inputs() -> None:
    rid = m.report_id_for("prov", "r1")
    assert rid == str(uuid.uuid5(m.NS_REPORT, "prov/r1"))
    assert m.case_id_for(rid) == str(uuid.uuid5(m.NS_CASE, rid))
    assert m.cluster_id_for("sha256", "ab") == str(uuid.uuid5(m.NS_CLUSTER, "sha256:ab"))
