"""OAuth2 token endpoint (password, client_credentials, refresh_token) and the caller's profile."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from pujiang.platform import identity
from pujiang.platform.deps import AUTHENTICATED, Context, DbSession, public, require
from pujiang.platform.errors import Problem
from pujiang.platform.i18n import register
from pujiang.platform.schemas import MeOut, TokenOut
from pujiang.platform.security import CurrentPrincipal

router = APIRouter(prefix="/api/auth", tags=["认证 Auth"])
_basic = HTTPBasic(auto_error=False)

register(
    {
        "auth.grant_unsupported": (
            "不支持的 grant_type {value}；可用：password、client_credentials、refresh_token",
            "Unsupported grant_type {value}; use password, client_credentials or refresh_token",
        ),
        "auth.grant_missing_field": (
            "grant_type={grant} 需要字段 {field}",
            "grant_type={grant} needs the field {field}",
        ),
    }
)

_OAUTH_ERRORS = {
    "invalid-credentials": "invalid_grant",
    "invalid-token": "invalid_grant",
    "account-locked": "invalid_grant",
    "account-disabled": "invalid_grant",
    "too-many-attempts": "invalid_grant",
    "validation-error": "invalid_request",
}


def _with_oauth_code(problem: Problem, code: str | None = None) -> Problem:
    # OAuth2 clients look for an `error` member (RFC 6749 §5.2); problem+json allows extras.
    problem.extra.setdefault("error", code or _OAUTH_ERRORS.get(problem.slug, "invalid_request"))
    return problem


def _need(value: str | None, field: str, grant: str) -> str:
    if not value:
        raise _with_oauth_code(
            Problem.of(
                422, "validation-error", "auth.grant_missing_field", grant=grant, field=field
            )
        )
    return value


def _token_out(pair: identity.TokenPair, *, with_refresh: bool = True) -> TokenOut:
    return TokenOut(
        access_token=pair.access_token,
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token if with_refresh else None,
        scope=" ".join(pair.principal.roles),
    )


@router.post(
    "/token",
    response_model=TokenOut,
    response_model_exclude_none=True,
    summary="获取访问令牌 / Get an access token",
)
def token(
    request: Request,
    context: Context,
    session: DbSession,
    _: Annotated[None, Depends(public)],
    basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    grant_type: Annotated[str, Form()] = "password",
    username: Annotated[str | None, Form()] = None,
    password: Annotated[str | None, Form()] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    refresh_token: Annotated[str | None, Form()] = None,
) -> TokenOut:
    request_id = request.state.request_id
    if grant_type == "password":
        user = _need(username, "username", grant_type)
        principal, problem = identity.login_with_password(
            session, context, user, _need(password, "password", grant_type), request_id
        )
        if problem is not None or principal is None:
            session.commit()  # keep the failure count and its audit entry
            raise _with_oauth_code(problem or Problem(401, "invalid-credentials", ""))
        request.state.principal = identity.current_of(principal)
        return _token_out(identity.issue_tokens(session, context, principal))
    if grant_type == "client_credentials":
        cid = client_id or (basic.username if basic else None)
        secret = client_secret or (basic.password if basic else None)
        principal, problem = identity.login_with_client_secret(
            session,
            _need(cid, "client_id", grant_type),
            _need(secret, "client_secret", grant_type),
            request_id,
        )
        if problem is not None or principal is None:
            session.commit()
            raise _with_oauth_code(
                problem or Problem(401, "invalid-credentials", ""), "invalid_client"
            )
        request.state.principal = identity.current_of(principal)
        # RFC 6749 §4.4.3: no refresh token for client credentials; the client asks again.
        return _token_out(identity.issue_tokens(session, context, principal), with_refresh=False)
    if grant_type == "refresh_token":
        pair, problem = identity.refresh_tokens(
            session, context, _need(refresh_token, "refresh_token", grant_type), request_id
        )
        if problem is not None or pair is None:
            session.commit()  # a replayed token revokes the family; keep that
            raise _with_oauth_code(problem or Problem(401, "invalid-token", ""))
        request.state.principal = pair.principal
        return _token_out(pair)
    raise _with_oauth_code(
        Problem.of(422, "validation-error", "auth.grant_unsupported", value=grant_type)
    )


@router.get("/me", response_model=MeOut, summary="当前账户 / The signed-in account")
def me(principal: Annotated[CurrentPrincipal, Depends(require(AUTHENTICATED))]) -> MeOut:
    return MeOut(
        username=principal.username,
        kind=principal.kind,
        department_code=principal.department_code,
        roles=list(principal.roles),
        permissions=sorted(principal.permissions),
    )
