"""GeoJSON replies, `Accept: application/geo+json` (clauses 4.5.16 and 6.3.15): Feature and
FeatureCollection shape, the @context in the body, `geometryProperty`, datasetIds, formats."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.context.conftest import BASE, CORE, create, problem

H = dict[str, str]
GEO = "application/geo+json"
USER_URL = "https://example.org/building-context.jsonld"
USER = {"@context": {"Building": "https://example.org/Building", "name": "https://schema.org/name"}}
TOWER = {"type": "Point", "coordinates": [121.4998, 31.2397]}
SPACE = {
    "type": "Polygon",
    "coordinates": [[[121.49, 31.23], [121.51, 31.23], [121.5, 31.25], [121.49, 31.23]]],
}
GPS = {"type": "Point", "coordinates": [121.5001, 31.2399]}


def building(n: int, **attrs: Any) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:Building:{n}",
        "type": "Building",
        "name": {"type": "Property", "value": f"楼 {n}"},
        **attrs,
    }


def geo(value: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": value, **extra}


def get(client: TestClient, headers: H, path: str, **params: str) -> dict[str, Any]:
    reply = client.get(f"{BASE}{path}", params=params, headers={**headers, "Accept": GEO})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == GEO
    # The @context travels in the body (GeoJSON-LD), not in a Link header.
    assert "link" not in reply.headers
    body: dict[str, Any] = reply.json()
    return body


def test_one_entity_is_a_feature(client: TestClient, writer: H) -> None:
    create(client, writer, building(1, location=geo(TOWER), observationSpace=geo(SPACE)))
    feature = get(client, writer, "/entities/urn:ngsi-ld:Building:1")
    assert feature == {
        "id": "urn:ngsi-ld:Building:1",
        "type": "Feature",
        "geometry": TOWER,
        "properties": {
            "type": "Building",
            "name": {"type": "Property", "value": "楼 1"},
            "location": geo(TOWER),
            "observationSpace": geo(SPACE),
        },
        "@context": CORE,
    }
    # geometryProperty picks another GeoProperty (clause 4.5.16.1) ...
    chosen = get(
        client, writer, "/entities/urn:ngsi-ld:Building:1", geometryProperty="observationSpace"
    )
    assert chosen["geometry"] == SPACE
    assert chosen["properties"]["location"] == geo(TOWER)
    # ... and one the entity lacks gives a null geometry.
    missing = get(
        client, writer, "/entities/urn:ngsi-ld:Building:1", geometryProperty="operationSpace"
    )
    assert missing["geometry"] is None
    # A Property that is not a GeoProperty holds no geometry.
    assert (
        get(client, writer, "/entities/urn:ngsi-ld:Building:1", geometryProperty="name")["geometry"]
        is None
    )
    reply = client.get(
        f"{BASE}/entities/urn:ngsi-ld:Building:1",
        params={"geometryProperty": "bad name"},
        headers={**writer, "Accept": GEO},
    )
    problem(reply, "BadRequestData", 400)


def test_formats_and_user_context(client: TestClient, writer: H) -> None:
    stored = client.post(
        f"{BASE}/jsonldContexts", params={"url": USER_URL}, json=USER, headers=writer
    )
    assert stored.status_code == 201, stored.text
    create(
        client,
        writer,
        building(
            1, location=geo(TOWER, observedAt="2026-11-24T01:00:00Z"), observationSpace=geo(SPACE)
        ),
    )
    simplified = get(client, writer, "/entities/urn:ngsi-ld:Building:1", options="keyValues")
    assert simplified["geometry"] == TOWER
    assert simplified["properties"] == {
        "type": "Building",
        "name": "楼 1",
        "location": TOWER,
        "observationSpace": SPACE,
    }
    concise = get(client, writer, "/entities/urn:ngsi-ld:Building:1", format="concise")
    assert concise["geometry"] == TOWER
    assert concise["properties"]["location"] == {
        "value": TOWER,
        "observedAt": "2026-11-24T01:00:00Z",
    }
    assert (
        get(
            client,
            writer,
            "/entities/urn:ngsi-ld:Building:1",
            format="concise",
            geometryProperty="observationSpace",
        )["geometry"]
        == SPACE
    )
    link = f'<{USER_URL}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    create(client, {**writer, "Link": link}, building(9, location=geo(TOWER)))
    with_link = get(client, {**writer, "Link": link}, "/entities/urn:ngsi-ld:Building:9")
    assert with_link["@context"] == USER_URL
    assert with_link["properties"]["type"] == "Building"
    assert with_link["properties"]["name"] == {"type": "Property", "value": "楼 9"}
    assert with_link["geometry"] == TOWER
    # Compacted with the core @context, the user's terms show as IRIs.
    core_view = get(client, writer, "/entities/urn:ngsi-ld:Building:9")
    assert core_view["properties"]["type"] == "https://example.org/Building"
    assert "https://schema.org/name" in core_view["properties"]


def test_many_entities_are_a_feature_collection(client: TestClient, writer: H) -> None:
    create(client, writer, building(1, location=geo(TOWER)))
    create(client, writer, building(2))  # no location: a null geometry
    collection = get(client, writer, "/entities", type="Building")
    assert set(collection) == {"type", "features", "@context"}
    assert collection["type"] == "FeatureCollection"
    assert collection["@context"] == CORE
    features = {f["id"]: f for f in collection["features"]}
    assert features["urn:ngsi-ld:Building:1"]["geometry"] == TOWER
    assert features["urn:ngsi-ld:Building:2"]["geometry"] is None
    for feature in features.values():
        # One @context for the collection, none per Feature (clause 4.5.16.3).
        assert set(feature) == {"id", "type", "geometry", "properties"}
        assert feature["type"] == "Feature"
    # The geo-query's geoproperty filters; it does not choose the geometry.
    near = get(
        client,
        writer,
        "/entities",
        type="Building",
        georel="near;maxDistance==1000",
        geometry="Point",
        coordinates="[121.4998,31.2397]",
    )
    assert [f["id"] for f in near["features"]] == ["urn:ngsi-ld:Building:1"]
    assert get(client, writer, "/entities", type="Nothing") == {
        "type": "FeatureCollection",
        "features": [],
        "@context": CORE,
    }
    posted = client.post(
        f"{BASE}/entityOperations/query",
        json={"type": "Query", "entities": [{"type": "Building"}]},
        headers={**writer, "Accept": GEO},
    )
    assert posted.status_code == 200, posted.text
    assert posted.json()["type"] == "FeatureCollection"
    assert posted.json()["@context"] == CORE
    assert len(posted.json()["features"]) == 2


def test_several_instances_choose_by_dataset(client: TestClient, writer: H) -> None:
    gps = "urn:ngsi-ld:Dataset:gps"
    create(client, writer, building(1, location=[geo(GPS, datasetId=gps), geo(TOWER)]))
    create(client, writer, building(2, location=geo(GPS, datasetId=gps)))
    # Without datasetId the default instance is the geometry; none there: null.
    assert get(client, writer, "/entities/urn:ngsi-ld:Building:1")["geometry"] == TOWER
    assert get(client, writer, "/entities/urn:ngsi-ld:Building:2")["geometry"] is None
    keyed = get(client, writer, "/entities/urn:ngsi-ld:Building:1", options="keyValues")
    assert keyed["geometry"] == TOWER
    # With datasetId, that instance.
    for n in (1, 2):
        chosen = get(client, writer, f"/entities/urn:ngsi-ld:Building:{n}", datasetId=gps)
        assert chosen["geometry"] == GPS
    collection = get(client, writer, "/entities", type="Building", datasetId=gps)
    assert [f["geometry"] for f in collection["features"]] == [GPS, GPS]
