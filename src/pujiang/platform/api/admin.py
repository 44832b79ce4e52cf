"""Departments, users, service accounts and access grants."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from pujiang.platform import access, identity
from pujiang.platform.deps import Context, DbSession, require
from pujiang.platform.errors import Problem
from pujiang.platform.identifiers import mask_name
from pujiang.platform.models import (
    AccessGrant,
    ApiKey,
    Department,
    Principal,
    PrincipalKind,
)
from pujiang.platform.privacy import may_see_personal, record_unmasked_read
from pujiang.platform.roles import (
    ALL_DEPARTMENTS,
    DEPARTMENTS_READ,
    DEPARTMENTS_WRITE,
    GRANTS_WRITE,
    USERS_READ,
    USERS_WRITE,
)
from pujiang.platform.schemas import (
    ApiKeyIn,
    ApiKeyOut,
    DepartmentIn,
    DepartmentOut,
    GrantIn,
    GrantOut,
    NewApiKeyOut,
    PrincipalOut,
    ServiceAccountIn,
    ServiceAccountOut,
    UserIn,
    UserPatch,
)
from pujiang.platform.security import CurrentPrincipal

router = APIRouter(prefix="/api", tags=["账户与部门 Accounts"])


def _principal_out(principal: Principal, *, reveal: bool) -> PrincipalOut:
    name = principal.display_name if reveal else mask_name(principal.display_name)
    return PrincipalOut(
        username=principal.username,
        kind=principal.kind,
        display_name=name,
        department_code=principal.department.code if principal.department else None,
        roles=principal.roles,
        is_active=principal.is_active,
        locked_until=principal.locked_until,
        last_login_at=principal.last_login_at,
    )


def _reveal(
    session: Session, request: Request, caller: CurrentPrincipal, rows: list[Principal]
) -> bool:
    reveal = may_see_personal(caller)
    if reveal and any(row.display_name for row in rows):
        record_unmasked_read(
            session,
            caller,
            what="principals.display_name",
            targets=[row.username for row in rows],
            request_id=request.state.request_id,
        )
    return reveal


# -- departments ----------------------------------------------------------------------------------


@router.get("/departments", response_model=list[DepartmentOut], summary="部门列表 / Departments")
def list_departments(
    session: DbSession, _: Annotated[CurrentPrincipal, Depends(require(DEPARTMENTS_READ))]
) -> list[Department]:
    return identity.list_departments(session)


@router.post(
    "/departments",
    response_model=DepartmentOut,
    status_code=status.HTTP_201_CREATED,
    summary="新建部门 / Create a department",
)
def create_department(
    body: DepartmentIn,
    request: Request,
    session: DbSession,
    _: Annotated[CurrentPrincipal, Depends(require(DEPARTMENTS_WRITE))],
) -> Department:
    request.state.audit_target = f"department:{body.code}"
    return identity.create_department(session, **body.model_dump())


# -- users ----------------------------------------------------------------------------------------


@router.get("/users", response_model=list[PrincipalOut], summary="账户列表 / Accounts")
def list_users(
    request: Request,
    session: DbSession,
    caller: Annotated[CurrentPrincipal, Depends(require(USERS_READ))],
    kind: PrincipalKind | None = None,
    department_code: str | None = None,
) -> list[PrincipalOut]:
    rows = identity.list_principals(session, kind=kind, department_code=department_code)
    reveal = _reveal(session, request, caller, rows)
    return [_principal_out(row, reveal=reveal) for row in rows]


@router.post(
    "/users",
    response_model=PrincipalOut,
    status_code=status.HTTP_201_CREATED,
    summary="新建用户 / Create a user",
)
def create_user(
    body: UserIn,
    request: Request,
    context: Context,
    session: DbSession,
    _: Annotated[CurrentPrincipal, Depends(require(USERS_WRITE))],
) -> PrincipalOut:
    request.state.audit_target = f"principal:{body.username}"
    user = identity.create_user(session, context, **body.model_dump())
    return _principal_out(user, reveal=True)


@router.get("/users/{username}", response_model=PrincipalOut, summary="查看账户 / One account")
def get_user(
    username: str,
    request: Request,
    session: DbSession,
    caller: Annotated[CurrentPrincipal, Depends(require(USERS_READ))],
) -> PrincipalOut:
    row = identity.get_principal(session, username)
    return _principal_out(row, reveal=_reveal(session, request, caller, [row]))


@router.patch(
    "/users/{username}", response_model=PrincipalOut, summary="修改账户 / Change an account"
)
def patch_user(
    username: str,
    body: UserPatch,
    request: Request,
    context: Context,
    session: DbSession,
    _: Annotated[CurrentPrincipal, Depends(require(USERS_WRITE))],
) -> PrincipalOut:
    request.state.audit_target = f"principal:{username}"
    request.state.audit_detail = {
        "changed": sorted(body.model_fields_set - {"password"})
        + (["password"] if body.password else [])
    }
    row = identity.update_principal(
        session, context, username, **body.model_dump(exclude_unset=True)
    )
    return _principal_out(row, reveal=True)


@router.post(
    "/users/{username}/disable",
    response_model=PrincipalOut,
    summary="停用账户 / Disable an account",
)
def disable_user(
    username: str,
    request: Request,
    session: DbSession,
    _: Annotated[CurrentPrincipal, Depends(require(USERS_WRITE))],
) -> PrincipalOut:
    request.state.audit_target = f"principal:{username}"
    return _principal_out(identity.set_active(session, username, False), reveal=True)


@router.post(
    "/users/{username}/enable",
    response_model=PrincipalOut,
    summary="启用或解锁账户 / Enable or unlock an account",
)
def enable_user(
    username: str,
    request: Request,
    session: DbSession,
    _: Annotated[CurrentPrincipal, Depends(require(USERS_WRITE))],
) -> PrincipalOut:
    request.state.audit_target = f"principal:{username}"
    return _principal_out(identity.set_active(session, username, True), reveal=True)


# -- service accounts -----------------------------------------------------------------------------


def _key_out(row: ApiKey) -> ApiKeyOut:
    return ApiKeyOut.model_validate(row, from_attributes=True)


@router.post(
    "/service-accounts",
    response_model=ServiceAccountOut,
    status_code=status.HTTP_201_CREATED,
    summary="新建服务账户（密钥只显示一次）/ Create a service account (key shown once)",
)
def create_service_account(
    body: ServiceAccountIn,
    request: Request,
    session: DbSession,
    _: Annotated[CurrentPrincipal, Depends(require(USERS_WRITE))],
) -> ServiceAccountOut:
    request.state.audit_target = f"principal:{body.name}"
    account, row, key = identity.open_service_account(session, body)
    return ServiceAccountOut(
        account=_principal_out(account, reveal=True),
        api_key=NewApiKeyOut(**_key_out(row).model_dump(), key=key),
    )


@router.get(
    "/service-accounts/{name}/keys",
    response_model=list[ApiKeyOut],
    summary="服务账户的密钥 / A service account's keys",
)
def list_keys(
    name: str, session: DbSession, _: Annotated[CurrentPrincipal, Depends(require(USERS_READ))]
) -> list[ApiKeyOut]:
    rows = identity.list_api_keys(session, identity.get_service_account(session, name))
    return [_key_out(row) for row in rows]


@router.post(
    "/service-accounts/{name}/keys",
    response_model=NewApiKeyOut,
    status_code=status.HTTP_201_CREATED,
    summary="新增密钥（只显示一次）/ Add a key (shown once)",
)
def add_key(
    name: str,
    body: ApiKeyIn,
    request: Request,
    session: DbSession,
    _: Annotated[CurrentPrincipal, Depends(require(USERS_WRITE))],
) -> NewApiKeyOut:
    request.state.audit_target = f"principal:{name}"
    account = identity.get_service_account(session, name)
    row, key = identity.issue_api_key(
        session, account, label=body.label, expires_at=body.expires_at
    )
    return NewApiKeyOut(**_key_out(row).model_dump(), key=key)


@router.delete(
    "/service-accounts/{name}/keys/{key_id}",
    response_model=ApiKeyOut,
    summary="撤销密钥 / Revoke a key",
)
def revoke_key(
    name: str,
    key_id: int,
    request: Request,
    session: DbSession,
    _: Annotated[CurrentPrincipal, Depends(require(USERS_WRITE))],
) -> ApiKeyOut:
    request.state.audit_target = f"api_key:{key_id}"
    account = identity.get_service_account(session, name)
    return _key_out(identity.revoke_api_key(session, account, key_id))


# -- access grants --------------------------------------------------------------------------------


def _grant_out(session: Session, row: AccessGrant) -> GrantOut:
    return GrantOut(
        id=row.id,
        owner_department_code=session.get_one(Department, row.owner_department_id).code,
        grantee_department_code=session.get_one(Department, row.grantee_department_id).code,
        kind=row.kind,
        resource_id=row.resource_id,
        can_write=row.can_write,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _ensure_owner(caller: CurrentPrincipal, owner: Department) -> None:
    # Only the owning department (or a city-wide role) may share its data.
    if not caller.can(ALL_DEPARTMENTS) and caller.department_id != owner.id:
        raise Problem.of(
            403, "forbidden", "auth.forbidden", permission=f"{GRANTS_WRITE}@{owner.code}"
        )


@router.get("/grants", response_model=list[GrantOut], summary="数据授权 / Access grants")
def list_grants(
    session: DbSession, caller: Annotated[CurrentPrincipal, Depends(require(GRANTS_WRITE))]
) -> list[GrantOut]:
    query = select(AccessGrant).order_by(AccessGrant.id)
    if not caller.can(ALL_DEPARTMENTS):
        query = query.where(AccessGrant.owner_department_id == caller.department_id)
    return [_grant_out(session, row) for row in session.scalars(query)]


@router.post(
    "/grants",
    response_model=GrantOut,
    status_code=status.HTTP_201_CREATED,
    summary="授权其他部门访问本部门数据 / Grant another department access",
)
def create_grant(
    body: GrantIn,
    request: Request,
    session: DbSession,
    caller: Annotated[CurrentPrincipal, Depends(require(GRANTS_WRITE))],
) -> GrantOut:
    owner = identity.get_department(session, body.owner_department_code)
    _ensure_owner(caller, owner)
    row = access.grant(
        session,
        owner=owner,
        grantee=identity.get_department(session, body.grantee_department_code),
        kind=body.kind,
        created_by=caller.username,
        resource_id=body.resource_id,
        can_write=body.can_write,
        expires_at=body.expires_at,
    )
    request.state.audit_target = f"grant:{row.id}"
    return _grant_out(session, row)


@router.delete("/grants/{grant_id}", response_model=GrantOut, summary="撤销授权 / Revoke a grant")
def revoke_grant(
    grant_id: int,
    request: Request,
    session: DbSession,
    caller: Annotated[CurrentPrincipal, Depends(require(GRANTS_WRITE))],
) -> GrantOut:
    row = session.get(AccessGrant, grant_id)
    if row is not None:
        _ensure_owner(caller, session.get_one(Department, row.owner_department_id))
    request.state.audit_target = f"grant:{grant_id}"
    return _grant_out(session, access.revoke(session, grant_id))
