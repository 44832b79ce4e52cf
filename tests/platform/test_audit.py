"""The audit log records every state-changing request and security event, and its hash chain
shows an edited, inserted or deleted row."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from pujiang.cli import app as cli_app
from pujiang.platform import audit
from pujiang.platform.deps import AppContext
from pujiang.platform.models import AuditEntry, AuditHead


def _entries(context: AppContext) -> list[AuditEntry]:
    with context.db.session() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def _fill(context: AppContext, count: int = 5) -> None:
    for n in range(count):
        audit.record(
            context.db,
            actor="user:test",
            action="test.write",
            target=f"thing:{n}",
            detail={"n": n, "名称": "测试"},
        )


def _verify(context: AppContext) -> audit.Verification:
    with context.db.session() as session:
        return audit.verify(session)


def test_state_changing_request_is_recorded(
    client: TestClient, context: AppContext, login: Callable[..., dict[str, str]]
) -> None:
    admin = login("root", "admin")
    reply = client.post(
        "/api/departments", json={"code": "TEST-1", "name": "测试部门"}, headers=admin
    )
    assert reply.status_code == 201
    entry = _entries(context)[-1]
    assert entry.actor == "user:root"
    assert entry.action == "POST /api/departments"
    assert entry.target == "department:TEST-1"
    assert entry.outcome == "success"
    assert entry.request_id == reply.headers["x-request-id"]
    assert entry.detail["status"] == 201


def test_denied_and_failed_writes_are_recorded(
    client: TestClient, context: AppContext, login: Callable[..., dict[str, str]]
) -> None:
    handler = login("hana", "handler")
    client.post("/api/departments", json={"code": "TEST-2", "name": "x"}, headers=handler)
    denied = _entries(context)[-1]
    assert (denied.actor, denied.outcome, denied.detail["status"]) == ("user:hana", "denied", 403)
    client.post("/api/auth/token", data={"username": "hana", "password": "wrong-password!"})
    login_events = [e for e in _entries(context) if e.action == "auth.login"]
    assert login_events[-1].outcome == "denied"
    assert login_events[-1].target == "principal:hana"


def test_reading_the_log_needs_the_auditor_role(
    client: TestClient, context: AppContext, login: Callable[..., dict[str, str]]
) -> None:
    _fill(context, 3)
    handler = login("hana", "handler")
    assert client.get("/api/audit", headers=handler).status_code == 403
    auditor = login("audrey", "auditor")
    page = client.get("/api/audit", params={"action": "test.write", "limit": 2}, headers=auditor)
    assert page.status_code == 200
    body = page.json()
    assert [item["target"] for item in body["items"]] == ["thing:0", "thing:1"]
    assert body["next_after_id"] == body["items"][-1]["id"]
    assert client.get("/api/audit/verify", headers=auditor).json()["ok"] is True


def test_intact_chain_verifies(context: AppContext) -> None:
    _fill(context)
    result = _verify(context)
    assert result.ok
    assert result.checked == 5
    assert result.head_id == 5


def test_edited_row_is_named(context: AppContext) -> None:
    _fill(context)
    with context.db.session() as session:
        session.execute(update(AuditEntry).where(AuditEntry.id == 3).values(actor="user:mallory"))
    result = _verify(context)
    assert not result.ok
    assert result.first_bad_id == 3
    assert "altered" in result.reason


def test_edited_detail_is_named(context: AppContext) -> None:
    _fill(context)
    with context.db.session() as session:
        session.execute(update(AuditEntry).where(AuditEntry.id == 2).values(detail={"n": 99}))
    assert _verify(context).first_bad_id == 2


def test_deleted_row_is_named(context: AppContext) -> None:
    _fill(context)
    with context.db.session() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.id == 2))
    result = _verify(context)
    assert not result.ok
    assert result.first_bad_id == 3
    assert "missing" in result.reason


def test_deleted_last_row_is_found(context: AppContext) -> None:
    _fill(context)
    with context.db.session() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.id == 5))
    result = _verify(context)
    assert not result.ok
    assert "removed from the end" in result.reason


def test_inserted_row_is_named(context: AppContext) -> None:
    _fill(context)
    with context.db.session() as session:
        last = session.get_one(AuditEntry, 5)
        forged = {c.name: getattr(last, c.name) for c in AuditEntry.__table__.columns}
        forged.update(id=6, prev_hash=last.hash, actor="user:mallory")
        forged["hash"] = audit.entry_hash(
            entry_id=6,
            occurred_at=last.occurred_at,
            request_id="",
            actor="user:mallory",
            action=last.action,
            target=last.target,
            outcome=last.outcome,
            detail=last.detail,
            prev_hash=last.hash,
        )
        forged["request_id"] = ""
        session.add(AuditEntry(**forged))
    result = _verify(context)
    assert not result.ok
    assert result.first_bad_id == 6
    assert "inserted" in result.reason


def test_row_replaced_in_the_middle_is_named(context: AppContext) -> None:
    _fill(context)
    # Delete row 3 and insert a forged row 3 with a self-consistent hash: row 4's link breaks.
    with context.db.session() as session:
        old = session.get_one(AuditEntry, 3)
        fields = {c.name: getattr(old, c.name) for c in AuditEntry.__table__.columns}
        session.delete(old)
        session.flush()
        fields.update(target="thing:forged")
        fields["hash"] = audit.entry_hash(
            entry_id=3,
            occurred_at=fields["occurred_at"],
            request_id=fields["request_id"],
            actor=fields["actor"],
            action=fields["action"],
            target="thing:forged",
            outcome=fields["outcome"],
            detail=fields["detail"],
            prev_hash=fields["prev_hash"],
        )
        session.add(AuditEntry(**fields))
    result = _verify(context)
    assert result.first_bad_id == 4


@pytest.mark.parametrize("tamper", ["edit", "none"])
def test_cli_verify(context: AppContext, tamper: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(context)
    if tamper == "edit":
        with context.db.session() as session:
            session.execute(update(AuditEntry).where(AuditEntry.id == 4).values(outcome="failure"))
    monkeypatch.setenv("PUJIANG_DATABASE_URL", context.settings.database_url)
    result = CliRunner().invoke(cli_app, ["audit", "verify"])
    if tamper == "edit":
        assert result.exit_code == 1
        assert "row 4" in result.output
    else:
        assert result.exit_code == 0, result.output
        assert "5 rows" in result.output


def test_concurrent_appends_form_one_chain(context: AppContext) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda n: audit.record(context.db, actor="t", action="race", target=str(n)),
                range(40),
            )
        )
    result = _verify(context)
    assert result.ok
    assert result.checked == 40
    with context.db.session() as session:
        assert session.get_one(AuditHead, 1).last_id == 40
