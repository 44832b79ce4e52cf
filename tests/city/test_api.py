"""The city routes: locate (single and batch), units, import, responsibility grids, permissions."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from pujiang.city.levels import Level
from pujiang.platform.deps import AppContext
from pujiang.platform.geo import wgs84_to_gcj02
from tests.city.conftest import collection, feature, grid_code, toy_city, xy
from tests.city.test_ingest import bow_tie

Headers = dict[str, str]


def test_locate_one_point(client: TestClient, toy: AppContext, reader: Headers) -> None:
    lon, lat = xy(5.5, 4.5)
    reply = client.get("/api/city/locate", params={"lon": lon, "lat": lat}, headers=reader)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["inside"] is True
    assert body["grid"] == {"code": grid_code(5, 4), "name": "006号网格"}
    assert body["community"]["code"] == "310101002002"
    assert body["street"] == {"code": "310101002", "name": "东街道"}
    assert body["district"] == {"code": "310101", "name": "黄浦区"}
    assert body["message"] is None


def test_locate_gcj02(client: TestClient, toy: AppContext, reader: Headers) -> None:
    lon, lat = xy(12.5, 1.5)
    glon, glat = wgs84_to_gcj02(lon, lat)
    reply = client.get(
        "/api/city/locate", params={"lon": glon, "lat": glat, "crs": "gcj02"}, headers=reader
    )
    body = reply.json()
    assert body["grid"]["code"] == grid_code(12, 1)
    assert body["crs"] == "gcj02"
    assert body["wgs84"] == pytest.approx([lon, lat], abs=1e-7)


def test_outside_is_a_clear_200(client: TestClient, toy: AppContext, reader: Headers) -> None:
    reply = client.get("/api/city/locate", params={"lon": 116.39, "lat": 39.91}, headers=reader)
    assert reply.status_code == 200
    body = reply.json()
    assert body["inside"] is False
    assert body["district"] is None
    assert body["message"] == "该点不在本市范围内"
    english = client.get(
        "/api/city/locate",
        params={"lon": xy(20, 3)[0], "lat": xy(20, 3)[1]},
        headers={**reader, "Accept-Language": "en"},
    ).json()
    assert english["message"].startswith("The point is outside the city (about 38")
    assert english["nearest_district"]["code"] == "310115"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"lon": 121.47, "lat": 95}, "lat"),
        ({"lon": 181, "lat": 31.2}, "lon"),
        ({"lon": "abc", "lat": 31.2}, "lon"),
        ({"lon": "nan", "lat": 31.2}, "lon"),
        ({"lat": 31.2}, "lon"),
        ({"lon": 121.47, "lat": 31.2, "crs": "bd09"}, "crs"),
    ],
)
def test_bad_locate_input_is_a_422_naming_the_field(
    client: TestClient, toy: AppContext, reader: Headers, params: dict[str, object], field: str
) -> None:
    reply = client.get("/api/city/locate", params=params, headers=reader)
    assert reply.status_code == 422
    assert reply.headers["content-type"].startswith("application/problem+json")
    body = reply.json()
    assert [e["field"] for e in body["errors"]] == [field]
    assert field in body["detail"]


def test_locate_before_any_data_is_a_503(client: TestClient, reader: Headers) -> None:
    reply = client.get("/api/city/locate", params={"lon": 121.47, "lat": 31.22}, headers=reader)
    assert reply.status_code == 503
    assert "pujiang city import" in reply.json()["detail"]


def test_batch_locate(client: TestClient, toy: AppContext, reader: Headers) -> None:
    points = [list(xy(x + 0.5, 2.5)) for x in range(16)] + [[116.39, 39.91]]
    reply = client.post("/api/city/locate", json={"points": points}, headers=reader)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["count"], body["inside"]) == (17, 16)
    assert [r["grid"]["code"] for r in body["results"][:16]] == [grid_code(x, 2) for x in range(16)]
    assert body["results"][16]["inside"] is False
    assert body["results"][16]["message"]
    single = client.get(
        "/api/city/locate", params={"lon": points[3][0], "lat": points[3][1]}, headers=reader
    )
    assert single.json() == body["results"][3]


def test_batch_of_ten_thousand(client: TestClient, toy: AppContext, reader: Headers) -> None:
    points = [list(xy((i % 160) / 10, (i // 160) / 10)) for i in range(10_000)]
    reply = client.post("/api/city/locate", json={"crs": "wgs84", "points": points}, headers=reader)
    assert reply.status_code == 200
    assert reply.json()["count"] == 10_000
    too_many = client.post(
        "/api/city/locate", json={"points": [*points, points[0]]}, headers=reader
    )
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "points"


def test_batch_names_the_bad_point(client: TestClient, toy: AppContext, reader: Headers) -> None:
    reply = client.post(
        "/api/city/locate", json={"points": [[121.47, 31.22], [121.47, 131.22]]}, headers=reader
    )
    assert reply.status_code == 422
    assert reply.json()["errors"][0]["field"] == "points.1.1"
    unknown = client.post(
        "/api/city/locate", json={"points": [[121.47, 31.22]], "srid": 4326}, headers=reader
    )
    assert unknown.json()["errors"][0]["field"] == "srid"


def test_units_list_detail_and_geometry(
    client: TestClient, toy: AppContext, reader: Headers
) -> None:
    page = client.get("/api/city/units", params={"level": "street"}, headers=reader).json()
    assert [u["code"] for u in page["items"]] == ["310101001", "310101002", "310115001"]
    assert page["items"][0]["geometry"] is None
    assert page["next_after"] is None
    grids = client.get(
        "/api/city/units",
        params={"parent": "310101001001", "limit": 10, "geometry": True},
        headers=reader,
    ).json()
    assert len(grids["items"]) == 10
    assert grids["next_after"] == "310101001001010"
    assert grids["items"][0]["geometry"]["type"] == "Polygon"
    detail = client.get("/api/city/units/310101001", headers=reader).json()
    assert detail["children"] == 2
    assert [a["code"] for a in detail["ancestors"]] == ["310101"]
    assert detail["bbox"][0] == pytest.approx(121.47)
    geojson = client.get(
        "/api/city/units", params={"level": "district", "format": "geojson"}, headers=reader
    )
    assert geojson.headers["content-type"] == "application/geo+json"
    assert [f["id"] for f in geojson.json()["features"]] == ["310101", "310115"]
    missing = client.get("/api/city/units/310101999", headers=reader)
    assert missing.status_code == 404
    assert "310101999" in missing.json()["detail"]
    summary = client.get("/api/city", headers=reader).json()
    assert summary["counts"] == {"district": 2, "street": 3, "community": 6, "grid": 96}


def test_import_route(client: TestClient, context: AppContext, steward: Headers) -> None:
    city = toy_city()
    for level in (Level.DISTRICT, Level.STREET):
        reply = client.post(f"/api/city/import/{level.value}", json=city[level], headers=steward)
        assert reply.status_code == 200, reply.text
    assert reply.json()["inserted"] == 3
    broken = collection([feature("310101003", "好", 0, 0, 1, 1), bow_tie("310101004")])
    rejected = client.post("/api/city/import/street", json=broken, headers=steward)
    assert rejected.status_code == 422
    body = rejected.json()
    assert body["type"].endswith("/invalid-features")
    assert body["errors"] == [
        {"index": 1, "code": "310101004", "reason": body["errors"][0]["reason"]}
    ]
    assert "Self-intersection" in body["errors"][0]["reason"]
    skipped = client.post("/api/city/import/street?skip_invalid=true", json=broken, headers=steward)
    assert skipped.json()["inserted"] == 1
    assert skipped.json()["skipped"] == 1
    not_geojson = client.post("/api/city/import/street", json={"type": "Feature"}, headers=steward)
    assert not_geojson.status_code == 422
    bad_level = client.post("/api/city/import/province", json=broken, headers=steward)
    assert bad_level.status_code == 422
    assert bad_level.json()["errors"][0]["field"] == "level"


@pytest.mark.parametrize("role", ["citizen", "handler", "auditor"])
def test_only_stewards_import(
    client: TestClient, context: AppContext, login: Callable[..., Headers], role: str
) -> None:
    headers = login(f"user.{role}", role)
    reply = client.post(
        "/api/city/import/district", json=toy_city()[Level.DISTRICT], headers=headers
    )
    assert reply.status_code == 403
    assert "city.write" in reply.json()["detail"]


def test_citizens_and_strangers_cannot_read(
    client: TestClient, toy: AppContext, login: Callable[..., Headers]
) -> None:
    citizen = login("li.citizen", "citizen")
    assert client.get("/api/city/locate?lon=121.47&lat=31.22", headers=citizen).status_code == 403
    assert client.get("/api/city/locate?lon=121.47&lat=31.22").status_code == 401
    assert (
        client.post("/api/city/import/district", json=toy_city()[Level.DISTRICT]).status_code == 401
    )


def test_responsibility_grids(
    client: TestClient, toy: AppContext, steward: Headers, reader: Headers
) -> None:
    members = [grid_code(x, y) for x in range(4) for y in range(3)]
    body = {"name": "西街道责任网格一", "department_code": "310101-CGZF", "grid_codes": members}
    put = client.put("/api/city/responsibility-grids/R-001", json=body, headers=steward)
    assert put.status_code == 200, put.text
    assert put.json()["grid_count"] == 12
    assert (
        client.put("/api/city/responsibility-grids/R-001", json=body, headers=reader).status_code
        == 403
    )
    located = client.get(
        "/api/city/locate",
        params=dict(zip(("lon", "lat"), xy(0.5, 0.5), strict=True)),
        headers=reader,
    )
    assert located.json()["responsibility"] == {
        "code": "R-001", "name": "西街道责任网格一", "department_code": "310101-CGZF",
    }  # fmt: skip
    taken = client.put(
        "/api/city/responsibility-grids/R-002",
        json={**body, "grid_codes": [members[0], grid_code(10, 1)]},
        headers=steward,
    )
    assert taken.status_code == 409
    assert f"{members[0]}→R-001" in taken.json()["detail"]
    unknown = client.put(
        "/api/city/responsibility-grids/R-002",
        json={**body, "grid_codes": ["310101001001999"]},
        headers=steward,
    )
    assert unknown.status_code == 422
    assert "310101001001999" in unknown.json()["detail"]
    no_department = client.put(
        "/api/city/responsibility-grids/R-002",
        json={**body, "department_code": "NOPE"},
        headers=steward,
    )
    assert "department_code" in no_department.json()["detail"]
    listed = client.get(
        "/api/city/responsibility-grids", params={"department": "310101-CGZF"}, headers=reader
    )
    assert [g["code"] for g in listed.json()] == ["R-001"]
    one = client.get("/api/city/responsibility-grids/R-001?geometry=true", headers=reader).json()
    assert one["grid_codes"] == sorted(members)
    assert one["geometry"]["type"] == "Polygon"
    assert client.delete("/api/city/responsibility-grids/R-001", headers=steward).status_code == 204
    assert client.get("/api/city/responsibility-grids/R-001", headers=reader).status_code == 404
    after = client.get(
        "/api/city/locate",
        params=dict(zip(("lon", "lat"), xy(0.5, 0.5), strict=True)),
        headers=reader,
    )
    assert after.json()["responsibility"] is None
