"""An audit trail on each database backend (the `db_url` fixture), with its own key set."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from centre.audit import AuditEvent, AuditLog
from centre.keys import KeySet
from centre.settings import Settings


@dataclass
class Env:
    settings: Settings
    log: AuditLog

    def public_keys(self) -> list[Any]:
        return KeySet(self.settings.keys_dir).centre_public_keys()

    def fresh_log(self, **changes: Any) -> AuditLog:
        """Another AuditLog on the same database (another process's view), settings changed."""
        return AuditLog(self.settings.with_(**changes) if changes else self.settings)


def events(
    n: int, start: int = 0, *, actor: str = "triage", action: str = "report.prioritised"
) -> list[AuditEvent]:
    return [
        AuditEvent(
            actor=actor,
            action=action,
            subject=f"report:r-{i:06d}",
            details={"priority": "P2", "reasons": [{"code": "new_material"}]},
        )
        for i in range(start, start + n)
    ]


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[Env]:
    home = tmp_path / "home"
    settings = Settings(
        home=home,
        kafka_bootstrap=None,
        database_url=db_url,
        audit_checkpoint_every=10,
        audit_checkpoint_seconds=3600,
    )
    KeySet.init(settings.keys_dir)
    log = AuditLog(settings)
    yield Env(settings, log)
    log.close()
