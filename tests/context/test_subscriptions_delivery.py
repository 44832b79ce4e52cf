"""Notification delivery over HTTP to a real local receiver: payload and headers, filters,
triggers, throttling, expiry, retries, dead endpoints, durability, and the end-to-end path."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pujiang.context import subscriptions
from pujiang.context.subscription_models import NotificationOutbox
from pujiang.platform.deps import AppContext
from tests.conftest import eventually
from tests.context import test_subscriptions as shared
from tests.context.test_subscriptions import (
    FAST,
    NO2,
    PM25,
    SUBS,
    Received,
    Receiver,
    changed,
    create,
    entity,
    fast_runtime,
    has_route,
    publish,
    subscription,
)

# The fixtures of test_subscriptions.py, used here by name.
api = shared.api
auth = shared.auth
receiver = shared.receiver
make_receiver = shared.make_receiver
runtime = shared.runtime


def status(api: TestClient, auth: dict[str, str], sub_id: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"{SUBS}/{sub_id}", headers=auth).json()
    return body


def flat(received: list[Received]) -> list[dict[str, Any]]:
    """The entities of all these notifications (one notification may carry several)."""
    return [item for got in received for item in got.body["data"]]


def test_http_notification_payload_and_headers(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    receiver: Receiver,
) -> None:
    doc = subscription(receiver.url)
    doc["notification"]["endpoint"]["receiverInfo"] = [{"key": "X-Auth-Token", "value": "k1"}]
    sub_id = create(api, auth, doc, **{"NGSILD-Tenant": "shanghai"})
    publish(context, changed("create", entity(), attributes=[PM25], tenant="shanghai"))
    [got] = receiver.wait(1)
    body = got.body
    assert body["type"] == "Notification"
    assert body["id"].startswith("urn:ngsi-ld:Notification:")
    assert body["subscriptionId"] == sub_id
    assert body["notifiedAt"].endswith("Z")
    [data] = body["data"]
    assert data["id"] == "urn:ngsi-ld:AirQualityObserved:1"
    assert data["type"] == "AirQualityObserved"
    assert data["pm25"]["value"] == 35
    assert got.headers["Content-Type"] == "application/json"
    assert subscriptions.CORE_CONTEXT_URL in got.headers["Link"]
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in got.headers["Link"]
    assert got.headers["NGSILD-Tenant"] == "shanghai"
    assert got.headers["X-Auth-Token"] == "k1"
    assert eventually(
        lambda: (
            status(api, {**auth, "NGSILD-Tenant": "shanghai"}, sub_id)["notification"].get(
                "lastSuccess"
            )
            is not None
        )
    )
    notification = status(api, {**auth, "NGSILD-Tenant": "shanghai"}, sub_id)["notification"]
    assert notification["timesSent"] == 1
    assert notification["timesFailed"] == 0
    assert notification["status"] == "ok"
    assert "lastFailure" not in notification
    # A change in the default tenant does not reach the tenant's subscription.
    publish(context, changed("create", entity("urn:ngsi-ld:AirQualityObserved:2")))
    assert receiver.quiet() == []


def test_jsonld_notification_carries_context(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    receiver: Receiver,
) -> None:
    doc = subscription(
        receiver.url,
        notification={
            "endpoint": {"uri": receiver.url, "accept": "application/ld+json"},
            "format": "keyValues",
            "attributes": ["pm25"],
        },
    )
    create(api, auth, doc)
    publish(context, changed("update", entity(pm25=80), entity()))
    [got] = receiver.wait(1)
    assert got.headers["Content-Type"] == "application/ld+json"
    assert "Link" not in got.headers
    assert got.body["@context"] == subscriptions.CORE_CONTEXT_URL
    # Each entity is a JSON-LD document of its own (clause 5.2.15), with the same @context.
    assert got.body["data"] == [
        {
            "id": "urn:ngsi-ld:AirQualityObserved:1",
            "type": "AirQualityObserved",
            "pm25": 80,
            "@context": subscriptions.CORE_CONTEXT_URL,
        }
    ]


def test_entity_selectors(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    receiver: Receiver,
) -> None:
    create(
        api,
        auth,
        subscription(
            receiver.url,
            entities=[
                {"type": "AirQualityObserved", "idPattern": "^urn:ngsi-ld:AirQualityObserved:31"},
                {"type": "WeatherObserved", "id": "urn:ngsi-ld:WeatherObserved:1"},
            ],
        ),
    )
    publish(context, changed("create", entity("urn:ngsi-ld:AirQualityObserved:3101")))
    publish(context, changed("create", entity("urn:ngsi-ld:AirQualityObserved:4101")))
    other_type = entity("urn:ngsi-ld:WeatherObserved:1")
    other_type["type"] = ["https://uri.etsi.org/ngsi-ld/default-context/WeatherObserved"]
    publish(context, changed("create", other_type))
    got = receiver.wait(1) + receiver.quiet()
    assert sorted(d["id"] for d in flat(got)) == [
        "urn:ngsi-ld:AirQualityObserved:3101",
        "urn:ngsi-ld:WeatherObserved:1",
    ]


def test_watched_attributes(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    receiver: Receiver,
) -> None:
    create(api, auth, subscription(receiver.url, watchedAttributes=["no2"]))
    with_no2 = entity(**{NO2: [{"type": "Property", "value": 20}]})
    publish(context, changed("update", with_no2, with_no2, [PM25]))
    assert receiver.quiet() == []
    publish(context, changed("update", with_no2, entity(), [NO2]))
    [got] = receiver.wait(1)
    assert got.body["data"][0]["no2"]["value"] == 20


def test_notification_triggers(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    make_receiver: Callable[..., Receiver],
) -> None:
    default = make_receiver()
    on_delete = make_receiver()
    on_attr_delete = make_receiver()
    create(api, auth, subscription(default.url))
    create(api, auth, subscription(on_delete.url, notificationTrigger=["entityDeleted"]))
    create(api, auth, subscription(on_attr_delete.url, notificationTrigger=["attributeDeleted"]))
    publish(context, changed("delete_attrs", entity(pm25=None), entity(), [PM25]))
    [gone_attr] = on_attr_delete.wait(1)
    # Clause 5.8.6: the type's NGSI-LD Null; deletedAt only with sysAttrs.
    assert gone_attr.body["data"][0]["pm25"] == {"type": "Property", "value": "urn:ngsi-ld:null"}
    publish(context, changed("delete", None, entity(), []))
    [deleted] = on_delete.wait(1)
    data = deleted.body["data"][0]
    assert data["id"] == "urn:ngsi-ld:AirQualityObserved:1"
    assert set(data) == {"id", "type", "deletedAt"}
    # Deleting the entity deleted its attributes too.
    [attrs_gone] = on_attr_delete.wait(1)
    data = attrs_gone.body["data"][0]
    assert data["pm25"] == {"type": "Property", "value": "urn:ngsi-ld:null"}
    assert data["location"] == {"type": "GeoProperty", "value": "urn:ngsi-ld:null"}
    assert "deletedAt" in data
    assert default.quiet() == []  # default triggers: attributeCreated/attributeUpdated only
    assert on_delete.quiet(0.1) == []
    assert on_attr_delete.quiet(0.1) == []


def test_q_and_geoq_filter(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    make_receiver: Callable[..., Receiver],
) -> None:
    by_q = make_receiver()
    by_geo = make_receiver()
    create(api, auth, subscription(by_q.url, q="pm25>50"))
    # A box around Huangpu district (People's Square at 121.47, 31.23).
    box = [[[121.45, 31.21], [121.50, 31.21], [121.50, 31.25], [121.45, 31.25], [121.45, 31.21]]]
    create(
        api,
        auth,
        subscription(
            by_geo.url, geoQ={"geometry": "Polygon", "coordinates": box, "georel": "within"}
        ),
    )
    for name, value in (("a", 30), ("b", 75)):
        item = entity(f"urn:ngsi-ld:AirQualityObserved:{name}", pm25=value)
        publish(context, changed("update", item, entity()))
    far = entity("urn:ngsi-ld:AirQualityObserved:c", pm25=90, lon=121.80, lat=31.00)
    publish(context, changed("update", far, entity()))
    q_ids = sorted(d["id"] for d in flat(by_q.wait(1) + by_q.quiet()))
    assert q_ids == ["urn:ngsi-ld:AirQualityObserved:b", "urn:ngsi-ld:AirQualityObserved:c"]
    geo_ids = sorted(d["id"] for d in flat(by_geo.wait(1) + by_geo.quiet()))
    assert geo_ids == ["urn:ngsi-ld:AirQualityObserved:a", "urn:ngsi-ld:AirQualityObserved:b"]


def test_scope_q_filter(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    receiver: Receiver,
) -> None:
    create(api, auth, subscription(receiver.url, scopeQ="/上海/黄浦区/#"))
    scopes = {"bund": "/上海/黄浦区/外滩", "pudong": "/上海/浦东新区", "none": None}
    for name, scope in scopes.items():
        item: dict[str, Any] = {
            "id": f"urn:ngsi-ld:AirQualityObserved:{name}",
            "type": "AirQualityObserved",
            "pm25": {"type": "Property", "value": 42},
        }
        if scope is not None:
            item["scope"] = scope
        reply = api.post("/ngsi-ld/v1/entities", json=item, headers=auth)
        assert reply.status_code == 201, reply.text
    ids = [d["id"] for d in flat(receiver.wait(1) + receiver.quiet())]
    assert ids == ["urn:ngsi-ld:AirQualityObserved:bund"]
    # the scopes after the change decide: one moved into Huangpu is notified from then on
    moved = {"scope": ["/上海/黄浦区", "/CompanyA"], "pm25": {"type": "Property", "value": 43}}
    reply = api.patch(
        "/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:pudong", json=moved, headers=auth
    )
    assert reply.status_code == 204, reply.text
    [got] = receiver.wait(1)
    assert got.body["data"][0]["id"] == "urn:ngsi-ld:AirQualityObserved:pudong"
    assert receiver.quiet() == []


def test_a_scope_change_alone_fires_entity_updated_only(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    receiver: Receiver,
) -> None:
    item = {"id": "urn:ngsi-ld:AirQualityObserved:s", "type": "AirQualityObserved"}
    item["pm25"] = {"type": "Property", "value": 42}
    reply = api.post("/ngsi-ld/v1/entities", json=item, headers=auth)
    assert reply.status_code == 201, reply.text
    entity_sub = create(
        api, auth, subscription(receiver.url, notificationTrigger=["entityUpdated"])
    )
    create(api, auth, subscription(receiver.url))  # attribute triggers: not fired
    create(  # watches an attribute: not fired either
        api,
        auth,
        subscription(
            receiver.url, notificationTrigger=["entityUpdated"], watchedAttributes=["pm25"]
        ),
    )
    scoped = {"scope": "/上海/黄浦区"}
    reply = api.patch(f"/ngsi-ld/v1/entities/{item['id']}", json=scoped, headers=auth)
    assert reply.status_code == 204, reply.text
    [got] = receiver.wait(1)
    assert got.body["subscriptionId"] == entity_sub
    assert got.body["data"][0]["scope"] == "/上海/黄浦区"
    assert receiver.quiet() == []


def test_throttling(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    receiver: Receiver,
) -> None:
    # A window long enough that three publishes fit in it on a loaded CI machine (0.6 s did
    # not always), short enough to wait out.
    create(api, auth, subscription(receiver.url, throttling=2))
    for value in (40, 41, 42):
        publish(context, changed("update", entity(pm25=value), entity()))
    first = receiver.wait(1) + receiver.quiet(0.3)
    assert [d["pm25"]["value"] for d in flat(first)] == [40]
    time.sleep(1.8)
    publish(context, changed("update", entity(pm25=43), entity()))
    assert [g.body["data"][0]["pm25"]["value"] for g in receiver.wait(1)] == [43]


def test_expiry_and_pause(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    make_receiver: Callable[..., Receiver],
) -> None:
    expiring = make_receiver()
    paused = make_receiver()
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    expiring_id = create(api, auth, subscription(expiring.url, expiresAt=soon))
    paused_id = create(api, auth, subscription(paused.url, isActive=False))
    publish(context, changed("update", entity(pm25=1), entity()))
    assert len(expiring.wait(1)) == 1
    assert paused.quiet() == []
    assert eventually(lambda: status(api, auth, expiring_id)["status"] == "expired", 4)
    publish(context, changed("update", entity(pm25=2), entity()))
    assert expiring.quiet() == []
    api.patch(f"{SUBS}/{paused_id}", json={"isActive": True}, headers=auth)
    publish(context, changed("update", entity(pm25=3), entity()))
    assert [g.body["data"][0]["pm25"]["value"] for g in paused.wait(1)] == [3]


def test_retry_then_success(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    make_receiver: Callable[..., Receiver],
) -> None:
    flaky = make_receiver(fail_first=2)
    sub_id = create(api, auth, subscription(flaky.url))
    publish(context, changed("update", entity(pm25=66), entity()))
    [got] = flaky.wait(1, timeout=5)
    assert got.body["data"][0]["pm25"]["value"] == 66
    assert flaky.requests == 3
    assert eventually(lambda: status(api, auth, sub_id)["notification"].get("timesSent") == 3)
    notification = status(api, auth, sub_id)["notification"]
    assert notification["timesFailed"] == 2
    assert notification["status"] == "ok"
    assert notification["lastSuccess"] >= notification["lastFailure"]
    with context.db.session() as session:
        assert subscriptions.pending_count(session) == 0


def test_gives_up_after_max_attempts(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    make_receiver: Callable[..., Receiver],
) -> None:
    broken = make_receiver(fail_first=1000)
    sub_id = create(api, auth, subscription(broken.url))
    publish(context, changed("update", entity(), entity()))
    assert eventually(lambda: status(api, auth, sub_id)["notification"].get("timesFailed") == 3)
    time.sleep(0.5)
    assert broken.requests == FAST.max_attempts
    assert status(api, auth, sub_id)["notification"]["status"] == "failed"
    with context.db.session() as session:
        [row] = session.scalars(select(NotificationOutbox)).all()
        assert row.dead
        assert row.attempts == 3
        assert "HTTP 500" in (row.last_error or "")


def test_dead_endpoint_does_not_delay_a_live_one(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    make_receiver: Callable[..., Receiver],
) -> None:
    # A send timeout long enough that a slow, shared machine still publishes and delivers all
    # twenty well inside it: a worker held up by the hanging endpoint would deliver nothing
    # before it.
    send_timeout = 5.0
    runtime.dispatcher.stop()
    runtime.dispatcher.config = replace(FAST, timeout=send_timeout)
    runtime.dispatcher.start()
    hanging = make_receiver(hang=True)  # accepts, never answers: every send waits for timeout
    live = make_receiver()
    create(api, auth, subscription(hanging.url))
    create(api, auth, subscription("http://127.0.0.1:9/refused"))  # nothing listens there
    create(api, auth, subscription(live.url))
    started = time.time()
    for value in range(20):
        publish(context, changed("update", entity(pm25=value), entity()))
        time.sleep(0.01)
    got: list[Received] = []
    while len(flat(got)) < 20 and time.time() - started < send_timeout:
        got += live.wait(1, timeout=0.05)
    delivered = [d["pm25"]["value"] for d in flat(got)]
    assert delivered == list(range(20))  # all of them, in order
    assert max(g.at for g in got) - started < send_timeout  # before the dead one times out
    assert hanging.requests >= 1


def test_no_notification_lost_under_load(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    make_receiver: Callable[..., Receiver],
) -> None:
    first, second = make_receiver(), make_receiver()
    create(api, auth, subscription(first.url))
    create(
        api,
        auth,
        subscription(
            second.url, notification={"endpoint": {"uri": second.url}, "format": "keyValues"}
        ),
    )
    count = 200
    for n in range(count):
        item = entity(f"urn:ngsi-ld:AirQualityObserved:{n}", pm25=n)
        publish(context, changed("create", item))
    for server, value in ((first, lambda d: d["pm25"]["value"]), (second, lambda d: d["pm25"])):
        seen: list[int] = []
        deadline = time.monotonic() + 10
        while len(seen) < count and time.monotonic() < deadline:
            for got in server.wait(1, timeout=0.5):
                seen.extend(value(d) for d in got.body["data"])
        assert sorted(seen) == list(range(count))

    def drained() -> bool:
        with context.db.session() as session:
            return subscriptions.pending_count(session) == 0

    assert eventually(drained)


def test_outbox_survives_a_stopped_worker(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    receiver: Receiver,
) -> None:
    fast_runtime(context)
    create(api, auth, subscription(receiver.url))
    publish(context, changed("update", entity(pm25=12), entity()))
    with context.db.session() as session:
        assert subscriptions.pending_count(session) == 1
    assert receiver.quiet(0.2) == []
    with subscriptions.delivery(context, FAST):
        [got] = receiver.wait(1)
    assert got.body["data"][0]["pm25"]["value"] == 12
    with context.db.session() as session:
        assert subscriptions.pending_count(session) == 0


def test_periodic_notifications(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    receiver: Receiver,
) -> None:
    installed = fast_runtime(context)
    installed.dispatcher.entity_source = lambda _s, _t, _c: [entity(pm25=5)]
    create(api, auth, subscription(receiver.url, timeInterval=0.3))
    with subscriptions.delivery(context, FAST):
        got = receiver.wait(2, timeout=3)
    assert len(got) == 2
    assert got[0].body["data"][0]["pm25"]["value"] == 5
    publish(context, changed("update", entity(pm25=9), entity()))  # changes do not fire it
    assert receiver.quiet(0.2) == []


def test_end_to_end_through_the_entities_api(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    receiver: Receiver,
) -> None:
    if not has_route(api.app.routes, "/ngsi-ld/v1/entities"):
        pytest.skip("the broker core's POST /ngsi-ld/v1/entities is not mounted yet")
    create(api, auth, subscription(receiver.url))
    reply = api.post(
        "/ngsi-ld/v1/entities",
        json={
            "id": "urn:ngsi-ld:AirQualityObserved:e2e",
            "type": "AirQualityObserved",
            "pm25": {"type": "Property", "value": 42},
        },
        headers=auth,
    )
    assert reply.status_code == 201, reply.text
    [got] = receiver.wait(1)
    assert got.body["data"][0]["id"] == "urn:ngsi-ld:AirQualityObserved:e2e"
    assert got.body["data"][0]["pm25"]["value"] == 42


def test_periodic_notification_reads_the_broker(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    receiver: Receiver,
) -> None:
    if not has_route(api.app.routes, "/ngsi-ld/v1/entities"):
        pytest.skip("the broker core's POST /ngsi-ld/v1/entities is not mounted yet")
    reply = api.post(
        "/ngsi-ld/v1/entities",
        json={
            "id": "urn:ngsi-ld:AirQualityObserved:periodic",
            "type": "AirQualityObserved",
            "pm25": {"type": "Property", "value": 18},
        },
        headers=auth,
    )
    assert reply.status_code == 201, reply.text
    fast_runtime(context)
    create(api, auth, subscription(receiver.url, timeInterval=0.3, q="pm25<20"))
    with subscriptions.delivery(context, FAST):
        got = receiver.wait(2, timeout=3)
    assert [d["pm25"]["value"] for d in flat(got)] == [18, 18]
