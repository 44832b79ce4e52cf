"""Uploading data: encodings, type checks against the items, bad rows, XLSX, live views."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import Workbook

from tests.catalog.conftest import bus_resource, csv_bytes

HEADER = ["线路名称", "站点", "预计到站", "距离米"]
GOOD = [
    ["71路", "延安东路外滩", "2024-05-01 08:00:00", 300],
    ["71路", "西藏中路", "2024-05-01 08:05:00", 1200],
]


def _count(client: TestClient, headers: dict[str, str]) -> int:
    reply = client.get("/api/catalog/resources/bus-arrivals/data", headers=headers)
    assert reply.status_code == 200, reply.text
    return int(reply.json()["total"])


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_in_every_encoding(
    client: TestClient,
    create: Callable[..., Any],
    upload: Callable[..., Any],
    steward: Any,
    encoding: str,
) -> None:
    create(bus_resource())
    rows = [HEADER, *GOOD]
    if encoding == "gb18030":
        rows.append(["𠀀路", "站", "2024-05-01 09:00", 5])  # outside GBK: needs GB18030
    reply = upload("bus-arrivals", "JT", csv_bytes(rows, encoding))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["encoding"] == ("utf-8-sig" if encoding == "utf-8-sig" else encoding)
    assert body["rows_stored"] == len(rows) - 1
    assert {c["name"]: c["inferred"] for c in body["columns"]}["距离米"] == "integer"
    data = client.get("/api/catalog/resources/bus-arrivals/data", headers=steward("JT")).json()
    assert data["records"][0]["线路名称"] == "71路"
    assert data["records"][0]["距离米"] == 300


def test_gbk_file_with_bad_rows_stores_nothing(
    client: TestClient, create: Callable[..., Any], upload: Callable[..., Any], steward: Any
) -> None:
    create(bus_resource())
    rows = [
        HEADER,
        GOOD[0],
        ["71路", "河南中路", "明天早上", 400],  # bad date-time
        ["71路", "浙江中路", "2024-05-01 08:09:00", "很远"],  # bad integer
        GOOD[1],
        ["71路", "福建中路", "2024-05-01 08:11", "3.5"],  # not an integer either
    ]
    data = csv_bytes(rows, "gbk")
    reply = upload("bus-arrivals", "JT", data)
    assert reply.status_code == 422
    body = reply.json()
    assert body["encoding"] == "gbk"
    assert body["stored"] is False
    assert [b["row"] for b in body["bad_rows"]] == [3, 4, 6]
    assert body["bad_rows"][0]["errors"][0]["column"] == "预计到站"
    assert body["bad_rows"][1]["errors"][0]["value"] == "很远"
    assert "未保存" in body["detail"]
    assert {c["name"]: c["inferred"] for c in body["columns"]}["距离米"] == "string"  # 很远 is text
    assert _count(client, steward("JT")) == 0
    # Asked explicitly: the good rows are kept, the bad ones counted against validity.
    reply = upload("bus-arrivals", "JT", data, accept_bad_rows="true")
    assert reply.status_code == 200
    assert reply.json()["rows_stored"] == 2
    assert _count(client, steward("JT")) == 2
    quality = client.get(
        "/api/catalog/resources/bus-arrivals/quality", headers=steward("JT")
    ).json()
    assert quality["validity"] == 0.4
    assert quality["completeness"] == 1.0


def test_header_must_match_items(create: Callable[..., Any], upload: Callable[..., Any]) -> None:
    create(bus_resource())
    reply = upload("bus-arrivals", "JT", csv_bytes([["线路名称", "站点", "颜色"], ["1", "2", "3"]]))
    assert reply.status_code == 422
    assert "预计到站" in reply.json()["detail"]
    assert "颜色" in reply.json()["detail"]
    assert reply.json()["errors"][0]["field"] == "file"
    assert upload("bus-arrivals", "JT", b"").status_code == 422
    assert upload("bus-arrivals", "JT", b"PK\x03\x04garbage", filename="x.xlsx").status_code == 422


def test_xlsx_upload_append_and_query(
    client: TestClient, create: Callable[..., Any], upload: Callable[..., Any], steward: Any
) -> None:
    create(bus_resource())
    book = Workbook()
    sheet = book.active
    sheet.append(HEADER)
    sheet.append(["49路", "人民广场", datetime(2024, 5, 1, 8, 0), 100])
    sheet.append(["49路", "汉口路", "2024-05-01 08:03", 700.0])
    buffer = io.BytesIO()
    book.save(buffer)
    reply = upload("bus-arrivals", "JT", buffer.getvalue(), filename="arrivals.xlsx")
    assert reply.status_code == 200, reply.text
    assert reply.json()["encoding"] == "xlsx"
    reply = upload("bus-arrivals", "JT", csv_bytes([HEADER, *GOOD]), append="true")
    assert reply.json()["rows_stored"] == 2
    headers = steward("JT")
    page = client.get(
        "/api/catalog/resources/bus-arrivals/data",
        params={"filters": '{"线路名称": "71路"}', "sort": "距离米 desc"},
        headers=headers,
    ).json()
    assert page["total"] == 2
    assert [r["距离米"] for r in page["records"]] == [1200, 300]
    bad = client.get(
        "/api/catalog/resources/bus-arrivals/data", params={"sort": "颜色"}, headers=headers
    )
    assert bad.status_code == 422
    assert "颜色" in bad.json()["detail"]
    bad = client.get(
        "/api/catalog/resources/bus-arrivals/data", params={"filters": "[1]"}, headers=headers
    )
    assert bad.status_code == 422
    other = client.get("/api/catalog/resources/bus-arrivals/data", headers=steward("WJ"))
    assert other.status_code == 403


def test_upload_by_another_department_is_refused(
    create: Callable[..., Any], upload: Callable[..., Any]
) -> None:
    create(bus_resource())
    assert upload("bus-arrivals", "WJ", csv_bytes([HEADER, *GOOD])).status_code == 403
    assert upload("nothing", "JT", csv_bytes([HEADER, *GOOD])).status_code == 404


def test_live_view_fills_itself(
    client: TestClient, create: Callable[..., Any], upload: Callable[..., Any], steward: Any
) -> None:
    body = bus_resource(
        name="district-population",
        code="103001001/000001",
        title="各区常住人口",
        summary="各区常住人口、面积与人口密度（第七次人口普查）",
        department_code="DSJ",
        base_registry="人口",
        theme="公共服务",
        update_cycle="年",
        live_view="city.district_population",
        items=[
            {"name": "区划代码", "type": "string", "key": True},
            {"name": "区名称", "type": "string"},
            {"name": "常住人口", "type": "integer"},
            {"name": "面积_平方公里", "type": "number"},
            {"name": "人口密度", "type": "number"},
        ],
    )
    create(body)
    headers = steward("DSJ")
    page = client.get("/api/catalog/resources/district-population/data", headers=headers).json()
    assert page["total"] == 16
    assert "黄浦区" in {r["区名称"] for r in page["records"]}
    reply = upload("district-population", "DSJ", csv_bytes([["区划代码"], ["1"]]))
    assert reply.status_code == 409
    assert (
        client.post(
            "/api/catalog/resources/district-population/refresh", headers=headers
        ).status_code
        == 200
    )
    quality = client.get(
        "/api/catalog/resources/district-population/quality", headers=headers
    ).json()
    assert quality["uniqueness"] == 1.0
    assert quality["late"] is False
