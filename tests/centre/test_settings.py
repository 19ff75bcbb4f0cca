"""Settings: defaults from the contract, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from centre import messages as m
from centre.settings import SettingsError, load
from centre.topology import RECIPIENTS, STAGES, static_topics


def test_defaults_follow_the_contract(tmp_path: Path) -> None:
    s = load({"CENTRE_HOME": str(tmp_path)})
    assert s.kafka_bootstrap is None and s.bootstrap == "127.0.0.1:9092"
    assert s.database_url == f"sqlite:///{tmp_path}/centre.db"
    assert s.topic("reports.intake") == "reports.intake"


@pytest.mark.parametrize(
    "env,word",
    [
        ({"CENTRE_KAFKA_BOOTSTRAP": "not a host"}, "CENTRE_KAFKA_BOOTSTRAP"),
        ({"CENTRE_DATABASE_URL": "centre.db"}, "CENTRE_DATABASE_URL"),
        ({"CENTRE_TOPIC_PREFIX": "a/b"}, "CENTRE_TOPIC_PREFIX"),
        ({"CENTRE_REQUIRE_SIGNATURES": "maybe"}, "CENTRE_REQUIRE_SIGNATURES"),
        ({"CENTRE_PARTITIONS": "0"}, "CENTRE_PARTITIONS"),
        ({"CENTRE_PARTITIONS": "many"}, "CENTRE_PARTITIONS"),
        ({"CENTRE_GEOIP_DB": "/nonexistent.mmdb"}, "CENTRE_GEOIP_DB"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], word: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=word):
        load({"CENTRE_HOME": str(tmp_path), **env})


def test_prefix_applies_to_every_topic(tmp_path: Path) -> None:
    s = load({"CENTRE_HOME": str(tmp_path), "CENTRE_TOPIC_PREFIX": "eu."})
    names = {s.topic(t.name) for t in static_topics(s)}
    assert "eu.reports.intake" in names
    assert {f"eu.le.{r}" for r in RECIPIENTS} <= names
    assert len(RECIPIENTS) == 28


def test_every_stage_reads_a_topic_that_exists(tmp_path: Path) -> None:
    s = load({"CENTRE_HOME": str(tmp_path)})
    names = {t.name for t in static_topics(s)}
    assert all(spec.source in names for spec in STAGES.values())


def test_ids_are_deterministic_and_distinct() -> None:
    a = m.report_id_for("acme", "r1")
    assert a == m.report_id_for("acme", "r1")
    assert a != m.report_id_for("acme", "r2") != m.report_id_for("acme2", "r1")
    assert m.case_id_for(a) != a and m.case_id_for(a) == m.case_id_for(a)
