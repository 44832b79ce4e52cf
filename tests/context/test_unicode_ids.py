"""Chinese (any non-Latin-1) ids: created resources answer 201 with a percent-encoded Location
that leads back to them (a raw id in the header used to fail after the write)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.context.conftest import BASE, problem

H = dict[str, str]
STATION = "urn:ngsi-ld:AirQualityObserved:浦东-张江"
ENCODED = "urn:ngsi-ld:AirQualityObserved:%E6%B5%A6%E4%B8%9C-%E5%BC%A0%E6%B1%9F"


def entity(entity_id: str = STATION) -> dict[str, Any]:
    return {
        "id": entity_id,
        "type": "AirQualityObserved",
        "name": {"type": "Property", "value": "张江站"},
        "pm25": {"type": "Property", "value": 35, "observedAt": "2026-11-20T08:00:00Z"},
    }


def test_an_entity_with_a_chinese_id_is_created_once_and_found_by_its_location(
    client: TestClient, writer: H
) -> None:
    reply = client.post(f"{BASE}/entities", json=entity(), headers=writer)
    assert reply.status_code == 201, reply.text
    assert reply.headers["location"] == f"{BASE}/entities/{ENCODED}"
    found = client.get(reply.headers["location"], headers=writer)
    assert found.status_code == 200
    assert found.json()["name"]["value"] == "张江站"
    again = client.post(f"{BASE}/entities", json=entity(), headers=writer)
    problem(again, "AlreadyExists", 409)


def test_a_temporal_entity_with_a_chinese_id(client: TestClient, writer: H) -> None:
    body = {
        "id": STATION,
        "type": "AirQualityObserved",
        "pm25": [{"type": "Property", "value": 35, "observedAt": "2026-11-20T08:00:00Z"}],
    }
    reply = client.post(f"{BASE}/temporal/entities", json=body, headers=writer)
    assert reply.status_code == 201, reply.text
    assert reply.headers["location"] == f"{BASE}/temporal/entities/{ENCODED}"
    assert client.get(reply.headers["location"], headers=writer).status_code == 200


def test_a_subscription_with_a_chinese_id(client: TestClient, writer: H) -> None:
    subscription = {
        "id": "urn:ngsi-ld:Subscription:浦东",
        "type": "Subscription",
        "entities": [{"type": "AirQualityObserved"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}},
    }
    reply = client.post(f"{BASE}/subscriptions", json=subscription, headers=writer)
    assert reply.status_code == 201, reply.text
    assert reply.headers["location"].endswith("Subscription:%E6%B5%A6%E4%B8%9C")
    assert client.get(reply.headers["location"], headers=writer).status_code == 200


def test_a_query_selector_id_must_be_a_string(client: TestClient, writer: H) -> None:
    body = {"type": "Query", "entities": [{"id": [STATION], "type": "AirQualityObserved"}]}
    reply = client.post(f"{BASE}/entityOperations/query", json=body, headers=writer)
    assert "id" in problem(reply, "BadRequestData", 400)["detail"]
