"""Registering resources: every field validated, errors name the field, nothing half-written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.catalog.conftest import bus_resource, people_resource


def test_register_and_read(client: TestClient, create: Callable[..., Any], login: Any) -> None:
    created = create(bus_resource())
    assert created["department_code"] == "JT"
    assert created["items"][0]["type"] == "string"  # 字符型 is accepted and normalised
    assert created["items"][3]["type"] == "integer"
    reader = login("reader", "operator")
    reply = client.get("/api/catalog/resources/bus-arrivals", headers=reader)
    assert reply.status_code == 200
    assert reply.json()["code"] == "305001001/000001"
    assert reply.json()["opened"] is False


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"code": "9-01"}, "code"),
        ({"name": "Bad Name"}, "name"),
        ({"format": "纸质"}, "format"),
        ({"share_type": "随便共享"}, "share_type"),
        ({"open_type": "开放"}, "open_type"),
        ({"update_cycle": "每小时"}, "update_cycle"),
        ({"theme": "不存在的主题"}, "theme"),
        ({"base_registry": "户籍"}, "base_registry"),
        ({"released_on": "2024-13-01"}, "released_on"),
        ({"items": []}, "items"),
        ({"items": [{"name": "1bad", "type": "string"}]}, "items.0.name"),
        ({"items": [{"name": "a", "type": "blob"}]}, "items.0.type"),
        ({"related_codes": ["x"]}, "related_codes"),
        ({"share_type": "有条件共享"}, "share_conditions"),
        ({"share_type": "不予共享", "share_basis": "法规"}, "open_type"),
        ({"code": "105001001/000001"}, "base_registry"),
        ({"open_type": "有条件开放"}, "open_conditions"),
        ({"unknown": 1}, "unknown"),
        (
            {
                "items": [
                    {"name": "姓名", "type": "string", "personal": True, "publish_rule": "keep"}
                ]
            },
            "items.0",
        ),
    ],
)
def test_every_field_is_validated(
    client: TestClient, steward: Callable[[str], dict[str, str]], change: dict[str, Any], field: str
) -> None:
    reply = client.post(
        "/api/catalog/resources", json=bus_resource(**change), headers=steward("JT")
    )
    assert reply.status_code == 422, reply.text
    assert field in reply.text
    listed = client.get("/api/catalog/resources", headers=steward("JT")).json()
    assert listed["total"] == 0  # nothing half-written


def test_database_checks_name_the_field(
    client: TestClient, create: Callable[..., Any], steward: Callable[[str], dict[str, str]]
) -> None:
    create(bus_resource())
    again = client.post("/api/catalog/resources", json=bus_resource(), headers=steward("JT"))
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "name"
    same_code = bus_resource(name="bus-2")
    assert (
        client.post("/api/catalog/resources", json=same_code, headers=steward("JT")).json()[
            "errors"
        ][0]["field"]
        == "code"
    )
    related = bus_resource(name="bus-3", code="305001001/000003", related_codes=["305001001/999"])
    reply = client.post("/api/catalog/resources", json=related, headers=steward("JT"))
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "related_codes"
    view = bus_resource(name="bus-4", code="305001001/000004", live_view="nope")
    reply = client.post("/api/catalog/resources", json=view, headers=steward("JT"))
    assert reply.json()["errors"][0]["field"] == "live_view"
    unknown_department = bus_resource(name="bus-5", code="305001001/000005", department_code="XX")
    reply = client.post("/api/catalog/resources", json=unknown_department, headers=steward("JT"))
    assert reply.status_code == 404


def test_only_the_provider_registers_and_changes(
    client: TestClient,
    create: Callable[..., Any],
    steward: Callable[[str], dict[str, str]],
    login: Any,
) -> None:
    reply = client.post("/api/catalog/resources", json=bus_resource(), headers=steward("WJ"))
    assert reply.status_code == 403
    create(bus_resource())
    changed = bus_resource(title="公交到站（修订）")
    assert (
        client.put(
            "/api/catalog/resources/bus-arrivals", json=changed, headers=steward("WJ")
        ).status_code
        == 403
    )
    reply = client.put("/api/catalog/resources/bus-arrivals", json=changed, headers=steward("JT"))
    assert reply.status_code == 200
    assert reply.json()["title"] == "公交到站（修订）"
    reader = login("operator1", "operator")
    assert (
        client.post("/api/catalog/resources", json=bus_resource(), headers=reader).status_code
        == 403
    )
    assert client.get("/api/catalog/resources/nothing", headers=reader).status_code == 404


def test_people_resource_defaults(create: Callable[..., Any]) -> None:
    created = create(people_resource())
    rules = {i["name"]: i["publish_rule"] for i in created["items"]}
    assert rules == {
        "姓名": "suppress",
        "身份证号": "mask",
        "区": "keep",
        "年龄": "generalise",
        "就诊次数": "keep",
    }
