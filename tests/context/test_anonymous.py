"""Anonymous reads of the NGSI-LD API only where `context_anonymous_read` is set; writes never."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from pujiang.settings import Settings
from tests.context.conftest import BASE, create, problem, station

ENTITY_ID = "urn:ngsi-ld:AirQualityObserved:1"
READS = [
    f"{BASE}/entities?type=AirQualityObserved",
    f"{BASE}/entities/{ENTITY_ID}",
    f"{BASE}/types",
    f"{BASE}/types/AirQualityObserved",
    f"{BASE}/attributes",
    f"{BASE}/attributes/pm25",
    f"{BASE}/temporal/entities/{ENTITY_ID}",
    f"{BASE}/temporal/entities?type=AirQualityObserved",
    f"{BASE}/jsonldContexts",
]


@pytest.fixture
def open_reads(settings: Settings) -> Settings:
    """Turn anonymous reads on (the app reads the setting per request)."""
    settings.context_anonymous_read = True
    return settings


@pytest.fixture
def seeded(client: TestClient, writer: dict[str, str]) -> dict[str, str]:
    create(client, writer, station(1))
    return writer


def _unauthorized(reply: object) -> None:
    assert getattr(reply, "status_code", None) == 401, getattr(reply, "text", reply)


def test_reads_need_a_token_by_default(client: TestClient, seeded: dict[str, str]) -> None:
    for url in READS:
        _unauthorized(client.get(url))
        assert client.get(url, headers=seeded).status_code == 200, url


def test_reads_are_anonymous_when_configured(
    open_reads: Settings, client: TestClient, seeded: dict[str, str]
) -> None:
    for url in READS:
        reply = client.get(url)
        assert reply.status_code == 200, (url, reply.text)
    assert client.get(f"{BASE}/entities/{ENTITY_ID}").json()["pm25"]["value"] == 35
    # a stored @context is served anonymously too
    stored = client.post(
        f"{BASE}/jsonldContexts",
        json={"@context": {"pm10": "https://example.org/pm10"}},
        headers=seeded,
    )
    assert stored.status_code == 201, stored.text
    assert client.get(stored.headers["Location"]).status_code == 200
    # errors stay NGSI-LD's
    problem(client.get(f"{BASE}/entities/urn:ngsi-ld:X:404"), "ResourceNotFound", 404)
    problem(
        client.get(f"{BASE}/entities?type=X", headers={"NGSILD-Tenant": "nobody"}),
        "NonexistentTenant",
        404,
    )


def test_writes_and_subscriptions_still_need_a_token(
    open_reads: Settings, client: TestClient, seeded: dict[str, str]
) -> None:
    _unauthorized(client.post(f"{BASE}/entities", json=station(2)))
    _unauthorized(client.put(f"{BASE}/entities/{ENTITY_ID}", json=station(1)))
    _unauthorized(client.delete(f"{BASE}/entities/{ENTITY_ID}"))
    _unauthorized(client.post(f"{BASE}/entityOperations/upsert", json=[station(3)]))
    _unauthorized(
        client.post(f"{BASE}/entityOperations/query", json={"type": "Query", "entities": []})
    )
    _unauthorized(client.post(f"{BASE}/temporal/entityOperations/query", json={"type": "Query"}))
    _unauthorized(client.post(f"{BASE}/jsonldContexts", json={"@context": {}}))
    _unauthorized(client.get(f"{BASE}/subscriptions"))
    _unauthorized(client.post(f"{BASE}/subscriptions", json={}))
    assert client.get(f"{BASE}/entities/{ENTITY_ID}").status_code == 200


def test_a_bad_token_is_refused_even_when_open(
    open_reads: Settings, client: TestClient, seeded: dict[str, str]
) -> None:
    bad = {"Authorization": "Bearer not-a-token"}
    _unauthorized(client.get(f"{BASE}/entities/{ENTITY_ID}", headers=bad))


def test_signed_in_callers_read_when_open(
    open_reads: Settings,
    client: TestClient,
    seeded: dict[str, str],
    login: Callable[..., dict[str, str]],
) -> None:
    # Without anonymous reads an account lacking context.read is refused; with them it reads.
    clerk = login("resident", "citizen")
    assert client.get(f"{BASE}/entities/{ENTITY_ID}", headers=clerk).status_code == 200
    open_reads.context_anonymous_read = False
    assert client.get(f"{BASE}/entities/{ENTITY_ID}", headers=clerk).status_code == 403


def test_subscriptions_of_an_unknown_tenant(client: TestClient, seeded: dict[str, str]) -> None:
    unknown = client.get(f"{BASE}/subscriptions", headers={**seeded, "NGSILD-Tenant": "nobody"})
    problem(unknown, "NonexistentTenant", 404)
    assert client.get(f"{BASE}/subscriptions", headers=seeded).json() == []
    create(client, {**seeded, "NGSILD-Tenant": "t1"}, station(5))
    known = client.get(f"{BASE}/subscriptions", headers={**seeded, "NGSILD-Tenant": "t1"})
    assert known.status_code == 200, known.text
    assert known.json() == []
