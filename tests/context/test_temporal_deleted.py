"""Deleted attributes in the temporal evolution (ETSI GS CIM 009 v1.8, clauses 4.5.7-4.5.9,
4.11 `timeproperty=deletedAt`, 5.7.3), and geo-queries whose polygons cross themselves
(clause 4.10: geometries are GeoJSON, which does not require simple rings).

A deletion is an instance of its own holding the attribute type's NGSI-LD Null in the type's
own member (clause 5.2.1: "urn:ngsi-ld:null" as a Property value or Relationship object,
{"@none": "urn:ngsi-ld:null"} as a LanguageProperty's languageMap; the list, JSON and vocab
types alike); only `timeproperty=deletedAt` shows deletions. Temporal geo-queries on entities
without current state are decided on their locations inside the time window."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from pujiang.context.ngsild_geo import GeoQueryError, parse_geoquery

from .conftest import BASE, create, problem

TEMPORAL = f"{BASE}/temporal/entities"
NULL = "urn:ngsi-ld:null"
CAR = "urn:ngsi-ld:Vehicle:hu-A-12345"
H = dict[str, str]


@pytest.fixture
def car(client: TestClient, writer: H) -> H:
    create(
        client,
        writer,
        {
            "id": CAR,
            "type": "Vehicle",
            "speed": {"type": "Property", "value": 40},
            "parkedIn": {"type": "Relationship", "object": "urn:ngsi-ld:Parking:jingan-3"},
            "name": {"type": "LanguageProperty", "languageMap": {"zh": "小车", "en": "car"}},
            "stops": {"type": "ListProperty", "valueList": [1, 2]},
            "route": {"type": "ListRelationship", "objectList": [{"object": "urn:ngsi-ld:Bus:9"}]},
            "extra": {"type": "JsonProperty", "json": {"a": 1}},
            "colour": {"type": "VocabProperty", "vocab": "red"},
        },
    )
    return writer


def delete_attr(client: TestClient, headers: H, name: str) -> None:
    reply = client.delete(f"{BASE}/entities/{CAR}/attrs/{name}", headers=headers)
    assert reply.status_code == 204, reply.text


def deleted(client: TestClient, headers: H, **params: Any) -> Any:
    reply = client.get(
        f"{TEMPORAL}/{CAR}", params={"timeproperty": "deletedAt", **params}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


EXPECTED = {
    "speed": ("Property", "value", NULL),
    "parkedIn": ("Relationship", "object", NULL),
    "name": ("LanguageProperty", "languageMap", {"@none": NULL}),
    "stops": ("ListProperty", "valueList", [NULL]),
    "route": ("ListRelationship", "objectList", [NULL]),
    "extra": ("JsonProperty", "json", NULL),
    "colour": ("VocabProperty", "vocab", NULL),
}


def test_deletion_marker_per_type(client: TestClient, car: H) -> None:
    for name in EXPECTED:
        delete_attr(client, car, name)
    entity = deleted(client, car)
    assert set(entity) == {"id", "type", *EXPECTED}
    for name, (kind, member, null) in EXPECTED.items():
        (instance,) = entity[name]
        assert instance["type"] == kind, name
        assert instance[member] == null, name
        assert instance["deletedAt"], name
        assert instance["instanceId"].startswith("urn:ngsi-ld:attribute:instance:")
        if member != "value":
            assert "value" not in instance, name


def test_deletions_only_under_deleted_at(client: TestClient, car: H) -> None:
    """The other time properties show the attribute's instances, not the deletion."""
    delete_attr(client, car, "parkedIn")
    for prop in ("observedAt", "createdAt", "modifiedAt"):
        reply = client.get(
            f"{TEMPORAL}/{CAR}", params={"attrs": "parkedIn", "timeproperty": prop}, headers=car
        )
        assert reply.status_code == 200, reply.text
        objects = [i.get("object") for i in reply.json()["parkedIn"]]
        assert objects == ["urn:ngsi-ld:Parking:jingan-3"], prop
    (marker,) = deleted(client, car, attrs="parkedIn")["parkedIn"]
    assert marker["object"] == NULL


def test_deleted_temporal_values(client: TestClient, car: H) -> None:
    for name in ("speed", "parkedIn", "name"):
        delete_attr(client, car, name)
    entity = deleted(client, car, options="temporalValues")
    assert entity["speed"]["type"] == "Property"
    assert [pair[0] for pair in entity["speed"]["values"]] == [NULL]
    assert entity["parkedIn"]["type"] == "Relationship"
    assert [pair[0] for pair in entity["parkedIn"]["objects"]] == [NULL]
    assert [pair[0] for pair in entity["name"]["languageMaps"]] == [
        {"languageMap": {"@none": NULL}}
    ]
    for item in (entity["speed"]["values"], entity["parkedIn"]["objects"]):
        assert isinstance(item[0][1], str)
        assert item[0][1].endswith("Z")


def test_deleted_concise_is_lossless(client: TestClient, car: H) -> None:
    delete_attr(client, car, "parkedIn")
    (instance,) = deleted(client, car, options="concise")["parkedIn"]
    assert instance["object"] == NULL
    assert "value" not in instance
    assert instance.get("type", "Relationship") == "Relationship"


def test_deleted_entity_marks_every_attribute(client: TestClient, car: H) -> None:
    reply = client.delete(f"{BASE}/entities/{CAR}", headers=car)
    assert reply.status_code == 204, reply.text
    entity = deleted(client, car, attrs="parkedIn,speed")
    assert entity["parkedIn"][0]["object"] == NULL
    assert entity["speed"][0]["value"] == NULL


def test_deleted_at_without_deletions(client: TestClient, car: H) -> None:
    """Nothing deleted: the entity with no attribute."""
    assert deleted(client, car) == {"id": CAR, "type": "Vehicle"}
    delete_attr(client, car, "speed")
    assert set(deleted(client, car)) == {"id", "type", "speed"}


def test_bad_timeproperty(client: TestClient, car: H) -> None:
    for bad in ("deletedat", "removedAt", ""):
        reply = client.get(f"{TEMPORAL}/{CAR}", params={"timeproperty": bad}, headers=car)
        problem(reply, "BadRequestData", 400)


# -------------------------------------------------------------------------------------------
# geo-queries with self-intersecting polygons


# a bow-tie: two triangles meeting at (121.45, 31.25)
BOWTIE = [[[121.40, 31.20], [121.50, 31.30], [121.50, 31.20], [121.40, 31.30], [121.40, 31.20]]]


def test_self_intersecting_polygon_is_repaired() -> None:
    gq = parse_geoquery("within", "Polygon", BOWTIE)
    # inside the right lobe, inside the left lobe, in the pinched gaps above and below
    assert gq.matches({"type": "Point", "coordinates": [121.48, 31.25]})
    assert gq.matches({"type": "Point", "coordinates": [121.42, 31.25]})
    assert not gq.matches({"type": "Point", "coordinates": [121.45, 31.29]})
    assert not gq.matches({"type": "Point", "coordinates": [121.45, 31.21]})
    same = parse_geoquery("equals", "Polygon", BOWTIE)
    assert same.matches({"type": "Polygon", "coordinates": BOWTIE})
    assert not same.matches({"type": "Polygon", "coordinates": [[*BOWTIE[0][:3], BOWTIE[0][0]]]})


def test_flat_polygon_is_refused() -> None:
    with pytest.raises(GeoQueryError, match="coordinates"):
        parse_geoquery(
            "within", "Polygon", [[[121.4, 31.2], [121.5, 31.2], [121.6, 31.2], [121.4, 31.2]]]
        )


def test_self_intersecting_polygon_over_http(client: TestClient, writer: H) -> None:
    for key, lon in (("in", 121.48), ("gap", 121.45)):
        create(
            client,
            writer,
            {
                "id": f"urn:ngsi-ld:Shop:{key}",
                "type": "Shop",
                "location": {
                    "type": "GeoProperty",
                    "value": {
                        "type": "Point",
                        "coordinates": [lon, 31.25 if key == "in" else 31.29],
                    },
                },
            },
        )
    params = {
        "type": "Shop",
        "georel": "within",
        "geometry": "Polygon",
        "coordinates": str(BOWTIE).replace(" ", ""),
    }
    reply = client.get(f"{BASE}/entities", params=params, headers=writer)
    assert reply.status_code == 200, reply.text
    assert [e["id"] for e in reply.json()] == ["urn:ngsi-ld:Shop:in"]
    flat = "[[[121.4,31.2],[121.5,31.2],[121.6,31.2],[121.4,31.2]]]"
    reply = client.get(f"{BASE}/entities", params={**params, "coordinates": flat}, headers=writer)
    problem(reply, "BadRequestData", 400)


# -------------------------------------------------------------------------------------------
# temporal geo-queries on entities without current state


def located(lon: float, lat: float, when: str) -> dict[str, Any]:
    point = {"type": "Point", "coordinates": [lon, lat]}
    return {"type": "GeoProperty", "value": point, "observedAt": when}


def temporal_query(client: TestClient, headers: H, **params: Any) -> list[str]:
    reply = client.get(TEMPORAL, params={"type": "Boat", **params}, headers=headers)
    assert reply.status_code == 200, reply.text
    return sorted(e["id"] for e in reply.json())


NEAR = {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": "[121.49,31.24]"}


def test_geo_query_on_history_only_entities(client: TestClient, writer: H) -> None:
    boats = {
        "urn:ngsi-ld:Boat:still": [],
        "urn:ngsi-ld:Boat:bund": [located(121.49, 31.24, "2026-01-01T10:00:00Z")],
        "urn:ngsi-ld:Boat:far": [located(120.0, 30.0, "2026-01-01T10:00:00Z")],
    }
    for boat_id, places in boats.items():
        body: dict[str, Any] = {
            "id": boat_id,
            "type": "Boat",
            "speed": [{"type": "Property", "value": 3, "observedAt": "2026-01-01T10:00:00Z"}],
        }
        if places:
            body["location"] = places
        reply = client.post(TEMPORAL, json=body, headers=writer)
        assert reply.status_code == 201, reply.text
        # that POST created the current entity too: delete it to leave the history alone
        assert client.delete(f"{BASE}/entities/{boat_id}", headers=writer).status_code == 204
    after = {"timerel": "after", "timeAt": "2025-12-31T00:00:00Z"}
    assert temporal_query(client, writer, **after, **NEAR) == ["urn:ngsi-ld:Boat:bund"]
    within = {
        "georel": "within",
        "geometry": "Polygon",
        "coordinates": "[[[121.4,31.2],[121.5,31.2],[121.5,31.3],[121.4,31.3],[121.4,31.2]]]",
    }
    assert temporal_query(client, writer, **after, **within) == ["urn:ngsi-ld:Boat:bund"]
    # the location lies outside the window: not selected
    later = {"timerel": "after", "timeAt": "2026-02-01T00:00:00Z"}
    assert temporal_query(client, writer, **later, **NEAR) == []
    # a bad geo-query is still refused
    reply = client.get(TEMPORAL, params={"type": "Boat", "georel": "near", **later}, headers=writer)
    problem(reply, "BadRequestData", 400)


def test_geo_query_current_location_decides(client: TestClient, writer: H) -> None:
    """An entity that exists now is selected by where it is now; once deleted, by where it
    was inside the window."""
    boat = "urn:ngsi-ld:Boat:ferry"
    create(
        client,
        writer,
        {
            "id": boat,
            "type": "Boat",
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [121.49, 31.24]},
            },
        },
    )
    reply = client.patch(
        f"{BASE}/entities/{boat}/attrs",
        json={
            "location": {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [120.0, 30.0]},
            }
        },
        headers=writer,
    )
    assert reply.status_code == 204, reply.text
    assert temporal_query(client, writer, **NEAR) == []
    assert client.delete(f"{BASE}/entities/{boat}", headers=writer).status_code == 204
    assert temporal_query(client, writer, **NEAR) == [boat]
