"""The demo entities load quickly, are valid NGSI-LD and can be queried."""

from __future__ import annotations

from fastapi.testclient import TestClient

from pujiang.context.demo import demo_entities, load_demo, stations
from pujiang.platform.deps import AppContext
from tests.context.conftest import BASE

H = dict[str, str]


def test_demo_loads_and_queries(client: TestClient, context: AppContext, reader: H) -> None:
    assert len(stations()) == 20
    entities = demo_entities()
    assert len({e["id"] for e in entities}) == len(entities)
    loaded = load_demo(context)
    assert loaded == len(entities)
    assert load_demo(context) == loaded  # idempotent (upsert)
    reply = client.get(
        f"{BASE}/entities",
        params={"type": "AirQualityObserved", "count": "true", "limit": 1},
        headers=reader,
    )
    assert reply.headers["ngsild-results-count"] == "20"
    station = client.get(
        f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1141A",
        headers=reader,
        params={"lang": "zh"},
    ).json()
    assert station["name"]["value"] == "普陀"
    assert station["location"]["value"]["coordinates"] == [121.4, 31.238]
    types = client.get(f"{BASE}/types", headers=reader).json()["typeList"]
    assert set(types) == {
        "AirQualityObserved",
        "Device",
        "ParkingSpot",
        "Streetlight",
        "TrafficFlowObserved",
        "WaterQualityObserved",
    }
