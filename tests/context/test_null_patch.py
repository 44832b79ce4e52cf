"""NGSI-LD Null in PATCH .../attrs (clause 5.6.2) and PATCH .../attrs/{attr} (clause 5.6.4):
the Null deletes the attribute, or the instance with the given datasetId (clause 5.5.8), and
the deletion is kept in the history like DELETE .../attrs/{attr}. Bad nulls are 400."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.context.conftest import BASE, LD, create, problem, station

H = dict[str, str]
NULL = "urn:ngsi-ld:null"
EID = "urn:ngsi-ld:Building:null-1"
CITY = "urn:ngsi-ld:City:Shanghai"


def building(entity_id: str = EID, **extra: Any) -> dict[str, Any]:
    """One attribute of every type, and a Property with a sub-attribute and a unitCode."""
    return {
        "id": entity_id,
        "type": "Building",
        "name": {"type": "Property", "value": "东方明珠"},
        "height": {
            "type": "Property",
            "value": 468,
            "unitCode": "MTR",
            "accuracy": {"type": "Property", "value": 0.5},
        },
        "locatedAt": {"type": "Relationship", "object": CITY},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [121.4997, 31.2397]},
        },
        "street": {
            "type": "LanguageProperty",
            "languageMap": {"zh": "世纪大道", "en": "Century Ave"},
        },
        "tags": {"type": "ListProperty", "valueList": ["tower", "tv"]},
        "config": {"type": "JsonProperty", "json": {"floors": [1, 2]}},
        "category": {"type": "VocabProperty", "vocab": "landmark"},
        **extra,
    }


def get(client: TestClient, headers: H, entity_id: str = EID, **params: str) -> dict[str, Any]:
    reply = client.get(f"{BASE}/entities/{entity_id}", params=params, headers=headers)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def attrs_url(entity_id: str = EID) -> str:
    return f"{BASE}/entities/{entity_id}/attrs"


NULLS = {
    "name": {"type": "Property", "value": NULL},
    "locatedAt": {"type": "Relationship", "object": NULL},
    "location": {"type": "GeoProperty", "value": NULL},
    "street": {"type": "LanguageProperty", "languageMap": {"@none": NULL}},
    "tags": {"type": "ListProperty", "valueList": [NULL]},
    "config": {"type": "JsonProperty", "json": NULL},
    "category": {"type": "VocabProperty", "vocab": NULL},
}


@pytest.mark.parametrize("attr", sorted(NULLS))
def test_update_attributes_null_deletes_each_attribute_type(
    client: TestClient, writer: H, attr: str
) -> None:
    create(client, writer, building())
    before = get(client, writer)
    reply = client.patch(attrs_url(), json={attr: NULLS[attr]}, headers=writer)
    assert reply.status_code == 204, reply.text
    after = get(client, writer)
    assert attr not in after
    assert NULL not in str(after)
    # Everything else is untouched.
    assert after == {k: v for k, v in before.items() if k != attr}


@pytest.mark.parametrize("attr", sorted(NULLS))
def test_partial_attribute_update_null_deletes_each_attribute_type(
    client: TestClient, writer: H, attr: str
) -> None:
    create(client, writer, building())
    before = get(client, writer)
    fragment = {k: v for k, v in NULLS[attr].items() if k != "type"}  # type may be left out
    reply = client.patch(f"{attrs_url()}/{attr}", json=fragment, headers=writer)
    assert reply.status_code == 204, reply.text
    assert get(client, writer) == {k: v for k, v in before.items() if k != attr}


def test_null_in_ld_json_with_concise_attribute(client: TestClient, writer: H) -> None:
    create(client, writer, building())
    body = {"name": NULL, "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"}
    reply = client.patch(attrs_url(), json=body, headers={**writer, "Content-Type": LD})
    assert reply.status_code == 204, reply.text
    assert "name" not in get(client, writer)


def test_null_and_values_in_one_update(client: TestClient, writer: H) -> None:
    create(client, writer, building())
    reply = client.patch(
        attrs_url(),
        json={
            "name": {"type": "Property", "value": NULL},
            "height": {"type": "Property", "value": 470},
            "missing": {"type": "Property", "value": NULL},
        },
        headers=writer,
    )
    # The attribute the entity lacks is reported, the others are done.
    assert reply.status_code == 207, reply.text
    result = reply.json()
    assert sorted(result["updated"]) == ["height", "name"]
    assert [n["attributeName"] for n in result["notUpdated"]] == ["missing"]
    body = get(client, writer)
    assert "name" not in body
    assert "missing" not in body
    # PATCH .../attrs replaces the whole instance (clause 5.5.8, example 2).
    assert body["height"] == {"type": "Property", "value": 470}


def test_null_deletes_one_instance_by_dataset_id(client: TestClient, writer: H) -> None:
    doc = station(1)
    doc["pm25"] = [
        {"type": "Property", "value": 30},
        {"type": "Property", "value": 31, "datasetId": "urn:ngsi-ld:Dataset:b"},
        {"type": "Property", "value": 32, "datasetId": "urn:ngsi-ld:Dataset:c"},
    ]
    create(client, writer, doc)
    eid = doc["id"]
    gone_b = {"type": "Property", "value": NULL, "datasetId": "urn:ngsi-ld:Dataset:b"}
    assert client.patch(attrs_url(eid), json={"pm25": gone_b}, headers=writer).status_code == 204
    values = sorted(i["value"] for i in get(client, writer, eid)["pm25"])
    assert values == [30, 32]
    # Partial attribute update: the body's datasetId picks the instance.
    gone_c = {"value": NULL, "datasetId": "urn:ngsi-ld:Dataset:c"}
    reply = client.patch(f"{attrs_url(eid)}/pm25", json=gone_c, headers=writer)
    assert reply.status_code == 204, reply.text
    assert get(client, writer, eid)["pm25"] == {"type": "Property", "value": 30}
    # The default instance last: the attribute goes with it.
    reply = client.patch(f"{attrs_url(eid)}/pm25", json={"value": NULL}, headers=writer)
    assert reply.status_code == 204, reply.text
    assert "pm25" not in get(client, writer, eid)
    # Deleted instances are gone: a second Null finds nothing.
    problem(
        client.patch(f"{attrs_url(eid)}/pm25", json={"value": NULL}, headers=writer),
        "ResourceNotFound",
        404,
    )
    reply = client.patch(attrs_url(eid), json={"pm25": {"value": NULL}}, headers=writer)
    assert reply.status_code == 207
    assert reply.json()["notUpdated"][0]["attributeName"] == "pm25"


def test_partial_update_null_members_delete_sub_attributes(client: TestClient, writer: H) -> None:
    create(client, writer, building())
    reply = client.patch(
        f"{attrs_url()}/height",
        json={"unitCode": NULL, "accuracy": {"type": "Property", "value": NULL}, "value": 471},
        headers=writer,
    )
    assert reply.status_code == 204, reply.text
    assert get(client, writer)["height"] == {"type": "Property", "value": 471}


def test_deleted_attribute_leaves_the_query_index(client: TestClient, writer: H) -> None:
    create(client, writer, building())
    create(client, writer, building("urn:ngsi-ld:Building:null-2"))
    near = {
        "type": "Building",
        "georel": "near;maxDistance==100",
        "geometry": "Point",
        "coordinates": "[121.4997,31.2397]",
    }
    found = client.get(f"{BASE}/entities", params=near, headers=writer).json()
    assert len(found) == 2
    assert client.patch(attrs_url(), json={"location": NULLS["location"]}, headers=writer)
    reply = client.patch(f"{attrs_url()}/height", json={"value": NULL}, headers=writer)
    assert reply.status_code == 204
    by_height = client.get(
        f"{BASE}/entities", params={"type": "Building", "q": "height>400"}, headers=writer
    ).json()
    assert [e["id"] for e in by_height] == ["urn:ngsi-ld:Building:null-2"]
    found = client.get(f"{BASE}/entities", params=near, headers=writer).json()
    assert [e["id"] for e in found] == ["urn:ngsi-ld:Building:null-2"]


def test_history_records_the_null_as_a_deletion(client: TestClient, writer: H) -> None:
    """The temporal evolution shows a Null deletion exactly as it shows DELETE .../attrs."""
    create(client, writer, building())
    create(client, writer, building("urn:ngsi-ld:Building:null-2"))
    assert client.patch(attrs_url(), json={"name": NULLS["name"]}, headers=writer)
    reply = client.delete(f"{attrs_url('urn:ngsi-ld:Building:null-2')}/name", headers=writer)
    assert reply.status_code == 204
    reply = client.patch(f"{attrs_url()}/locatedAt", json={"object": NULL}, headers=writer)
    assert reply.status_code == 204
    reply = client.delete(f"{attrs_url('urn:ngsi-ld:Building:null-2')}/locatedAt", headers=writer)
    assert reply.status_code == 204

    def deletions(entity_id: str, attr: str) -> list[dict[str, Any]]:
        reply = client.get(
            f"{BASE}/temporal/entities/{entity_id}",
            params={
                "attrs": attr,
                "timeproperty": "deletedAt",
                "timerel": "after",
                "timeAt": "2000-01-01T00:00:00Z",
            },
            headers=writer,
        )
        assert reply.status_code == 200, reply.text
        instances = reply.json()[attr]
        return instances if isinstance(instances, list) else [instances]

    def shape(instance: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in instance.items() if k not in {"instanceId", "deletedAt"}}

    for attr in ("name", "locatedAt"):
        by_null = deletions(EID, attr)
        by_delete = deletions("urn:ngsi-ld:Building:null-2", attr)
        assert len(by_null) == len(by_delete) == 1
        assert [shape(i) for i in by_null] == [shape(i) for i in by_delete]
        assert "deletedAt" in by_null[0]
        assert NULL in str(by_null[0])


def test_bad_nulls_are_bad_request_data(client: TestClient, writer: H) -> None:
    create(client, writer, building())
    before = get(client, writer)
    # A datasetId cannot be deleted (clause 5.5.8).
    problem(
        client.patch(f"{attrs_url()}/name", json={"datasetId": NULL}, headers=writer),
        "BadRequestData",
        400,
    )
    problem(
        client.patch(
            attrs_url(),
            json={"name": {"type": "Property", "value": "x", "datasetId": NULL}},
            headers=writer,
        ),
        "BadRequestData",
        400,
    )
    # A JSON null is no value in JSON-LD: the NGSI-LD Null is the way to delete.
    body = problem(
        client.patch(f"{attrs_url()}/name", json={"value": None}, headers=writer),
        "BadRequestData",
        400,
    )
    assert NULL in body["detail"]
    problem(
        client.patch(
            attrs_url(), json={"name": {"type": "Property", "value": None}}, headers=writer
        ),
        "BadRequestData",
        400,
    )
    problem(client.patch(attrs_url(), json={"name": None}, headers=writer), "BadRequestData", 400)
    # The Null does not change an attribute's type.
    problem(
        client.patch(
            f"{attrs_url()}/name", json={"type": "Relationship", "object": NULL}, headers=writer
        ),
        "BadRequestData",
        400,
    )
    # A Null for an attribute the entity lacks: 404 on the attribute route.
    problem(
        client.patch(f"{attrs_url()}/nothing", json={"value": NULL}, headers=writer),
        "ResourceNotFound",
        404,
    )
    problem(
        client.patch(
            f"{BASE}/entities/urn:ngsi-ld:Building:none/attrs",
            json={"name": NULLS["name"]},
            headers=writer,
        ),
        "ResourceNotFound",
        404,
    )
    assert get(client, writer) == before
