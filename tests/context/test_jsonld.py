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
    check_context,
    core_document,
    is_core_url,
)
from tests.context.conftest import BASE, ERR, LD, create, problem, station

H = dict[str, str]
SDM = "https://smartdatamodels.org/dataModel.Environment/"
USER = {
    "@context": {"sdm": SDM, "AirQualityObserved": "sdm:AirQualityObserved", "pm25": "sdm:pm25"}
}


def link(url: str) -> str:
    return f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def test_a_change_of_the_store_seen_through_the_stamp_empties_the_cache() -> None:
    """Another process deleted or replaced a stored context: this one's cache, built from the
    old copy, is dropped once the store's stamp says so, not before."""
    store = {"https://x.org/c": USER["@context"]}
    stamp = [1]
    processor = ContextProcessor(store.get, stamp=lambda: stamp[0], stamp_seconds=0)
    assert processor.active("https://x.org/c").expand("pm25") == SDM + "pm25"
    store["https://x.org/c"] = {"pm25": "https://other.org/pm25"}
    assert processor.active("https://x.org/c").expand("pm25") == SDM + "pm25"  # cached
    stamp[0] = 2
    assert processor.active("https://x.org/c").expand("pm25") == "https://other.org/pm25"
    del store["https://x.org/c"]
    stamp[0] = 3
    with pytest.raises(ContextNotAvailable):
        processor.active("https://x.org/c")


def test_a_context_added_and_deleted_between_two_looks_is_not_kept() -> None:
    """The stamp reads as before once the context is gone again: the build read it anew."""
    store: dict[str, object] = {}
    stamp = [(0, None)]
    processor = ContextProcessor(store.get, stamp=lambda: stamp[0], stamp_seconds=3600)
    processor.active(USER)  # an inline context: the first look at the stamp
    store["https://x.org/c"], stamp[0] = USER["@context"], (1, "t1")
    assert processor.active("https://x.org/c").expand("pm25") == SDM + "pm25"
    del store["https://x.org/c"]
    stamp[0] = (0, None)
    processor.stamp_seconds = 0  # the next look
    with pytest.raises(ContextNotAvailable):
        processor.active("https://x.org/c")


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
    # A remote context that was never stored is 504 LdContextNotAvailable (no internet).
    reply = client.get(
        f"{BASE}/entities",
        params={"type": "AirQualityObserved"},
        headers={**writer, "Link": link("https://unknown.example/ctx.jsonld")},
    )
    problem(reply, "LdContextNotAvailable", 504)
    # Store it as a cached copy of that URL, then use it.
    url = "https://smartdatamodels.org/context.jsonld"
    stored = client.post(f"{BASE}/jsonldContexts", params={"url": url}, json=USER, headers=writer)
    assert stored.status_code == 201, stored.text
    assert stored.headers["location"].startswith(f"{BASE}/jsonldContexts/")
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


@pytest.mark.parametrize(
    "url",
    [
        CORE_CONTEXT_URL,
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld",
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld",
        "http://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld",
    ],
)
def test_published_core_urls_name_the_core(url: str) -> None:
    assert is_core_url(url)
    processor = ContextProcessor(lambda _: None)
    assert processor.active(url) is processor.core
    assert processor.active([url]) is processor.core


@pytest.mark.parametrize(
    "url",
    [
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-non-existing.jsonld",
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v2.0.jsonld",
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld.bak",
        "https://uri.etsi.org/ngsi-ld/v2/ngsi-ld-core-context.jsonld",
        "https://uri.etsi.org/ngsi-ld/v1/my-core-context.jsonld",
        "https://evil.example/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld",
    ],
)
def test_other_urls_are_not_the_core(url: str) -> None:
    assert not is_core_url(url)
    with pytest.raises(ContextNotAvailable):
        ContextProcessor(lambda _: None).active([url])


FAKE_CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-non-existing.jsonld"


@pytest.mark.parametrize("body_type", ["type", ["Building", "type"], "id"])
def test_a_type_naming_a_json_ld_keyword_is_refused(
    client: TestClient, writer: H, body_type: object
) -> None:
    """The core context maps `type` to @type (and `id` to @id): as an entity type it would be
    stored as the keyword. 400, nothing stored."""
    entity = {"id": "urn:ngsi-ld:Building:kw", "type": body_type}
    reply = client.post(f"{BASE}/entities", json=entity, headers=writer)
    assert "JSON-LD keyword" in problem(reply, "BadRequestData", 400)["detail"]
    missing = client.get(f"{BASE}/entities/urn:ngsi-ld:Building:kw", headers=writer)
    problem(missing, "ResourceNotFound", 404)


def test_a_made_up_core_url_is_not_available(client: TestClient, writer: H) -> None:
    entity = {"id": "urn:ngsi-ld:Building:1", "type": "Building", "@context": [FAKE_CORE]}
    reply = client.post(f"{BASE}/entities", json=entity, headers={**writer, "Content-Type": LD})
    problem(reply, "LdContextNotAvailable", 504)
    problem(
        client.get(f"{BASE}/entities/urn:ngsi-ld:Building:1", headers=writer),
        "ResourceNotFound",
        404,
    )
    # In a batch each entity fails on its own (207).
    batch = [entity, {**entity, "id": "urn:ngsi-ld:Building:2"}]
    reply = client.post(
        f"{BASE}/entityOperations/create", json=batch, headers={**writer, "Content-Type": LD}
    )
    assert reply.status_code == 207, reply.text
    assert reply.json()["success"] == []
    errors = reply.json()["errors"]
    assert [e["entityId"] for e in errors] == ["urn:ngsi-ld:Building:1", "urn:ngsi-ld:Building:2"]
    assert {e["error"]["type"] for e in errors} == {ERR + "LdContextNotAvailable"}
    assert {e["error"]["status"] for e in errors} == {504}
    # In a Link header too.
    reply = client.get(
        f"{BASE}/entities", params={"type": "Building"}, headers={**writer, "Link": link(FAKE_CORE)}
    )
    problem(reply, "LdContextNotAvailable", 504)
    # A subscription's jsonldContext naming it.
    subscription = {
        "id": "urn:ngsi-ld:Subscription:fake-core",
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}},
        "jsonldContext": FAKE_CORE,
    }
    problem(
        client.post(f"{BASE}/subscriptions", json=subscription, headers=writer),
        "LdContextNotAvailable",
        504,
    )


@pytest.mark.parametrize(
    "value",
    [
        42,
        True,
        ["https://example.org/ctx.jsonld", 7],
        [["https://example.org/ctx.jsonld"]],
        "relative.jsonld",
        {"A1": 5},
        {"A1": ["urn:a"]},
        {"": "urn:a"},
        {"@vocab": 3},
        {"@version": 1.0},
        {"@protected": "yes"},
        {"A1": {"@id": 5}},
        {"A1": {"@id": "urn:a", "@context": {"B1": False}}},
    ],
)
def test_check_context_refuses_invalid_syntax(value: object) -> None:
    with pytest.raises(InvalidContext):
        check_context(value)
    # The processor checks the syntax before looking up any URL.
    with pytest.raises(InvalidContext):
        ContextProcessor(lambda _: None).active(value)


def test_check_context_accepts_valid_contexts() -> None:
    check_context(core_document()["@context"])
    check_context(None)
    check_context(
        [
            "https://example.org/ctx.jsonld",
            "/ngsi-ld/v1/jsonldContexts/0123",
            None,
            {
                "@version": 1.1,
                "@protected": True,
                "@vocab": "https://v.example/",
                "sdm": SDM,
                "pm25": {"@id": "sdm:pm25", "@type": "@id", "@container": ["@set"]},
                "gone": None,
                "scoped": {"@id": "sdm:s", "@context": {"x": "sdm:x"}},
            },
        ]
    )


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
