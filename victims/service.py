"""A case handler's desk for victims' requests, for `centre victims …` (and tests): file a
request on `victims.requests`, show its status to the victim, withdraw it, list what is
escalated. Every step, and every refusal, is an audit entry appended in the step's own
transaction.

Who the victim is (`--representative`, `--identity-ref`) is sealed straight into the audit
trail under the victim's own key (`victim:<request id>`); it never goes on a topic, into the
victims' tables, a log or a metric. The PIN is made here, shown once, and leaves this machine
only as its scrypt hash.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import uuid
from typing import Any

from centre import messages as m
from centre.db import make_engine, make_sessionmaker
from centre.settings import Settings
from centre.topology import VICTIMS_REQUESTS
from victims import flow
from victims import pin as pins
from victims.model import Item, build_request, is_request_id
from victims.tables import VictimRequest

log = logging.getLogger(__name__)
MAX_IDENTITY = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class VictimDesk:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        self.sessions = make_sessionmaker(self.engine)
        self._log: Any = None
        self._producer: Any = None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
        if self._log is not None:
            self._log.close()
        self.engine.dispose()

    def __enter__(self) -> VictimDesk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- audit ---------------------------------------------------------------------------

    def audit_log(self) -> Any:
        if self._log is None:
            from centre.audit import AuditLog

            self._log = AuditLog(self.settings, engine=self.engine)
        return self._log

    def sink(self) -> flow.AuditSink:
        return flow.AuditSink(log=self.audit_log())

    def _record(
        self,
        action: str,
        subject: str,
        details: dict[str, Any],
        *,
        by: str,
        person: str | None = None,
        personal: dict[str, Any] | None = None,
    ) -> None:
        from centre.audit import AuditEvent

        self.audit_log().record(
            [
                AuditEvent(
                    actor=flow.staff(by),
                    action=action,
                    subject=subject,
                    discriminator=uuid.uuid4().hex,
                    details=details,
                    person=person,
                    personal=personal,
                    at=m.now(),
                )
            ]
        )

    def refuse_input(self, what: str, codes: list[str], *, by: str) -> None:
        """A request the desk would not file (a malformed or empty list): nothing was sent;
        the refusal is recorded (codes only)."""
        self._record(
            "victim.request_refused",
            "victims:request",
            {"what": what, "codes": sorted(set(codes))[:20]},
            by=by,
        )

    # -- filing --------------------------------------------------------------------------

    @staticmethod
    def check_identity(name: str, value: str | None) -> str | None:
        if value is None:
            return None
        v = value.strip()
        if not v:
            raise flow.VictimError(f"{name} must not be empty when given")
        if len(v) > MAX_IDENTITY or _CONTROL.search(v):
            raise flow.VictimError(f"{name} must be one line of at most {MAX_IDENTITY} characters")
        return v

    def file(
        self,
        items: list[Item],
        *,
        by: str,
        representative: str | None = None,
        identity_ref: str | None = None,
        now: dt.datetime | None = None,
    ) -> tuple[str, str]:
        """Send a victim-request/v1; returns (request id, PIN). The identity, when given, is
        recorded first, sealed under the victim's key; the message carries only hashes and
        the PIN's slow hash. Raises when the broker does not take the message (the request
        does not exist then; the recorded identity is erased with its key at retention)."""
        from centre.kafka import BatchProducer

        now = now or m.now()
        if not items:
            raise flow.VictimError("the list holds no hashes")
        identity = {
            k: v
            for k, v in (("representative", representative), ("identity_ref", identity_ref))
            if v
        }
        rid = str(uuid.uuid4())
        pin = pins.new_pin()
        doc = build_request(
            request_id=rid,
            items=items,
            pin_hash=pins.hash_pin(pin),
            filed_by=re.sub(r"[^A-Za-z0-9._@-]", "-", by)[:100] or "unknown",
            requested_at=now,
            identity_recorded=bool(identity),
        )
        if identity:
            self._record(
                "victim.identity_recorded",
                flow.subject(rid),
                {"fields": sorted(identity)},
                by=by,
                person=flow.subject(rid),
                personal=identity,
            )
        if self._producer is None:
            self._producer = BatchProducer(
                self.settings, **{"message.timeout.ms": 20000, "message.max.bytes": 4 << 20}
            )
        try:
            self._producer.send(VICTIMS_REQUESTS, m.dumps(doc), key=rid.encode())
            self._producer.flush_or_raise(30)
        except Exception as exc:
            self._record(
                "victim.request_not_sent", flow.subject(rid), {"error": type(exc).__name__}, by=by
            )
            raise
        self._record(
            "victim.request_sent",
            flow.subject(rid),
            {"items": len(items), "topic": VICTIMS_REQUESTS},
            by=by,
        )
        return rid, pin

    def wait_filed(self, request_id: str, timeout: float) -> dict[str, Any] | None:
        """The request once the victims worker filed it and searched the stored reports:
        (matches, notices); None when it has not within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self.sessions() as s:
                r = s.get(VictimRequest, request_id)
                if r is not None and r.past_matched_at is not None:
                    return flow.requests(s, request_ids=[request_id])[0]
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.25)

    # -- the victim's access ------------------------------------------------------------

    def _authenticate(
        self, s: Any, request_id: str, pin: str, *, by: str, purpose: str
    ) -> VictimRequest:
        """The request when the id exists and the PIN is its PIN. Otherwise the refusal is
        recorded (in its own transaction) and NotFoundOrWrongPin raised: the same message,
        the same exit code and the same scrypt work whichever it was."""
        rid = (request_id or "").strip()
        r = flow.get(s, rid) if is_request_id(rid) else None
        ok = pins.check_pin(pin, r.pin_hash if r is not None else None)
        if ok and r is not None:
            return r
        s.rollback()
        self._record(
            "victim.access_refused",
            flow.subject(rid) if is_request_id(rid) else "victim:malformed-id",
            {"purpose": purpose, "why": "wrong_pin" if r is not None else "unknown_id"},
            by=by,
        )
        raise flow.NotFoundOrWrongPin()

    def status(self, request_id: str, pin: str, *, by: str) -> dict[str, Any]:
        with self.sessions.begin() as s:
            r = self._authenticate(s, request_id, pin, by=by, purpose="status")
            out = flow.status(s, r.request_id)
            flow._audit(
                s,
                flow.staff(by),
                "victim.status_shown",
                flow.subject(r.request_id),
                {
                    "reports": out["reports_holding_your_material"],
                    "notices": out["removal_notices"]["notices"],
                },
                at=m.now(),
                discriminator=uuid.uuid4().hex,
            )
            self.sink().commit(s)
        return out

    def withdraw(self, request_id: str, pin: str, *, by: str) -> flow.Withdrawn:
        with self.sessions.begin() as s:
            r = self._authenticate(s, request_id, pin, by=by, purpose="withdraw")
            out = flow.withdraw(s, r.request_id, by=by, now=m.now())
            self.sink().commit(s)
        return out

    # -- the centre's lists ---------------------------------------------------------------

    def escalations(self) -> list[dict[str, Any]]:
        with self.sessions() as s:
            return flow.escalations(s)

    def list(self, state: str | None = None) -> list[dict[str, Any]]:
        if state is not None and state not in (flow.OPEN, flow.WITHDRAWN):
            raise flow.VictimError("--state must be open or withdrawn")
        with self.sessions() as s:
            return flow.requests(s, state=state)
