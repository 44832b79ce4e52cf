"""The `datasetId` query parameter of GET /entities and GET /entities/{id} (v1.8, clause 4.5.5):
only the attribute instances with the datasetIds given are returned, `@none` naming the default
instance; it selects instances, not entities (an entity whose attributes all drop out is still
returned, with no attribute)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.context.conftest import BASE, create, problem

H = dict[str, str]
BUILDING = "urn:ngsi-ld:Building:eiffel"
FR = "urn:ngsi-ld:Dataset:french-name"
DE = "urn:ngsi-ld:Dataset:german-name"
ES = "urn:ngsi-ld:Dataset:spanish-name"


def building(entity_id: str = BUILDING) -> dict[str, Any]:
    return {
        "id": entity_id,
        "type": "Building",
        "name": [
            {"type": "Property", "value": "Eiffel Tower"},
            {"type": "Property", "value": "Tour Eiffel", "datasetId": FR},
            {"type": "Property", "value": "Eiffelturm", "datasetId": DE},
        ],
        "locatedAt": [
            {"type": "Relationship", "object": "urn:ngsi-ld:City:Paris"},
            {"type": "Relationship", "object": "urn:ngsi-ld:Ville:Paris", "datasetId": FR},
            {"type": "Relationship", "object": "urn:ngsi-ld:Ciudad:Paris", "datasetId": ES},
        ],
        "height": {"type": "Property", "value": 330},
    }


@pytest.fixture
def eiffel(client: TestClient, writer: H) -> H:
    create(client, writer, building())
    return writer


def query(client: TestClient, headers: H, **params: Any) -> list[dict[str, Any]]:
    reply = client.get(f"{BASE}/entities", params={"type": "Building", **params}, headers=headers)
    assert reply.status_code == 200, reply.text
    body: list[dict[str, Any]] = reply.json()
    return body


def retrieve(client: TestClient, headers: H, **params: Any) -> dict[str, Any]:
    reply = client.get(f"{BASE}/entities/{BUILDING}", params=params, headers=headers)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def test_one_dataset_id(client: TestClient, eiffel: H) -> None:
    (entity,) = query(client, eiffel, datasetId=FR)
    assert entity == {
        "id": BUILDING,
        "type": "Building",
        "name": {"type": "Property", "value": "Tour Eiffel", "datasetId": FR},
        "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:Ville:Paris", "datasetId": FR},
    }
    assert retrieve(client, eiffel, datasetId=FR) == entity


def test_two_dataset_ids(client: TestClient, eiffel: H) -> None:
    (entity,) = query(client, eiffel, datasetId=f"{FR},{ES}")
    assert entity["name"] == {"type": "Property", "value": "Tour Eiffel", "datasetId": FR}
    assert entity["locatedAt"] == [
        {"type": "Relationship", "object": "urn:ngsi-ld:Ville:Paris", "datasetId": FR},
        {"type": "Relationship", "object": "urn:ngsi-ld:Ciudad:Paris", "datasetId": ES},
    ]
    assert "height" not in entity  # it has a default instance only


def test_none_is_the_default_instance(client: TestClient, eiffel: H) -> None:
    (entity,) = query(client, eiffel, datasetId="@none")
    assert entity == {
        "id": BUILDING,
        "type": "Building",
        "name": {"type": "Property", "value": "Eiffel Tower"},
        "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Paris"},
        "height": {"type": "Property", "value": 330},
    }
    both = retrieve(client, eiffel, datasetId=f"@none,{DE}")
    assert both["name"] == [
        {"type": "Property", "value": "Eiffel Tower"},
        {"type": "Property", "value": "Eiffelturm", "datasetId": DE},
    ]
    assert both["locatedAt"] == {"type": "Relationship", "object": "urn:ngsi-ld:City:Paris"}


def test_with_attrs(client: TestClient, eiffel: H) -> None:
    (entity,) = query(client, eiffel, attrs="name", datasetId="@none")
    assert entity == {
        "id": BUILDING,
        "type": "Building",
        "name": {"type": "Property", "value": "Eiffel Tower"},
    }
    (entity,) = query(client, eiffel, attrs="name", datasetId=DE)
    assert entity["name"] == {"type": "Property", "value": "Eiffelturm", "datasetId": DE}
    assert set(entity) == {"id", "type", "name"}
    # no name instance of that dataset: the entity still matches attrs=name, with no attribute
    assert query(client, eiffel, attrs="name", datasetId=ES) == [
        {"id": BUILDING, "type": "Building"}
    ]
    assert retrieve(client, eiffel, attrs="name", datasetId=ES) == {
        "id": BUILDING,
        "type": "Building",
    }


def test_without_the_parameter_every_instance(client: TestClient, eiffel: H) -> None:
    (entity,) = query(client, eiffel)
    assert len(entity["name"]) == 3
    assert len(entity["locatedAt"]) == 3


def test_selects_instances_not_entities(client: TestClient, eiffel: H) -> None:
    create(client, eiffel, {"id": "urn:ngsi-ld:Building:plain", "type": "Building", "height": 9})
    reply = client.get(
        f"{BASE}/entities",
        params={"type": "Building", "datasetId": DE, "count": "true"},
        headers=eiffel,
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["NGSILD-Results-Count"] == "2"
    by_id = {e["id"]: e for e in reply.json()}
    assert by_id["urn:ngsi-ld:Building:plain"] == {
        "id": "urn:ngsi-ld:Building:plain",
        "type": "Building",
    }
    assert by_id[BUILDING]["name"]["value"] == "Eiffelturm"


def test_simplified_and_sys_attrs(client: TestClient, eiffel: H) -> None:
    (simple,) = query(client, eiffel, datasetId=f"@none,{FR}", options="keyValues")
    assert simple["name"] == {"dataset": {"@none": "Eiffel Tower", FR: "Tour Eiffel"}}
    assert simple["height"] == 330
    single = retrieve(client, eiffel, datasetId="@none", options="keyValues")
    assert single["name"] == "Eiffel Tower"
    full = retrieve(client, eiffel, datasetId=DE, options="sysAttrs")
    assert "createdAt" in full
    assert "createdAt" in full["name"]


def test_stored_entity_is_untouched(client: TestClient, eiffel: H) -> None:
    retrieve(client, eiffel, datasetId=FR)
    assert len(retrieve(client, eiffel)["name"]) == 3


@pytest.mark.parametrize("bad", ["not a uri", "plainword", ",", "@None", "urn:ngsi-ld:x,bad"])
def test_invalid_dataset_id(client: TestClient, eiffel: H, bad: str) -> None:
    for reply in (
        client.get(
            f"{BASE}/entities", params={"type": "Building", "datasetId": bad}, headers=eiffel
        ),
        client.get(f"{BASE}/entities/{BUILDING}", params={"datasetId": bad}, headers=eiffel),
    ):
        assert "datasetId" in problem(reply, "BadRequestData", 400)["detail"]


def test_missing_entity_is_still_404(client: TestClient, eiffel: H) -> None:
    reply = client.get(
        f"{BASE}/entities/urn:ngsi-ld:Building:none", params={"datasetId": FR}, headers=eiffel
    )
    problem(reply, "ResourceNotFound", 404)
