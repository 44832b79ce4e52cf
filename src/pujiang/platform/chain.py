"""Hash chains: append-only logs whose rows each hash their content and the row before.

Editing a row breaks its hash, deleting one breaks the next row's link, inserting one breaks the
link after it. Each chain's tip is a named row of `audit_head`: appends lock it (serialising
writers on both databases) and the verifier compares it with the last row, so rows cut from the
end show too. The audit log is one chain; a module with a log of its own (the data exchange log)
names another and keeps its rows in its own table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pujiang.platform.models import AuditHead

GENESIS_HASH = "0" * 64


class ChainRow(Protocol):
    id: int
    prev_hash: str
    hash: str


def timestamp_text(moment: datetime) -> str:
    """Microsecond UTC text, identical whichever database stored the value."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def link_hash(payload: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 over the row's fields (canonical JSON, sorted keys) and the previous hash."""
    body = {**payload, "prev": prev_hash}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def take_next(session: Session, name: str) -> tuple[int, str]:
    """Reserve the next row id of chain `name`; returns (id, previous hash).

    Locks the head row until the caller's transaction ends. A chain whose head row does not
    exist yet starts at the genesis hash.
    """
    statement = (
        update(AuditHead)
        .where(AuditHead.name == name)
        .values(last_id=AuditHead.last_id + 1)
        .returning(AuditHead.last_id, AuditHead.last_hash)
    )
    row = session.execute(statement).one_or_none()
    if row is None:
        # The id is chosen here: the kernel's migration inserted row 1 by hand, so a
        # PostgreSQL sequence would hand out 1 again.
        next_id = select(func.coalesce(func.max(AuditHead.id), 0) + 1).scalar_subquery()
        try:
            with session.begin_nested():
                session.execute(
                    insert(AuditHead).values(
                        id=next_id, name=name, last_id=0, last_hash=GENESIS_HASH, note=""
                    )
                )
        except IntegrityError:
            pass  # another writer created it first; its lock now orders us after it
        row = session.execute(statement).one()
    return int(row[0]), str(row[1])


def set_tip(session: Session, name: str, digest: str) -> None:
    session.execute(update(AuditHead).where(AuditHead.name == name).values(last_hash=digest))


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    head_id: int
    head_hash: str
    first_bad_id: int | None = None
    reason: str = ""


def verify_rows(
    session: Session,
    name: str,
    rows: Iterator[Any],
    recompute: Callable[[Any], str],
) -> Verification:
    """Walk `rows` (in id order) against chain `name`; report the first row that does not fit."""
    head = session.scalars(select(AuditHead).where(AuditHead.name == name)).one_or_none()
    head_id, head_hash = (head.last_id, head.last_hash) if head else (0, GENESIS_HASH)
    expected_id, prev_hash, checked = 1, GENESIS_HASH, 0

    def bad(row_id: int, reason: str) -> Verification:
        return Verification(False, checked, head_id, head_hash, row_id, reason)

    for row in rows:
        if row.id > head_id:
            return bad(row.id, f"row {row.id} lies beyond the recorded head {head_id}: inserted")
        if row.id != expected_id:
            return bad(row.id, f"rows {expected_id}..{row.id - 1} are missing before row {row.id}")
        if row.prev_hash != prev_hash:
            return bad(
                row.id,
                f"row {row.id} does not link to the row before it: a row was removed, "
                "inserted or altered just before it",
            )
        if recompute(row) != row.hash:
            return bad(row.id, f"row {row.id} was altered: its content does not match its hash")
        prev_hash, expected_id, checked = row.hash, row.id + 1, checked + 1
    if expected_id - 1 != head_id or prev_hash != head_hash:
        return bad(
            expected_id,
            f"the log ends at row {expected_id - 1} but the head records row {head_id}: "
            "rows were removed from the end",
        )
    return Verification(True, checked, head_id, head_hash)


def batched(session: Session, model: Any, batch: int = 5000) -> Iterator[Any]:
    """All rows of a chain table in id order, a batch at a time (memory stays flat)."""
    last = 0
    while True:
        rows = session.scalars(
            select(model).where(model.id > last).order_by(model.id).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id
        session.expunge_all()
