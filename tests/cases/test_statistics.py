"""Monthly case statistics by district: the service function the catalog offers as a live view."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from fastapi.testclient import TestClient

from pujiang import cases
from pujiang.cases.indicators import month_bounds
from pujiang.platform.deps import AppContext
from pujiang.platform.workcal import SHANGHAI
from tests.cases.conftest import XUHUI, People, act, report


def test_monthly_statistics_by_district(
    client: TestClient, cases_context: AppContext, people: People
) -> None:
    first = report(client, people.operator)  # 黄浦区
    report(client, people.operator, description="另一处设摊")  # 黄浦区, stays reported
    act(client, people.dispatcher, first["id"], "register")
    act(client, people.dispatcher, first["id"], "dispatch")
    report(client, people.operator, lon=XUHUI[0], lat=XUHUI[1])  # 徐汇区

    with cases_context.db.session() as session:
        rows = cases.monthly_statistics_by_district(session, "2025-09")
        assert cases.monthly_statistics_by_district(session, date(2025, 8, 1)) == []
    assert [r["district_code"] for r in rows] == ["310101", "310104"]
    huangpu, xuhui = rows
    assert huangpu["month"] == "2025-09"
    assert huangpu["district_name"] == "黄浦区"
    assert huangpu["cases"] == 2
    assert huangpu["status_reported"] == 1
    assert huangpu["status_dispatched"] == 1
    assert huangpu["status_closed"] == 0
    assert (huangpu["reported"], huangpu["registered"], huangpu["dispatched"]) == (2, 1, 1)
    assert huangpu["registration_rate"] == 0.5
    assert huangpu["handling_rate"] == 0.0
    assert huangpu["closing_rate"] == 0.0
    assert (xuhui["cases"], xuhui["status_reported"], xuhui["registered"]) == (1, 1, 0)
    assert xuhui["registration_rate"] == 0.0
    assert xuhui["handling_rate"] is None  # nothing dispatched


def test_months_are_shanghai_calendar_months() -> None:
    label, start, end = month_bounds("2025-09")
    assert label == "2025-09"
    assert start == datetime(2025, 9, 1, tzinfo=SHANGHAI)
    assert end == datetime(2025, 10, 1, tzinfo=SHANGHAI)
    assert month_bounds(date(2025, 12, 31))[2] == datetime(2026, 1, 1, tzinfo=SHANGHAI)
    # Without a month: the last complete one.
    assert month_bounds(None, at=datetime(2025, 10, 5, tzinfo=SHANGHAI))[0] == "2025-09"
    assert month_bounds(None, at=datetime(2026, 1, 1, 0, 30, tzinfo=SHANGHAI))[0] == "2025-12"
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds("2025-13")
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds("September")
