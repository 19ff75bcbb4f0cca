"""Holds (Art. 48(6)): a liaison asks that the provider not inform the user and/or not
remove the content, for at most 18 months; the centre records it and tells the provider
with a `notice/v1` of type `hold` on `provider.<p>.notices`.

The notice says what the provider must not do and until when; the liaison's reason stays
with the centre (it may describe an investigation).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select

from centre import messages as m
from centre.audit import AuditEvent, AuditLog
from centre.db import Report, make_engine, make_sessionmaker
from centre.kafka import BatchProducer, ProviderTopics
from centre.settings import Settings
from centre.topology import notices_topic
from routing.tables import Hold

MAX_DAYS = 548  # 18 months


class HoldError(ValueError):
    """A hold that cannot be placed; the message says why."""


def place_hold(
    settings: Settings,
    case_id: str,
    *,
    days: int,
    no_inform: bool,
    no_removal: bool,
    reason: str,
    requested_by: str,
) -> dict[str, Any]:
    """Record the hold and send the provider its notice; returns the notice."""
    if not (no_inform or no_removal):
        raise HoldError("a hold needs --no-inform, --no-removal or both")
    if not 1 <= days <= MAX_DAYS:
        raise HoldError(f"a hold lasts 1 to {MAX_DAYS} days (18 months, Art. 48(6)), not {days}")
    if not reason.strip():
        raise HoldError("a hold needs a reason (kept by the centre, not sent to the provider)")
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine).begin() as s:
            rep = s.execute(
                select(Report.report_id, Report.provider_id, Report.provider_report_id).where(
                    Report.case_id == case_id
                )
            ).one_or_none()
            if rep is None:
                raise HoldError(f"no case {case_id!r} is known to the centre")
            now = m.now()
            until = now + dt.timedelta(days=days)
            hold_id = str(uuid.uuid4())
            notice = {
                "schema": "notice/v1",
                "notice_id": hold_id,
                "type": "hold",
                "provider_id": rep.provider_id,
                "provider_report_id": rep.provider_report_id,
                "report_id": rep.report_id,
                "hold": {
                    "do_not_inform_user": no_inform,
                    "do_not_remove": no_removal,
                    "until": m.iso(until),
                },
                "at": m.iso(now),
            }
            # Sent before the record commits: a failed send leaves no hold the provider
            # never heard of; a failed commit after a send is retried by the liaison.
            ProviderTopics(settings).ensure([rep.provider_id])
            producer = BatchProducer(settings)
            try:
                producer.send(
                    notices_topic(rep.provider_id),
                    m.dumps(notice),
                    key=rep.provider_report_id.encode(),
                )
                producer.flush_or_raise(timeout=30)
            finally:
                producer.close()
            s.add(
                Hold(
                    hold_id=hold_id,
                    case_id=case_id,
                    report_id=rep.report_id,
                    provider_id=rep.provider_id,
                    no_inform=no_inform,
                    no_removal=no_removal,
                    reason=reason,
                    requested_by=requested_by,
                    created_at=now,
                    until=until,
                )
            )
            # In the hold's own transaction: a hold is never recorded without its entry.
            AuditLog(settings, engine=engine).append(
                s,
                [
                    AuditEvent(
                        actor=f"liaison:{requested_by.lower()}"[:100],
                        action="case.hold",
                        subject=f"case:{case_id}",
                        discriminator=hold_id,
                        at=now,
                        details={
                            "hold_id": hold_id,
                            "report_id": rep.report_id,
                            "do_not_inform_user": no_inform,
                            "do_not_remove": no_removal,
                            "until": m.iso(until),
                            "reason": reason,
                            "notice_id": notice["notice_id"],
                        },
                    )
                ],
            )
    finally:
        engine.dispose()
    return notice
