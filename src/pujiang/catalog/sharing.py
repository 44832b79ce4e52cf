"""Inter-department sharing: request → decision within 10 working days → grant → exchange calls.

无条件共享 resources are granted at once; 有条件共享 wait for the provider's decision; 不予共享
are refused at the door. A grant names the fields the consumer gets, how each is masked and
when it ends. Every exchange call (served or refused) is written to the exchange log, a hash
chain of its own ("exchange" in `platform/chain.py`) holding the hashes of the request and of
the exact bytes answered. Revoking a grant takes effect on the next call: every call re-reads it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pujiang.catalog import datastore, publishing
from pujiang.catalog.datastore import QueryError, TableQuery
from pujiang.catalog.models import CatalogResource, ExchangeLogEntry, ShareRequest
from pujiang.catalog.schemas import ApproveIn, ShareRequestIn, ShareRequestOut
from pujiang.catalog.service import (
    field_problem,
    get_resource,
    is_provider,
    query_problem,
    refresh_view,
)
from pujiang.catalog.vocab import Masking, ShareType
from pujiang.platform import chain, identity
from pujiang.platform.db import Database, lock_for_write, utcnow
from pujiang.platform.errors import Problem
from pujiang.platform.i18n import register
from pujiang.platform.roles import ALL_DEPARTMENTS, AUDIT_READ
from pujiang.platform.security import CurrentPrincipal
from pujiang.platform.workcal import SHANGHAI, china_calendar

CHAIN = "exchange"
DECISION_WORKING_DAYS = 10
UNCONDITIONAL_TERM = timedelta(days=365)

register(
    {
        "sharing.not_shared": (
            "资源 {name} 为“不予共享”（依据：{basis}），不能申请",
            "Resource {name} is not shared (basis: {basis}); it cannot be requested",
        ),
        "sharing.own_resource": (
            "资源 {name} 属于本部门，无需申请",
            "Resource {name} belongs to your own department; no request is needed",
        ),
        "sharing.no_department": (
            "申请须以部门名义提出：当前账户不属于任何部门",
            "Requests are made by a department, and your account belongs to none",
        ),
        "sharing.other_department": (
            "只能以本部门名义申请",
            "You may request only for your own department",
        ),
        "sharing.field_unknown": (
            "资源 {name} 没有信息项 {value}；可选：{known}",
            "Resource {name} has no data item {value}; items are: {known}",
        ),
        "sharing.duplicate": (
            "本部门对资源 {name} 已有待审批或有效的申请（编号 {id}）",
            "Your department already has a pending or active request for {name} (id {id})",
        ),
        "sharing.request_unknown": ("共享申请 {id} 不存在", "No sharing request {id}"),
        "sharing.not_pending": (
            "申请 {id} 当前状态为 {state}，不能再审批",
            "Request {id} is {state}; it can no longer be decided",
        ),
        "sharing.expiry_past": (
            "有效期须晚于现在",
            "The expiry must lie in the future",
        ),
        "sharing.masking_field": (
            "脱敏设置中的 {value} 不是申请的字段",
            "Masking names {value}, which is not a requested field",
        ),
        "sharing.not_active": (
            "申请 {id} 不是有效的授权（状态 {state}）",
            "Request {id} is not an active grant (status {state})",
        ),
        "sharing.no_grant": (
            "本部门没有资源 {name} 的有效共享授权（未申请、已过期或已撤销）",
            "Your department holds no live grant for {name} (never granted, expired or revoked)",
        ),
        "sharing.no_data": ("资源 {name} 尚无数据", "Resource {name} holds no data yet"),
    }
)


class Status:
    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"


def _due_on(moment: datetime) -> date:
    return china_calendar().add_working_days(
        moment.astimezone(SHANGHAI).date(), DECISION_WORKING_DAYS
    )


def is_active(request: ShareRequest, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return (
        request.status == Status.APPROVED
        and request.revoked_at is None
        and (request.expires_at is None or request.expires_at > now)
    )


def is_overdue(request: ShareRequest, today: date | None = None) -> bool:
    today = today or utcnow().astimezone(SHANGHAI).date()
    return request.status == Status.PENDING and today > request.due_on


def request_out(request: ShareRequest) -> ShareRequestOut:
    return ShareRequestOut(
        id=request.id,
        resource=request.resource.name,
        resource_title=request.resource.title,
        provider_department_code=request.resource.department.code,
        consumer_department_code=request.consumer.code,
        requested_by=request.requested_by,
        purpose=request.purpose,
        fields=request.fields,
        status=request.status,
        requested_at=request.requested_at,
        due_on=request.due_on,
        overdue=is_overdue(request),
        decided_at=request.decided_at,
        decided_by=request.decided_by,
        reason=request.reason,
        masking=request.masking,
        expires_at=request.expires_at,
        revoked_at=request.revoked_at,
        active=is_active(request),
    )


def _default_masking(resource: CatalogResource, fields: list[str]) -> dict[str, str]:
    personal = {i["name"] for i in resource.items if i.get("personal")}
    return {f: (Masking.MASK if f in personal else Masking.NONE).value for f in fields}


def create_request(
    session: Session, principal: CurrentPrincipal, body: ShareRequestIn
) -> ShareRequest:
    resource = get_resource(session, body.resource)
    if principal.department_id is None:
        raise Problem.of(403, "forbidden", "sharing.no_department")
    consumer = (
        identity.get_department(session, body.consumer_department_code)
        if body.consumer_department_code
        else None
    )
    if (
        consumer is not None
        and consumer.id != principal.department_id
        and not principal.can(ALL_DEPARTMENTS)
    ):
        raise field_problem(
            403, "forbidden", "sharing.other_department", "consumer_department_code"
        )
    consumer_id = consumer.id if consumer is not None else principal.department_id
    if consumer_id == resource.department_id:
        raise field_problem(
            422, "validation-error", "sharing.own_resource", "resource", name=resource.name
        )
    if resource.share_type == ShareType.NONE:
        raise field_problem(
            422,
            "validation-error",
            "sharing.not_shared",
            "resource",
            name=resource.name,
            basis=resource.share_basis,
        )
    known = [i["name"] for i in resource.items]
    for name in body.fields:
        if name not in known:
            raise field_problem(
                422,
                "validation-error",
                "sharing.field_unknown",
                "fields",
                name=resource.name,
                value=name,
                known=", ".join(known),
            )
    for other in session.scalars(
        select(ShareRequest).where(
            ShareRequest.resource_id == resource.id,
            ShareRequest.consumer_department_id == consumer_id,
            ShareRequest.status.in_([Status.PENDING, Status.APPROVED]),
        )
    ):
        if other.status == Status.PENDING or is_active(other):
            raise field_problem(
                409, "conflict", "sharing.duplicate", "resource", name=resource.name, id=other.id
            )
    now = utcnow()
    fields = list(dict.fromkeys(body.fields))
    request = ShareRequest(
        resource_id=resource.id,
        consumer_department_id=consumer_id,
        requested_by=principal.actor,
        purpose=body.purpose,
        fields=fields,
        requested_at=now,
        due_on=_due_on(now),
    )
    if resource.share_type == ShareType.UNCONDITIONAL:
        # Open to every department by the catalog's own terms: granted on request, a year long.
        request.status = Status.APPROVED
        request.decided_at, request.decided_by = now, "system"
        request.masking = _default_masking(resource, fields)
        request.expires_at = now + UNCONDITIONAL_TERM
    session.add(request)
    session.flush()
    session.refresh(request)
    return request


def get_request(session: Session, request_id: int, *, for_update: bool = False) -> ShareRequest:
    """The request, else 404; `for_update` for a decision, which depends on its status."""
    if for_update:
        lock_for_write(session)
    request = session.get(
        ShareRequest,
        request_id,
        with_for_update={"of": ShareRequest} if for_update else None,  # not the joined rows
        populate_existing=for_update,
    )
    if request is None:
        raise Problem.of(404, "not-found", "sharing.request_unknown", id=request_id)
    return request


def _visible_request(
    session: Session, principal: CurrentPrincipal, request_id: int, *, for_update: bool = False
) -> ShareRequest:
    request = get_request(session, request_id, for_update=for_update)
    if principal.can(ALL_DEPARTMENTS) or principal.department_id in (
        request.consumer_department_id,
        request.resource.department_id,
    ):
        return request
    raise Problem.of(404, "not-found", "sharing.request_unknown", id=request_id)


def _decidable(session: Session, principal: CurrentPrincipal, request_id: int) -> ShareRequest:
    request = _visible_request(session, principal, request_id, for_update=True)
    if not is_provider(principal, request.resource):
        raise Problem.of(
            403,
            "forbidden",
            "catalog.not_provider",
            department=request.resource.department.code,
            name=request.resource.name,
        )
    if request.status != Status.PENDING:
        raise Problem.of(
            409, "conflict", "sharing.not_pending", id=request.id, state=request.status
        )
    return request


def approve(
    session: Session, principal: CurrentPrincipal, request_id: int, body: ApproveIn
) -> ShareRequest:
    request = _decidable(session, principal, request_id)
    now = utcnow()
    if body.expires_at.tzinfo is None or body.expires_at <= now:
        raise field_problem(422, "validation-error", "sharing.expiry_past", "expires_at")
    for name in body.masking:
        if name not in request.fields:
            raise field_problem(
                422, "validation-error", "sharing.masking_field", "masking", value=name
            )
    masking = _default_masking(request.resource, request.fields)
    masking.update({k: v.value for k, v in body.masking.items()})
    request.status = Status.APPROVED
    request.decided_at, request.decided_by = now, principal.actor
    request.masking, request.expires_at, request.reason = masking, body.expires_at, body.reason
    return request


def refuse(
    session: Session, principal: CurrentPrincipal, request_id: int, reason: str
) -> ShareRequest:
    request = _decidable(session, principal, request_id)
    request.status = Status.REFUSED
    request.decided_at, request.decided_by, request.reason = utcnow(), principal.actor, reason
    return request


def revoke(session: Session, principal: CurrentPrincipal, request_id: int) -> ShareRequest:
    request = _visible_request(session, principal, request_id, for_update=True)
    if not is_provider(principal, request.resource):
        raise Problem.of(
            403,
            "forbidden",
            "catalog.not_provider",
            department=request.resource.department.code,
            name=request.resource.name,
        )
    if not is_active(request):
        raise Problem.of(409, "conflict", "sharing.not_active", id=request.id, state=request.status)
    request.revoked_at, request.revoked_by = utcnow(), principal.actor
    return request


def list_requests(
    session: Session,
    principal: CurrentPrincipal,
    *,
    role: str | None = None,
    overdue_only: bool = False,
) -> list[ShareRequest]:
    """Requests the caller's department made (role=consumer), received (provider) or both."""
    query = select(ShareRequest).order_by(ShareRequest.id)
    rows = list(session.scalars(query))
    if not principal.can(ALL_DEPARTMENTS):
        mine = principal.department_id
        rows = [
            r
            for r in rows
            if (role != "provider" and r.consumer_department_id == mine)
            or (role != "consumer" and r.resource.department_id == mine)
        ]
    if overdue_only:
        rows = [r for r in rows if is_overdue(r)]
    return rows


# -- exchange -----------------------------------------------------------------------------------


def _digest(value: Any, key: str) -> str | None:
    if value is None:
        return None
    text = str(datastore.jsonable(value))
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()[:32]


def _masked(value: Any, how: str, key: str) -> Any:
    if how == Masking.MASK:
        return publishing.mask_value(value)
    if how == Masking.HASH:
        return _digest(value, key)
    return value


@dataclass
class ExchangeReply:
    status: int
    body: bytes
    rows: int
    grant_id: int | None


def live_grant(
    session: Session, principal: CurrentPrincipal, resource: CatalogResource
) -> ShareRequest | None:
    now = utcnow()
    for grant in session.scalars(
        select(ShareRequest).where(
            ShareRequest.resource_id == resource.id,
            ShareRequest.consumer_department_id == principal.department_id,
            ShareRequest.status == Status.APPROVED,
        )
    ):
        if is_active(grant, now):
            return grant
    return None


def exchange(
    session: Session, principal: CurrentPrincipal, name: str, query: TableQuery, secret: str
) -> ExchangeReply:
    """Serve one exchange call under the caller's department's live grant. Raises Problem."""
    resource = get_resource(session, name)
    grant = live_grant(session, principal, resource) if principal.department_id else None
    if grant is None:
        raise Problem.of(403, "forbidden", "sharing.no_grant", name=name)
    refresh_view(session, resource)
    if resource.data_updated_at is None:
        raise Problem.of(404, "not-found", "sharing.no_data", name=name)
    specs = [s for s in publishing.source_specs(resource) if s.name in grant.fields]
    for field in query.filters or {}:
        if field not in grant.fields:
            raise field_problem(
                422,
                "validation-error",
                "sharing.field_unknown",
                "filters",
                name=name,
                value=field,
                known=", ".join(grant.fields),
            )
    query.fields = list(grant.fields)
    try:
        page = datastore.run_query(session, publishing.source_table(resource), specs, query)
    except QueryError as exc:
        raise query_problem(exc) from None
    # Digests are keyed per grant: a consumer can join its own calls, not other grants'.
    key = f"{secret}:{grant.id}"
    records = [
        {f: _masked(v, grant.masking.get(f, Masking.NONE), key) for f, v in row.items()}
        for row in page.records
    ]
    body = orjson.dumps(
        {
            "resource": resource.name,
            "grant": grant.id,
            "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
            "total": page.total,
            "fields": page.fields,
            "records": records,
        }
    )
    return ExchangeReply(200, body, len(records), grant.id)


def request_hash(method: str, path: str, params: dict[str, Any], body: bytes) -> str:
    canonical = orjson.dumps(
        {
            "method": method,
            "path": path,
            "params": params,
            "body": hashlib.sha256(body).hexdigest(),
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


def _entry_payload(row: ExchangeLogEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": chain.timestamp_text(row.occurred_at),
        "request_id": row.request_id,
        "caller": row.caller,
        "consumer": row.consumer,
        "resource": row.resource,
        "grant_id": row.grant_id,
        "status": row.status,
        "rows": row.rows,
        "request_hash": row.request_hash,
        "response_hash": row.response_hash,
    }


def log_call(
    database: Database,
    *,
    principal: CurrentPrincipal,
    resource: str,
    reply_status: int,
    reply_body: bytes,
    rows: int,
    grant_id: int | None,
    request_digest: str,
    request_id: str,
) -> ExchangeLogEntry:
    """Append one call to the exchange log in a transaction of its own (refusals are kept too)."""
    with database.session() as session:
        entry_id, prev_hash = chain.take_next(session, CHAIN)
        entry = ExchangeLogEntry(
            id=entry_id,
            occurred_at=utcnow(),
            request_id=request_id[:64],
            caller=principal.actor[:96],
            consumer=(principal.department_code or "")[:64],
            resource=resource[:100],
            grant_id=grant_id,
            status=reply_status,
            rows=rows,
            request_hash=request_digest,
            response_hash=hashlib.sha256(reply_body).hexdigest(),
            prev_hash=prev_hash,
            hash="",
        )
        entry.hash = chain.link_hash(_entry_payload(entry), prev_hash)
        session.add(entry)
        chain.set_tip(session, CHAIN, entry.hash)
        return entry


def verify_log(session: Session) -> chain.Verification:
    def recompute(row: ExchangeLogEntry) -> str:
        return chain.link_hash(_entry_payload(row), row.prev_hash)

    return chain.verify_rows(session, CHAIN, chain.batched(session, ExchangeLogEntry), recompute)


def read_log(
    session: Session, principal: CurrentPrincipal, *, after_id: int = 0, limit: int = 100
) -> list[ExchangeLogEntry]:
    """Calls the caller's department made or served (auditors and admins: all)."""
    query = (
        select(ExchangeLogEntry)
        .where(ExchangeLogEntry.id > after_id)
        .order_by(ExchangeLogEntry.id)
        .limit(limit)
    )
    if not principal.can(ALL_DEPARTMENTS) and not principal.can(AUDIT_READ):
        provided = select(CatalogResource.name).where(
            CatalogResource.department_id == principal.department_id
        )
        query = query.where(
            or_(
                ExchangeLogEntry.consumer == (principal.department_code or ""),
                ExchangeLogEntry.resource.in_(provided),
            )
        )
    return list(session.scalars(query))
