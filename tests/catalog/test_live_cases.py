"""The live view over cases' monthly statistics by district, and the demo catalog that uses it.

Cases are reported through the cases API with the cases tests' fixtures (a fake city and a
clock on Monday 2025-09-29), so the rows come from `pujiang.cases.monthly_statistics_by_district`
itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pujiang.catalog import demo, views
from pujiang.catalog.models import CatalogResource
from pujiang.platform.deps import AppContext
from pujiang.platform.workcal import SHANGHAI
from tests.cases.conftest import (  # noqa: F401 - fixtures used by name
    XUHUI,
    People,
    act,
    cases_context,
    clock,
    people,
    report,
)


def _body() -> dict[str, Any]:
    body = next(b for b, _, _ in demo.CATALOG if b["name"] == "case-statistics-monthly")
    return {**demo.BASE, **body}


def test_complete_months_are_shanghai_months() -> None:
    # 2025-10-31 17:00 UTC is already November 1st in Shanghai.
    assert views.complete_months(3, datetime(2025, 10, 31, 17, 0, tzinfo=UTC)) == [
        "2025-08",
        "2025-09",
        "2025-10",
    ]
    assert views.complete_months(2, datetime(2026, 1, 5, tzinfo=SHANGHAI)) == [
        "2025-11",
        "2025-12",
    ]


def test_case_statistics_live_view(
    client: TestClient,
    cases_context: AppContext,  # noqa: F811
    people: People,  # noqa: F811
    create: Callable[..., Any],
    steward: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = report(client, people.operator)  # 黄浦区
    report(client, people.operator, description="另一处设摊")  # 黄浦区, stays reported
    act(client, people.dispatcher, first["id"], "register")
    act(client, people.dispatcher, first["id"], "dispatch")
    report(client, people.operator, lon=XUHUI[0], lat=XUHUI[1])  # 徐汇区
    # A month later: September 2025 is the newest complete month.
    monkeypatch.setattr(views, "utcnow", lambda: datetime(2025, 10, 5, tzinfo=SHANGHAI))

    assert "cases.monthly_by_district" in views.view_names()
    create(_body())
    headers = steward("CYZX")
    page = client.get(
        "/api/catalog/resources/case-statistics-monthly/data",
        params={"sort": "区划代码"},
        headers=headers,
    ).json()
    assert page["total"] == 2
    huangpu, xuhui = page["records"]
    assert (huangpu["月份"], huangpu["区划代码"], huangpu["区名称"]) == (
        "2025-09",
        "310101",
        "黄浦区",
    )
    assert (huangpu["案件数"], huangpu["现状态_信息收集"], huangpu["现状态_已派遣待接单"]) == (
        2,
        1,
        1,
    )
    assert (huangpu["上报数"], huangpu["立案数"], huangpu["派遣数"]) == (2, 1, 1)
    assert huangpu["立案率"] == 0.5
    assert huangpu["处置率"] == 0.0
    assert (xuhui["区名称"], xuhui["案件数"], xuhui["立案数"]) == ("徐汇区", 1, 0)
    assert xuhui["处置率"] is None  # nothing dispatched
    # Every key the cases function gives has its item, and no item is left unfilled.
    item_names = {name for _, name, _, _ in views.CASE_STATISTICS_ITEMS}
    assert set(huangpu) >= item_names
    with cases_context.db.session() as session:
        from pujiang.cases import monthly_statistics_by_district

        raw = monthly_statistics_by_district(session, "2025-09")
    assert set(raw[0]) == {key for key, _, _, _ in views.CASE_STATISTICS_ITEMS}

    # The next month's refresh keeps September among the last twelve.
    monkeypatch.setattr(views, "utcnow", lambda: datetime(2025, 11, 5, tzinfo=SHANGHAI))
    reply = client.post("/api/catalog/resources/case-statistics-monthly/refresh", headers=headers)
    assert reply.status_code == 200, reply.text
    again = client.get("/api/catalog/resources/case-statistics-monthly/data", headers=headers)
    assert again.json()["total"] == 2


def test_demo_catalog_includes_the_case_statistics(context: AppContext) -> None:
    with context.db.session() as session:
        assert demo.load_demo_catalog(session) == len(demo.CATALOG) == 13
    with context.db.session() as session:
        resource = session.scalars(
            select(CatalogResource).where(CatalogResource.name == "case-statistics-monthly")
        ).one()
        assert resource.live_view == "cases.monthly_by_district"
        assert resource.opened_at is not None
        assert resource.data_updated_at is not None  # refreshed when opened (no cases: no rows)
    with context.db.session() as session:
        assert demo.load_demo_catalog(session) == 0
