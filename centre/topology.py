"""The whole topology in one place: every topic, every stage, what flows where.

    companies ──report/v1──▶ reports.intake ──[intake]──▶ reports.accepted ──[triage]──▶
        reports.triaged ──[routing]──▶ le.<cc> … le.europol  (sealed case/v1)
    intake, routing ──feedback/v1──▶ provider.<p>.feedback     (created on first sight of p)
    companies, authorities ──complaint/v1──▶ complaints.intake ──[complaints]──▶
        provider.<p>.notices, le.<cc> (sealed retraction/v1 of an upheld complaint)
    case handlers ──victim-request/v1──▶ victims.requests ──[victims]──▶
        provider.<p>.notices (removal, repeated until answered) ◀── notices.responses
    reports.triaged ──[victims, group centre-victims-match]── every new report matched
        against the open victims' banks, beside triage (triage knows nothing of victims)

Each stage is a faust agent in its own worker process and consumer group (`centre worker
STAGE`); `centre up` starts one of each. More processes of a stage share its partitions.
A stage may also read other topics in its periodic work (`READERS`), each through a
consumer group of its own, committed after the database like its source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from centre.settings import Settings

MEMBER_STATES: tuple[str, ...] = (
    "at",
    "be",
    "bg",
    "cy",
    "cz",
    "de",
    "dk",
    "ee",
    "es",
    "fi",
    "fr",
    "gr",
    "hr",
    "hu",
    "ie",
    "it",
    "lt",
    "lu",
    "lv",
    "mt",
    "nl",
    "pl",
    "pt",
    "ro",
    "se",
    "si",
    "sk",
)
EUROPOL = "europol"
RECIPIENTS: tuple[str, ...] = MEMBER_STATES + (EUROPOL,)

DAY_MS = 24 * 3600 * 1000
MIB = 1024 * 1024

INTAKE = "reports.intake"
ACCEPTED = "reports.accepted"
TRIAGED = "reports.triaged"
NOTICE_RESPONSES = "notices.responses"
DELIVERY_ACKS = "le.acks"  # delivery-ack/v1 from `centre liaison pull` (an addition)
AUDIT_EVENTS = "audit.events"  # audit-event/v1 from every worker to the audit writer
COMPLAINTS_INTAKE = "complaints.intake"  # complaint/v1 from companies and authorities
VICTIMS_REQUESTS = "victims.requests"  # victim-request/v1 from `centre victims request`


@dataclass(frozen=True)
class TopicSpec:
    name: str  # without the CENTRE_TOPIC_PREFIX
    partitions: int
    purpose: str
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StageSpec:
    name: str
    source: str
    outputs: tuple[str, ...]
    factory: str  # "module:Class", imported only by the worker that runs the stage


@dataclass(frozen=True)
class ReaderSpec:
    """A second consumer of a stage's worker, read in the stage's periodic work (`idle`)."""

    name: str  # its consumer group is group_id(settings, name)
    stage: str  # the stage whose worker reads it
    source: str


def le_topic(recipient: str) -> str:
    return f"le.{recipient}"


def urgent_topic(recipient: str) -> str:
    """The recipient's P1 lane (an addition to the contract): P1 cases go here as well as to
    `le.<cc>`, and `centre liaison pull` drains it first, so under a backlog a liaison sees an
    urgent case before queued P2/P3 ones. Tools that read only `le.<cc>` still get every case."""
    return f"le.{recipient}.urgent"


def feedback_topic(provider_id: str) -> str:
    return f"provider.{provider_id}.feedback"


def notices_topic(provider_id: str) -> str:
    return f"provider.{provider_id}.notices"


def _retention(days: int, max_bytes: int) -> dict[str, str]:
    return {"retention.ms": str(days * DAY_MS), "max.message.bytes": str(max_bytes)}


def static_topics(settings: Settings) -> list[TopicSpec]:
    """Topics that exist from the start; provider topics are made when a provider appears."""
    hot = settings.partitions
    # The intake topic accepts more than the 1 MiB report limit so that an oversized report
    # reaches intake and its sender gets a `too_large` feedback instead of a broker error.
    topics = [
        TopicSpec(INTAKE, hot, "report/v1 from companies", _retention(14, 4 * MIB)),
        TopicSpec(ACCEPTED, hot, "validated reports with their report_id", _retention(14, 4 * MIB)),
        TopicSpec(
            TRIAGED,
            hot,
            "reports with cluster, bank, category and priority decisions",
            _retention(14, 4 * MIB),
        ),
        TopicSpec(NOTICE_RESPONSES, 3, "notice-response/v1 from companies", _retention(30, MIB)),
        TopicSpec(
            COMPLAINTS_INTAKE,
            3,
            "complaint/v1 from companies and coordinating authorities",
            _retention(30, MIB),
        ),
        # Hashes of a victim's pictures (never the pictures, never who they are): kept a
        # week, long enough for a worker that is down; the bank lives in the database.
        TopicSpec(
            VICTIMS_REQUESTS, 1, "victim-request/v1 from case handlers", _retention(7, 4 * MIB)
        ),
        TopicSpec(
            DELIVERY_ACKS,
            1,
            "delivery-ack/v1: which liaison pulled which case, when",
            _retention(30, MIB),
        ),
        # One partition: one writer reads it, and every stage's batch sends to it, so each
        # partition more would be one more produce request per batch of every stage.
        TopicSpec(
            AUDIT_EVENTS,
            1,
            "audit-event/v1: every decision and access, for the audit writer",
            _retention(14, 4 * MIB),
        ),
    ]
    # Liaison topics keep cases long enough for a liaison that is away for weeks. One
    # partition each: one liaison reads them, and a partition more would cost the broker a
    # produce request more per routing batch (librdkafka sends one request per partition).
    topics += [
        TopicSpec(
            le_topic(r), 1, f"sealed case/v1 and retraction/v1 for {r}", _retention(90, 8 * MIB)
        )
        for r in RECIPIENTS
    ]
    topics += [
        TopicSpec(
            urgent_topic(r), 1, f"sealed P1 case/v1 for {r}, read first", _retention(90, 8 * MIB)
        )
        for r in RECIPIENTS
    ]
    return topics


def provider_topics(provider_id: str) -> list[TopicSpec]:
    return [
        # One partition: the provider reads its feedback in the order it was sent.
        TopicSpec(
            feedback_topic(provider_id), 1, "feedback/v1 for the provider", _retention(30, MIB)
        ),
        TopicSpec(notices_topic(provider_id), 1, "notice/v1 for the provider", _retention(90, MIB)),
    ]


STAGES: dict[str, StageSpec] = {
    "intake": StageSpec(
        "intake", INTAKE, (ACCEPTED, "provider.<p>.feedback"), "intake.stage:IntakeStage"
    ),
    "triage": StageSpec("triage", ACCEPTED, (TRIAGED,), "triage.stage:TriageStage"),
    "routing": StageSpec(
        "routing", TRIAGED, ("le.<cc>", "provider.<p>.feedback"), "routing.stage:RoutingStage"
    ),
    "audit": StageSpec("audit", AUDIT_EVENTS, (), "centre.audit.writer:AuditWriterStage"),
    "complaints": StageSpec(
        "complaints",
        COMPLAINTS_INTAKE,
        ("provider.<p>.notices", "le.<cc>"),
        "complaints.stage:ComplaintIntakeStage",
    ),
    # Also reads notices.responses and reports.triaged (READERS).
    "victims": StageSpec(
        "victims", VICTIMS_REQUESTS, ("provider.<p>.notices",), "victims.stage:VictimStage"
    ),
}


READERS: dict[str, ReaderSpec] = {
    "acks": ReaderSpec("acks", "routing", DELIVERY_ACKS),
    "victims-responses": ReaderSpec("victims-responses", "victims", NOTICE_RESPONSES),
    # Every new report, matched against the open victims' banks by the victims worker.
    "victims-match": ReaderSpec("victims-match", "victims", TRIAGED),
}


def group_id(settings: Settings, stage_name: str) -> str:
    """The consumer group of a stage's workers (more processes of a stage share it), or of
    a reader in READERS."""
    return f"{settings.topic_prefix}centre-{stage_name}"
