"""The append-only, hash-chained audit log.

Each row's hash covers its own fields and the previous row's hash (see `platform/chain.py`,
which also serves other chained logs). The chain's tip is kept in `audit_head` under the name
"audit", so rows cut from the end show too. Anyone with write access to the database could
recompute a whole chain; operators who need protection against that record the head hash that
`pujiang audit verify` prints elsewhere.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.orm import Session

from pujiang.platform import chain
from pujiang.platform.chain import GENESIS_HASH, Verification
from pujiang.platform.db import Database, utcnow
from pujiang.platform.models import AuditEntry

HEAD_NAME = "audit"
__all__ = [
    "GENESIS_HASH",
    "HEAD_NAME",
    "Outcome",
    "Verification",
    "append",
    "entry_hash",
    "record",
    "verify",
]


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
        "at": chain.timestamp_text(occurred_at),
        "request_id": request_id,
        "actor": actor,
        "action": action,
        "target": target,
        "outcome": outcome,
        "detail": detail,
    }
    return chain.link_hash(payload, prev_hash)


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
    last_id, prev_hash = chain.take_next(session, HEAD_NAME)
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
    chain.set_tip(session, HEAD_NAME, digest)
    return entry


def record(database: Database, **fields: Any) -> None:
    """Append one entry in a transaction of its own (for events outside a request's work)."""
    with database.session() as session:
        append(session, **fields)


def verify(session: Session) -> Verification:
    """Walk the whole chain; report the first row that does not fit."""

    def recompute(row: AuditEntry) -> str:
        return entry_hash(
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

    return chain.verify_rows(session, HEAD_NAME, chain.batched(session, AuditEntry), recompute)
