"""Alembic environment: migrations run against CENTRE_DATABASE_URL (or the URL set by centre.db)."""

from __future__ import annotations

from alembic import context

# Every table, wherever its owner keeps it: one history covers them all.
import centre.audit.tables  # noqa: F401
import complaints.tables  # noqa: F401
import intake.tables  # noqa: F401
import routing.tables  # noqa: F401
import triage.tables  # noqa: F401
import victims.tables  # noqa: F401
from centre import settings as centre_settings
from centre.db import Base, make_engine

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    return url or centre_settings.load().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url())
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
