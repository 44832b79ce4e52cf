"""@context handling: expansion and compaction, Link headers, stored contexts, discovery."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pujiang.context.jsonld import (
    CORE_CONTEXT_URL,
    DEFAULT_VOCAB,
    ContextNotAvailable,
    ContextProcessor,
    InvalidContext,
)
from tests.context.conftest import BASE, LD, create, problem, station

H = dict[str, str]
SDM = "https://smartdatamodels.org/dataModel.Environment/"
USER = {
    "@context": {"sdm": SDM, "AirQualityObserved": "sdm:AirQualityObserved", "pm25": "sdm:pm25"}
}


def link(url: str) -> str:
    return f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def test_expand_and_compact_round_trip() -> None:
    processor = ContextProcessor(lambda url: USER["@context"] if url == "https://x.org/c" else None)
    core = processor.core
    assert core.expand("location") == "https://uri.etsi.org/ngsi-ld/location"
    assert core.expand("pm25") == DEFAULT_VOCAB + "pm25"
    assert core.expand("urn:ngsi-ld:x") == "urn:ngsi-ld:x"
    assert core.expand("ngsi-ld:foo") == "https://uri.etsi.org/ngsi-ld/foo"
    assert core.compact(DEFAULT_VOCAB + "pm25") == "pm25"
    assert core.compact("https://uri.etsi.org/ngsi-ld/location") == "location"
    user = processor.active("https://x.org/c")
    assert user.expand("pm25") == SDM + "pm25"
    assert user.compact(SDM + "pm25") == "pm25"
    assert user.compact(SDM + "no2") == "sdm:no2"
    assert user.expand("sdm:no2") == SDM + "no2"
    assert user.expand("location") == "https://uri.etsi.org/ngsi-ld/location"
    # Core terms are protected; a user @vocab applies to unknown names.
    other = processor.active({"location": "https://evil.example/loc", "@vocab": "https://v.org/"})
    assert other.expand("location") == "https://uri.etsi.org/ngsi-ld/location"
    assert other.expand("speed") == "https://v.org/speed"
    assert other.compact("https://v.org/speed") == "speed"
    assert processor.active([CORE_CONTEXT_URL]) is core
    with pytest.raises(ContextNotAvailable):
        processor.active("https://unknown.example/context.jsonld")
    with pytest.raises(InvalidContext):
        processor.active(42)


def test_link_header_contexts(client: TestClient, writer: H) -> None:
    # A remote context that was never stored is 503 LdContextNotAvailable (no internet).
    reply = client.get(
        f"{BASE}/entities",
        params={"type": "AirQualityObserved"},
        headers={**writer, "Link": link("https://unknown.example/ctx.jsonld")},
    )
    problem(reply, "LdContextNotAvailable", 503)
    # Store it as a cached copy of that URL, then use it.
    url = "https://smartdatamodels.org/context.jsonld"
    stored = client.post(f"{BASE}/jsonldContexts", params={"url": url}, json=USER, headers=writer)
    assert stored.status_code == 201, stored.text
    assert stored.headers["location"] == url
    reply = client.post(f"{BASE}/entities", json=station(1), headers={**writer, "Link": link(url)})
    assert reply.status_code == 201, reply.text
    core_view = client.get(
        f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1", headers=writer
    ).json()
    assert core_view["type"] == SDM + "AirQualityObserved"
    assert SDM + "pm25" in core_view
    user_view = client.get(
        f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1", headers={**writer, "Link": link(url)}
    )
    assert user_view.json()["type"] == "AirQualityObserved"
    assert "pm25" in user_view.json()
    assert url in user_view.headers["link"]
    ld = client.get(
        f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1",
        headers={**writer, "Link": link(url), "Accept": LD},
    )
    assert ld.json()["@context"] == url
    found = client.get(
        f"{BASE}/entities",
        params={"type": "AirQualityObserved", "q": "pm25>1"},
        headers={**writer, "Link": link(url)},
    )
    assert len(found.json()) == 1
    assert (
        client.get(f"{BASE}/entities", params={"type": "AirQualityObserved"}, headers=writer).json()
        == []
    )
    # ld+json with a Link header is refused.
    reply = client.post(
        f"{BASE}/entities",
        content=b'{"@context": "x", "id": "urn:a:b", "type": "T"}',
        headers={**writer, "Link": link(url), "Content-Type": LD},
    )
    problem(reply, "BadRequestData", 400)


def test_jsonld_contexts_api(client: TestClient, writer: H, reader: H) -> None:
    listing = client.get(f"{BASE}/jsonldContexts", headers=reader)
    assert listing.json() == [CORE_CONTEXT_URL]
    reply = client.post(f"{BASE}/jsonldContexts", json=USER, headers=writer)
    assert reply.status_code == 201
    location = reply.headers["location"]
    local = location.rsplit("/", 1)[1]
    served = client.get(f"{BASE}/jsonldContexts/{local}", headers=reader)
    assert served.json() == USER
    details = client.get(
        f"{BASE}/jsonldContexts", params={"details": "true"}, headers=reader
    ).json()
    assert details[1]["kind"] == "Hosted"
    assert details[1]["url"] == location
    # Use the hosted context by its URL.
    reply = client.post(
        f"{BASE}/entities", json=station(1), headers={**writer, "Link": link(location)}
    )
    assert reply.status_code == 201
    core = client.get(f"{BASE}/jsonldContexts/core", headers=reader).json()
    assert core["@context"]["@vocab"] == DEFAULT_VOCAB
    problem(
        client.post(f"{BASE}/jsonldContexts", json={"x": 1}, headers=writer), "BadRequestData", 400
    )
    problem(
        client.post(
            f"{BASE}/jsonldContexts", json={"@context": "https://nowhere.example/c"}, headers=writer
        ),
        "LdContextNotAvailable",
        503,
    )
    assert client.post(f"{BASE}/jsonldContexts", json=USER, headers=reader).status_code == 403
    problem(client.delete(f"{BASE}/jsonldContexts/core", headers=writer), "BadRequestData", 400)
    assert client.delete(f"{BASE}/jsonldContexts/{local}", headers=writer).status_code == 204
    problem(
        client.delete(f"{BASE}/jsonldContexts/{local}", headers=writer), "ResourceNotFound", 404
    )
    problem(client.get(f"{BASE}/jsonldContexts/{local}", headers=reader), "ResourceNotFound", 404)
    reply = client.get(
        f"{BASE}/entities", params={"type": "T"}, headers={**writer, "Link": link(location)}
    )
    problem(reply, "LdContextNotAvailable", 503)


def test_discovery(client: TestClient, writer: H) -> None:
    create(client, writer, station(1))
    create(
        client,
        writer,
        station(2, refDevice={"type": "Relationship", "object": "urn:ngsi-ld:Device:1"}),
    )
    create(client, writer, {"id": "urn:ngsi-ld:Device:1", "type": "Device", "batteryLevel": 0.5})
    types = client.get(f"{BASE}/types", headers=writer).json()
    assert types["type"] == "EntityTypeList"
    assert types["typeList"] == ["AirQualityObserved", "Device"]
    details = client.get(f"{BASE}/types", params={"details": "true"}, headers=writer).json()
    aq = next(t for t in details if t["typeName"] == "AirQualityObserved")
    assert aq["id"] == DEFAULT_VOCAB + "AirQualityObserved"
    assert sorted(aq["attributeNames"]) == ["location", "pm25", "refDevice"]
    info = client.get(f"{BASE}/types/AirQualityObserved", headers=writer).json()
    assert info["type"] == "EntityTypeInfo"
    assert info["entityCount"] == 2
    kinds = {a["attributeName"]: a["attributeTypes"] for a in info["attributeDetails"]}
    assert kinds == {
        "location": ["GeoProperty"],
        "pm25": ["Property"],
        "refDevice": ["Relationship"],
    }
    problem(client.get(f"{BASE}/types/Nothing", headers=writer), "ResourceNotFound", 404)
    attrs = client.get(f"{BASE}/attributes", headers=writer).json()
    assert attrs["type"] == "AttributeList"
    assert attrs["attributeList"] == ["batteryLevel", "location", "pm25", "refDevice"]
    listed = client.get(f"{BASE}/attributes", params={"details": "true"}, headers=writer).json()
    assert {a["attributeName"] for a in listed} == set(attrs["attributeList"])
    pm = client.get(f"{BASE}/attributes/pm25", headers=writer).json()
    assert pm["attributeCount"] == 2
    assert pm["typeNames"] == ["AirQualityObserved"]
    assert pm["attributeTypes"] == ["Property"]
    problem(client.get(f"{BASE}/attributes/nothing", headers=writer), "ResourceNotFound", 404)
