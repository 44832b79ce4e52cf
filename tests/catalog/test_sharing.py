"""Sharing between departments: request, decision, grant, exchange calls and their log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from pujiang.catalog.models import ExchangeLogEntry, ShareRequest
from pujiang.cli import app as cli_app
from pujiang.platform.deps import AppContext
from pujiang.platform.workcal import china_calendar
from tests.catalog.conftest import PEOPLE_ROWS, bus_resource, csv_bytes, people_resource

FIELDS = ["区", "年龄", "身份证号", "就诊次数"]


def _future(days: int = 30) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


@pytest.fixture
def clinic(create: Callable[..., Any], upload: Callable[..., Any]) -> dict[str, Any]:
    resource = create(people_resource())
    assert upload("clinic-visits", "WJ", csv_bytes(PEOPLE_ROWS)).status_code == 200
    return resource


def _request(client: TestClient, headers: dict[str, str], **overrides: Any) -> Any:
    body = {"resource": "clinic-visits", "purpose": "核查违法建筑住户的就医情况", "fields": FIELDS}
    body.update(overrides)
    return client.post("/api/sharing/requests", json=body, headers=headers)


def test_request_approve_exchange_revoke(
    client: TestClient,
    clinic: dict[str, Any],
    steward: Callable[[str], dict[str, str]],
    service_key: Callable[..., str],
    context: AppContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reply = _request(client, steward("CGZF"))
    assert reply.status_code == 201, reply.text
    request = reply.json()
    assert request["status"] == "pending"
    assert request["overdue"] is False
    today = datetime.now(UTC).astimezone(china_calendar_zone()).date()
    assert date.fromisoformat(request["due_on"]) == china_calendar().add_working_days(today, 10)
    key = service_key("cgzf-feed", "CGZF", "exchange_client")
    call = {"X-API-Key": key}
    # Before the decision: no grant, the call is refused and still logged.
    assert client.get("/api/exchange/clinic-visits", headers=call).status_code == 403
    reply = client.post(
        f"/api/sharing/requests/{request['id']}/approve",
        json={"expires_at": _future(), "masking": {"年龄": "hash"}},
        headers=steward("WJ"),
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["masking"] == {
        "区": "none",
        "年龄": "hash",
        "身份证号": "mask",
        "就诊次数": "none",
    }
    reply = client.get("/api/exchange/clinic-visits", params={"limit": 5}, headers=call)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["total"] == 12
    assert len(data["records"]) == 5
    first = data["records"][0]
    assert set(first) == set(FIELDS)  # 姓名 was not requested, so it is not sent
    assert first["身份证号"].startswith("310101")
    assert "*" in first["身份证号"]
    assert len(first["年龄"]) == 32
    assert first["区"] == "黄浦区"
    filtered = client.get(
        "/api/exchange/clinic-visits", params={"filters": '{"区": "徐汇区"}'}, headers=call
    ).json()
    assert filtered["total"] == 6
    not_granted = client.get(
        "/api/exchange/clinic-visits", params={"filters": '{"姓名": "张0"}'}, headers=call
    )
    assert not_granted.status_code == 422
    # A service account of another department holds no grant.
    other = service_key("jt-feed", "JT", "exchange_client")
    assert (
        client.get("/api/exchange/clinic-visits", headers={"X-API-Key": other}).status_code == 403
    )
    # The permission is needed at all.
    plain = service_key("cgzf-plain", "CGZF")
    assert (
        client.get("/api/exchange/clinic-visits", headers={"X-API-Key": plain}).status_code == 403
    )
    # Revoking works on the very next call.
    revoked = client.post(f"/api/sharing/requests/{request['id']}/revoke", headers=steward("WJ"))
    assert revoked.status_code == 200
    assert revoked.json()["active"] is False
    assert client.get("/api/exchange/clinic-visits", headers=call).status_code == 403
    again = client.post(f"/api/sharing/requests/{request['id']}/revoke", headers=steward("WJ"))
    assert again.status_code == 409
    # Every call is in the log, with hashes of request and response, and the chain holds.
    with context.db.session() as session:
        entries = list(session.scalars(select(ExchangeLogEntry).order_by(ExchangeLogEntry.id)))
    assert [e.status for e in entries] == [403, 200, 200, 422, 403, 403]
    assert entries[1].rows == 5
    assert entries[1].consumer == "CGZF"
    log = client.get("/api/sharing/exchange-log", headers=steward("WJ")).json()
    assert len(log) == 6  # the provider sees calls on its resource
    assert len(client.get("/api/sharing/exchange-log", headers=steward("SW")).json()) == 0
    monkeypatch.setenv("PUJIANG_DATABASE_URL", context.settings.database_url)
    result = CliRunner().invoke(cli_app, ["exchange", "verify"])
    assert result.exit_code == 0, result.output
    assert "6 rows" in result.output


def china_calendar_zone() -> Any:
    from pujiang.platform.workcal import SHANGHAI

    return SHANGHAI


def test_response_hash_is_of_the_bytes_sent(
    client: TestClient,
    create: Callable[..., Any],
    upload: Callable[..., Any],
    steward: Callable[[str], dict[str, str]],
    service_key: Callable[..., str],
    context: AppContext,
) -> None:
    import hashlib

    create(bus_resource())
    upload(
        "bus-arrivals",
        "JT",
        csv_bytes(
            [["线路名称", "站点", "预计到站", "距离米"], ["1路", "A", "2024-05-01 08:00", 1]]
        ),
    )
    reply = _request(client, steward("CGZF"), resource="bus-arrivals", fields=["线路名称", "站点"])
    assert reply.json()["status"] == "approved"  # 无条件共享: granted on request
    key = service_key("cgzf-feed", "CGZF", "exchange_client")
    reply = client.get("/api/exchange/bus-arrivals", headers={"X-API-Key": key})
    assert reply.status_code == 200
    with context.db.session() as session:
        entry = session.scalars(select(ExchangeLogEntry)).one()
    assert entry.response_hash == hashlib.sha256(reply.content).hexdigest()
    assert reply.headers["X-Exchange-Log-Hash"] == entry.hash


@pytest.mark.parametrize("tamper", ["edit", "delete-middle", "delete-last", "insert"])
def test_tampering_is_detected(
    client: TestClient,
    clinic: dict[str, Any],
    steward: Callable[[str], dict[str, str]],
    service_key: Callable[..., str],
    context: AppContext,
    monkeypatch: pytest.MonkeyPatch,
    tamper: str,
) -> None:
    request = _request(client, steward("CGZF")).json()
    client.post(
        f"/api/sharing/requests/{request['id']}/approve",
        json={"expires_at": _future()},
        headers=steward("WJ"),
    )
    call = {"X-API-Key": service_key("cgzf-feed", "CGZF", "exchange_client")}
    for _ in range(4):
        assert client.get("/api/exchange/clinic-visits", headers=call).status_code == 200
    with context.db.session() as session:
        if tamper == "edit":
            session.execute(update(ExchangeLogEntry).where(ExchangeLogEntry.id == 2).values(rows=0))
        elif tamper == "delete-middle":
            session.execute(delete(ExchangeLogEntry).where(ExchangeLogEntry.id == 3))
        elif tamper == "delete-last":
            session.execute(delete(ExchangeLogEntry).where(ExchangeLogEntry.id == 4))
        else:
            row = session.get(ExchangeLogEntry, 4)
            assert row is not None
            session.add(
                ExchangeLogEntry(
                    **{
                        c.name: getattr(row, c.name)
                        for c in ExchangeLogEntry.__table__.columns
                        if c.name != "id"
                    },
                    id=5,
                )
            )
    expected = {"edit": 2, "delete-middle": 4, "delete-last": 4, "insert": 5}[tamper]
    auditor = client.get(
        "/api/sharing/exchange-log/verify", headers=_auditor(client, context)
    ).json()
    assert auditor["ok"] is False
    assert auditor["first_bad_id"] == expected
    monkeypatch.setenv("PUJIANG_DATABASE_URL", context.settings.database_url)
    result = CliRunner().invoke(cli_app, ["exchange", "verify"])
    assert result.exit_code == 1
    assert f"row {expected}" in result.output


def _auditor(client: TestClient, context: AppContext) -> dict[str, str]:
    from pujiang.platform import identity

    with context.db.session() as session:
        identity.create_user(
            session,
            context,
            username="auditor1",
            password="correct-horse-battery",
            roles=["auditor"],
        )
    token = client.post(
        "/api/auth/token", data={"username": "auditor1", "password": "correct-horse-battery"}
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_every_refusal_path(
    client: TestClient,
    clinic: dict[str, Any],
    create: Callable[..., Any],
    steward: Callable[[str], dict[str, str]],
    login: Any,
    context: AppContext,
) -> None:
    consumer = steward("CGZF")
    provider = steward("WJ")
    secret = people_resource(
        name="case-files",
        code="305002001/000009",
        title="医疗纠纷案卷",
        share_type="不予共享",
        share_basis="涉及个人隐私",
        open_type="非开放",
    )
    create(secret)
    reply = _request(client, consumer, resource="case-files")
    assert reply.status_code == 422
    assert "不予共享" in reply.json()["detail"]
    assert _request(client, provider).status_code == 422  # own resource
    reply = _request(client, consumer, fields=["区", "血型"])
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "fields"
    assert _request(client, consumer, purpose="短").status_code == 422
    assert _request(client, consumer, resource="nothing-here").status_code == 404
    assert _request(client, consumer, consumer_department_code="SW").status_code == 403
    nobody = login("loner", "data_steward")
    assert _request(client, nobody).status_code == 403
    request = _request(client, consumer).json()
    assert _request(client, consumer).status_code == 409  # one open request at a time
    base = f"/api/sharing/requests/{request['id']}"
    # Only the provider decides.
    assert (
        client.post(f"{base}/refuse", json={"reason": "不行"}, headers=consumer).status_code == 403
    )
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    reply = client.post(f"{base}/approve", json={"expires_at": past}, headers=provider)
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "expires_at"
    reply = client.post(
        f"{base}/approve",
        json={"expires_at": _future(), "masking": {"姓名": "mask"}},
        headers=provider,
    )
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "masking"
    reply = client.post(
        f"{base}/approve",
        json={"expires_at": _future(), "masking": {"区": "scramble"}},
        headers=provider,
    )
    assert reply.status_code == 422
    assert client.post(f"{base}/refuse", json={}, headers=provider).status_code == 422
    with context.db.session() as session:
        assert session.get(ShareRequest, request["id"]).status == "pending"  # nothing half-done
    reply = client.post(f"{base}/refuse", json={"reason": "用途与共享条件不符"}, headers=provider)
    assert reply.status_code == 200
    assert reply.json()["status"] == "refused"
    assert (
        client.post(f"{base}/approve", json={"expires_at": _future()}, headers=provider).status_code
        == 409
    )
    assert client.post(f"{base}/revoke", headers=provider).status_code == 409
    assert client.get(base, headers=steward("SW")).status_code == 404  # not a party to it
    assert client.get("/api/sharing/requests/999", headers=provider).status_code == 404
    # A refused request may be made again, better argued.
    assert _request(client, consumer).status_code == 201


def test_overdue_requests_are_flagged(
    client: TestClient,
    clinic: dict[str, Any],
    steward: Callable[[str], dict[str, str]],
    context: AppContext,
) -> None:
    request = _request(client, steward("CGZF")).json()
    assert (
        client.get(
            "/api/sharing/requests", params={"overdue": "true"}, headers=steward("WJ")
        ).json()
        == []
    )
    with context.db.session() as session:
        session.execute(
            update(ShareRequest)
            .where(ShareRequest.id == request["id"])
            .values(due_on=date.today() - timedelta(days=1))
        )
    overdue = client.get(
        "/api/sharing/requests", params={"overdue": "true"}, headers=steward("WJ")
    ).json()
    assert [r["id"] for r in overdue] == [request["id"]]
    assert overdue[0]["overdue"] is True
    mine = client.get(
        "/api/sharing/requests", params={"role": "consumer"}, headers=steward("CGZF")
    ).json()
    assert len(mine) == 1


def test_expired_grant_stops_calls(
    client: TestClient,
    clinic: dict[str, Any],
    steward: Callable[[str], dict[str, str]],
    service_key: Callable[..., str],
    context: AppContext,
) -> None:
    request = _request(client, steward("CGZF")).json()
    client.post(
        f"/api/sharing/requests/{request['id']}/approve",
        json={"expires_at": _future()},
        headers=steward("WJ"),
    )
    call = {"X-API-Key": service_key("cgzf-feed", "CGZF", "exchange_client")}
    assert client.get("/api/exchange/clinic-visits", headers=call).status_code == 200
    with context.db.session() as session:
        session.execute(
            update(ShareRequest)
            .where(ShareRequest.id == request["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert client.get("/api/exchange/clinic-visits", headers=call).status_code == 403
