"""POST /entityOperations/merge (clause 5.6.20): batch merge-patch, BatchOperationResult, errors,
history, change events; and the scope rule of merge (clause 5.6.17.4)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pujiang.context.models import history_rows
from pujiang.context.service import ContextBroker
from pujiang.platform.deps import AppContext
from tests.context.conftest import BASE, CORE, ERR, LD, VOCAB, create, problem, station

HISTORY = history_rows()  # the broker's history rows with their series' columns

H = dict[str, str]
MERGE = f"{BASE}/entityOperations/merge"
ONE = "urn:ngsi-ld:AirQualityObserved:1"
TWO = "urn:ngsi-ld:AirQualityObserved:2"


def get(client: TestClient, headers: H, entity_id: str, **params: str) -> dict[str, Any]:
    reply = client.get(f"{BASE}/entities/{entity_id}", params=params, headers=headers)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


@pytest.fixture
def two(client: TestClient, writer: H) -> H:
    extra = {"address": {"type": "Property", "value": {"district": "黄浦区", "street": "南京东路"}}}
    create(client, writer, station(1, **extra))
    create(client, writer, station(2, no2={"type": "Property", "value": 4}))
    return writer


def test_all_merged_is_204_without_body(client: TestClient, two: H) -> None:
    reply = client.post(
        MERGE,
        json=[
            {
                "id": ONE,
                "type": "Sensor",
                "pm25": {"value": 40},  # members merge: unitCode stays
                "address": {"value": {"street": "urn:ngsi-ld:null", "postcode": "200001"}},
                "no2": {"type": "Property", "value": 7},  # new attribute
                "scope": ["/上海/黄浦区", "/CompanyA"],
            },
            {"id": TWO, "no2": "urn:ngsi-ld:null", "pm25": 12},
        ],
        headers=two,
    )
    assert reply.status_code == 204, reply.text
    assert reply.content == b""
    one = get(client, two, ONE)
    assert sorted(one["type"]) == ["AirQualityObserved", "Sensor"]
    assert one["pm25"] == {"type": "Property", "value": 40, "unitCode": "GQ"}
    assert one["address"]["value"] == {"district": "黄浦区", "postcode": "200001"}
    assert one["no2"]["value"] == 7
    assert one["scope"] == ["/上海/黄浦区", "/CompanyA"]
    other = get(client, two, TWO)
    assert "no2" not in other
    assert other["pm25"] == {"type": "Property", "value": 12, "unitCode": "GQ"}
    # the attribute index follows: q finds the merged values
    found = client.get(f"{BASE}/entities", params={"q": "pm25==12"}, headers=two).json()
    assert [e["id"] for e in found] == [TWO]
    found = client.get(f"{BASE}/entities", params={"attrs": "no2"}, headers=two).json()
    assert [e["id"] for e in found] == [ONE]


def test_some_fail_is_207_with_batch_operation_result(client: TestClient, two: H) -> None:
    reply = client.post(
        MERGE,
        json=[
            {"id": ONE, "pm25": {"value": 41}},
            {"id": "urn:ngsi-ld:AirQualityObserved:404", "pm25": {"value": 1}},
            {"id": "not a uri", "pm25": {"value": 1}},
            {"id": TWO, "name": {"type": "Property", "value": None}},  # JSON null: not JSON-LD
            {"id": TWO, "pm25": {"value": 5}},
        ],
        headers=two,
    )
    assert reply.status_code == 207, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"success", "errors"}
    assert body["success"] == [ONE, TWO]
    errors = {e["entityId"]: e["error"] for e in body["errors"]}
    assert set(errors) == {"urn:ngsi-ld:AirQualityObserved:404", "not a uri", TWO}
    missing = errors["urn:ngsi-ld:AirQualityObserved:404"]
    assert missing["type"] == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"
    assert missing["status"] == 404
    assert missing["title"]
    assert ONE[:-1] in missing["detail"]
    assert errors["not a uri"]["type"].endswith("/BadRequestData")
    assert "URI" in errors["not a uri"]["detail"]
    assert errors[TWO]["type"].endswith("/BadRequestData")
    assert "name" in errors[TWO]["detail"]
    assert "value" in errors[TWO]["detail"]
    # the valid fragments were merged all the same
    assert get(client, two, ONE)["pm25"]["value"] == 41
    assert get(client, two, TWO)["pm25"]["value"] == 5
    # none merged at all: still 207
    reply = client.post(MERGE, json=[{"id": "urn:ngsi-ld:X:404", "a": 1}], headers=two)
    assert reply.status_code == 207
    assert reply.json()["success"] == []


def test_same_entity_twice_merges_in_order_and_keeps_both_in_history(
    client: TestClient, two: H, context: AppContext
) -> None:
    events: list[dict[str, Any]] = []
    context.bus.subscribe("context.entity.changed", lambda _t, payload: events.append(payload))
    reply = client.post(
        MERGE,
        json=[
            {"id": ONE, "pm25": {"value": 50, "observedAt": "2026-11-24T01:00:00Z"}},
            {"id": TWO, "pm25": {"value": 8}},
            {"id": ONE, "pm25": {"value": 60, "observedAt": "2026-11-24T02:00:00Z"}, "no2": 3},
            {"id": ONE, "no2": "urn:ngsi-ld:null"},
        ],
        headers=two,
    )
    assert reply.status_code == 204, reply.text
    one = get(client, two, ONE, options="sysAttrs")
    assert one["pm25"]["value"] == 60
    assert one["pm25"]["observedAt"] == "2026-11-24T02:00:00Z"
    assert "no2" not in one
    assert one["pm25"]["modifiedAt"] == one["modifiedAt"]
    # one change event per entity, from the state before the batch to the state after it
    assert sorted(e["id"] for e in events) == [ONE, TWO]
    first = next(e for e in events if e["id"] == ONE)
    assert first["operation"] == "update"
    assert first["previous"][VOCAB + "pm25"][0]["value"] == 35
    assert first["entity"][VOCAB + "pm25"][0]["value"] == 60
    assert set(first["attributes"]) == {VOCAB + "pm25", VOCAB + "no2"}
    # the history holds every step in order (clause 5.5.11.5)
    with context.db.session() as session:
        rows = session.execute(
            select(HISTORY.c.attr, HISTORY.c.num, HISTORY.c.deleted)
            .where(HISTORY.c.entity_id == ONE)
            .order_by(HISTORY.c.id)
        ).all()
    pm, no2 = VOCAB + "pm25", VOCAB + "no2"
    assert [(r[0], r[1], r[2]) for r in rows if r[0] in (pm, no2)] == [
        (pm, 35.0, False),  # created
        (pm, 50.0, False),
        (pm, 60.0, False),
        (no2, 3.0, False),
        (no2, None, True),
    ]
    history = client.get(
        f"{BASE}/temporal/entities/{ONE}", params={"attrs": "pm25"}, headers=two
    ).json()
    assert sorted(i["value"] for i in history["pm25"]) == [35, 50, 60]
    assert all("modifiedAt" not in i for i in history["pm25"])  # no sysAttrs asked


def test_merge_replaces_or_deletes_the_scope(client: TestClient, two: H) -> None:
    """Clause 5.6.17.4: a merge overwrites, so the fragment's scope becomes the entity's."""
    reply = client.patch(f"{BASE}/entities/{ONE}", json={"scope": "/Madrid/Gardens"}, headers=two)
    assert reply.status_code == 204, reply.text
    assert get(client, two, ONE)["scope"] == "/Madrid/Gardens"
    reply = client.post(MERGE, json=[{"id": ONE, "scope": ["/A", "/B/C"]}], headers=two)
    assert reply.status_code == 204, reply.text
    assert get(client, two, ONE)["scope"] == ["/A", "/B/C"]
    reply = client.post(MERGE, json=[{"id": ONE, "scope": "urn:ngsi-ld:null"}], headers=two)
    assert reply.status_code == 204, reply.text
    assert "scope" not in get(client, two, ONE)
    reply = client.post(MERGE, json=[{"id": ONE, "scope": "Madrid"}], headers=two)
    assert reply.status_code == 207
    assert "scope" in reply.json()["errors"][0]["error"]["detail"]
    # outside a merge the NGSI-LD Null is no scope
    problem(
        client.post(
            f"{BASE}/entities", json={**station(3), "scope": "urn:ngsi-ld:null"}, headers=two
        ),
        "BadRequestData",
        400,
    )


def test_json_ld_bodies_and_tenants(client: TestClient, two: H) -> None:
    aq = "https://smartdatamodels.org/dataModel.Environment/"
    body = [{"@context": [{"aq": aq, "pm25": "aq:pm25"}, CORE], "id": ONE, "pm25": {"value": 70}}]
    reply = client.post(MERGE, content=json.dumps(body), headers={**two, "Content-Type": LD})
    assert reply.status_code == 204, reply.text
    # pm25 in that @context is another attribute than the default-vocabulary one
    entity = get(client, two, ONE)
    assert entity["pm25"]["value"] == 35
    assert entity[aq + "pm25"]["value"] == 70
    # ld+json: an entity without @context is that entity's error
    reply = client.post(
        MERGE,
        json=[{"id": TWO, "pm25": {"value": 1}}],
        headers={**two, "Content-Type": LD},
    )
    assert reply.status_code == 207
    assert "@context" in reply.json()["errors"][0]["error"]["detail"]
    # an unknown tenant
    reply = client.post(
        MERGE, json=[{"id": ONE, "pm25": 1}], headers={**two, "NGSILD-Tenant": "nowhere"}
    )
    problem(reply, "NonexistentTenant", 404)
    # a tenant's entities only
    east = {**two, "NGSILD-Tenant": "pudong"}
    create(client, east, station(1))
    reply = client.post(MERGE, json=[{"id": ONE, "pm25": 99}], headers=east)
    assert reply.status_code == 204
    assert get(client, east, ONE)["pm25"]["value"] == 99
    assert get(client, two, ONE)["pm25"]["value"] == 35


@pytest.mark.parametrize(
    ("body", "kind", "status", "says"),
    [
        ({"id": ONE, "pm25": 1}, "BadRequestData", 400, "array"),
        ([], "BadRequestData", 400, "no entity"),
        ([{"id": ONE, "pm25": 1}, None], "BadRequestData", 400, "item 2"),
        (["urn:ngsi-ld:X:1"], "BadRequestData", 400, "item 1"),
        ([[{"id": ONE}]], "BadRequestData", 400, "list"),
    ],
)
def test_bad_bodies_are_400(
    client: TestClient, two: H, body: Any, kind: str, status: int, says: str
) -> None:
    detail = problem(client.post(MERGE, json=body, headers=two), kind, status)["detail"]
    assert says in detail


def test_bad_requests(client: TestClient, two: H, reader: H) -> None:
    reply = client.post(MERGE, content=b"[{", headers={**two, "Content-Type": "application/json"})
    problem(reply, "InvalidRequest", 400)
    reply = client.post(
        MERGE, content=b"[]", headers={**two, "Content-Type": "application/merge-patch+json"}
    )
    assert reply.status_code == 415
    reply = client.post(
        MERGE,
        json=[{"@context": CORE, "id": ONE, "pm25": 1}],
        headers=two,
    )
    # application/json with @context in an item: that entity fails (the batch rule)
    assert reply.status_code == 207, reply.text
    assert [e["error"]["type"] for e in reply.json()["errors"]] == [ERR + "BadRequestData"]
    assert client.post(MERGE, json=[{"id": ONE, "pm25": 1}], headers=reader).status_code == 403
    assert client.post(MERGE, json=[{"id": ONE, "pm25": 1}]).status_code == 401


def test_service_batch_merge(context: AppContext) -> None:
    broker = ContextBroker(context.db)
    kind = VOCAB + "T"
    broker.create(
        "", {"id": "urn:x:1", "type": [kind], VOCAB + "a": [{"type": "Property", "value": 1}]}
    )
    result = broker.batch_merge(
        "",
        [
            {"id": "urn:x:1", "type": [], VOCAB + "b": [{"type": "Property", "value": 2}]},
            {"id": "urn:x:2", "type": [], VOCAB + "b": [{"type": "Property", "value": 2}]},
        ],
    )
    assert result.success == ["urn:x:1"]
    assert [(eid, err.kind) for eid, err in result.errors] == [("urn:x:2", "ResourceNotFound")]
    entity = broker.retrieve("", "urn:x:1")
    assert entity[VOCAB + "a"][0]["value"] == 1
    assert entity[VOCAB + "b"][0]["value"] == 2
