"""Fixtures for the broker's tests: callers with and without the context permissions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

BASE = "/ngsi-ld/v1"
LD = "application/ld+json"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"


@pytest.fixture
def writer(login: Callable[..., dict[str, str]]) -> dict[str, str]:
    """A data steward: context.read, context.write."""
    return login("steward", "data_steward")


@pytest.fixture
def reader(login: Callable[..., dict[str, str]]) -> dict[str, str]:
    """An operator: context.read only."""
    return login("operator", "operator")


def station(n: int = 1, pm25: float = 35, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:AirQualityObserved:{n}",
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": pm25, "unitCode": "GQ"},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [121.47 + n * 0.001, 31.23]},
        },
        **extra,
    }


def create(client: TestClient, headers: dict[str, str], entity: dict[str, Any], **kw: Any) -> Any:
    reply = client.post(f"{BASE}/entities", json=entity, headers=headers, **kw)
    assert reply.status_code == 201, reply.text
    return reply


def problem(reply: Any, kind: str, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json"), reply.headers
    body: dict[str, Any] = reply.json()
    assert body["type"] == ERR + kind, body
    assert body["status"] == status
    return body
