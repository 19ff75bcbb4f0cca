"""Settings from the environment, validated once, with errors that name the variable.

Every component reads the same variables (CONTRACT.md, "Configuration every component reads");
the rest are operational knobs with safe defaults.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

_PREFIX_RE = re.compile(r"^[A-Za-z0-9._-]{0,100}$")
_BOOTSTRAP_RE = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}(,[A-Za-z0-9.\-\[\]:]+:\d{1,5})*$")


class SettingsError(ValueError):
    """A variable has a value the centre cannot work with; the message names it."""


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1/0, true/false, yes/no or on/off, not {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be between {lo} and {hi}, not {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if not lo <= value <= hi:  # also refuses nan
        raise SettingsError(f"{name} must be between {lo:g} and {hi:g}, not {raw}")
    return value


@dataclass(frozen=True)
class Settings:
    home: Path
    kafka_bootstrap: str | None  # None: `centre up` starts the local broker
    database_url: str
    topic_prefix: str = ""
    require_signatures: bool = False
    geoip_db: str | None = None
    partitions: int = 12
    local_kafka_port: int = 9092
    metrics_port: int = 0  # 0: pick a free port per worker; printed at start
    batch_size: int = 500
    batch_within_s: float = 0.05
    runtime: str = "kafka"  # kafka: librdkafka consumer loop; faust: faust agents
    # P1 also for a child victim of sextortion and for `infant` content (issue 4). Off by
    # default because CONTRACT.md's priority rule is exhaustive; the signals are always
    # recorded as reasons either way.
    extended_p1: bool = False
    # Complaints (issue 7): days a case handler has to decide a complaint before it is overdue.
    complaint_sla_days: int = 7
    # Victims' requests (issue 8): a removal notice not answered is sent again every this
    # many hours; after this many sends without an answer it is escalated.
    victim_notice_repeat_hours: float = 24.0
    victim_notice_escalate_after: int = 3
    # The audit trail (centre/audit/): a signed checkpoint every N entries or T seconds;
    # the roles that may read decrypted entries; days the data about each kind of person is
    # kept after its last use before its key is destroyed ("default": kinds not listed).
    audit_checkpoint_every: int = 1000
    audit_checkpoint_seconds: int = 10
    audit_reader_roles: tuple[str, ...] = ("auditor", "dpo")
    audit_retention_days: dict[str, int] = field(default_factory=lambda: {"default": 365})
    # No poison message (centre/poison.py): crashes with a message in flight before it is
    # set aside (dead-lettered, its company told); the last of them with the message alone.
    poison_attempts: int = 3
    # A worker with input waiting that consumes nothing for this long is stuck: it exits
    # (code 75) and its supervisor starts it again (centre/runtime.py, `Watchdog`).
    stuck_after_s: float = 60.0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def bootstrap(self) -> str:
        """Bootstrap servers to use: the configured cluster, else the local broker."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.local_kafka_port}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def child_env(self) -> dict[str, str]:
        """Environment for a child process (a worker) so that it sees exactly these settings."""
        env = dict(os.environ)
        env.update(
            CENTRE_HOME=str(self.home),
            CENTRE_DATABASE_URL=self.database_url,
            CENTRE_KAFKA_BOOTSTRAP=self.bootstrap,
            CENTRE_TOPIC_PREFIX=self.topic_prefix,
            CENTRE_REQUIRE_SIGNATURES="1" if self.require_signatures else "0",
            CENTRE_PARTITIONS=str(self.partitions),
            CENTRE_BATCH_SIZE=str(self.batch_size),
            CENTRE_RUNTIME=self.runtime,
            CENTRE_EXTENDED_P1="1" if self.extended_p1 else "0",
            CENTRE_COMPLAINT_SLA_DAYS=str(self.complaint_sla_days),
            CENTRE_VICTIM_NOTICE_REPEAT_HOURS=repr(self.victim_notice_repeat_hours),
            CENTRE_VICTIM_NOTICE_ESCALATE_AFTER=str(self.victim_notice_escalate_after),
            CENTRE_AUDIT_CHECKPOINT_EVERY=str(self.audit_checkpoint_every),
            CENTRE_AUDIT_CHECKPOINT_SECONDS=str(self.audit_checkpoint_seconds),
            CENTRE_AUDIT_READER_ROLES=",".join(self.audit_reader_roles),
            CENTRE_AUDIT_RETENTION=",".join(
                f"{k}={v}" for k, v in sorted(self.audit_retention_days.items())
            ),
            CENTRE_POISON_ATTEMPTS=str(self.poison_attempts),
            CENTRE_STUCK_AFTER_S=repr(self.stuck_after_s),
        )
        if self.geoip_db:
            env["CENTRE_GEOIP_DB"] = self.geoip_db
        return env


_ROLE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def _roles(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    roles = tuple(r.strip() for r in raw.split(",") if r.strip())
    bad = [r for r in roles if not _ROLE_RE.match(r)]
    if bad or not roles:
        raise SettingsError(
            f"{name} must be role names separated by commas (lower-case "
            f"letters, digits, '_' and '-'), not {raw!r}"
        )
    return roles


def _retention(env: Mapping[str, str], name: str) -> dict[str, int]:
    """`victim=730,suspect=365,default=365`: days per kind of person; `default` is added
    (365 days) when not given."""
    raw = env.get(name)
    days: dict[str, int] = {"default": 365}
    if raw is None or raw.strip() == "":
        return days
    for item in raw.split(","):
        kind, sep, value = item.strip().partition("=")
        if not sep or not _ROLE_RE.match(kind.strip()):
            raise SettingsError(
                f"{name} must look like victim=730,suspect=365,default=365, not {raw!r}"
            )
        try:
            n = int(value)
        except ValueError:
            raise SettingsError(
                f"{name}: days for {kind.strip()!r} must be a whole number, not {value.strip()!r}"
            ) from None
        if not 1 <= n <= 36500:
            raise SettingsError(
                f"{name}: days for {kind.strip()!r} must be between 1 and 36500, not {n}"
            )
        days[kind.strip()] = n
    return days


def load(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    home = Path(env.get("CENTRE_HOME") or "./var").expanduser().resolve()
    if home.exists() and not home.is_dir():
        raise SettingsError(f"CENTRE_HOME={home} exists and is not a directory")

    bootstrap = env.get("CENTRE_KAFKA_BOOTSTRAP") or None
    if bootstrap is not None and not _BOOTSTRAP_RE.match(bootstrap):
        raise SettingsError(
            f"CENTRE_KAFKA_BOOTSTRAP must be host:port[,host:port…], not {bootstrap!r}"
        )

    db_url = env.get("CENTRE_DATABASE_URL") or f"sqlite:///{home / 'centre.db'}"
    if "://" not in db_url:
        raise SettingsError(
            "CENTRE_DATABASE_URL must be an SQLAlchemy URL such as sqlite:///path/centre.db "
            "or postgresql+psycopg://user@host/db"
        )

    prefix = env.get("CENTRE_TOPIC_PREFIX", "")
    if not _PREFIX_RE.match(prefix):
        raise SettingsError(
            "CENTRE_TOPIC_PREFIX may hold only letters, digits, '.', '_' and '-' (at most 100)"
        )

    geoip = env.get("CENTRE_GEOIP_DB") or None
    if geoip is not None and not Path(geoip).is_file():
        raise SettingsError(f"CENTRE_GEOIP_DB={geoip} is not a readable file")

    within_raw = env.get("CENTRE_BATCH_WITHIN_MS", "")
    try:
        within = float(within_raw) / 1000.0 if within_raw else 0.05
    except ValueError:
        raise SettingsError(
            f"CENTRE_BATCH_WITHIN_MS must be a number, not {within_raw!r}"
        ) from None

    runtime = env.get("CENTRE_RUNTIME") or "kafka"
    if runtime not in ("kafka", "faust"):
        raise SettingsError(f"CENTRE_RUNTIME must be kafka or faust, not {runtime!r}")

    return Settings(
        home=home,
        runtime=runtime,
        kafka_bootstrap=bootstrap,
        database_url=db_url,
        topic_prefix=prefix,
        require_signatures=_bool(env, "CENTRE_REQUIRE_SIGNATURES", False),
        extended_p1=_bool(env, "CENTRE_EXTENDED_P1", False),
        complaint_sla_days=_int(env, "CENTRE_COMPLAINT_SLA_DAYS", 7, 1, 365),
        victim_notice_repeat_hours=_float(
            env, "CENTRE_VICTIM_NOTICE_REPEAT_HOURS", 24.0, 0.0001, 8760.0
        ),
        victim_notice_escalate_after=_int(env, "CENTRE_VICTIM_NOTICE_ESCALATE_AFTER", 3, 1, 1000),
        geoip_db=geoip,
        partitions=_int(env, "CENTRE_PARTITIONS", 12, 1, 1000),
        local_kafka_port=_int(env, "CENTRE_KAFKA_PORT", 9092, 1, 65535),
        metrics_port=_int(env, "CENTRE_METRICS_PORT", 0, 0, 65535),
        batch_size=_int(env, "CENTRE_BATCH_SIZE", 500, 1, 100_000),
        batch_within_s=within,
        audit_checkpoint_every=_int(env, "CENTRE_AUDIT_CHECKPOINT_EVERY", 1000, 1, 10_000_000),
        audit_checkpoint_seconds=_int(env, "CENTRE_AUDIT_CHECKPOINT_SECONDS", 10, 1, 86_400),
        audit_reader_roles=_roles(env, "CENTRE_AUDIT_READER_ROLES", ("auditor", "dpo")),
        audit_retention_days=_retention(env, "CENTRE_AUDIT_RETENTION"),
        poison_attempts=_int(env, "CENTRE_POISON_ATTEMPTS", 3, 2, 100),
        stuck_after_s=_float(env, "CENTRE_STUCK_AFTER_S", 60.0, 5.0, 86_400.0),
    )
