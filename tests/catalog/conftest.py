"""Helpers for the catalog tests: stewards of departments, resource bodies, uploads."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

BUS_ITEMS: list[dict[str, Any]] = [
    {"name": "线路名称", "type": "字符型", "description": "公交线路"},
    {"name": "站点", "type": "string"},
    {"name": "预计到站", "type": "datetime"},
    {"name": "距离米", "type": "整型"},
]


def bus_resource(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "bus-arrivals",
        "code": "305001001/000001",
        "title": "公交线路实时到站",
        "summary": "全市公交线路各站点的实时到站预测（GPS 定位）",
        "department_code": "JT",
        "format": "服务接口",
        "items": copy.deepcopy(BUS_ITEMS),
        "share_type": "无条件共享",
        "open_type": "无条件开放",
        "update_cycle": "实时",
        "released_on": "2024-03-01",
        "theme": "交通出行",
        "tags": ["公交", "bus"],
    }
    body.update(overrides)
    return body


PEOPLE_ITEMS: list[dict[str, Any]] = [
    {"name": "姓名", "type": "string", "personal": True, "publish_rule": "suppress"},
    {"name": "身份证号", "type": "string", "personal": True, "publish_rule": "mask"},
    {"name": "区", "type": "string", "quasi_identifier": True},
    {"name": "年龄", "type": "integer", "quasi_identifier": True, "publish_rule": "generalise"},
    {"name": "就诊次数", "type": "integer"},
]


def people_resource(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "clinic-visits",
        "code": "305002001/000002",
        "title": "社区门诊就诊统计",
        "summary": "按人统计的社区门诊就诊次数",
        "department_code": "WJ",
        "format": "电子表格",
        "items": copy.deepcopy(PEOPLE_ITEMS),
        "share_type": "有条件共享",
        "share_conditions": "仅用于公共卫生管理",
        "share_basis": "《上海市公共数据和一网通办管理办法》",
        "open_type": "有条件开放",
        "open_conditions": "签署数据使用协议",
        "update_cycle": "月",
        "released_on": "2024-01-15",
        "theme": "健康保障",
        "tags": ["门诊"],
        "min_k": 3,
    }
    body.update(overrides)
    return body


def csv_bytes(rows: list[list[Any]], encoding: str = "utf-8") -> bytes:
    return "\n".join(",".join(str(c) for c in row) for row in rows).encode(encoding)


@pytest.fixture
def steward(login: Callable[..., dict[str, str]]) -> Callable[[str], dict[str, str]]:
    """Headers of a data steward of the given department (one user per department)."""
    made: dict[str, dict[str, str]] = {}

    def make(department: str) -> dict[str, str]:
        if department not in made:
            name = f"steward-{department.lower()}"
            made[department] = login(name, "data_steward", department=department)
        return made[department]

    return make


@pytest.fixture
def create(client: TestClient, steward: Callable[[str], dict[str, str]]) -> Callable[..., Any]:
    def make(body: dict[str, Any]) -> dict[str, Any]:
        reply = client.post(
            "/api/catalog/resources", json=body, headers=steward(body["department_code"])
        )
        assert reply.status_code == 201, reply.text
        return reply.json()

    return make


@pytest.fixture
def upload(client: TestClient, steward: Callable[[str], dict[str, str]]) -> Callable[..., Any]:
    def send(
        name: str, department: str, data: bytes, filename: str = "data.csv", **params: Any
    ) -> Any:
        return client.post(
            f"/api/catalog/resources/{name}/data",
            files={"file": (filename, data)},
            params=params,
            headers=steward(department),
        )

    return send


PEOPLE_ROWS: list[list[Any]] = [
    ["姓名", "身份证号", "区", "年龄", "就诊次数"],
    *[
        [f"张{i}", f"31010119{80 + i % 10}0101{i % 10}01X", "黄浦区", 30 + i % 10, i]
        for i in range(6)
    ],
    *[
        [f"李{i}", f"31010419{70 + i % 10}0202{i % 10}02X", "徐汇区", 40 + i % 10, i]
        for i in range(6)
    ],
]


@pytest.fixture
def service_key(context: Any) -> Callable[..., str]:
    """An API key of a new service account of a department with the given roles."""
    from pujiang.platform import identity

    def make(name: str, department: str, *roles: str) -> str:
        with context.db.session() as session:
            account = identity.create_service_account(
                session, name=name, department_code=department, roles=list(roles)
            )
            _, key = identity.issue_api_key(session, account)
        return key

    return make
