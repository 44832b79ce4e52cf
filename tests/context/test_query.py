"""GET /entities and POST /entityOperations/query: filters, paging, geo- and q-queries."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.context.conftest import BASE, create, problem, station

H = dict[str, str]


@pytest.fixture
def city(client: TestClient, writer: H) -> None:
    for n in range(1, 6):
        create(client, writer, station(n, pm25=n * 10))
    create(
        client,
        writer,
        {
            "id": "urn:ngsi-ld:Streetlight:1",
            "type": ["Streetlight", "Device"],
            "powerState": {"type": "Property", "value": "on"},
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [121.5, 31.3]},
            },
        },
    )
    create(
        client,
        writer,
        {
            "id": "urn:ngsi-ld:Device:9",
            "type": "Device",
            "batteryLevel": {"type": "Property", "value": 0.4},
        },
    )


def ids(reply: Any) -> list[str]:
    assert reply.status_code == 200, reply.text
    return [e["id"] for e in reply.json()]


def query(client: TestClient, headers: H, **params: Any) -> Any:
    return client.get(f"{BASE}/entities", params=params, headers=headers)


def test_type_expressions(client: TestClient, reader: H, city: None) -> None:
    assert len(ids(query(client, reader, type="AirQualityObserved"))) == 5
    assert ids(query(client, reader, type="Streetlight")) == ["urn:ngsi-ld:Streetlight:1"]
    assert set(ids(query(client, reader, type="Streetlight,Device"))) == {
        "urn:ngsi-ld:Streetlight:1",
        "urn:ngsi-ld:Device:9",
    }
    assert ids(query(client, reader, type="Streetlight;Device")) == ["urn:ngsi-ld:Streetlight:1"]
    assert len(ids(query(client, reader, type="(Streetlight;Device)|AirQualityObserved"))) == 6
    assert ids(query(client, reader, type="Nothing")) == []
    for bad in ("(A", "A;;B", "A|", ")"):
        problem(query(client, reader, type=bad), "BadRequestData", 400)


def test_ids_pattern_attrs(client: TestClient, reader: H, city: None) -> None:
    wanted = "urn:ngsi-ld:Device:9,urn:ngsi-ld:Streetlight:1"
    assert ids(query(client, reader, id=wanted, type="Streetlight,Device")) == [
        "urn:ngsi-ld:Streetlight:1",
        "urn:ngsi-ld:Device:9",
    ]
    assert len(ids(query(client, reader, idPattern="urn:ngsi-ld:AirQualityObserved:.*"))) == 5
    assert ids(query(client, reader, idPattern=".*:9")) == ["urn:ngsi-ld:Device:9"]
    problem(query(client, reader, idPattern="(["), "BadRequestData", 400)
    problem(query(client, reader, id="not-a-uri"), "BadRequestData", 400)
    found = query(client, reader, attrs="batteryLevel,powerState").json()
    assert {e["id"] for e in found} == {"urn:ngsi-ld:Device:9", "urn:ngsi-ld:Streetlight:1"}
    light = next(e for e in found if e["id"] == "urn:ngsi-ld:Streetlight:1")
    assert "location" not in light
    assert "powerState" in light
    problem(query(client, reader), "BadRequestData", 400)


def test_paging_and_count(client: TestClient, reader: H, city: None) -> None:
    reply = query(client, reader, type="AirQualityObserved", limit=2, count="true")
    assert ids(reply) == ["urn:ngsi-ld:AirQualityObserved:1", "urn:ngsi-ld:AirQualityObserved:2"]
    assert reply.headers["ngsild-results-count"] == "5"
    assert 'rel="next"' in reply.headers["link"]
    assert "offset=2" in reply.headers["link"]
    reply = query(client, reader, type="AirQualityObserved", limit=2, offset=4)
    assert ids(reply) == ["urn:ngsi-ld:AirQualityObserved:5"]
    assert 'rel="prev"' in reply.headers["link"]
    assert 'rel="next"' not in reply.headers["link"]
    reply = query(client, reader, type="AirQualityObserved", limit=0, count="true")
    assert ids(reply) == []
    assert reply.headers["ngsild-results-count"] == "5"
    problem(query(client, reader, type="AirQualityObserved", limit=5000), "TooManyResults", 403)
    problem(query(client, reader, type="AirQualityObserved", limit="x"), "BadRequestData", 400)
    problem(query(client, reader, type="AirQualityObserved", limit=-1), "BadRequestData", 400)


def test_q_queries(client: TestClient, reader: H, city: None) -> None:
    assert ids(query(client, reader, type="AirQualityObserved", q="pm25>30")) == [
        "urn:ngsi-ld:AirQualityObserved:4",
        "urn:ngsi-ld:AirQualityObserved:5",
    ]
    assert len(ids(query(client, reader, q="pm25>=10;pm25<=20"))) == 2
    assert len(ids(query(client, reader, q="pm25==10..30"))) == 3
    assert ids(query(client, reader, q='powerState=="on"')) == ["urn:ngsi-ld:Streetlight:1"]
    assert ids(query(client, reader, q="batteryLevel<0.5")) == ["urn:ngsi-ld:Device:9"]
    reply = query(client, reader, type="AirQualityObserved", q="pm25>10", count="true", limit=1)
    assert reply.headers["ngsild-results-count"] == "4"
    for bad in ("pm25>>3", "(pm25>1", "pm25==", ";"):
        body = problem(query(client, reader, q=bad), "BadRequestData", 400)
        assert "q" in body["detail"]


def test_geo_queries(client: TestClient, reader: H, city: None) -> None:
    near = query(
        client,
        reader,
        type="AirQualityObserved",
        georel="near;maxDistance==250",
        geometry="Point",
        coordinates="[121.471,31.23]",
    )
    assert ids(near) == [
        "urn:ngsi-ld:AirQualityObserved:1",
        "urn:ngsi-ld:AirQualityObserved:2",
        "urn:ngsi-ld:AirQualityObserved:3",
    ]
    within = query(
        client,
        reader,
        georel="within",
        geometry="Polygon",
        coordinates="[[[121.49,31.29],[121.51,31.29],[121.51,31.31],[121.49,31.31],[121.49,31.29]]]",
    )
    assert ids(within) == ["urn:ngsi-ld:Streetlight:1"]
    disjoint = query(
        client,
        reader,
        georel="disjoint",
        geometry="Point",
        coordinates="[121.5,31.3]",
    )
    assert len(ids(disjoint)) == 5
    for params in (
        {"georel": "near", "geometry": "Point"},
        {"georel": "nearby", "geometry": "Point", "coordinates": "[1,2]"},
        {"georel": "within", "geometry": "Pentagon", "coordinates": "[1,2]"},
        {"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": "[1,"},
    ):
        problem(query(client, reader, type="AirQualityObserved", **params), "BadRequestData", 400)
    geo = client.get(
        f"{BASE}/entities",
        params={"type": "Streetlight"},
        headers={**reader, "Accept": "application/geo+json"},
    )
    assert geo.status_code == 200
    assert geo.json()["type"] == "FeatureCollection"
    assert geo.json()["features"][0]["geometry"]["type"] == "Point"


def test_post_query(client: TestClient, reader: H, city: None) -> None:
    body = {
        "type": "Query",
        "entities": [{"type": "AirQualityObserved"}],
        "q": "pm25>20",
        "geoQ": {
            "georel": "near;maxDistance==5000",
            "geometry": "Point",
            "coordinates": [121.47, 31.23],
        },
    }
    reply = client.post(f"{BASE}/entityOperations/query", json=body, headers=reader)
    assert ids(reply) == [
        "urn:ngsi-ld:AirQualityObserved:3",
        "urn:ngsi-ld:AirQualityObserved:4",
        "urn:ngsi-ld:AirQualityObserved:5",
    ]
    reply = client.post(f"{BASE}/entityOperations/query", json={"type": "Nope"}, headers=reader)
    problem(reply, "BadRequestData", 400)


def post_query(client: TestClient, headers: H, selectors: Any, **members: Any) -> Any:
    body = {"type": "Query", "entities": selectors, **members}
    return client.post(f"{BASE}/entityOperations/query", json=body, headers=headers)


def test_post_query_with_several_selectors(client: TestClient, reader: H, city: None) -> None:
    station = "urn:ngsi-ld:AirQualityObserved:"
    # Any of them: by ids (with their type), by type, by idPattern, in insertion order.
    by_ids = [
        {"id": f"{station}2", "type": "AirQualityObserved"},
        {"id": "urn:ngsi-ld:Device:9", "type": "Device"},
    ]
    assert ids(post_query(client, reader, by_ids)) == [f"{station}2", "urn:ngsi-ld:Device:9"]
    # Each selector's conditions hold together: station 2 is not a Device.
    crossed = [{"id": f"{station}2", "type": "Device"}, {"id": f"{station}3"}]
    assert ids(post_query(client, reader, crossed)) == [f"{station}3"]
    mixed = [
        {"type": "Streetlight;Device"},
        {"idPattern": ".*:[45]$", "type": "AirQualityObserved"},
    ]
    assert ids(post_query(client, reader, mixed)) == [
        f"{station}4",
        f"{station}5",
        "urn:ngsi-ld:Streetlight:1",
    ]
    # The other members still narrow, paging and count apply to the whole.
    narrowed = post_query(client, reader, mixed, q="pm25>45")
    assert ids(narrowed) == [f"{station}5"]
    paged = client.post(
        f"{BASE}/entityOperations/query",
        json={"type": "Query", "entities": mixed},
        params={"limit": 1, "offset": 1, "count": "true"},
        headers=reader,
    )
    assert ids(paged) == [f"{station}5"]
    assert paged.headers["NGSILD-Results-Count"] == "3"
    # One selector alone needs no member of its own when the Query narrows otherwise.
    alone = post_query(client, reader, [{}], attrs=["batteryLevel"])
    assert ids(alone) == ["urn:ngsi-ld:Device:9"]
    # Overlapping selectors give each entity once.
    twice = [{"type": "Device"}, {"id": "urn:ngsi-ld:Device:9"}]
    assert ids(post_query(client, reader, twice)) == [
        "urn:ngsi-ld:Streetlight:1",
        "urn:ngsi-ld:Device:9",
    ]


def test_post_query_selectors_stay_in_their_tenant(
    client: TestClient, writer: H, reader: H, city: None
) -> None:
    create(client, {**writer, "NGSILD-Tenant": "other"}, station(9))
    selectors = [{"type": "Device"}, {"idPattern": ".*:9$"}]
    found = ids(post_query(client, reader, selectors))
    assert found == ["urn:ngsi-ld:Streetlight:1", "urn:ngsi-ld:Device:9"]
    other = post_query(client, {**reader, "NGSILD-Tenant": "other"}, selectors)
    assert ids(other) == ["urn:ngsi-ld:AirQualityObserved:9"]


@pytest.mark.parametrize(
    ("selectors", "named"),
    [
        ({"type": "Device"}, "entities must be an array"),
        ([{"type": "Device"}, "Device"], "entities[1] must be an object"),
        ([{"type": "Device"}, {"id": ["urn:a:b"]}], "the id of entities[1] must be a string"),
        ([{"type": "Device"}, {}], "entities[1] needs a type, id or idPattern"),
        ([{"type": "Device"}, {"idPattern": "("}], "idPattern is not a regex"),
        ([{"type": "Device"}, {"id": "not a uri"}], "not a uri"),
        ([{"type": "Device"}, {"type": "(A;"}], "type"),
    ],
)
def test_post_query_bad_selectors(
    client: TestClient, reader: H, selectors: Any, named: str
) -> None:
    body = problem(post_query(client, reader, selectors), "BadRequestData", 400)
    assert named in body["detail"], body["detail"]


def test_q_keeps_values_the_index_cannot_decide(client: TestClient, writer: H) -> None:
    create(
        client, writer, {"id": "urn:ngsi-ld:T:arr", "type": "T", "tags": ["a", "b"], "n": [1, 50]}
    )
    create(client, writer, {"id": "urn:ngsi-ld:T:str", "type": "T", "tags": "c", "n": 2})
    create(client, writer, {"id": "urn:ngsi-ld:T:long", "type": "T", "tags": "x" * 300, "n": True})
    assert ids(query(client, writer, type="T", q='tags=="a"')) == ["urn:ngsi-ld:T:arr"]
    assert ids(query(client, writer, type="T", q='tags=="c"')) == ["urn:ngsi-ld:T:str"]
    assert ids(query(client, writer, type="T", q=f'tags=="{"x" * 300}"')) == ["urn:ngsi-ld:T:long"]
    assert ids(query(client, writer, type="T", q="n==true")) == ["urn:ngsi-ld:T:long"]
