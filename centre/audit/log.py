"""`AuditLog`, the audit trail in the database as its users see it: `AuditStore` (in
`store`: appending, checkpoints, the head) with verification of the stored chain and its
export for an auditor (fed to `verify.ChainVerifier`), the entries about a subject read
decrypted for an authorised role, the retention purge (crypto-shredding: a person's key is
deleted, the chain still verifies), and rotation of the audit key-encryption key.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.engine import Connection

from centre.audit.format import (
    EXPORT_FORMAT,
    AuditAccessDenied,
    AuditEvent,
    _now,
    _sign_head,
    _text,
    _utc,
    at_text,
    entry_hash,
    staff_actor,
)
from centre.audit.keys import _b64, _data_key_aad, _open, _subject_key_aad
from centre.audit.store import (
    _DK,
    _E,
    _SK,
    SHREDDED,
    AuditStore,
    _chunks,
    count_committed,
)
from centre.audit.verify import ChainVerifier, VerifyResult, _Broken


class AuditLog(AuditStore):
    """The audit trail in the database: append, checkpoint, verify, export, show, purge.

    Appends are serialised by a row lock on `audit_head` taken first in the appending
    transaction, which then reads the head, inserts the entries, checkpoints and the new
    signed head, and commits as one: a process killed mid-batch leaves nothing of that batch,
    and the next append continues from the stored head. The audit writer is the one steady
    appender; the CLI's occasional appends (reads, purges, rotations) queue on the same lock.
    """

    # -- reading the chain -------------------------------------------------------------------

    def _walk(
        self, v: ChainVerifier, conn: Connection, upto: int, out: IO[bytes] | None = None
    ) -> None:
        """Feed entries and checkpoints 1…upto to `v`, raising _Broken at the first problem.
        With `out`, also write them as export lines, all of them even after a problem (the
        export is evidence), and raise only at the end."""
        cps = self._checkpoint_rows(conn, upto)
        cp = next(cps, None)
        dumps, b64 = orjson.dumps, base64.b64encode
        problem: _Broken | None = None
        for (
            seq,
            eid,
            at_s,
            actor,
            action,
            subject,
            person,
            dkid,
            ct,
            personal,
            prev,
            h,
        ) in self._entries(conn, upto):
            ct, prev, h = bytes(ct), bytes(prev), bytes(h)
            personal = bytes(personal) if personal else b""
            if out is not None:
                out.write(
                    dumps(
                        {
                            "type": "entry",
                            "seq": seq,
                            "event_id": eid,
                            "at": at_s,
                            "actor": actor,
                            "action": action,
                            "subject": subject,
                            "person": person,
                            "data_key_id": dkid,
                            "ciphertext": b64(ct).decode(),
                            "personal": b64(personal).decode() if personal else None,
                            "prev_hash": prev.hex(),
                            "hash": h.hex(),
                        }
                    )
                    + b"\n"
                )
            try:
                if problem is None:
                    v.entry(
                        seq,
                        eid.encode(),
                        at_s.encode(),
                        actor.encode(),
                        action.encode(),
                        subject.encode(),
                        _text(person),
                        dkid.encode(),
                        ct,
                        personal,
                        prev,
                        h,
                    )
                while cp is not None and cp[0] <= seq:
                    cp_at = at_text(cp[2])
                    if out is not None:
                        out.write(
                            dumps(
                                {
                                    "type": "checkpoint",
                                    "seq": cp[0],
                                    "hash": bytes(cp[1]).hex(),
                                    "at": cp_at,
                                    "key_id": cp[3],
                                    "signature": b64(bytes(cp[4])).decode(),
                                }
                            )
                            + b"\n"
                        )
                    cp_seq, cp_hash, cp_kid, cp_sig = cp[0], bytes(cp[1]), cp[3], bytes(cp[4])
                    cp = next(cps, None)
                    if problem is None:
                        v.tree_head("checkpoint", cp_seq, cp_hash, cp_at, cp_kid, cp_sig)
            except _Broken as b:
                if out is None:
                    raise
                problem = b
        if problem is not None:
            raise problem
        if cp is not None:  # checkpoints beyond the last entry: the tail is gone
            v.tree_head("checkpoint", cp[0], bytes(cp[1]), at_text(cp[2]), cp[3], bytes(cp[4]))

    def _check_head(self, v: ChainVerifier, conn: Connection, head: Any) -> None:
        if head is None:
            if v.seq:
                raise _Broken(1, "the audit head row is missing: the log was tampered with")
        elif head.signature is None:
            if head.seq or v.seq:
                raise _Broken(1, "the head of the log is not signed")
        else:
            v.tree_head(
                "head",
                head.seq,
                bytes(head.hash),
                at_text(head.at),
                head.key_id,
                bytes(head.signature),
            )
        # Entries and head commit together, so an entry beyond the head read *after* the
        # newest entry was read is one that no appender wrote.
        newest = conn.execute(select(func.max(_E.c.seq))).scalar() or 0
        now_head = self._head_row(conn)
        head_seq = now_head.seq if now_head is not None else 0
        if newest > head_seq:
            raise _Broken(
                head_seq + 1,
                f"entries {head_seq + 1}…{newest} are not covered by the signed head: inserted",
            )

    def verify(
        self,
        *,
        public_keys: Iterable[Ed25519PublicKey] | None = None,
        known_heads: Iterable[tuple[int, bytes]] = (),
    ) -> VerifyResult:
        """Verify the log in the database with only the centre's public key(s): every entry
        up to the signed head read at the start (later appends are left for the next run)."""
        keys = list(public_keys) if public_keys is not None else self.keys.centre_public_keys()
        v = ChainVerifier(keys, known_heads)
        try:
            with self.engine.connect() as conn:
                head = self._head_row(conn)
                self._walk(v, conn, head.seq if head is not None else 2**62)
                self._check_head(v, conn, head)
            v.finish()
        except _Broken as b:
            return v.result(b)
        return v.result()

    def export(self, path: Path | str) -> VerifyResult:
        """Write entries, checkpoints and a head signed now as JSON lines (see `verify_file`),
        verifying as it goes. The file is written whole even when the log is broken (it is
        evidence), but then without a fresh signed head, and the result says what broke."""
        path = Path(path)
        signer = self.keys.centre_signer()
        v = ChainVerifier(self.keys.centre_public_keys())
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        problem: _Broken | None = None
        try:
            with open(tmp, "wb") as out, self.engine.connect() as conn:
                head = self._head_row(conn)
                upto = head.seq if head is not None else 2**62
                out.write(
                    orjson.dumps(
                        {
                            "type": "header",
                            "format": EXPORT_FORMAT,
                            "exported_at": at_text(_now()),
                            "entries": upto if head is not None else None,
                            "hash": "SHA-256(prev_hash ‖ entry bytes), see centre/audit.py",
                        }
                    )
                    + b"\n"
                )
                try:
                    self._walk(v, conn, upto, out)
                    self._check_head(v, conn, head)
                except _Broken as b:
                    problem = b
                if problem is None:
                    at = at_text(_now())
                    kid, sig = _sign_head(signer, v.seq, v.hash, at)
                    out.write(
                        orjson.dumps(
                            {
                                "type": "head",
                                "seq": v.seq,
                                "hash": v.hash.hex(),
                                "at": at,
                                "key_id": kid,
                                "signature": _b64(sig),
                            }
                        )
                        + b"\n"
                    )
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return v.result(problem)

    # -- reading entries (decrypting) ---------------------------------------------------------

    def show(
        self, subject: str, *, role: str, reader: str, now: dt.datetime | None = None
    ) -> list[dict[str, Any]]:
        """The entries about `subject` (as subject or as the person), decrypted, for an
        authorised role. The read is recorded before anything is decrypted; a refused read is
        recorded too, then AuditAccessDenied is raised."""
        now = _utc(now or _now())
        actor = staff_actor(reader)
        allowed = role in self.settings.audit_reader_roles
        read = AuditEvent(
            actor=actor,
            action="audit.read" if allowed else "audit.read_refused",
            subject=subject,
            discriminator=f"{at_text(now)}|{uuid.uuid4()}",
            details={"role": role[:32]},
            at=now,
        )
        self.record([read], now=now)
        if not allowed:
            raise AuditAccessDenied(
                f"role {role[:32]!r} may not read the audit trail (allowed: "
                f"{', '.join(self.settings.audit_reader_roles)}); the attempt was recorded"
            )
        out: list[dict[str, Any]] = []
        data_keys: dict[str, AESGCM | None] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(_E)
                .where((_E.c.subject == subject) | (_E.c.person == subject))
                .order_by(_E.c.seq)
            ).all()
            persons = {r.person for r in rows if r.personal}
            person_keys = {
                r.person: r
                for chunk in _chunks(sorted(persons))
                for r in conn.execute(select(_SK).where(_SK.c.person.in_(chunk)))
            }
            for r in rows:
                eid = r.event_id.encode()
                at_s = at_text(r.at)
                intact = entry_hash(
                    bytes(r.prev_hash),
                    r.seq,
                    eid,
                    at_s.encode(),
                    r.actor.encode(),
                    r.action.encode(),
                    r.subject.encode(),
                    _text(r.person),
                    r.data_key_id.encode(),
                    bytes(r.ciphertext),
                    bytes(r.personal or b""),
                ) == bytes(r.hash)
                if r.data_key_id not in data_keys:
                    dk = conn.execute(select(_DK).where(_DK.c.key_id == r.data_key_id)).first()
                    data_keys[r.data_key_id] = (
                        AESGCM(
                            self.keyring.unwrap(
                                dk.kek_id, bytes(dk.wrapped), _data_key_aad(dk.key_id)
                            )
                        )
                        if dk
                        else None
                    )
                details = _open(data_keys[r.data_key_id], bytes(r.ciphertext), eid)
                entry: dict[str, Any] = {
                    "seq": r.seq,
                    "at": at_s,
                    "actor": r.actor,
                    "action": r.action,
                    "subject": r.subject,
                    "event_id": r.event_id,
                    "person": r.person,
                    "details": details,
                    "intact": intact,
                }
                if r.personal:
                    blob = bytes(r.personal)
                    skid = blob[:16].decode("ascii", "replace")
                    k = person_keys.get(r.person)
                    if k is None or k.key_id != skid:
                        entry["personal"], entry["personal_erased"] = None, True
                    else:
                        aead = AESGCM(
                            self.keyring.unwrap(
                                k.kek_id, bytes(k.wrapped), _subject_key_aad(k.person, k.key_id)
                            )
                        )
                        entry["personal"] = _open(aead, blob[16:], eid)
                        entry["personal_erased"] = False
                out.append(entry)
        return out

    # -- retention ------------------------------------------------------------------------

    def purge(
        self, *, now: dt.datetime | None = None, dry_run: bool = False, actor: str = "audit-purge"
    ) -> list[dict[str, Any]]:
        """Crypto-shred every person whose data outlived its retention (days since the key was
        last used, per kind; `default` for kinds not configured): delete the key and record
        the shredding in the log, in one transaction. Returns what was (or would be) shredded,
        as references and dates only."""
        now = _utc(now or _now())
        days = dict(self.settings.audit_retention_days)
        default = days.pop("default", 365)
        with self.sessions.begin() as s:
            if not dry_run:
                self._lock_head(s)  # the writer cannot use a key while it is being destroyed
            conds: list[ColumnElement[bool]] = [
                (_SK.c.kind == k) & (_SK.c.last_used_at <= now - dt.timedelta(days=d))
                for k, d in days.items()
            ]
            conds.append(_SK.c.kind.not_in(list(days)) if days else _SK.c.kind.is_not(None))
            conds[-1] = conds[-1] & (_SK.c.last_used_at <= now - dt.timedelta(days=default))
            cond = conds[0]
            for extra in conds[1:]:
                cond = cond | extra
            expired = s.execute(
                select(_SK.c.person, _SK.c.kind, _SK.c.key_id, _SK.c.last_used_at)
                .where(cond)
                .order_by(_SK.c.person)
            ).all()
            done = [
                {
                    "person": r.person,
                    "kind": r.kind,
                    "key_id": r.key_id,
                    "last_used_at": at_text(r.last_used_at),
                    "retention_days": days.get(r.kind, default),
                }
                for r in expired
            ]
            if dry_run or not done:
                return done
            for chunk in _chunks([d["person"] for d in done]):
                s.execute(delete(_SK).where(_SK.c.person.in_(chunk)))
            result = self.append(
                s,
                [
                    AuditEvent(
                        actor=actor,
                        action="audit.subject_shredded",
                        subject=d["person"],
                        person=d["person"],
                        discriminator=d["key_id"],
                        at=now,
                        details={
                            k: d[k] for k in ("kind", "key_id", "last_used_at", "retention_days")
                        },
                    )
                    for d in done
                ],
                now=now,
            )
            for d in done:
                self._subject_keys.pop((d["person"], d["key_id"]), None)
        count_committed(result)
        SHREDDED.inc(len(done))
        return done

    # -- keys --------------------------------------------------------------------------------

    def rotate_kek(self, *, by: str) -> str:
        """A new audit KEK, current from the next batch on; older KEKs stay to unwrap the
        keys they wrapped, so no entry is rewritten. The rotation is recorded first."""
        old = self.keyring.current_id()
        new = self.keyring.create()
        self.record(
            [
                AuditEvent(
                    actor=staff_actor(by),
                    action="audit.kek_rotated",
                    subject=f"kek:{new}",
                    details={"previous": old, "current": new},
                )
            ]
        )
        self.keyring.make_current(new)
        return new
