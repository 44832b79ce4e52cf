"""Southbound HTTP: `POST /iot/json?k=&i=` and the bulk endpoint (JSON array and NDJSON)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from pujiang.context.errors import NotFound
from pujiang.context.jsonld import DEFAULT_VOCAB
from pujiang.context.ngsild import broker_of
from pujiang.platform.deps import AppContext

TEMPERATURE = DEFAULT_VOCAB + "temperature"
NDJSON = {"content-type": "application/x-ndjson"}


@pytest.fixture
def devices(provision: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return provision("hk", "h1", "h2", "h3")


def value(context: AppContext, device: str) -> Any:
    entity = broker_of(context).retrieve("", f"urn:ngsi-ld:WeatherObserved:{device}")
    return entity[TEMPERATURE][0]["value"]


def test_a_device_posts_its_measures(
    client: TestClient, context: AppContext, devices: dict[str, Any]
) -> None:
    reply = client.post("/iot/json?k=hk&i=h1", content=b'{"t": 19.5}')
    assert reply.status_code == 200
    assert reply.json() == {"status": "stored"}
    assert value(context, "h1") == 19.5


def test_a_resent_message_answers_duplicate(client: TestClient, devices: dict[str, Any]) -> None:
    body = b'{"t": 19.5, "TimeInstant": "2026-11-20T08:00:00Z"}'
    assert client.post("/iot/json?k=hk&i=h1", content=body).json() == {"status": "stored"}
    assert client.post("/iot/json?k=hk&i=h1", content=body).json() == {"status": "duplicate"}


@pytest.mark.parametrize(
    ("query", "body", "status", "reason"),
    [
        ("k=nokey&i=h1", b'{"t": 1}', 404, "bad_apikey"),
        ("k=hk&i=ghost", b'{"t": 1}', 404, "unknown_device"),
        ("k=hk&i=h1", b'{"t": "hot"}', 400, "wrong_type"),
        ("k=hk&i=h1", b'{"t": ', 400, "malformed_json"),
        ("k=hk&i=h1", b'{"t": 1, "TimeInstant": "2999-01-01T00:00:00Z"}', 400, "future_time"),
        ("k=hk&i=h1", b'{"s": "' + b"x" * 70_000 + b'"}', 413, "too_large"),
    ],
)
def test_refused_messages_answer_a_problem_naming_the_fault(
    client: TestClient,
    context: AppContext,
    devices: dict[str, Any],
    query: str,
    body: bytes,
    status: int,
    reason: str,
) -> None:
    reply = client.post(f"/iot/json?{query}", content=body)
    assert reply.status_code == status
    assert reply.headers["content-type"].startswith("application/problem+json")
    problem = reply.json()
    assert problem["reason"] == reason
    assert "/" in problem["detail"]  # 中文 / English
    with pytest.raises(NotFound):
        broker_of(context).retrieve("", "urn:ngsi-ld:WeatherObserved:h1")


def test_the_api_key_and_device_are_required(client: TestClient, devices: dict[str, Any]) -> None:
    assert client.post("/iot/json?i=h1", content=b'{"t": 1}').status_code == 422
    assert client.post("/iot/json?k=hk", content=b'{"t": 1}').status_code == 422


def test_bulk_ndjson_stores_each_observation(
    client: TestClient, context: AppContext, devices: dict[str, Any]
) -> None:
    lines = [
        {"i": "h1", "t": "2026-11-20T08:00:00Z", "m": {"t": 1}},
        {"i": "h2", "t": "2026-11-20T08:00:00Z", "m": {"t": 2}},
        {"i": "h1", "t": "2026-11-20T08:01:00Z", "m": {"t": 3}},
    ]
    body = b"\n".join(orjson.dumps(line) for line in lines) + b"\n\n"
    reply = client.post("/iot/bulk?k=hk", content=body, headers=NDJSON)
    assert reply.status_code == 200
    assert reply.json() == {
        "received": 3,
        "stored": 3,
        "duplicates": 0,
        "rejected": 0,
        "errors": [],
    }
    assert (value(context, "h1"), value(context, "h2")) == (3, 2)


def test_bulk_json_array_reports_rejected_items_by_position(
    client: TestClient, context: AppContext, devices: dict[str, Any]
) -> None:
    items = [
        {"i": "h1", "m": {"t": 1}, "t": "2026-11-20T08:00:00Z"},
        {"i": "h2", "m": {"t": "warm"}},
        "not an object",
        {"m": {"t": 1}},
        {"i": "h3", "m": [1]},
        {"k": "other", "i": "h3", "m": {"t": 1}},
        {"i": "h1", "m": {"t": 1}, "t": "2026-11-20T08:00:00Z"},
    ]
    reply = client.post("/iot/bulk?k=hk", json=items)
    assert reply.status_code == 200
    body = reply.json()
    assert (body["stored"], body["duplicates"], body["rejected"]) == (1, 1, 5)
    assert [(e["index"], e["reason"]) for e in body["errors"]] == [
        (1, "wrong_type"),
        (2, "bad_item"),
        (3, "bad_item"),
        (4, "not_an_object"),
        (5, "bad_apikey"),
    ]
    assert value(context, "h1") == 1


@pytest.mark.parametrize(
    ("body", "headers", "fault"),
    [
        (b"", {}, "为空"),
        (b'{"i": "h1"}', {}, "array"),
        (b"[1,", {}, "JSON"),
        (b'{"i": "h1", "m": {"t": 1}}\n{oops}\n', NDJSON, "line 2"),
    ],
)
def test_bad_bulk_bodies_are_refused_whole(
    client: TestClient,
    context: AppContext,
    devices: dict[str, Any],
    body: bytes,
    headers: dict[str, str],
    fault: str,
) -> None:
    reply = client.post("/iot/bulk?k=hk", content=body, headers=headers)
    assert reply.status_code == 400
    assert fault in reply.json()["detail"]
    with pytest.raises(NotFound):
        broker_of(context).retrieve("", "urn:ngsi-ld:WeatherObserved:h1")


def test_ingest_shows_on_metrics(client: TestClient, devices: dict[str, Any]) -> None:
    client.post("/iot/json?k=hk&i=h1", content=b'{"t": 1}')
    client.post("/iot/json?k=hk&i=h1", content=b'{"t": "x"}')
    metrics = client.get("/metrics").text
    assert 'pujiang_ingest_messages_total{outcome="stored",transport="http"} 1.0' in metrics
    assert 'pujiang_ingest_rejections_total{reason="wrong_type"} 1.0' in metrics
    assert "pujiang_ingest_lag_seconds_bucket" in metrics


def test_device_traffic_is_not_in_the_audit_log(
    client: TestClient, context: AppContext, devices: dict[str, Any]
) -> None:
    from sqlalchemy import func, select

    from pujiang.platform.models import AuditEntry

    with context.db.session() as session:
        before = session.scalar(select(func.count()).select_from(AuditEntry))
    client.post("/iot/json?k=hk&i=h1", content=b'{"t": 1}')
    client.post("/iot/bulk?k=hk", json=[{"i": "h2", "m": {"t": 1}}])
    with context.db.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == before


def test_a_device_reading_fires_an_ngsi_ld_subscription(
    client: TestClient,
    context: AppContext,
    devices: dict[str, Any],
    login: Callable[..., dict[str, str]],
) -> None:
    from tests.context.test_subscriptions import Receiver, fast_runtime

    receiver = Receiver()
    runtime = fast_runtime(context)
    runtime.dispatcher.start()
    try:
        steward = login("steward", "data_steward")
        subscription = {
            "type": "Subscription",
            "entities": [{"type": "WeatherObserved"}],
            "watchedAttributes": ["temperature"],
            "q": "temperature>30",
            "notification": {"endpoint": {"uri": receiver.url}, "format": "keyValues"},
        }
        created = client.post("/ngsi-ld/v1/subscriptions", json=subscription, headers=steward)
        assert created.status_code == 201, created.text
        client.post("/iot/json?k=hk&i=h1", content=b'{"t": 20}')  # q not met: no notification
        client.post("/iot/json?k=hk&i=h2", content=b'{"t": 35.5}')
        [notification] = receiver.wait(1)
        [data] = notification.body["data"]
        assert data["id"] == "urn:ngsi-ld:WeatherObserved:h2"
        assert data["temperature"] == 35.5
    finally:
        runtime.dispatcher.stop()
        receiver.close()
