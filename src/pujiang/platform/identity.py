"""Departments, people and service accounts: create, list, disable, sign in, tokens.

Plain functions over a session; the HTTP routes are in `platform/api/`, the CLI in `cli.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pujiang.platform import audit
from pujiang.platform.db import utcnow
from pujiang.platform.deps import AppContext, principal_from_api_key
from pujiang.platform.errors import Problem
from pujiang.platform.i18n import register
from pujiang.platform.models import (
    ApiKey,
    Department,
    DepartmentLevel,
    Principal,
    PrincipalKind,
    PrincipalRole,
    RefreshToken,
)
from pujiang.platform.roles import Role
from pujiang.platform.schemas import ServiceAccountIn
from pujiang.platform.security import (
    CurrentPrincipal,
    build_principal,
    issue_access_token,
    new_api_key,
    new_refresh_token,
    sha256_hex,
)
from pujiang.settings import Settings

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
DEPARTMENT_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,63}$")
MIN_PASSWORD_LENGTH = 10
MAX_BACKOFF_SECONDS = 60

register(
    {
        "identity.username_format": (
            "用户名 {value} 无效：须为 3–64 位小写字母、数字、点、下划线或连字符",
            "Username {value} is invalid: use 3–64 lower-case letters, digits, '.', '_' or '-'",
        ),
        "identity.username_taken": ("用户名 {value} 已存在", "Username {value} is already taken"),
        "identity.password_weak": (
            "密码太弱：至少 {min} 位，不能全是数字，也不能与用户名相同",
            "Password too weak: at least {min} characters, not only digits, not the username",
        ),
        "identity.role_unknown": (
            "角色 {value} 不存在；可用角色：{roles}",
            "Unknown role {value}; roles are: {roles}",
        ),
        "identity.department_unknown": (
            "部门代码 {value} 不存在",
            "No department with code {value}",
        ),
        "identity.department_code_format": (
            "部门代码 {value} 无效：须为 2–64 位字母、数字、下划线或连字符",
            "Department code {value} is invalid: use 2–64 letters, digits, '_' or '-'",
        ),
        "identity.department_taken": ("部门代码 {value} 已存在", "Department code {value} exists"),
        "identity.user_unknown": ("用户 {value} 不存在", "No user named {value}"),
        "identity.service_account_unknown": (
            "服务账户 {value} 不存在",
            "No service account named {value}",
        ),
        "identity.api_key_unknown": (
            "服务账户 {account} 没有编号为 {id} 的 API 密钥",
            "Service account {account} has no API key with id {id}",
        ),
        "identity.login_failed": (
            "用户名或密码错误",
            "Wrong username or password",
        ),
        "identity.login_failed_warn": (
            "用户名或密码错误；再失败 {left} 次账户将被锁定",
            "Wrong username or password; {left} more failures will lock the account",
        ),
        "identity.login_slowed": (
            "登录失败次数过多，请 {seconds} 秒后再试",
            "Too many failed logins; try again in {seconds} seconds",
        ),
        "identity.account_locked": (
            "连续登录失败次数过多，账户已锁定至 {until}（UTC），请稍后再试或联系管理员解锁",
            "Too many failed logins: the account is locked until {until} UTC; wait or ask an "
            "administrator to unlock it",
        ),
        "identity.account_disabled": (
            "账户已停用，请联系管理员",
            "This account is disabled; contact an administrator",
        ),
        "identity.client_invalid": (
            "客户端 ID 或密钥错误",
            "Wrong client id or client secret",
        ),
        "identity.refresh_invalid": (
            "刷新令牌无效、已过期或已使用",
            "The refresh token is invalid, expired or already used",
        ),
    }
)


# -- departments ----------------------------------------------------------------------------------


def get_department(session: Session, code: str) -> Department:
    department = session.scalars(select(Department).where(Department.code == code)).one_or_none()
    if department is None:
        raise Problem.of(404, "not-found", "identity.department_unknown", value=code)
    return department


def create_department(
    session: Session,
    *,
    code: str,
    name: str,
    name_en: str = "",
    level: DepartmentLevel = DepartmentLevel.CITY,
    district_code: str | None = None,
    parent_code: str | None = None,
) -> Department:
    if not DEPARTMENT_CODE_RE.match(code):
        raise Problem.of(422, "validation-error", "identity.department_code_format", value=code)
    if session.scalars(select(Department.id).where(Department.code == code)).first():
        raise Problem.of(409, "conflict", "identity.department_taken", value=code)
    parent = get_department(session, parent_code) if parent_code else None
    department = Department(
        code=code,
        name=name,
        name_en=name_en,
        level=level.value,
        district_code=district_code,
        parent_id=parent.id if parent else None,
    )
    session.add(department)
    session.flush()
    return department


def list_departments(session: Session) -> list[Department]:
    return list(session.scalars(select(Department).order_by(Department.code)))


# -- principals -----------------------------------------------------------------------------------


def _check_roles(roles: list[str]) -> list[str]:
    known = [r.value for r in Role]
    for role in roles:
        if role not in known:
            raise Problem.of(
                422, "validation-error", "identity.role_unknown", value=role, roles=", ".join(known)
            )
    return sorted(set(roles))


def check_password_strength(username: str, password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH or password.isdigit() or password == username:
        raise Problem.of(422, "validation-error", "identity.password_weak", min=MIN_PASSWORD_LENGTH)


def _new_principal(
    session: Session,
    *,
    kind: PrincipalKind,
    username: str,
    display_name: str,
    department_code: str | None,
    roles: list[str],
    password_hash: str | None,
) -> Principal:
    if not USERNAME_RE.match(username):
        raise Problem.of(422, "validation-error", "identity.username_format", value=username)
    if session.scalars(select(Principal.id).where(Principal.username == username)).first():
        raise Problem.of(409, "conflict", "identity.username_taken", value=username)
    department = get_department(session, department_code) if department_code else None
    principal = Principal(
        kind=kind.value,
        username=username,
        display_name=display_name,
        password_hash=password_hash,
        department_id=department.id if department else None,
        role_links=[PrincipalRole(role=role) for role in _check_roles(roles)],
    )
    session.add(principal)
    session.flush()
    session.refresh(principal)
    return principal


def create_user(
    session: Session,
    context: AppContext,
    *,
    username: str,
    password: str,
    display_name: str = "",
    department_code: str | None = None,
    roles: list[str] | None = None,
) -> Principal:
    check_password_strength(username, password)
    return _new_principal(
        session,
        kind=PrincipalKind.USER,
        username=username,
        display_name=display_name,
        department_code=department_code,
        roles=roles or [],
        password_hash=context.passwords.hash(password),
    )


def create_service_account(
    session: Session,
    *,
    name: str,
    display_name: str = "",
    department_code: str | None = None,
    roles: list[str] | None = None,
) -> Principal:
    return _new_principal(
        session,
        kind=PrincipalKind.SERVICE,
        username=name,
        display_name=display_name,
        department_code=department_code,
        roles=roles or [],
        password_hash=None,
    )


def open_service_account(
    session: Session, wanted: ServiceAccountIn
) -> tuple[Principal, ApiKey, str]:
    """A new service account with its first API key: (account, key row, the key itself, which
    is never stored and must be shown now)."""
    account = create_service_account(
        session,
        name=wanted.name,
        display_name=wanted.display_name,
        department_code=wanted.department_code,
        roles=wanted.roles,
    )
    row, key = issue_api_key(
        session, account, label=wanted.key_label, expires_at=wanted.key_expires_at
    )
    return account, row, key


def get_principal(session: Session, username: str) -> Principal:
    principal = session.scalars(select(Principal).where(Principal.username == username)).first()
    if principal is None:
        raise Problem.of(404, "not-found", "identity.user_unknown", value=username)
    return principal


def list_principals(
    session: Session, *, kind: PrincipalKind | None = None, department_code: str | None = None
) -> list[Principal]:
    query = select(Principal).order_by(Principal.username)
    if kind is not None:
        query = query.where(Principal.kind == kind.value)
    if department_code is not None:
        query = query.where(Principal.department_id == get_department(session, department_code).id)
    return list(session.scalars(query))


def set_active(session: Session, username: str, active: bool) -> Principal:
    principal = get_principal(session, username)
    principal.is_active = active
    if active:
        principal.failed_logins, principal.locked_until = 0, None
    else:
        # Sign the principal out everywhere: refresh tokens die now, access tokens on next use.
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.principal_id == principal.id, RefreshToken.used_at.is_(None))
            .values(used_at=utcnow())
        )
    return principal


def update_principal(
    session: Session,
    context: AppContext,
    username: str,
    *,
    display_name: str | None = None,
    department_code: str | None = None,
    roles: list[str] | None = None,
    password: str | None = None,
) -> Principal:
    principal = get_principal(session, username)
    if display_name is not None:
        principal.display_name = display_name
    if department_code is not None:
        principal.department_id = get_department(session, department_code).id
    if roles is not None:
        principal.role_links = [PrincipalRole(role=role) for role in _check_roles(roles)]
    if password is not None:
        check_password_strength(username, password)
        principal.password_hash = context.passwords.hash(password)
        principal.failed_logins, principal.locked_until = 0, None
    session.flush()
    return principal


def current_of(principal: Principal) -> CurrentPrincipal:
    return build_principal(
        principal.id,
        principal.username,
        principal.kind,
        principal.department_id,
        principal.department.code if principal.department else None,
        principal.roles,
    )


# -- API keys -------------------------------------------------------------------------------------


def issue_api_key(
    session: Session, principal: Principal, *, label: str = "", expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """A new key for a service account. The full key is returned here and never again."""
    full_key, prefix, secret_hash = new_api_key()
    row = ApiKey(
        principal_id=principal.id,
        prefix=prefix,
        secret_hash=secret_hash,
        label=label,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, full_key


def get_service_account(session: Session, name: str) -> Principal:
    """A service account by name; a person's account is not one (it has no API keys)."""
    account = session.scalars(
        select(Principal).where(
            Principal.username == name, Principal.kind == PrincipalKind.SERVICE.value
        )
    ).first()
    if account is None:
        raise Problem.of(404, "not-found", "identity.service_account_unknown", value=name)
    return account


def list_api_keys(session: Session, principal: Principal) -> list[ApiKey]:
    return list(
        session.scalars(
            select(ApiKey).where(ApiKey.principal_id == principal.id).order_by(ApiKey.id)
        )
    )


def revoke_api_key(session: Session, principal: Principal, key_id: int) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None or row.principal_id != principal.id:
        # Another account's key is "not found" too: its id says nothing about this account.
        raise Problem.of(
            404, "not-found", "identity.api_key_unknown", account=principal.username, id=key_id
        )
    row.revoked_at = row.revoked_at or utcnow()
    return row


# -- signing in -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    principal: CurrentPrincipal


def _security_event(
    session: Session,
    principal: Principal | None,
    username: str,
    action: str,
    request_id: str,
    outcome: audit.Outcome = audit.Outcome.DENIED,
    **detail: object,
) -> None:
    audit.append(
        session,
        actor=f"{principal.kind}:{principal.username}" if principal else f"unknown:{username[:64]}",
        action=action,
        target=f"principal:{username[:64]}",
        outcome=outcome,
        request_id=request_id,
        detail=dict(detail),
    )


def _throttle(principal: Principal, settings: Settings, now: datetime) -> Problem | None:
    """A Problem if the account must not try a password now (locked or slowed down)."""
    if principal.locked_until is not None and principal.locked_until > now:
        until = principal.locked_until.strftime("%Y-%m-%d %H:%M:%S")
        problem = Problem.of(423, "account-locked", "identity.account_locked", until=until)
        problem.headers["Retry-After"] = str(
            int((principal.locked_until - now).total_seconds()) + 1
        )
        return problem
    over = principal.failed_logins - settings.login_slow_after
    if over >= 0 and principal.last_failed_login_at is not None:
        wait = min(2**over, MAX_BACKOFF_SECONDS)
        ready_at = principal.last_failed_login_at + timedelta(seconds=wait)
        if ready_at > now:
            seconds = int((ready_at - now).total_seconds()) + 1
            problem = Problem.of(429, "too-many-attempts", "identity.login_slowed", seconds=seconds)
            problem.headers["Retry-After"] = str(seconds)
            return problem
    return None


def _record_failure(
    session: Session, principal: Principal, settings: Settings, now: datetime
) -> Problem:
    # Counted by the database, not from the value read: guesses sent in parallel must each
    # count towards the lockout, not overwrite each other's count.
    principal.failed_logins = Principal.failed_logins + 1
    principal.last_failed_login_at = now
    session.flush()
    session.refresh(principal, ["failed_logins"])
    if principal.failed_logins >= settings.login_lock_after:
        principal.locked_until = now + timedelta(minutes=settings.login_lock_minutes)
        return _throttle(principal, settings, now) or Problem.of(
            401, "invalid-credentials", "identity.login_failed"
        )
    left = settings.login_lock_after - principal.failed_logins
    key = (
        "identity.login_failed_warn"
        if principal.failed_logins >= settings.login_slow_after
        else ("identity.login_failed")
    )
    return Problem.of(401, "invalid-credentials", key, left=left)


def login_with_password(
    session: Session, context: AppContext, username: str, password: str, request_id: str = ""
) -> tuple[Principal | None, Problem | None]:
    """Check a password with throttling and lockout. Returns (principal, None) or (None, problem).

    The caller commits either way: failures, locks and their audit entries must be kept.
    """
    now = utcnow()
    principal = session.scalars(
        select(Principal).where(
            Principal.username == username, Principal.kind == PrincipalKind.USER.value
        )
    ).first()
    if principal is None:
        context.passwords.verify(None, password)  # same cost as a real check
        _security_event(session, None, username, "auth.login", request_id, reason="unknown user")
        return None, Problem.of(401, "invalid-credentials", "identity.login_failed")
    blocked = _throttle(principal, context.settings, now)
    if blocked is not None:
        _security_event(session, principal, username, "auth.login", request_id, reason=blocked.slug)
        return None, blocked
    if not context.passwords.verify(principal.password_hash, password):
        problem = _record_failure(session, principal, context.settings, now)
        _security_event(
            session,
            principal,
            username,
            "auth.login",
            request_id,
            reason=problem.slug,
            failures=principal.failed_logins,
        )
        return None, problem
    if not principal.is_active:
        _security_event(session, principal, username, "auth.login", request_id, reason="disabled")
        return None, Problem.of(403, "account-disabled", "identity.account_disabled")
    principal.failed_logins, principal.locked_until, principal.last_login_at = 0, None, now
    if principal.password_hash and context.passwords.needs_rehash(principal.password_hash):
        principal.password_hash = context.passwords.hash(password)
    _security_event(session, principal, username, "auth.login", request_id, audit.Outcome.SUCCESS)
    return principal, None


def login_with_client_secret(
    session: Session, client_id: str, client_secret: str, request_id: str = ""
) -> tuple[Principal | None, Problem | None]:
    """OAuth2 client credentials: a service account's name and one of its API keys.

    Like `login_with_password`, the caller commits either way so failures stay audited.
    """
    principal = principal_from_api_key(session, client_secret)
    if principal is None or principal.username != client_id:
        _security_event(session, None, client_id, "auth.client_credentials", request_id)
        return None, Problem.of(401, "invalid-credentials", "identity.client_invalid")
    _security_event(
        session, principal, client_id, "auth.client_credentials", request_id, audit.Outcome.SUCCESS
    )
    return principal, None


def issue_tokens(session: Session, context: AppContext, principal: Principal) -> TokenPair:
    current = current_of(principal)
    access = issue_access_token(current, context.secret_key, context.access_ttl)
    refresh, refresh_hash = new_refresh_token()
    session.add(
        RefreshToken(
            principal_id=principal.id,
            token_hash=refresh_hash,
            expires_at=utcnow() + timedelta(days=context.settings.refresh_token_days),
        )
    )
    return TokenPair(access, refresh, int(context.access_ttl.total_seconds()), current)


def refresh_tokens(
    session: Session, context: AppContext, refresh_token: str, request_id: str = ""
) -> tuple[TokenPair | None, Problem | None]:
    """Trade a refresh token for a new pair. A reused token revokes the whole family."""
    now = utcnow()
    row = session.scalars(
        select(RefreshToken).where(RefreshToken.token_hash == sha256_hex(refresh_token))
    ).one_or_none()
    invalid = Problem.of(401, "invalid-token", "identity.refresh_invalid")
    if row is None or row.expires_at <= now:
        return None, invalid
    principal = session.get(Principal, row.principal_id)
    if principal is None:
        return None, invalid
    if row.used_at is not None:
        # Someone replayed a spent token: assume theft and sign the principal out everywhere.
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.principal_id == principal.id, RefreshToken.used_at.is_(None))
            .values(used_at=now)
        )
        _security_event(session, principal, principal.username, "auth.refresh_reused", request_id)
        return None, invalid
    row.used_at = now
    if not principal.is_active:
        return None, Problem.of(403, "account-disabled", "identity.account_disabled")
    return issue_tokens(session, context, principal), None
