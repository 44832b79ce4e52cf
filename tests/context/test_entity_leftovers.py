"""Entity API behaviour from the conformance run (ETSI GS CIM 009 v1.8):

- scope through the attribute routes: POST .../attrs replaces it (noOverwrite adds to it,
  clause 5.6.3), PATCH .../attrs replaces an existing one and reports it not updated on an
  entity without scope (5.6.2), DELETE .../attrs/scope removes it (4.18, 5.6.5);
- PATCH .../attrs adds the fragment's types to the entity's;
- PUT .../attrs/{attr} replaces only the instance with the given datasetId (5.6.19);
- an attribute name that is no valid name in the path is 400, not 404;
- retrieving with `attrs` that match none of the entity's attributes is 404 (5.7.1);
- query entities: ids alone are not enough (400), `local=true` alone is; `attrs` cannot name
  `id` or `type`;
- empty path segments under /temporal/entities are 400 like under /entities;
- a body that is no entity object at all is 400 InvalidRequest.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.context.conftest import BASE, create, problem, station

H = dict[str, str]
ONE = "urn:ngsi-ld:AirQualityObserved:1"
TWO = "urn:ngsi-ld:AirQualityObserved:2"
ENTITY = f"{BASE}/entities/{ONE}"
DS = "urn:ngsi-ld:Dataset:b"


def stored(client: TestClient, headers: H, url: str = ENTITY) -> dict[str, Any]:
    reply = client.get(url, headers=headers)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


# -- scope through the attribute routes --


def test_append_scope_replaces_it_or_adds_with_no_overwrite(client: TestClient, writer: H) -> None:
    create(client, writer, station(1, scope="/Madrid/Centro"))
    reply = client.post(f"{ENTITY}/attrs", json={"scope": "/Company/A"}, headers=writer)
    assert reply.status_code == 204, reply.text
    assert stored(client, writer)["scope"] == "/Company/A"
    reply = client.post(
        f"{ENTITY}/attrs",
        params={"options": "noOverwrite"},
        json={"scope": ["/Company/B", "/Company/A"]},
        headers=writer,
    )
    assert reply.status_code == 204, reply.text
    assert stored(client, writer)["scope"] == ["/Company/A", "/Company/B"]
    # the attributes are untouched, and scopeQ finds the new scope
    assert stored(client, writer)["pm25"]["value"] == 35
    found = client.get(f"{BASE}/entities", params={"scopeQ": "/Company/B"}, headers=writer)
    assert [e["id"] for e in found.json()] == [ONE]
    # still validated
    bad = client.post(f"{ENTITY}/attrs", json={"scope": "no-slash"}, headers=writer)
    problem(bad, "BadRequestData", 400)


def test_update_scope_replaces_existing_or_reports_not_updated(
    client: TestClient, writer: H
) -> None:
    create(client, writer, station(1, scope="/Madrid/Centro"))
    create(client, writer, station(2))
    reply = client.patch(f"{ENTITY}/attrs", json={"scope": "/Company/A"}, headers=writer)
    assert reply.status_code == 204, reply.text
    assert stored(client, writer)["scope"] == "/Company/A"
    reply = client.patch(
        f"{BASE}/entities/{TWO}/attrs", json={"scope": "/Company/A"}, headers=writer
    )
    assert reply.status_code == 207, reply.text
    assert [n["attributeName"] for n in reply.json()["notUpdated"]] == ["scope"]
    assert "scope" not in stored(client, writer, f"{BASE}/entities/{TWO}")
    # the NGSI-LD Null deletes the scope
    reply = client.patch(f"{ENTITY}/attrs", json={"scope": "urn:ngsi-ld:null"}, headers=writer)
    assert reply.status_code == 204, reply.text
    assert "scope" not in stored(client, writer)


def test_delete_scope(client: TestClient, writer: H) -> None:
    create(client, writer, station(1, scope=["/a", "/b"]))
    reply = client.delete(f"{ENTITY}/attrs/scope", headers=writer)
    assert reply.status_code == 204, reply.text
    entity = stored(client, writer)
    assert "scope" not in entity
    assert entity["pm25"]["value"] == 35
    problem(client.delete(f"{ENTITY}/attrs/scope", headers=writer), "ResourceNotFound", 404)


# -- PATCH .../attrs with type --


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        ("Vehicle", ["AirQualityObserved", "Vehicle"]),
        (["Vehicle", "Car"], ["AirQualityObserved", "Vehicle", "Car"]),
        (["Vehicle", "AirQualityObserved"], ["AirQualityObserved", "Vehicle"]),
        ("AirQualityObserved", "AirQualityObserved"),
    ],
)
def test_update_attrs_adds_types(client: TestClient, writer: H, types: Any, expected: Any) -> None:
    create(client, writer, station(1))
    reply = client.patch(f"{ENTITY}/attrs", json={"type": types}, headers=writer)
    assert reply.status_code == 204, reply.text
    assert stored(client, writer)["type"] == expected
    found = client.get(f"{BASE}/entities", params={"type": "Vehicle"}, headers=writer)
    assert [e["id"] for e in found.json()] == ([] if expected == "AirQualityObserved" else [ONE])


# -- PUT .../attrs/{attr} and datasetId --


def test_replace_attr_keeps_other_dataset_instances(client: TestClient, writer: H) -> None:
    pm25 = [
        {"type": "Property", "value": 1},
        {"type": "Property", "value": 2, "datasetId": DS},
    ]
    create(client, writer, station(1, pm25=0) | {"pm25": pm25})
    reply = client.put(f"{ENTITY}/attrs/pm25", json={"value": 10}, headers=writer)
    assert reply.status_code == 204, reply.text
    by_ds = {i.get("datasetId"): i["value"] for i in stored(client, writer)["pm25"]}
    assert by_ds == {None: 10, DS: 2}
    reply = client.put(f"{ENTITY}/attrs/pm25", json={"value": 20, "datasetId": DS}, headers=writer)
    assert reply.status_code == 204, reply.text
    by_ds = {i.get("datasetId"): i["value"] for i in stored(client, writer)["pm25"]}
    assert by_ds == {None: 10, DS: 20}
    # a datasetId the attribute does not have: nothing to replace, nothing changed
    other = "urn:ngsi-ld:Dataset:c"
    reply = client.put(
        f"{ENTITY}/attrs/pm25", json={"value": 30, "datasetId": other}, headers=writer
    )
    problem(reply, "ResourceNotFound", 404)
    by_ds = {i.get("datasetId"): i["value"] for i in stored(client, writer)["pm25"]}
    assert by_ds == {None: 10, DS: 20}
    problem(
        client.put(f"{ENTITY}/attrs/nothing", json={"value": 1}, headers=writer),
        "ResourceNotFound",
        404,
    )


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_invalid_attribute_name_in_path_is_400(client: TestClient, writer: H, method: str) -> None:
    create(client, writer, station(1))
    kwargs: dict[str, Any] = {} if method == "delete" else {"json": {"value": 1}}
    reply = getattr(client, method)(f"{ENTITY}/attrs/@invalid", headers=writer, **kwargs)
    problem(reply, "BadRequestData", 400)


# -- retrieval and query filters --


def test_retrieve_with_attrs_matching_nothing_is_404(client: TestClient, writer: H) -> None:
    create(client, writer, station(1))
    reply = client.get(ENTITY, params={"attrs": "notThere"}, headers=writer)
    problem(reply, "ResourceNotFound", 404)
    entity = stored(client, writer, f"{ENTITY}?attrs=notThere,pm25")
    assert set(entity) == {"id", "type", "pm25"}


def test_query_needs_more_than_ids_unless_local(client: TestClient, writer: H) -> None:
    create(client, writer, station(1))
    url = f"{BASE}/entities"
    problem(client.get(url, params={"id": ONE}, headers=writer), "BadRequestData", 400)
    reply = client.get(url, params={"id": ONE, "type": "AirQualityObserved"}, headers=writer)
    assert [e["id"] for e in reply.json()] == [ONE]
    reply = client.get(url, params={"local": "true"}, headers=writer)
    assert reply.status_code == 200, reply.text
    assert [e["id"] for e in reply.json()] == [ONE]
    problem(client.get(url, params={"local": "false"}, headers=writer), "BadRequestData", 400)
    problem(client.get(url, headers=writer), "BadRequestData", 400)


@pytest.mark.parametrize("attrs", ["id,type", "id", "type", "pm25,type"])
def test_query_attrs_cannot_name_id_or_type(client: TestClient, writer: H, attrs: str) -> None:
    reply = client.get(f"{BASE}/entities", params={"attrs": attrs}, headers=writer)
    problem(reply, "BadRequestData", 400)


# -- malformed requests --


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/temporal/entities//attrs"),
        ("delete", "/temporal/entities//attrs/pm25"),
        ("patch", "/temporal/entities//attrs/pm25/urn:ngsi-ld:attribute:instance:1"),
        ("delete", f"/temporal/entities/{ONE}/attrs//urn:ngsi-ld:attribute:instance:1"),
    ],
)
def test_empty_temporal_segments_are_400(
    client: TestClient, writer: H, method: str, path: str
) -> None:
    kwargs: dict[str, Any] = {} if method == "delete" else {"json": {}}
    reply = getattr(client, method)(f"{BASE}{path}", headers=writer, **kwargs)
    problem(reply, "BadRequestData", 400)


@pytest.mark.parametrize("body", [[], [station(1)], "text", 5])
def test_create_with_no_entity_object_is_invalid_request(
    client: TestClient, writer: H, body: Any
) -> None:
    reply = client.post(f"{BASE}/entities", json=body, headers=writer)
    problem(reply, "InvalidRequest", 400)
    assert client.get(ENTITY, headers=writer).status_code == 404
