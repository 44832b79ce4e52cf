"""Reading and verifying the audit log: auditors only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from pujiang.platform import audit
from pujiang.platform.deps import DbSession, require
from pujiang.platform.models import AuditEntry
from pujiang.platform.roles import AUDIT_READ
from pujiang.platform.schemas import AuditEntryOut, AuditPage, AuditVerifyOut
from pujiang.platform.security import CurrentPrincipal

router = APIRouter(prefix="/api/audit", tags=["审计 Audit"])


@router.get("", response_model=AuditPage, summary="审计日志 / Audit log")
def read_log(
    session: DbSession,
    _: Annotated[CurrentPrincipal, Depends(require(AUDIT_READ))],
    actor: str | None = None,
    action: str | None = None,
    outcome: audit.Outcome | None = None,
    request_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after_id: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    query = select(AuditEntry).where(AuditEntry.id > after_id).order_by(AuditEntry.id).limit(limit)
    filters = {
        AuditEntry.actor: actor,
        AuditEntry.action: action,
        AuditEntry.outcome: outcome,
        AuditEntry.request_id: request_id,
    }
    for column, value in filters.items():
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(AuditEntry.occurred_at >= since)
    if until is not None:
        query = query.where(AuditEntry.occurred_at < until)
    rows = session.scalars(query).all()
    items = [AuditEntryOut.model_validate(row) for row in rows]
    return AuditPage(items=items, next_after_id=rows[-1].id if len(rows) == limit else None)


@router.get("/verify", response_model=AuditVerifyOut, summary="校验哈希链 / Verify the hash chain")
def verify_log(
    session: DbSession, _: Annotated[CurrentPrincipal, Depends(require(AUDIT_READ))]
) -> AuditVerifyOut:
    result = audit.verify(session)
    return AuditVerifyOut(**result.__dict__)
