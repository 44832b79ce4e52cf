"""Credentials and principals: password hashing, API keys, JWT access tokens, refresh tokens.

Who may do what is in `roles.py`; the FastAPI dependencies that enforce it are in `deps.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pujiang.platform.db import utcnow
from pujiang.platform.roles import holds, permissions_of

JWT_ALGORITHM = "HS256"
API_KEY_PREFIX = "pjk"


@dataclass(frozen=True)
class CurrentPrincipal:
    """The caller of a request, as the permission checks see it."""

    id: int
    username: str
    kind: str
    department_id: int | None
    department_code: str | None
    roles: tuple[str, ...]
    permissions: frozenset[str] = field(default=frozenset())

    def can(self, permission: str) -> bool:
        return holds(self.permissions, permission)

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        return f"{self.kind}:{self.username}"


def build_principal(
    principal_id: int,
    username: str,
    kind: str,
    department_id: int | None,
    department_code: str | None,
    roles: list[str],
) -> CurrentPrincipal:
    return CurrentPrincipal(
        id=principal_id,
        username=username,
        kind=kind,
        department_id=department_id,
        department_code=department_code,
        roles=tuple(sorted(roles)),
        permissions=permissions_of(roles),
    )


class Passwords:
    """argon2id hashing. Tests use cheap parameters; everything else the library's defaults."""

    def __init__(self, *, cheap: bool = False) -> None:
        self._hasher = (
            PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
            if cheap
            else PasswordHasher()
        )
        # Verified against when a username does not exist, so timing does not reveal it.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._dummy, password) and bool(
                password_hash
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# -- API keys: "pjk_<prefix>_<secret>"; the prefix finds the row, the secret is compared hashed. ---


def new_api_key() -> tuple[str, str, str]:
    """A fresh key as (full key to show once, prefix to store, secret hash to store)."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{API_KEY_PREFIX}_{prefix}_{secret}", prefix, sha256_hex(secret)


def split_api_key(key: str) -> tuple[str, str] | None:
    parts = key.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def api_key_matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(sha256_hex(secret), secret_hash)


# -- tokens ---------------------------------------------------------------------------------------


def issue_access_token(
    principal: CurrentPrincipal, secret_key: str, ttl: timedelta, now: datetime | None = None
) -> str:
    issued = now or utcnow()
    claims = {
        "sub": str(principal.id),
        "name": principal.username,
        "kind": principal.kind,
        "roles": list(principal.roles),
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": uuid.uuid4().hex,
        "typ": "access",
    }
    return jwt.encode(claims, secret_key, algorithm=JWT_ALGORITHM)


def read_access_token(token: str, secret_key: str) -> int | None:
    """The principal id in a valid, unexpired access token, else None."""
    try:
        claims = jwt.decode(
            token,
            secret_key,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["exp", "sub", "typ"]},
        )
    except jwt.PyJWTError:
        return None
    if claims.get("typ") != "access":
        return None
    try:
        return int(claims["sub"])
    except (TypeError, ValueError):
        return None


def new_refresh_token() -> tuple[str, str]:
    """(token to give the client, hash to store)."""
    token = secrets.token_urlsafe(40)
    return token, sha256_hex(token)
