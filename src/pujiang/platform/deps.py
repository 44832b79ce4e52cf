"""FastAPI dependencies every router uses: the app context, a database session, the caller.

Every route declares what it needs with `Depends(require(PERMISSION))` or `Depends(public)`;
a test walks all routes and fails on one that declares neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pujiang.platform import audit
from pujiang.platform.bus import EventBus, InProcessBus
from pujiang.platform.db import Database, utcnow
from pujiang.platform.errors import Problem
from pujiang.platform.i18n import register
from pujiang.platform.models import ApiKey, Principal
from pujiang.platform.security import (
    CurrentPrincipal,
    Passwords,
    api_key_matches,
    build_principal,
    read_access_token,
    split_api_key,
)
from pujiang.settings import Settings

PERMISSION_ATTR = "__pujiang_permission__"

register(
    {
        "auth.missing": (
            "需要登录：请提供 Authorization: Bearer 令牌或 X-API-Key",
            "Authentication required: send an Authorization: Bearer token or an X-API-Key",
        ),
        "auth.invalid_token": (
            "令牌或 API 密钥无效、已过期或已撤销",
            "The token or API key is invalid, expired or revoked",
        ),
        "auth.forbidden": (
            "当前账户没有权限 {permission}",
            "Your account lacks the permission {permission}",
        ),
    }
)
PUBLIC = "public"
AUTHENTICATED = "authenticated"


@dataclass
class AppContext:
    """What create_app builds once and every request shares."""

    settings: Settings
    db: Database
    passwords: Passwords
    bus: EventBus = field(default_factory=InProcessBus)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def secret_key(self) -> str:
        return self.settings.secret_key.get_secret_value()

    @property
    def access_ttl(self) -> timedelta:
        return timedelta(minutes=self.settings.access_token_minutes)


def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.pujiang
    return context


Context = Annotated[AppContext, Depends(get_context)]


def get_session(context: Context) -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back on error."""
    with context.db.session() as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]

_bearer = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False)


def _unauthorized(message_key: str, slug: str = "unauthorized") -> Problem:
    problem = Problem.of(401, slug, message_key)
    problem.headers["WWW-Authenticate"] = "Bearer"
    return problem


def _load_principal(session: Session, principal_id: int) -> Principal | None:
    principal = session.get(Principal, principal_id)
    if principal is None or not principal.is_active:
        return None
    return principal


def principal_from_api_key(session: Session, key: str) -> Principal | None:
    parts = split_api_key(key)
    if parts is None:
        return None
    prefix, secret = parts
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
    now = utcnow()
    if (
        row is None
        or row.revoked_at is not None
        or (row.expires_at is not None and row.expires_at <= now)
        or not api_key_matches(secret, row.secret_hash)
    ):
        return None
    session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    return _load_principal(session, row.principal_id)


def authenticate_request(
    request: Request,
    context: Context,
    token: Annotated[str | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> CurrentPrincipal:
    """The caller, from a bearer token or an X-API-Key header; 401 problem if neither is valid."""
    if not token and not api_key:
        raise _unauthorized("auth.missing")
    current: CurrentPrincipal | None = None
    with context.db.session() as session:
        if token:
            principal_id = read_access_token(token, context.secret_key)
            principal = _load_principal(session, principal_id) if principal_id else None
        else:
            principal = principal_from_api_key(session, api_key or "")
        if principal is not None:
            current = build_principal(
                principal.id,
                principal.username,
                principal.kind,
                principal.department_id,
                principal.department.code if principal.department else None,
                principal.roles,
            )
    if current is None:
        audit.record(
            context.db,
            actor="anonymous",
            action="auth.rejected",
            outcome=audit.Outcome.DENIED,
            target=request.url.path,
            request_id=getattr(request.state, "request_id", ""),
            detail={"credential": "bearer" if token else "api_key"},
        )
        raise _unauthorized("auth.invalid_token", "invalid-token")
    request.state.principal = current
    return current


def require(permission: str) -> Callable[..., CurrentPrincipal]:
    """A dependency admitting callers who hold `permission` (AUTHENTICATED: anyone signed in)."""

    def check(
        request: Request,
        principal: Annotated[CurrentPrincipal, Depends(authenticate_request)],
    ) -> CurrentPrincipal:
        if permission != AUTHENTICATED and not principal.can(permission):
            raise Problem.of(403, "forbidden", "auth.forbidden", permission=permission)
        return principal

    setattr(check, PERMISSION_ATTR, permission)
    check.__name__ = f"require_{permission.replace('.', '_')}"
    return check


def public() -> None:
    """Marks a route open to anyone (health checks, login, published open data)."""


setattr(public, PERMISSION_ATTR, PUBLIC)
