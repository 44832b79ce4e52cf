"""Fixtures for the cases tests: the seed catalogue, a fake city, a settable clock, people."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pujiang.cases import service
from pujiang.cases.locate import LOCATOR_KEY
from pujiang.platform.deps import AppContext
from pujiang.platform.geo import Crs
from pujiang.platform.workcal import SHANGHAI

# Monday 2025-09-29 10:00 in Shanghai: a working day, two days before the National Day break.
MONDAY = datetime(2025, 9, 29, 10, 0, tzinfo=SHANGHAI)

# The fake city: two districts split at longitude 121.48.
HUANGPU = (121.49, 31.23)
XUHUI = (121.44, 31.19)


def fake_locate(lon: float, lat: float, crs: Crs) -> dict[str, Any] | None:
    if not (121.0 <= lon < 121.6 and 31.0 <= lat < 31.5):
        return None
    district = "310101" if lon >= 121.48 else "310104"
    return {
        "inside": True,
        "district_code": district,
        "district_name": "黄浦区" if district == "310101" else "徐汇区",
        "street_code": district + "002",
        "community_code": district + "002001",
        "grid_code": district + "002001017",
    }


@dataclass
class Clock:
    now: datetime = MONDAY

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(context: AppContext) -> Clock:
    clock = Clock()
    context.extras[service.CLOCK_KEY] = clock
    return clock


@pytest.fixture
def cases_context(context: AppContext, clock: Clock) -> AppContext:
    with context.db.session() as session:
        service.load_catalogue(session)
    context.extras[LOCATOR_KEY] = fake_locate
    return context


ROLES: dict[str, tuple[str, str, str | None]] = {
    "operator": ("operator1", "operator", "RX12345"),
    "supervisor": ("sup", "supervisor", "310101-CYZX"),
    "dispatcher": ("disp", "dispatcher", "310101-CYZX"),
    "handler": ("hand", "handler", "310101-CGZF"),
    "other_handler": ("xuhui", "handler", "310104-CGZF"),
    "center_handler": ("center.hand", "handler", "310101-CYZX"),
    "citizen": ("citizen", "citizen", None),
    "steward": ("steward", "data_steward", "DSJ"),
    "admin": ("root", "admin", "DSJ"),
}


class People:
    """Auth headers per role, each account made and signed in on first use (tests stay fast)."""

    operator: dict[str, str]
    supervisor: dict[str, str]
    dispatcher: dict[str, str]
    handler: dict[str, str]
    other_handler: dict[str, str]
    center_handler: dict[str, str]
    citizen: dict[str, str]
    steward: dict[str, str]
    admin: dict[str, str]

    def __init__(self, login: Callable[..., dict[str, str]]) -> None:
        self._login = login
        self._headers: dict[str, dict[str, str]] = {}

    def __getattr__(self, name: str) -> dict[str, str]:
        if name.startswith("_") or name not in ROLES:
            raise AttributeError(name)
        if name not in self._headers:
            username, role, department = ROLES[name]
            self._headers[name] = self._login(username, role, department=department)
        return self._headers[name]


@pytest.fixture
def people(cases_context: AppContext, login: Callable[..., dict[str, str]]) -> People:
    return People(login)


def report(client: TestClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {
        "category_code": "E0501",  # 乱设摊: {district}-CGZF, 2 working hours
        "source": "patrol",
        "description": "人行道上有人设摊卖水果",
        "lon": HUANGPU[0],
        "lat": HUANGPU[1],
        **fields,
    }
    reply = client.post("/api/cases", json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    data: dict[str, Any] = reply.json()
    return data


def act(
    client: TestClient,
    headers: dict[str, str],
    case_id: int,
    action: str,
    body: dict[str, Any] | None = None,
    status: int = 200,
) -> dict[str, Any]:
    reply = client.post(f"/api/cases/{case_id}/{action}", json=body, headers=headers)
    assert reply.status_code == status, reply.text
    data: dict[str, Any] = reply.json()
    if status >= 400:
        assert reply.headers["content-type"].startswith("application/problem+json")
    return data
