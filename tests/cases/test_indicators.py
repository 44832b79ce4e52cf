"""综合评价 on a small known set, against values computed by hand; CSV and XLSX exports."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from pujiang.platform.deps import AppContext
from tests.cases.conftest import Clock, People, act, report

PERIOD = {"start": "2025-09-29T00:00:00+08:00", "end": "2025-09-30T00:00:00+08:00"}


@pytest.fixture
def known_set(
    client: TestClient, cases_context: AppContext, people: People, clock: Clock
) -> dict[str, int]:
    """Five reports on Monday 29 Sep 2025 (乱设摊: 2 working hours to handle)."""
    d, h, s = people.dispatcher, people.handler, people.supervisor
    a = report(client, s)["id"]
    act(client, d, a, "reject", {"reason": "不在立案范围"})
    b = report(client, s, lon=121.495)["id"]
    for actor, action, body in (
        (d, "register", None), (d, "dispatch", None), (h, "accept", None),
        (h, "feedback", {"result": "已取缔"}), (s, "verify", None), (d, "close", None),
    ):  # fmt: skip
        act(client, actor, b, action, body)
    c = report(client, s, lon=121.50)["id"]
    for actor, action, body in (
        (d, "register", None), (d, "dispatch", None), (h, "accept", None),
        (h, "request-extension", {"hours": 1, "reason": "夜市"}), (d, "approve-extension", None),
    ):  # fmt: skip
        act(client, actor, c, action, body)
    clock.now += timedelta(hours=5)  # 15:00: past the 14:00 deadline (10:00 + 2 h + 1 h)
    for actor, action, body in (
        (h, "feedback", {"result": "已取缔"}), (s, "rework", {"reason": "有残留"}),
        (h, "feedback", {"result": "已清理"}), (s, "verify", None), (d, "close", None),
    ):  # fmt: skip
        act(client, actor, c, action, body)
    dd = report(client, s, lon=121.51)["id"]
    act(client, d, dd, "register")
    act(client, d, dd, "dispatch")
    e = report(client, s, lon=121.495)["id"]
    act(client, d, e, "merge", {"into": b})
    return {"a": a, "b": b, "c": c, "d": dd, "e": e}


def test_indicators_by_hand(client: TestClient, known_set: dict[str, int], people: People) -> None:
    reply = client.get(
        "/api/cases/indicators", params={**PERIOD, "by": "all"}, headers=people.admin
    )
    assert reply.status_code == 200, reply.text
    (row,) = reply.json()["rows"]
    # A rejected, B on time, C extended + late + reworked, D dispatched only, E merged (left out).
    assert {k: row[k] for k in ("reported", "registered", "dispatched", "handled")} == {
        "reported": 4,
        "registered": 3,
        "dispatched": 3,
        "handled": 2,
    }
    assert (row["handled_on_time"], row["closed"], row["closed_on_time"]) == (1, 2, 1)
    assert (row["reworked"], row["extended"]) == (1, 1)
    assert row["registration_rate"] == 0.75  # 3 / 4
    assert row["handling_rate"] == 0.6667  # 2 / 3
    assert row["on_time_handling_rate"] == 0.3333  # 1 / 3
    assert row["closing_rate"] == 0.6667  # 2 / 3
    assert row["on_time_closing_rate"] == 0.3333  # 1 / 3
    assert row["rework_rate"] == 0.5  # 1 / 2
    assert row["extension_rate"] == 0.3333  # 1 / 3


def test_indicators_by_department_district_street_month(
    client: TestClient, known_set: dict[str, int], people: People
) -> None:
    def rows(by: str) -> dict[str, dict[str, object]]:
        reply = client.get(
            "/api/cases/indicators", params={**PERIOD, "by": by}, headers=people.admin
        )
        return {r["key"]: r for r in reply.json()["rows"]}

    departments = rows("department")
    assert departments["310101-CGZF"]["reported"] == 3
    assert departments["310101-CGZF"]["registration_rate"] == 1.0
    assert departments["310101-CYZX"]["reported"] == 1  # the rejected case stayed at the center
    assert departments["310101-CYZX"]["handling_rate"] is None  # nothing dispatched: no rate
    assert rows("district")["310101"]["reported"] == 4
    assert rows("street")["310101002"]["closed"] == 2
    assert rows("month")["2025-09"]["reported"] == 4
    # The handler's department sees only its own cases.
    mine = client.get(
        "/api/cases/indicators", params={**PERIOD, "by": "all"}, headers=people.handler
    )
    assert mine.json()["rows"][0]["reported"] == 3
    empty = client.get(
        "/api/cases/indicators",
        params={"start": "2025-10-01T00:00:00+08:00", "end": "2025-10-02T00:00:00+08:00"},
        headers=people.admin,
    )
    assert empty.json()["rows"] == []


def test_indicator_exports(client: TestClient, known_set: dict[str, int], people: People) -> None:
    reply = client.get(
        "/api/cases/indicators",
        params={**PERIOD, "by": "all", "format": "csv"},
        headers=people.admin,
    )
    assert reply.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(reply.content.decode("utf-8-sig"))))
    assert table[0][2].startswith("上报数")
    assert table[1][2] == "4"
    book = client.get(
        "/api/cases/indicators", params={**PERIOD, "by": "district", "format": "xlsx"},
        headers=people.admin,
    )  # fmt: skip
    sheet = load_workbook(io.BytesIO(book.content)).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[1][0] == "分组"
    assert values[3][0] == "310101"
    assert values[3][2] == 4


@pytest.mark.parametrize(
    "params",
    [
        {"start": "2025-10-01T00:00:00+08:00", "end": "2025-09-01T00:00:00+08:00"},
        {"start": "2020-01-01T00:00:00+08:00", "end": "2025-01-01T00:00:00+08:00"},
        {"by": "planet"},
        {"format": "pdf"},
        {"start": "yesterday"},
    ],
)
def test_indicator_bad_input(
    client: TestClient, cases_context: AppContext, people: People, params: dict[str, str]
) -> None:
    reply = client.get("/api/cases/indicators", params=params, headers=people.admin)
    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
