"""Signing in: passwords, throttling and lockout, tokens, refresh, service accounts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from pujiang.platform.db import utcnow
from pujiang.platform.deps import AppContext
from pujiang.platform.models import Principal
from pujiang.platform.security import build_principal, issue_access_token
from tests.conftest import TEST_PASSWORD

PROBLEM = "application/problem+json"


def _login(client: TestClient, username: str, password: str, **headers: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/auth/token", data={"username": username, "password": password}, headers=headers
    )


def test_wrong_password_is_401_problem(client: TestClient, make_user: Callable[..., str]) -> None:
    make_user("alice", "handler")
    reply = _login(client, "alice", "not-the-password")
    assert reply.status_code == 401
    assert reply.headers["content-type"] == PROBLEM
    body = reply.json()
    assert body["type"] == "/problems/invalid-credentials"
    assert body["title"] == "用户名或密码错误"
    assert body["error"] == "invalid_grant"


def test_unknown_user_answers_like_a_wrong_password(client: TestClient) -> None:
    reply = _login(client, "nobody", "whatever-password")
    assert reply.status_code == 401
    assert reply.json()["type"] == "/problems/invalid-credentials"


def test_english_when_asked(client: TestClient, make_user: Callable[..., str]) -> None:
    make_user("alice", "handler")
    reply = _login(client, "alice", "nope-nope-nope", **{"Accept-Language": "en-US,en;q=0.9"})
    assert reply.json()["title"] == "Wrong username or password"


def test_missing_password_names_the_field(client: TestClient) -> None:
    reply = client.post("/api/auth/token", data={"username": "alice"})
    assert reply.status_code == 422
    assert "password" in reply.json()["detail"]


def test_unsupported_grant_type(client: TestClient) -> None:
    reply = client.post("/api/auth/token", data={"grant_type": "implicit"})
    assert reply.status_code == 422
    assert "implicit" in reply.json()["detail"]


def _rewind_last_failure(context: AppContext, username: str, seconds: int) -> None:
    # Move the last failure into the past instead of sleeping through the back-off.
    with context.db.session() as session:
        principal = session.query(Principal).filter_by(username=username).one()
        assert principal.last_failed_login_at is not None
        principal.last_failed_login_at -= timedelta(seconds=seconds)


def test_failures_slow_down_then_lock(
    client: TestClient, context: AppContext, make_user: Callable[..., str]
) -> None:
    make_user("alice", "handler")
    settings = context.settings
    for _ in range(settings.login_slow_after):
        assert _login(client, "alice", "wrong-password-x").status_code == 401
    slowed = _login(client, "alice", TEST_PASSWORD)  # even the right password must wait
    assert slowed.status_code == 429
    assert int(slowed.headers["Retry-After"]) >= 1
    assert "秒后再试" in slowed.json()["detail"]

    last = None
    for _ in range(settings.login_lock_after - settings.login_slow_after):
        _rewind_last_failure(context, "alice", 120)
        last = _login(client, "alice", "wrong-password-x")
    assert last is not None
    assert last.status_code == 423
    assert last.json()["type"] == "/problems/account-locked"
    assert "锁定" in last.json()["detail"]

    _rewind_last_failure(context, "alice", 120)
    assert _login(client, "alice", TEST_PASSWORD).status_code == 423


def test_admin_unlocks_a_locked_account(
    client: TestClient, context: AppContext, login: Callable[..., dict[str, str]]
) -> None:
    admin = login("root", "admin")
    login("bob", "handler")
    with context.db.session() as session:
        session.execute(
            update(Principal)
            .where(Principal.username == "bob")
            .values(locked_until=utcnow() + timedelta(minutes=5), failed_logins=10)
        )
    assert _login(client, "bob", TEST_PASSWORD).status_code == 423
    assert client.post("/api/users/bob/enable", headers=admin).status_code == 200
    assert _login(client, "bob", TEST_PASSWORD).status_code == 200


def test_disabled_account_cannot_sign_in_and_its_token_dies(
    client: TestClient, login: Callable[..., dict[str, str]]
) -> None:
    admin = login("root", "admin")
    bob = login("bob", "handler")
    assert client.get("/api/auth/me", headers=bob).status_code == 200
    assert client.post("/api/users/bob/disable", headers=admin).status_code == 200
    assert client.get("/api/auth/me", headers=bob).status_code == 401
    reply = _login(client, "bob", TEST_PASSWORD)
    assert reply.status_code == 403
    assert reply.json()["type"] == "/problems/account-disabled"


def test_no_or_bad_token(client: TestClient) -> None:
    reply = client.get("/api/auth/me")
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    bad = client.get("/api/auth/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert bad.status_code == 401
    assert bad.json()["type"] == "/problems/invalid-token"


def test_expired_token_is_rejected(
    client: TestClient, context: AppContext, make_user: Callable[..., str]
) -> None:
    make_user("alice", "handler")
    with context.db.session() as session:
        alice = session.query(Principal).filter_by(username="alice").one()
        current = build_principal(alice.id, "alice", "user", None, None, ["handler"])
    token = issue_access_token(current, context.secret_key, timedelta(seconds=-30))
    reply = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 401


def test_token_signed_with_another_key_is_rejected(
    client: TestClient, context: AppContext, make_user: Callable[..., str]
) -> None:
    make_user("alice", "admin")
    current = build_principal(1, "alice", "user", None, None, ["admin"])
    forged = issue_access_token(current, "x" * 48, timedelta(minutes=5))
    assert (
        client.get("/api/auth/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    )


def test_refresh_rotates_and_detects_reuse(
    client: TestClient, make_user: Callable[..., str]
) -> None:
    make_user("alice", "handler")
    first = _login(client, "alice", TEST_PASSWORD).json()
    assert first["token_type"] == "bearer"
    assert first["expires_in"] == 15 * 60
    second = client.post(
        "/api/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    assert second.status_code == 200
    new = second.json()
    assert new["refresh_token"] != first["refresh_token"]
    # Replaying the spent token fails and also kills the token it was exchanged for.
    replay = client.post(
        "/api/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    assert replay.status_code == 401
    after = client.post(
        "/api/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": new["refresh_token"]},
    )
    assert after.status_code == 401


def test_service_account_key_shown_once_and_usable(
    client: TestClient, login: Callable[..., dict[str, str]]
) -> None:
    admin = login("root", "admin")
    created = client.post(
        "/api/service-accounts",
        json={"name": "feed-bot", "department_code": "SW", "roles": ["operator"]},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    key = created.json()["api_key"]["key"]
    listed = client.get("/api/service-accounts/feed-bot/keys", headers=admin).json()
    assert len(listed) == 1
    assert "key" not in listed[0]
    assert key.split("_")[1] == listed[0]["prefix"]

    me = client.get("/api/auth/me", headers={"X-API-Key": key})
    assert me.status_code == 200
    assert me.json()["kind"] == "service"

    token = client.post(
        "/api/auth/token",
        data={"grant_type": "client_credentials", "client_id": "feed-bot", "client_secret": key},
    )
    assert token.status_code == 200
    assert "refresh_token" not in token.json()
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert client.get("/api/auth/me", headers=bearer).json()["username"] == "feed-bot"

    basic = client.post(
        "/api/auth/token", data={"grant_type": "client_credentials"}, auth=("feed-bot", key)
    )
    assert basic.status_code == 200

    key_id = listed[0]["id"]
    assert (
        client.delete(f"/api/service-accounts/feed-bot/keys/{key_id}", headers=admin).status_code
        == 200
    )
    assert client.get("/api/auth/me", headers={"X-API-Key": key}).status_code == 401


def test_client_credentials_with_wrong_secret(
    client: TestClient, login: Callable[..., dict[str, str]]
) -> None:
    admin = login("root", "admin")
    client.post("/api/service-accounts", json={"name": "feed-bot"}, headers=admin)
    reply = client.post(
        "/api/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "feed-bot",
            "client_secret": "pjk_x_y",
        },
    )
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_client"


def test_wrong_passwords_sent_in_parallel_each_count(
    client: TestClient, context: AppContext, make_user: Callable[..., str]
) -> None:
    """Guesses sent at once must not overwrite each other's failure count: every refused
    password counts towards the lockout."""
    make_user("alice", "handler")
    clients = [client, *(TestClient(client.app) for _ in range(3))]
    for _ in range(4):
        with context.db.session() as session:
            session.execute(
                update(Principal)
                .where(Principal.username == "alice")
                .values(failed_logins=0, last_failed_login_at=None)
            )
        start = threading.Barrier(len(clients))
        statuses: list[int] = []

        def guess(http: TestClient, start: Any, statuses: list[int]) -> None:
            start.wait()
            statuses.append(_login(http, "alice", "wrong-password-x").status_code)

        threads = [threading.Thread(target=guess, args=(c, start, statuses)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        with context.db.session() as session:
            failures = session.query(Principal).filter_by(username="alice").one().failed_logins
        assert failures == statuses.count(401), statuses
