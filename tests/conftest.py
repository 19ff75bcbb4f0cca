"""Shared fixtures: a real local Kafka broker once per session, and the whole stack (real worker
processes) once per database backend: SQLite always, PostgreSQL when CENTRE_TEST_POSTGRES_URL
names a server (the README's test command and CI start one)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from centre.broker import LocalBroker, free_port
from centre.settings import Settings
from centre.stack import Stack

PG_ADMIN_URL = os.environ.get("CENTRE_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_ADMIN_URL else [])


def _pg_database(tag: str) -> tuple[str, str]:
    """A fresh PostgreSQL database for this session: (url, name)."""
    assert PG_ADMIN_URL
    name = f"centre_test_{tag}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}", name


def _drop_pg_database(name: str) -> None:
    assert PG_ADMIN_URL
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend, at the newest migration (never create_all)."""
    from centre.db import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'centre.db'}"
        upgrade(url)
        yield url
        return
    url, name = _pg_database("unit")
    upgrade(url)
    yield url
    _drop_pg_database(name)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """One real Apache Kafka broker (KRaft) for the whole session, on free ports."""
    cache = Path(os.environ.get("CENTRE_TEST_KAFKA_DIR", tmp_path_factory.mktemp("kafka")))
    b = LocalBroker(cache / f"broker-{uuid.uuid4().hex[:6]}", port=free_port(), partitions=3)
    libs = cache / "libs"
    if libs.is_dir():  # reuse jars fetched by an earlier run (CI passes a cache dir)
        b.kafka_dir.mkdir(parents=True, exist_ok=True)
        (b.kafka_dir / "libs").symlink_to(libs)
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def stack(
    request: pytest.FixtureRequest, broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The whole pipeline (intake, triage, routing worker processes) on one database backend.
    Backends share the broker; a topic prefix keeps their topics and groups apart."""
    backend = request.param
    home = tmp_path_factory.mktemp(f"home-{backend}")
    pg_name = None
    if backend == "sqlite":
        url = f"sqlite:///{home / 'centre.db'}"
    else:
        url, pg_name = _pg_database("stack")
    settings = Settings(
        home=home,
        kafka_bootstrap=broker.bootstrap,
        database_url=url,
        topic_prefix=f"t{uuid.uuid4().hex[:6]}.",
        partitions=3,
        batch_size=200,
    )
    st = Stack(settings)
    st.start(ready_timeout=180)
    yield st
    st.stop()
    if pg_name:
        _drop_pg_database(pg_name)
