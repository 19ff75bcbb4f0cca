"""Delivery acknowledgements (`delivery-ack/v1` on `le.acks`, from `centre liaison pull`): read
in routing's idle work, recorded as delivered-at on the deliveries, then committed."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypedDict, cast

from sqlalchemy import Table, bindparam, update

from centre import audit, metrics
from centre import messages as m
from centre.settings import Settings
from centre.topology import DELIVERY_ACKS, READERS, group_id
from routing.tables import Delivery

STAGE = "routing"  # the acks are routing's: its metrics and audit actor


class _Ack(TypedDict):
    """One delivery-ack/v1 as the deliveries' update takes it."""

    c: str  # case id
    r: str  # recipient
    t: dt.datetime  # when the recipient pulled the case


class AckReader:
    """Reads `delivery-ack/v1` from `le.acks` and records delivered-at on the deliveries;
    offsets are committed after the database. A malformed ack is counted and skipped."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import Consumer

        from centre.kafka import base_config

        self.topic = settings.topic(DELIVERY_ACKS)
        self.consumer = Consumer(
            {
                **base_config(settings),
                "group.id": group_id(settings, READERS["acks"].name),  # centre-acks
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.consumer.subscribe([self.topic])

    def record(self, sessions: Any, producer: Any) -> int:
        msgs = [x for x in self.consumer.consume(5000, timeout=0) if x.error() is None]
        if not msgs:
            return 0
        rows: list[_Ack] = []
        for x in msgs:
            try:
                ack = m.loads(x.value() or b"")
                rows.append(
                    {
                        "c": str(ack["case_id"]),
                        "r": str(ack["recipient"]),
                        "t": dt.datetime.fromisoformat(
                            str(ack["pulled_at"]).replace("Z", "+00:00")
                        ),
                    }
                )
            except (ValueError, KeyError, TypeError):
                metrics.ERRORS.labels(STAGE, "malformed_ack").inc()
        if rows:
            table = cast(Table, Delivery.__table__)
            with sessions.begin() as s:
                s.execute(
                    update(table)
                    .where(
                        table.c.case_id == bindparam("c"),
                        table.c.recipient == bindparam("r"),
                        table.c.delivered_at.is_(None),
                    )
                    .values(delivered_at=bindparam("t")),
                    rows,
                )
            audit.emit(
                producer,
                [
                    audit.AuditEvent(
                        actor=STAGE,
                        action="case.delivered",
                        subject=f"case:{r['c']}",
                        discriminator=r["r"],
                        at=r["t"],
                        details={"recipient": r["r"], "pulled_at": m.iso(r["t"])},
                    )
                    for r in rows
                ],
            )
            producer.flush_or_raise()
        self.consumer.commit(asynchronous=False)
        return len(rows)

    def close(self) -> None:
        self.consumer.close()
