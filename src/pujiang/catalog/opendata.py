"""The open-data side: opening datasets, and the 有条件开放 path (application → review →
data-use agreement → an API key that reaches that one dataset, under a rate limit).

The key belongs to a service account made for the application alone, so the kernel's ordinary
API-key check identifies the caller and this module decides what the key may read.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from pujiang.catalog import publishing
from pujiang.catalog.datastore import drop_table
from pujiang.catalog.models import CatalogResource, OpenApplication
from pujiang.catalog.schemas import (
    OpenApplicationIn,
    OpenApplicationOut,
    PublishOut,
    ReviewIn,
)
from pujiang.catalog.service import (
    ensure_provider,
    field_problem,
    get_resource,
    is_provider,
    refresh_view,
)
from pujiang.catalog.vocab import OpenType
from pujiang.platform import identity
from pujiang.platform.db import utcnow
from pujiang.platform.deps import principal_from_api_key
from pujiang.platform.errors import Problem
from pujiang.platform.i18n import register
from pujiang.platform.security import CurrentPrincipal

register(
    {
        "opendata.not_open": (
            "资源 {name} 为“非开放”，不能发布",
            "Resource {name} is not for opening (非开放); it cannot be published",
        ),
        "opendata.no_data": (
            "资源 {name} 还没有数据，先上传数据再开放",
            "Resource {name} holds no data yet; load it before opening",
        ),
        "opendata.not_opened": ("资源 {name} 未开放", "Resource {name} is not open"),
        "opendata.not_conditional": (
            "资源 {name} 不是“有条件开放”，无需申请",
            "Resource {name} is not conditionally open; no application is needed",
        ),
        "opendata.application_unknown": ("开放申请 {id} 不存在", "No open-data application {id}"),
        "opendata.application_state": (
            "开放申请 {id} 当前状态为 {state}，不能执行此操作",
            "Application {id} is {state}; this step is not possible now",
        ),
        "opendata.not_applicant": (
            "只有申请人本人可以签署协议",
            "Only the applicant may sign the agreement",
        ),
        "opendata.must_accept": (
            "须接受数据使用协议才能获得密钥",
            "The data-use agreement must be accepted to receive a key",
        ),
        "opendata.key_required": (
            "资源 {name} 为有条件开放：请使用为该数据集签发的 API 密钥",
            "Resource {name} is conditionally open: use the API key issued for this dataset",
        ),
        "opendata.key_wrong_dataset": (
            "该 API 密钥无权访问资源 {name}",
            "This API key does not reach resource {name}",
        ),
        "opendata.rate_limited": (
            "调用过于频繁：每分钟最多 {limit} 次",
            "Too many calls: at most {limit} a minute",
        ),
        "opendata.expiry_past": ("有效期须晚于现在", "The expiry must lie in the future"),
    }
)

AGREEMENT = (
    "数据使用协议（{title}，{code}）\n"
    "1. 使用方仅为申请所述目的使用数据：{purpose}\n"
    "2. 不得尝试识别数据中的个人，不得将数据与其他数据关联以重新识别个人；\n"
    "3. 不得转让、转售 API 密钥或原样再分发数据；\n"
    "4. 使用数据须注明来源：{department}；\n"
    "5. 提供部门可因违约撤销授权。\n"
    "Data-use agreement: use only for the stated purpose, never re-identify individuals, never "
    "pass on the key or redistribute the raw data, credit the provider; the provider may "
    "revoke access on breach."
)


class AppStatus:
    PENDING = "pending"
    APPROVED = "approved"  # reviewed; waiting for the applicant to sign the agreement
    REFUSED = "refused"
    ACTIVE = "active"  # agreement signed, key issued
    REVOKED = "revoked"


# -- opening ------------------------------------------------------------------------------------


def open_resource(session: Session, principal: CurrentPrincipal, name: str) -> PublishOut:
    resource = get_resource(session, name, for_update=True)
    ensure_provider(principal, resource)
    if resource.open_type == OpenType.NONE:
        raise Problem.of(409, "conflict", "opendata.not_open", name=name)
    refresh_view(session, resource)
    if resource.data_updated_at is None:
        raise Problem.of(409, "conflict", "opendata.no_data", name=name)
    if resource.published_id is None:
        resource.published_id = str(uuid.uuid4())
    result = publishing.publish_copy(session, resource)
    resource.opened_at = resource.opened_at or utcnow()
    return PublishOut(
        resource=resource.name,
        published_id=resource.published_id,
        rows=result.rows,
        k=result.k,
        columns=result.columns,
    )


def close_resource(session: Session, principal: CurrentPrincipal, name: str) -> CatalogResource:
    resource = get_resource(session, name, for_update=True)
    ensure_provider(principal, resource)
    if resource.opened_at is None or resource.published_id is None:
        raise Problem.of(409, "conflict", "opendata.not_opened", name=name)
    drop_table(session, resource.published_id)
    resource.opened_at = None
    return resource


def opened(session: Session, name: str) -> CatalogResource:
    resource = get_resource(session, name)
    if resource.opened_at is None:
        raise Problem.of(404, "not-found", "catalog.not_found", name=name)
    return resource


# -- applications -------------------------------------------------------------------------------


def application_out(application: OpenApplication, api_key: str | None = None) -> OpenApplicationOut:
    return OpenApplicationOut(
        id=application.id,
        resource=application.resource.name,
        applicant=application.applicant,
        organisation=application.organisation,
        purpose=application.purpose,
        status=application.status,
        created_at=application.created_at,
        reviewed_by=application.reviewed_by,
        reason=application.reason,
        agreement=application.agreement,
        agreed_at=application.agreed_at,
        rate_per_minute=application.rate_per_minute,
        expires_at=application.expires_at,
        api_key=api_key,
    )


def apply(
    session: Session, principal: CurrentPrincipal, body: OpenApplicationIn
) -> OpenApplication:
    resource = opened(session, body.resource)
    if resource.open_type != OpenType.CONDITIONAL:
        raise Problem.of(409, "conflict", "opendata.not_conditional", name=resource.name)
    application = OpenApplication(
        resource_id=resource.id,
        applicant=principal.actor,
        organisation=body.organisation,
        contact=body.contact,
        purpose=body.purpose,
    )
    session.add(application)
    session.flush()
    session.refresh(application)
    return application


def get_application(
    session: Session, principal: CurrentPrincipal, application_id: int
) -> OpenApplication:
    application = session.get(OpenApplication, application_id)
    if application is None or not (
        application.applicant == principal.actor or is_provider(principal, application.resource)
    ):
        raise Problem.of(404, "not-found", "opendata.application_unknown", id=application_id)
    return application


def list_applications(session: Session, principal: CurrentPrincipal) -> list[OpenApplication]:
    rows = session.scalars(select(OpenApplication).order_by(OpenApplication.id))
    return [a for a in rows if a.applicant == principal.actor or is_provider(principal, a.resource)]


def _state(application: OpenApplication, *allowed: str) -> None:
    if application.status not in allowed:
        raise Problem.of(
            409,
            "conflict",
            "opendata.application_state",
            id=application.id,
            state=application.status,
        )


def review(
    session: Session, principal: CurrentPrincipal, application_id: int, body: ReviewIn
) -> OpenApplication:
    application = get_application(session, principal, application_id)
    ensure_provider(principal, application.resource)
    _state(application, AppStatus.PENDING)
    if body.expires_at is not None and body.expires_at <= utcnow():
        raise field_problem(422, "validation-error", "opendata.expiry_past", "expires_at")
    application.reviewed_by, application.reviewed_at = principal.actor, utcnow()
    application.reason = body.reason
    if not body.approve:
        application.status = AppStatus.REFUSED
        return application
    resource = application.resource
    application.status = AppStatus.APPROVED
    application.rate_per_minute = body.rate_per_minute
    application.expires_at = body.expires_at
    application.agreement = AGREEMENT.format(
        title=resource.title,
        code=resource.code,
        purpose=application.purpose,
        department=resource.department.name,
    )
    return application


def agree(
    session: Session, principal: CurrentPrincipal, application_id: int, accept: bool
) -> tuple[OpenApplication, str]:
    """The applicant signs; a service account for this application and its key are made."""
    application = get_application(session, principal, application_id)
    if application.applicant != principal.actor:
        raise Problem.of(403, "forbidden", "opendata.not_applicant")
    _state(application, AppStatus.APPROVED)
    if not accept:
        raise Problem.of(422, "validation-error", "opendata.must_accept")
    account = identity.create_service_account(
        session,
        name=f"opendata-app-{application.id}",
        display_name=f"{application.organisation} / {application.resource.name}",
        roles=[],
    )
    _, key = identity.issue_api_key(
        session,
        account,
        label=f"open data: {application.resource.name}",
        expires_at=application.expires_at,
    )
    application.account_id = account.id
    application.agreed_at = utcnow()
    application.status = AppStatus.ACTIVE
    return application, key


def revoke_application(
    session: Session, principal: CurrentPrincipal, application_id: int
) -> OpenApplication:
    application = get_application(session, principal, application_id)
    ensure_provider(principal, application.resource)
    _state(application, AppStatus.ACTIVE, AppStatus.APPROVED)
    application.status, application.revoked_at = AppStatus.REVOKED, utcnow()
    if application.account_id is not None:
        identity.set_active(session, f"opendata-app-{application.id}", False)
    return application


# -- reading open data --------------------------------------------------------------------------


@dataclass
class RateLimiter:
    """Calls per key per minute, counted in this process (each API node counts its own)."""

    window: float = 60.0
    calls: dict[int, deque[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, key: int, limit: int) -> bool:
        now = time.monotonic()
        with self.lock:
            recent = self.calls.setdefault(key, deque())
            while recent and recent[0] <= now - self.window:
                recent.popleft()
            if len(recent) >= limit:
                return False
            recent.append(now)
            return True


def check_data_access(
    session: Session, resource: CatalogResource, api_key: str | None, limiter: RateLimiter
) -> None:
    """May this caller read the opened resource's rows? Raises 403/429 Problems."""
    if resource.open_type != OpenType.CONDITIONAL:
        return
    principal = principal_from_api_key(session, api_key) if api_key else None
    if principal is None:
        raise Problem.of(403, "forbidden", "opendata.key_required", name=resource.name)
    application = session.scalars(
        select(OpenApplication).where(OpenApplication.account_id == principal.id)
    ).one_or_none()
    now = utcnow()
    if (
        application is None
        or application.resource_id != resource.id
        or application.status != AppStatus.ACTIVE
        or (application.expires_at is not None and application.expires_at <= now)
    ):
        if principal.department_id is not None and (
            principal.department_id == resource.department_id
        ):
            return  # the provider's own systems
        raise Problem.of(403, "forbidden", "opendata.key_wrong_dataset", name=resource.name)
    if not limiter.allow(application.id, application.rate_per_minute):
        problem = Problem.of(
            429, "too-many-attempts", "opendata.rate_limited", limit=application.rate_per_minute
        )
        problem.headers["Retry-After"] = "60"
        raise problem
