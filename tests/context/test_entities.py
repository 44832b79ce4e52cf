"""NGSI-LD entity CRUD: create, retrieve, replace, merge, delete, attributes and their errors."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.context.conftest import BASE, CORE, LD, create, problem, station

H = dict[str, str]


def get(client: TestClient, headers: H, entity_id: str, **params: Any) -> dict[str, Any]:
    reply = client.get(f"{BASE}/entities/{entity_id}", headers=headers, params=params)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def test_create_retrieve_delete(client: TestClient, writer: H) -> None:
    reply = create(client, writer, station(1))
    assert reply.headers["location"] == f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1"
    body = get(client, writer, "urn:ngsi-ld:AirQualityObserved:1")
    assert body["id"] == "urn:ngsi-ld:AirQualityObserved:1"
    assert body["type"] == "AirQualityObserved"
    assert body["pm25"] == {"type": "Property", "value": 35, "unitCode": "GQ"}
    assert body["location"]["type"] == "GeoProperty"
    assert "createdAt" not in body
    reply = client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1", headers=writer)
    assert CORE in reply.headers["link"]
    assert reply.headers["content-type"].startswith("application/json")
    delete = client.delete(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1", headers=writer)
    assert delete.status_code == 204
    missing = client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1", headers=writer)
    problem(missing, "ResourceNotFound", 404)
    again = client.delete(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1", headers=writer)
    problem(again, "ResourceNotFound", 404)


def test_duplicate_create_is_409(client: TestClient, writer: H) -> None:
    create(client, writer, station(1))
    reply = client.post(f"{BASE}/entities", json=station(1), headers=writer)
    problem(reply, "AlreadyExists", 409)


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"id": "not a uri", "type": "T"}, "BadRequestData"),
        ({"id": "plainword", "type": "T"}, "BadRequestData"),
        ({"type": "T"}, "BadRequestData"),
        ({"id": "urn:ngsi-ld:T:1"}, "BadRequestData"),
        (
            {"id": "urn:ngsi-ld:T:1", "type": "T", "a": {"type": "Bogus", "value": 1}},
            "BadRequestData",
        ),
        ({"id": "urn:ngsi-ld:T:1", "type": "T", "a": {"type": "Property"}}, "BadRequestData"),
        (
            {"id": "urn:ngsi-ld:T:1", "type": "T", "r": {"type": "Relationship", "object": "x y"}},
            "BadRequestData",
        ),
        (
            {"id": "urn:ngsi-ld:T:1", "type": "T", "location": {"type": "Property", "value": 1}},
            "BadRequestData",
        ),
        (
            {
                "id": "urn:ngsi-ld:T:1",
                "type": "T",
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": [500, 1]},
                },
            },
            "BadRequestData",
        ),
        ({"id": "urn:ngsi-ld:T:1", "type": "T", "a=b": 1}, "BadRequestData"),
        (
            {
                "id": "urn:ngsi-ld:T:1",
                "type": "T",
                "a": {"type": "Property", "value": 1, "observedAt": "yesterday"},
            },
            "BadRequestData",
        ),
        (
            {
                "id": "urn:ngsi-ld:T:1",
                "type": "T",
                "a": {"type": "Property", "value": 1, "datasetId": "no uri"},
            },
            "BadRequestData",
        ),
        ([1, 2], "InvalidRequest"),  # not one entity object: a malformed request
    ],
)
def test_bad_entities_are_400(client: TestClient, writer: H, payload: Any, kind: str) -> None:
    reply = client.post(f"{BASE}/entities", json=payload, headers=writer)
    problem(reply, kind, 400)


def test_bad_json_and_media_types(client: TestClient, writer: H) -> None:
    headers = {**writer, "Content-Type": "application/json"}
    reply = client.post(f"{BASE}/entities", content=b"{not json", headers=headers)
    problem(reply, "InvalidRequest", 400)
    reply = client.post(
        f"{BASE}/entities", content=b"<xml/>", headers={**writer, "Content-Type": "text/xml"}
    )
    assert reply.status_code == 415
    reply = client.get(
        f"{BASE}/entities/urn:ngsi-ld:T:1", headers={**writer, "Accept": "text/html"}
    )
    assert reply.status_code == 406


def test_bad_id_in_path_is_400(client: TestClient, writer: H) -> None:
    problem(client.get(f"{BASE}/entities/notauri", headers=writer), "BadRequestData", 400)
    problem(client.delete(f"{BASE}/entities/notauri", headers=writer), "BadRequestData", 400)


def test_sys_attrs_and_formats(client: TestClient, writer: H) -> None:
    entity = station(
        1,
        refDevice={"type": "Relationship", "object": "urn:ngsi-ld:Device:1"},
        name={"type": "LanguageProperty", "languageMap": {"zh": "普陀", "en": "Putuo"}},
    )
    entity["pm25"]["observedAt"] = "2026-11-24T01:00:00Z"
    entity["pm25"]["sensor"] = {"type": "Property", "value": "laser"}
    create(client, writer, entity)
    eid = entity["id"]
    body = get(client, writer, eid, options="sysAttrs")
    assert body["createdAt"].endswith("Z")
    assert body["modifiedAt"].endswith("Z")
    assert "createdAt" in body["pm25"]
    assert "modifiedAt" in body["pm25"]
    simple = get(client, writer, eid, options="keyValues")
    assert simple["pm25"] == 35
    assert simple["refDevice"] == "urn:ngsi-ld:Device:1"
    assert simple["location"]["type"] == "Point"
    assert simple["name"] == {"languageMap": {"zh": "普陀", "en": "Putuo"}}
    assert get(client, writer, eid, format="simplified") == simple
    concise = get(client, writer, eid, format="concise")
    assert concise["pm25"] == {
        "value": 35,
        "unitCode": "GQ",
        "observedAt": "2026-11-24T01:00:00Z",
        "sensor": "laser",
    }
    assert concise["refDevice"] == {"object": "urn:ngsi-ld:Device:1"}
    assert concise["location"]["type"] == "Point"
    normal = get(client, writer, eid)
    assert normal["pm25"]["sensor"] == {"type": "Property", "value": "laser"}
    lang = get(client, writer, eid, lang="en")
    assert lang["name"] == {"type": "Property", "value": "Putuo", "lang": "en"}
    assert get(client, writer, eid, lang="zh", options="keyValues")["name"] == "普陀"
    picked = get(client, writer, eid, pick="id,pm25")
    assert set(picked) == {"id", "pm25"}
    omitted = get(client, writer, eid, omit="location,name")
    assert "location" not in omitted
    assert "pm25" in omitted
    # Concise input is accepted and stored in the same internal form.
    concise_entity = {**concise, "id": "urn:ngsi-ld:T:c", "type": "T"}
    create(client, writer, concise_entity)
    again = get(client, writer, "urn:ngsi-ld:T:c")
    assert again["pm25"]["type"] == "Property"
    assert again["pm25"]["sensor"]["value"] == "laser"
    assert again["refDevice"]["type"] == "Relationship"
    assert again["location"]["type"] == "GeoProperty"


def test_multi_attributes_with_dataset_id(client: TestClient, writer: H) -> None:
    entity = station(1)
    entity["pm25"] = [
        {"type": "Property", "value": 30},
        {"type": "Property", "value": 31, "datasetId": "urn:ngsi-ld:Dataset:sensorB"},
    ]
    create(client, writer, entity)
    eid = entity["id"]
    body = get(client, writer, eid)
    assert isinstance(body["pm25"], list)
    assert len(body["pm25"]) == 2
    simple = get(client, writer, eid, options="keyValues")
    assert simple["pm25"] == {"dataset": {"@none": 30, "urn:ngsi-ld:Dataset:sensorB": 31}}
    # Same datasetId twice is refused.
    dup = station(2)
    dup["pm25"] = [{"type": "Property", "value": 1}, {"type": "Property", "value": 2}]
    problem(client.post(f"{BASE}/entities", json=dup, headers=writer), "BadRequestData", 400)
    # Delete one instance, then the rest.
    url = f"{BASE}/entities/{eid}/attrs/pm25"
    reply = client.delete(url, params={"datasetId": "urn:ngsi-ld:Dataset:sensorB"}, headers=writer)
    assert reply.status_code == 204
    body = get(client, writer, eid)
    assert body["pm25"] == {"type": "Property", "value": 30}
    problem(
        client.delete(url, params={"datasetId": "urn:ngsi-ld:Dataset:x"}, headers=writer),
        "ResourceNotFound",
        404,
    )
    assert client.delete(url, params={"deleteAll": "true"}, headers=writer).status_code == 204
    assert "pm25" not in get(client, writer, eid)
    problem(client.delete(url, headers=writer), "ResourceNotFound", 404)


def test_append_update_partial_replace(client: TestClient, writer: H) -> None:
    create(client, writer, station(1))
    eid = "urn:ngsi-ld:AirQualityObserved:1"
    attrs = f"{BASE}/entities/{eid}/attrs"
    reply = client.post(attrs, json={"no2": {"type": "Property", "value": 12}}, headers=writer)
    assert reply.status_code == 204
    reply = client.post(
        attrs,
        params={"options": "noOverwrite"},
        json={"no2": {"type": "Property", "value": 99}, "o3": {"type": "Property", "value": 7}},
        headers=writer,
    )
    assert reply.status_code == 207
    assert reply.json()["updated"] == ["o3"]
    assert reply.json()["notUpdated"][0]["attributeName"] == "no2"
    assert get(client, writer, eid)["no2"]["value"] == 12
    # PATCH .../attrs updates existing attributes only.
    reply = client.patch(
        attrs,
        json={"no2": {"type": "Property", "value": 13}, "so2": {"type": "Property", "value": 1}},
        headers=writer,
    )
    assert reply.status_code == 207
    assert reply.json()["notUpdated"][0]["attributeName"] == "so2"
    assert get(client, writer, eid)["no2"]["value"] == 13
    # Partial update of one attribute keeps what is not given.
    reply = client.patch(f"{attrs}/pm25", json={"value": 80}, headers=writer)
    assert reply.status_code == 204
    assert get(client, writer, eid)["pm25"] == {"type": "Property", "value": 80, "unitCode": "GQ"}
    problem(
        client.patch(f"{attrs}/nope", json={"value": 1}, headers=writer), "ResourceNotFound", 404
    )
    # Replace one attribute.
    reply = client.put(f"{attrs}/pm25", json={"type": "Property", "value": 5}, headers=writer)
    assert reply.status_code == 204
    assert get(client, writer, eid)["pm25"] == {"type": "Property", "value": 5}
    problem(
        client.post(f"{BASE}/entities/urn:ngsi-ld:X:404/attrs", json={"a": 1}, headers=writer),
        "ResourceNotFound",
        404,
    )


def test_replace_and_merge(client: TestClient, writer: H) -> None:
    create(client, writer, station(1, no2={"type": "Property", "value": 4}))
    eid = "urn:ngsi-ld:AirQualityObserved:1"
    created = get(client, writer, eid, options="sysAttrs")["createdAt"]
    reply = client.put(
        f"{BASE}/entities/{eid}",
        json={"type": "AirQualityObserved", "pm10": {"type": "Property", "value": 50}},
        headers=writer,
    )
    assert reply.status_code == 204
    body = get(client, writer, eid, options="sysAttrs")
    assert "pm25" not in body
    assert "no2" not in body
    assert body["pm10"]["value"] == 50
    assert body["createdAt"] == created
    reply = client.patch(
        f"{BASE}/entities/{eid}",
        json={
            "pm10": {"value": 51},
            "pm25": {"type": "Property", "value": 9},
            "extra": {"type": "Property", "value": {"a": 1, "b": 2}},
        },
        headers=writer,
    )
    assert reply.status_code == 204, reply.text
    body = get(client, writer, eid)
    assert body["pm10"] == {"type": "Property", "value": 51}
    assert body["pm25"]["value"] == 9
    reply = client.patch(
        f"{BASE}/entities/{eid}",
        json={"extra": {"value": {"b": "urn:ngsi-ld:null", "c": 3}}, "pm25": "urn:ngsi-ld:null"},
        headers=writer,
    )
    assert reply.status_code == 204, reply.text
    body = get(client, writer, eid)
    assert body["extra"]["value"] == {"a": 1, "c": 3}
    assert "pm25" not in body
    problem(
        client.patch(f"{BASE}/entities/urn:ngsi-ld:X:404", json={"a": 1}, headers=writer),
        "ResourceNotFound",
        404,
    )


def test_ld_json_bodies_and_replies(client: TestClient, writer: H) -> None:
    ctx = {"aq": "https://smartdatamodels.org/dataModel.Environment/", "pm25": "aq:pm25"}
    entity = {"@context": [ctx, CORE], **station(1)}
    reply = client.post(
        f"{BASE}/entities", content=_json(entity), headers={**writer, "Content-Type": LD}
    )
    assert reply.status_code == 201, reply.text
    # JSON with @context in the body is refused.
    reply = client.post(f"{BASE}/entities", json={**entity, "id": "urn:x:2"}, headers=writer)
    problem(reply, "BadRequestData", 400)
    # ld+json without @context is refused.
    reply = client.post(
        f"{BASE}/entities", content=_json(station(3)), headers={**writer, "Content-Type": LD}
    )
    problem(reply, "BadRequestData", 400)
    # Read back with the core context only: the attribute shows as its full IRI.
    body = get(client, writer, entity["id"])
    assert "https://smartdatamodels.org/dataModel.Environment/pm25" in body
    reply = client.get(f"{BASE}/entities/{entity['id']}", headers={**writer, "Accept": LD})
    assert reply.headers["content-type"].startswith(LD)
    assert reply.json()["@context"] == CORE
    assert "link" not in reply.headers


def _json(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value)
