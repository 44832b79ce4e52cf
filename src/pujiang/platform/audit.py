"""The append-only, hash-chained audit log.

Each row's hash covers its own fields and the previous row's hash, so editing a row breaks its
hash, deleting one breaks the next row's link, and inserting one breaks the link after it. The
chain's tip is kept in `audit_head`: appends lock that row (serialising writers on both
databases) and the verifier compares it with the last row, so rows cut from the end show too.
Anyone with write access to the database could recompute a whole chain; operators who need
protection against that record the head hash that `pujiang audit verify` prints elsewhere.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pujiang.platform.db import Database, utcnow
from pujiang.platform.models import AuditEntry, AuditHead

GENESIS_HASH = "0" * 64
HEAD_NAME = "audit"


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


def entry_hash(
    *,
    entry_id: int,
    occurred_at: datetime,
    request_id: str,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    detail: dict[str, Any],
    prev_hash: str,
) -> str:
    payload = {
        "id": entry_id,
        # Microsecond UTC text, identical whichever database stored the value.
        "at": occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "request_id": request_id,
        "actor": actor,
        "action": action,
        "target": target,
        "outcome": outcome,
        "detail": detail,
        "prev": prev_hash,
    }
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    outcome: Outcome | str = Outcome.SUCCESS,
    target: str = "",
    request_id: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add one entry inside the caller's transaction (it commits with the change it records)."""
    # Taking the head row first locks it until commit, so concurrent appends form one chain.
    last_id, prev_hash = session.execute(
        update(AuditHead)
        .where(AuditHead.name == HEAD_NAME)
        .values(last_id=AuditHead.last_id + 1)
        .returning(AuditHead.last_id, AuditHead.last_hash)
    ).one()
    occurred_at = utcnow()
    detail = orjson.loads(orjson.dumps(detail or {}))  # store exactly what was hashed
    fields = {
        "request_id": request_id[:64],
        "actor": actor[:96],
        "action": action[:128],
        "target": target[:255],
        "outcome": str(outcome),
    }
    digest = entry_hash(
        entry_id=last_id, occurred_at=occurred_at, detail=detail, prev_hash=prev_hash, **fields
    )
    entry = AuditEntry(
        id=last_id,
        occurred_at=occurred_at,
        detail=detail,
        prev_hash=prev_hash,
        hash=digest,
        **fields,
    )
    session.add(entry)
    session.execute(update(AuditHead).where(AuditHead.name == HEAD_NAME).values(last_hash=digest))
    return entry


def record(database: Database, **fields: Any) -> None:
    """Append one entry in a transaction of its own (for events outside a request's work)."""
    with database.session() as session:
        append(session, **fields)


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    head_id: int
    head_hash: str
    first_bad_id: int | None = None
    reason: str = ""


def _rows(session: Session, batch: int = 5000) -> Iterator[AuditEntry]:
    last = 0
    while True:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.id > last).order_by(AuditEntry.id).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id
        session.expunge_all()


def verify(session: Session) -> Verification:
    """Walk the whole chain; report the first row that does not fit."""
    head = session.scalars(select(AuditHead).where(AuditHead.name == HEAD_NAME)).one()
    expected_id, prev_hash, checked = 1, GENESIS_HASH, 0

    def bad(row_id: int, reason: str) -> Verification:
        return Verification(False, checked, head.last_id, head.last_hash, row_id, reason)

    for row in _rows(session):
        if row.id > head.last_id:
            return bad(
                row.id, f"row {row.id} lies beyond the recorded head {head.last_id}: inserted"
            )
        if row.id != expected_id:
            return bad(row.id, f"rows {expected_id}..{row.id - 1} are missing before row {row.id}")
        if row.prev_hash != prev_hash:
            return bad(
                row.id,
                f"row {row.id} does not link to the row before it: a row was removed, "
                "inserted or altered just before it",
            )
        computed = entry_hash(
            entry_id=row.id,
            occurred_at=row.occurred_at,
            request_id=row.request_id,
            actor=row.actor,
            action=row.action,
            target=row.target,
            outcome=row.outcome,
            detail=row.detail,
            prev_hash=row.prev_hash,
        )
        if computed != row.hash:
            return bad(row.id, f"row {row.id} was altered: its content does not match its hash")
        prev_hash, expected_id, checked = row.hash, row.id + 1, checked + 1
    if expected_id - 1 != head.last_id or prev_hash != head.last_hash:
        return bad(
            expected_id,
            f"the log ends at row {expected_id - 1} but the head records row {head.last_id}: "
            "rows were removed from the end",
        )
    return Verification(True, checked, head.last_id, head.last_hash)
