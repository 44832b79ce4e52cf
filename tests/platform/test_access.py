"""Department-owned data is invisible to other departments unless granted.

A small router built only from the kernel's access helpers stands in for a module's resource,
so the mechanism every module uses is checked through real HTTP, tokens and grants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from pujiang.app import create_app
from pujiang.platform.access import ensure_access
from pujiang.platform.deps import AUTHENTICATED, AppContext, DbSession, require
from pujiang.platform.identity import get_department
from pujiang.platform.security import CurrentPrincipal
from pujiang.settings import Settings

KIND = "notes"
Caller = Annotated[CurrentPrincipal, Depends(require(AUTHENTICATED))]


def _notes_router(notes: dict[str, dict[str, str]]) -> APIRouter:
    router = APIRouter()

    @router.get("/test/notes/{note_id}")
    def read(note_id: str, session: DbSession, caller: Caller) -> dict[str, str]:
        note = notes[note_id]
        ensure_access(session, caller, KIND, get_department(session, note["owner"]).id, note_id)
        return note

    @router.put("/test/notes/{note_id}")
    def write(
        note_id: str, body: dict[str, str], session: DbSession, caller: Caller
    ) -> dict[str, str]:
        note = notes[note_id]
        owner = get_department(session, note["owner"]).id
        ensure_access(session, caller, KIND, owner, note_id, write=True)
        note["text"] = body["text"]
        return note

    return router


@pytest.fixture
def notes_client(settings: Settings, context: AppContext) -> Iterator[TestClient]:
    notes = {
        "a1": {"owner": "310101-CGZF", "text": "黄浦区的记录"},
        "b1": {"owner": "310104-CGZF", "text": "徐汇区的记录"},
        "b2": {"owner": "310104-CGZF", "text": "徐汇区的另一条"},
    }
    app = create_app(settings, context)
    app.include_router(_notes_router(notes))
    with TestClient(app) as client:
        yield client


@pytest.fixture
def people(
    notes_client: TestClient, context: AppContext, make_user: Callable[..., str]
) -> dict[str, dict[str, str]]:
    def sign_in(name: str, *roles: str, department: str | None = None) -> dict[str, str]:
        make_user(name, *roles, department=department)
        token = notes_client.post(
            "/api/auth/token", data={"username": name, "password": "correct-horse-battery"}
        )
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    return {
        "a": sign_in("handler-a", "handler", department="310101-CGZF"),
        "b_steward": sign_in("steward-b", "data_steward", department="310104-CGZF"),
        "admin": sign_in("root", "admin", department="DSJ"),
    }


def test_handler_cannot_read_or_change_another_departments_data(
    notes_client: TestClient, people: dict[str, dict[str, str]]
) -> None:
    assert notes_client.get("/test/notes/a1", headers=people["a"]).status_code == 200
    hidden = notes_client.get("/test/notes/b1", headers=people["a"])
    assert hidden.status_code == 404  # invisible, not merely forbidden
    assert hidden.headers["content-type"] == "application/problem+json"
    change = notes_client.put("/test/notes/b1", json={"text": "改"}, headers=people["a"])
    assert change.status_code == 404
    assert (
        notes_client.get("/test/notes/b1", headers=people["b_steward"]).json()["text"]
        == "徐汇区的记录"
    )


def test_grant_of_one_item_read_only(
    notes_client: TestClient, people: dict[str, dict[str, str]]
) -> None:
    grant = notes_client.post(
        "/api/grants",
        json={
            "owner_department_code": "310104-CGZF",
            "grantee_department_code": "310101-CGZF",
            "kind": KIND,
            "resource_id": "b1",
        },
        headers=people["b_steward"],
    )
    assert grant.status_code == 201, grant.text
    assert notes_client.get("/test/notes/b1", headers=people["a"]).status_code == 200
    assert notes_client.get("/test/notes/b2", headers=people["a"]).status_code == 404
    assert (
        notes_client.put("/test/notes/b1", json={"text": "改"}, headers=people["a"]).status_code
        == 403
    )

    revoked = notes_client.delete(f"/api/grants/{grant.json()['id']}", headers=people["b_steward"])
    assert revoked.status_code == 200
    assert notes_client.get("/test/notes/b1", headers=people["a"]).status_code == 404


def test_write_grant_for_the_whole_kind(
    notes_client: TestClient, people: dict[str, dict[str, str]]
) -> None:
    notes_client.post(
        "/api/grants",
        json={
            "owner_department_code": "310104-CGZF",
            "grantee_department_code": "310101-CGZF",
            "kind": KIND,
            "can_write": True,
        },
        headers=people["b_steward"],
    )
    assert (
        notes_client.put("/test/notes/b2", json={"text": "协同"}, headers=people["a"]).status_code
        == 200
    )


def test_expired_grant_gives_nothing(
    notes_client: TestClient, people: dict[str, dict[str, str]]
) -> None:
    reply = notes_client.post(
        "/api/grants",
        json={
            "owner_department_code": "310104-CGZF",
            "grantee_department_code": "310101-CGZF",
            "kind": KIND,
            "expires_at": "2020-01-01T00:00:00Z",
        },
        headers=people["b_steward"],
    )
    assert reply.status_code == 201
    assert notes_client.get("/test/notes/b1", headers=people["a"]).status_code == 404


def test_only_the_owner_may_grant(
    notes_client: TestClient, people: dict[str, dict[str, str]]
) -> None:
    # A steward of 徐汇 cannot hand out 黄浦's data.
    reply = notes_client.post(
        "/api/grants",
        json={
            "owner_department_code": "310101-CGZF",
            "grantee_department_code": "310104-CGZF",
            "kind": KIND,
        },
        headers=people["b_steward"],
    )
    assert reply.status_code == 403
    # And a handler may not grant at all.
    denied = notes_client.post(
        "/api/grants",
        json={
            "owner_department_code": "310101-CGZF",
            "grantee_department_code": "310104-CGZF",
            "kind": KIND,
        },
        headers=people["a"],
    )
    assert denied.status_code == 403
    assert "grants.write" in denied.json()["detail"]


def test_city_wide_role_sees_everything(
    notes_client: TestClient, people: dict[str, dict[str, str]]
) -> None:
    assert notes_client.get("/test/notes/b1", headers=people["admin"]).status_code == 200


def test_revoking_an_unknown_grant_is_404(
    notes_client: TestClient, people: dict[str, dict[str, str]]
) -> None:
    reply = notes_client.delete("/api/grants/999", headers=people["admin"])
    assert reply.status_code == 404
    assert "999" in reply.json()["detail"]
