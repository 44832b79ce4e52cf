"""Managing departments and accounts over HTTP."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pujiang.platform.deps import AppContext
from pujiang.platform.models import AuditEntry

Login = Callable[..., dict[str, str]]


def test_admin_creates_a_user_who_can_sign_in(client: TestClient, login: Login) -> None:
    admin = login("root", "admin")
    created = client.post(
        "/api/users",
        json={
            "username": "li.si",
            "password": "long-enough-pw",
            "display_name": "李四",
            "department_code": "SW",
            "roles": ["handler"],
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    assert created.json()["roles"] == ["handler"]
    assert "password" not in created.text
    assert "argon2" not in created.text
    token = client.post("/api/auth/token", data={"username": "li.si", "password": "long-enough-pw"})
    assert token.status_code == 200


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"username": "Li Si", "password": "long-enough-pw"}, "Li Si"),
        ({"username": "lisi", "password": "12345678901"}, "密码太弱"),
        ({"username": "lisi", "password": "short"}, "密码太弱"),
        ({"username": "lisi", "password": "long-enough-pw", "roles": ["king"]}, "king"),
        ({"username": "lisi", "password": "long-enough-pw", "department_code": "NOPE"}, "NOPE"),
    ],
)
def test_bad_user_input_is_named_and_nothing_is_written(
    client: TestClient, login: Login, body: dict[str, object], needle: str
) -> None:
    admin = login("root", "admin")
    reply = client.post("/api/users", json=body, headers=admin)
    assert reply.status_code in (404, 422)
    assert needle in reply.json()["detail"]
    names = [u["username"] for u in client.get("/api/users", headers=admin).json()]
    assert names == ["root"]


def test_duplicate_username_is_a_conflict(client: TestClient, login: Login) -> None:
    admin = login("root", "admin")
    reply = client.post(
        "/api/users", json={"username": "root", "password": "long-enough-pw"}, headers=admin
    )
    assert reply.status_code == 409


def test_handler_cannot_manage_users(client: TestClient, login: Login) -> None:
    handler = login("hana", "handler", department="SW")
    assert client.get("/api/users", headers=handler).status_code == 403
    reply = client.post("/api/users", json={"username": "x", "password": "y"}, headers=handler)
    assert reply.status_code == 403
    assert "users.write" in reply.json()["detail"]


def test_names_are_masked_for_auditors_and_unmasked_reads_audited(
    client: TestClient, context: AppContext, login: Login
) -> None:
    admin = login("root", "admin")
    auditor = login("audrey", "auditor")
    client.post(
        "/api/users",
        json={"username": "zsf", "password": "long-enough-pw", "display_name": "张三丰"},
        headers=admin,
    )
    masked = client.get("/api/users/zsf", headers=auditor).json()
    assert masked["display_name"] == "张**"
    shown = client.get("/api/users/zsf", headers=admin).json()
    assert shown["display_name"] == "张三丰"
    with context.db.session() as session:
        reads = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "personal_data.read")
        ).all()
    assert len(reads) == 1
    assert reads[0].actor == "user:root"
    assert reads[0].detail["records"] == ["zsf"]


def test_patch_roles_and_password(client: TestClient, login: Login) -> None:
    admin = login("root", "admin")
    login("bob", "handler")
    reply = client.patch(
        "/api/users/bob", json={"roles": ["supervisor"], "password": "new-long-pw-1"}, headers=admin
    )
    assert reply.status_code == 200
    assert reply.json()["roles"] == ["supervisor"]
    assert (
        client.post(
            "/api/auth/token", data={"username": "bob", "password": "new-long-pw-1"}
        ).status_code
        == 200
    )
    unknown = client.patch("/api/users/bob", json={"is_admin": True}, headers=admin)
    assert unknown.status_code == 422


def test_departments_listed_with_district_units(client: TestClient, login: Login) -> None:
    handler = login("hana", "handler")
    codes = {d["code"]: d for d in client.get("/api/departments", headers=handler).json()}
    assert codes["RX12345"]["name"] == "12345市民服务热线"
    assert codes["310101-CGZF"]["level"] == "district"
    assert codes["310101-CGZF"]["district_code"] == "310101"
    assert len([c for c in codes if c.startswith("31")]) == 32
