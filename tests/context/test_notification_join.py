"""Linked Entity retrieval in notifications (ETSI GS CIM 009 v1.8, clause 4.5.23;
`notification.join` and `notification.joinLevel`, Table 5.2.14-1), end to end: entity API ->
matcher -> delivery to a local receiver.

- join=flat: the linked entities follow the notified entity in `data`, each once;
- join=inline: each notified Relationship carries its target in `entity` (normalized,
  concise); the simplified form puts the target in place of the object id;
- joinLevel: how many hops are followed; only the Relationships the notification shows are;
- bad join/joinLevel values: 400 BadRequestData at creation and on PATCH.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from pujiang.context import subscriptions
from tests.context import test_subscriptions as shared
from tests.context.test_subscriptions import SUBS, Receiver, create

api = shared.api
auth = shared.auth
receiver = shared.receiver
runtime = shared.runtime
make_receiver = shared.make_receiver

H = dict[str, str]
ENTITIES = "/ngsi-ld/v1/entities"
BAD_DATA = "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
TOWER = "urn:ngsi-ld:Building:join-1"
CITY = "urn:ngsi-ld:City:Shanghai"
COUNTRY = "urn:ngsi-ld:Country:China"

CITY_DOC = {
    "id": CITY,
    "type": "City",
    "name": {"type": "Property", "value": "上海"},
    "inCountry": {"type": "Relationship", "object": COUNTRY},
}
COUNTRY_DOC = {"id": COUNTRY, "type": "Country", "name": {"type": "Property", "value": "中国"}}
LOCATED = {"type": "Relationship", "object": CITY}


def setup_entities(api: TestClient, auth: H) -> None:
    for doc in (
        COUNTRY_DOC,
        CITY_DOC,
        {"id": TOWER, "type": "Building", "locatedAt": LOCATED},
    ):
        reply = api.post(ENTITIES, json=doc, headers=auth)
        assert reply.status_code == 201, reply.text


def subscribe(api: TestClient, auth: H, target: Receiver, **notification: Any) -> str:
    doc = {
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": target.url}, **notification},
    }
    return create(api, auth, doc)


def rename(api: TestClient, auth: H, value: str = "东方明珠") -> None:
    reply = api.post(
        f"{ENTITIES}/{TOWER}/attrs",
        json={"name": {"type": "Property", "value": value}},
        headers=auth,
    )
    assert reply.status_code == 204, reply.text


def data_of(target: Receiver) -> list[dict[str, Any]]:
    got = target.wait(1)
    assert len(got) == 1, "no notification arrived"
    data: list[dict[str, Any]] = got[0].body["data"]
    return data


def test_flat_appends_the_linked_entities(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, make_receiver: Any
) -> None:
    one_hop, two_hops, plain = make_receiver(), make_receiver(), make_receiver()
    setup_entities(api, auth)
    subscribe(api, auth, one_hop, join="flat", joinLevel=1)
    subscribe(api, auth, two_hops, join="flat", joinLevel=2)
    subscribe(api, auth, plain, join="@none")
    rename(api, auth)
    tower = {"id": TOWER, "type": "Building", "locatedAt": LOCATED}
    tower["name"] = {"type": "Property", "value": "东方明珠"}
    assert data_of(one_hop) == [tower, CITY_DOC]
    assert data_of(two_hops) == [tower, CITY_DOC, COUNTRY_DOC]
    assert data_of(plain) == [tower]


def test_flat_follows_only_the_shown_relationships(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, make_receiver: Any
) -> None:
    named, located = make_receiver(), make_receiver()
    setup_entities(api, auth)
    subscribe(api, auth, named, join="flat", attributes=["name"])
    subscribe(api, auth, located, join="flat", format="keyValues", attributes=["locatedAt"])
    rename(api, auth)
    assert data_of(named) == [
        {"id": TOWER, "type": "Building", "name": {"type": "Property", "value": "东方明珠"}}
    ]
    assert data_of(located) == [
        {"id": TOWER, "type": "Building", "locatedAt": CITY},
        {"id": CITY, "type": "City", "name": "上海", "inCountry": COUNTRY},
    ]


def test_inline_puts_the_target_into_the_relationship(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, make_receiver: Any
) -> None:
    normalized, deep, simple = make_receiver(), make_receiver(), make_receiver()
    setup_entities(api, auth)
    subscribe(api, auth, normalized, join="inline")
    subscribe(api, auth, deep, join="inline", joinLevel=2)
    subscribe(api, auth, simple, join="inline", format="simplified")
    rename(api, auth)
    [tower] = data_of(normalized)
    assert tower["name"] == {"type": "Property", "value": "东方明珠"}
    assert tower["locatedAt"] == {**LOCATED, "entity": CITY_DOC}
    [tower] = data_of(deep)
    city = tower["locatedAt"]["entity"]
    assert city["inCountry"] == {**CITY_DOC["inCountry"], "entity": COUNTRY_DOC}
    [tower] = data_of(simple)
    assert tower == {
        "id": TOWER,
        "type": "Building",
        "name": "东方明珠",
        "locatedAt": {"id": CITY, "type": "City", "name": "上海", "inCountry": COUNTRY},
    }


def test_missing_target_leaves_the_relationship_as_it_is(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, make_receiver: Any
) -> None:
    inline, flat = make_receiver(), make_receiver()
    reply = api.post(
        ENTITIES, json={"id": TOWER, "type": "Building", "locatedAt": LOCATED}, headers=auth
    )
    assert reply.status_code == 201
    subscribe(api, auth, inline, join="inline")
    subscribe(api, auth, flat, join="flat")
    rename(api, auth)
    assert data_of(inline)[0]["locatedAt"] == LOCATED
    assert [e["id"] for e in data_of(flat)] == [TOWER]


@pytest.mark.parametrize(
    ("notification", "named"),
    [
        ({"join": "deep"}, "join"),
        ({"join": 1}, "join"),
        ({"join": "flat", "joinLevel": 0}, "joinLevel"),
        ({"join": "flat", "joinLevel": "2"}, "joinLevel"),
        ({"join": "inline", "joinLevel": True}, "joinLevel"),
    ],
)
def test_bad_join_values(
    api: TestClient, auth: H, notification: dict[str, Any], named: str
) -> None:
    doc = {
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}, **notification},
    }
    reply = api.post(SUBS, json=doc, headers=auth)
    assert reply.status_code == 400, reply.text
    assert reply.json()["type"] == BAD_DATA
    assert f"notification.{named}" in reply.json()["detail"]
    doc["notification"] = {"endpoint": {"uri": "http://127.0.0.1:9/n"}}
    sub_id = create(api, auth, doc)
    patch = {"notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}, **notification}}
    reply = api.patch(f"{SUBS}/{sub_id}", json=patch, headers=auth)
    assert reply.status_code == 400, reply.text
    assert f"notification.{named}" in reply.json()["detail"]
    body = api.get(f"{SUBS}/{sub_id}", headers=auth).json()
    assert "join" not in body["notification"]
    assert "joinLevel" not in body["notification"]


def test_periodic_notifications_join_too(
    api: TestClient, auth: H, runtime: subscriptions.Runtime, make_receiver: Any
) -> None:
    flat, inline = make_receiver(), make_receiver()
    setup_entities(api, auth)
    for target, join in ((flat, "flat"), (inline, "inline")):
        doc = {
            "type": "Subscription",
            "entities": [{"type": "Building"}],
            "timeInterval": 0.3,
            "notification": {"endpoint": {"uri": target.url}, "join": join},
        }
        create(api, auth, doc)
    tower = {"id": TOWER, "type": "Building", "locatedAt": LOCATED}
    got = flat.wait(1, timeout=5)
    assert got, "no periodic notification arrived"
    assert got[0].body["data"] == [tower, CITY_DOC]
    got = inline.wait(1, timeout=5)
    assert got, "no periodic notification arrived"
    assert got[0].body["data"] == [{**tower, "locatedAt": {**LOCATED, "entity": CITY_DOC}}]
