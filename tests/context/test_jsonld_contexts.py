"""The @context store API, /jsonldContexts (clauses 5.13, 6.29, 6.30): add, list, serve, delete
and reload; hosted contexts, cached copies and the built-in core @context."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.context.conftest import BASE, CORE, LD, problem, station

H = dict[str, str]
CONTEXTS = f"{BASE}/jsonldContexts"
SDM = "https://smartdatamodels.org/dataModel.Environment/"
USER = {
    "@context": {"sdm": SDM, "AirQualityObserved": "sdm:AirQualityObserved", "pm25": "sdm:pm25"}
}
REMOTE = "https://smartdatamodels.org/context.jsonld"
DETAIL_KEYS = {"URL", "localId", "kind", "createdAt", "lastUsage", "numberOfHits", "expiresAt"}


def link(url: str) -> str:
    return f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def enc(context_id: str) -> str:
    """A contextId as one path segment (URLs with %2F)."""
    return quote(context_id, safe="")


def add(client: TestClient, writer: H, document: Any = USER, **params: str) -> str:
    reply = client.post(CONTEXTS, json=document, params=params, headers=writer)
    assert reply.status_code == 201, reply.text
    assert reply.content == b""
    location = reply.headers["location"]
    # The local relative path of the added @context (table 6.29.3.1-1).
    assert location.startswith(f"{CONTEXTS}/")
    assert "://" not in location
    return location


def details(client: TestClient, headers: H, context_id: str) -> dict[str, Any]:
    reply = client.get(f"{CONTEXTS}/{enc(context_id)}", params={"details": "true"}, headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    body: dict[str, Any] = reply.json()
    assert set(body) <= DETAIL_KEYS, body
    datetime.fromisoformat(body["createdAt"].replace("Z", "+00:00"))
    return body


def test_add_and_serve_a_hosted_context(client: TestClient, writer: H, reader: H) -> None:
    # Members beside @context are discarded (clause 5.13.2.3).
    location = add(client, writer, {**USER, "comment": "not part of the context"})
    local_id = location.rsplit("/", 1)[1]

    served = client.get(location, headers=reader)
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/json"
    assert served.json() == USER
    as_ld = client.get(location, headers={**reader, "Accept": LD})
    assert as_ld.headers["content-type"] == LD
    assert as_ld.json() == USER
    assert client.get(location, params={"details": "false"}, headers=reader).json() == USER

    info = details(client, reader, local_id)
    assert info["kind"] == "Hosted"
    assert info["localId"] == f"urn:ngsi-ld:jsonldContext:{local_id}"
    assert info["URL"].startswith("http")
    assert info["URL"].endswith(location)
    assert info["numberOfHits"] == 0
    assert "lastUsage" not in info
    # The localId of the listing names it as well.
    assert details(client, reader, info["localId"]) == info

    # Its URL works in a Link header, and every use counts as a hit, the second one (served
    # from the in-process cache of active contexts) too.
    created = client.post(
        f"{BASE}/entities", json=station(1), headers={**writer, "Link": link(info["URL"])}
    )
    assert created.status_code == 201, created.text
    entity = client.get(
        f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1",
        headers={**reader, "Link": link(info["URL"])},
    ).json()
    assert entity["type"] == "AirQualityObserved"
    assert "pm25" in entity
    used = details(client, reader, local_id)
    assert used["numberOfHits"] == 2
    assert "lastUsage" in used
    # The relative path of `Location` works as a body @context too: JSON-LD resolves it against
    # the request's URL, which is this broker.
    relative = {**station(2), "@context": location}
    created = client.post(f"{BASE}/entities", json=relative, headers={**writer, "Content-Type": LD})
    assert created.status_code == 201, created.text
    entity = client.get(
        f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:2",
        headers={**reader, "Link": link(info["URL"])},
    ).json()
    assert entity["type"] == "AirQualityObserved"
    assert details(client, reader, local_id)["numberOfHits"] == 4
    # Any other relative path names nothing this broker holds; a relative reference that is
    # not a path cannot be resolved at all.
    for value, kind, status in (
        ("/contexts/other.jsonld", "LdContextNotAvailable", 504),
        (f"{CONTEXTS}/unknown", "LdContextNotAvailable", 504),
        ("contexts/other.jsonld", "BadRequestData", 400),
    ):
        reply = client.post(
            f"{BASE}/entities",
            json={**station(3), "@context": value},
            headers={**writer, "Content-Type": LD},
        )
        problem(reply, kind, status)


def test_list_contexts(client: TestClient, writer: H, reader: H) -> None:
    assert client.get(CONTEXTS, headers=reader).json() == [CORE]
    first = add(client, writer)
    second = add(client, writer, {"@context": {"B1": "urn:ngsi-ld:attributes:B1"}})
    cached = add(client, writer, USER, url=REMOTE)

    urls = client.get(CONTEXTS, headers=reader).json()
    assert urls[0] == CORE
    assert urls[3] == REMOTE
    assert urls[1].endswith(first)
    assert urls[2].endswith(second)
    # The spec's resource URI is /jsonldContexts/ (trailing slash): the same list.
    assert client.get(f"{CONTEXTS}/", headers=reader).json() == urls

    listed = client.get(CONTEXTS, params={"details": "true"}, headers=reader).json()
    assert [item["URL"] for item in listed] == urls
    assert [item["kind"] for item in listed] == ["Cached", "Hosted", "Hosted", "Cached"]
    assert listed[0]["localId"] == "urn:ngsi-ld:jsonldContext:core"
    assert listed[3]["localId"].endswith(cached.rsplit("/", 1)[1])
    for item in listed:
        assert {"URL", "localId", "kind", "createdAt"} <= set(item) <= DETAIL_KEYS

    hosted = client.get(CONTEXTS, params={"kind": "Hosted"}, headers=reader).json()
    assert hosted == urls[1:3]
    only_cached = client.get(
        CONTEXTS, params={"kind": "Cached", "details": "true"}, headers=reader
    ).json()
    assert [item["URL"] for item in only_cached] == [CORE, REMOTE]
    assert client.get(CONTEXTS, params={"kind": "ImplicitlyCreated"}, headers=reader).json() == []

    for params in ({"kind": "other"}, {"kind": "hosted"}, {"details": "true", "kind": "other"}):
        problem(client.get(CONTEXTS, params=params, headers=reader), "BadRequestData", 400)
    problem(
        client.get(CONTEXTS, params={"details": "other"}, headers=reader), "BadRequestData", 400
    )


@pytest.mark.parametrize(
    ("body", "kind", "status"),
    [
        (b'{"@context": {"A1": "urn:a:1"', "InvalidRequest", 400),  # not JSON
        (b'{"A1": "urn:ngsi-ld:attributes:A1"}', "BadRequestData", 400),  # no @context
        (b'[{"@context": {}}]', "BadRequestData", 400),  # not an object
        (b'{"@context": 42}', "BadRequestData", 400),
        (b'{"@context": true}', "BadRequestData", 400),
        # The number makes it invalid, before the (unknown) URL is looked up.
        (b'{"@context": ["https://example.org/ctx.jsonld", 7]}', "BadRequestData", 400),
        (b'{"@context": [["https://example.org/ctx.jsonld"]]}', "BadRequestData", 400),
        (b'{"@context": {"A1": 5}}', "BadRequestData", 400),
        (b'{"@context": {"@version": 1.0, "A1": "urn:a:1"}}', "BadRequestData", 400),
        (b'{"@context": "relative/context.jsonld"}', "BadRequestData", 400),
        # A reference to a remote URL that is not stored: never fetched.
        (b'{"@context": ["https://nowhere.example/c.jsonld"]}', "LdContextNotAvailable", 504),
    ],
)
def test_add_refuses_bad_contexts(
    client: TestClient, writer: H, reader: H, body: bytes, kind: str, status: int
) -> None:
    reply = client.post(
        CONTEXTS, content=body, headers={**writer, "Content-Type": "application/json"}
    )
    problem(reply, kind, status)
    assert "location" not in reply.headers
    assert client.get(CONTEXTS, headers=reader).json() == [CORE]


def test_add_other_faults(client: TestClient, writer: H, reader: H) -> None:
    reply = client.post(CONTEXTS, content=b"{}", headers={**writer, "Content-Type": "text/plain"})
    problem(reply, "UnsupportedMediaType", 415)
    assert client.post(CONTEXTS, json=USER, headers=reader).status_code == 403
    for url in (
        "relative.jsonld",
        CORE,
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
    ):
        problem(
            client.post(CONTEXTS, json=USER, params={"url": url}, headers=writer),
            "BadRequestData",
            400,
        )
    add(client, writer, USER, url=REMOTE)
    problem(
        client.post(CONTEXTS, json=USER, params={"url": REMOTE}, headers=writer),
        "AlreadyExists",
        409,
    )
    # A hosted context may reference a stored one.
    add(client, writer, {"@context": [REMOTE, {"B1": "urn:ngsi-ld:attributes:B1"}]})


def test_cached_copies_are_described_not_served(client: TestClient, writer: H, reader: H) -> None:
    location = add(client, writer, USER, url=REMOTE)
    problem(client.get(location, headers=reader), "OperationNotSupported", 422)
    info = details(client, reader, location.rsplit("/", 1)[1])
    assert info["kind"] == "Cached"
    assert info["URL"] == REMOTE
    # A Cached entry can also be named by its original URL (table 6.30.2-1).
    assert details(client, reader, REMOTE) == info
    problem(client.get(f"{CONTEXTS}/{enc(REMOTE)}", headers=reader), "OperationNotSupported", 422)
    # The core @context is a Cached copy as well.
    core = details(client, reader, CORE)
    assert core["kind"] == "Cached"
    assert core["URL"] == CORE
    assert details(client, reader, "core") == core
    problem(client.get(f"{CONTEXTS}/{enc(CORE)}", headers=reader), "OperationNotSupported", 422)
    for unknown in ("wrong_id_context", "urn:ngsi-ld:jsonldContext:nothing", "https://x.example/c"):
        problem(
            client.get(f"{CONTEXTS}/{enc(unknown)}", params={"details": "true"}, headers=reader),
            "ResourceNotFound",
            404,
        )
        problem(client.get(f"{CONTEXTS}/{enc(unknown)}", headers=reader), "ResourceNotFound", 404)


def test_delete_contexts(client: TestClient, writer: H, reader: H) -> None:
    location = add(client, writer)
    url = details(client, reader, location.rsplit("/", 1)[1])["URL"]
    assert client.delete(location, headers=reader).status_code == 403
    # reload is only for Cached @contexts: a Hosted one stays.
    problem(
        client.delete(location, params={"reload": "true"}, headers=writer), "BadRequestData", 400
    )
    problem(
        client.delete(location, params={"reload": "xxx"}, headers=writer), "BadRequestData", 400
    )
    assert client.get(location, headers=reader).status_code == 200
    reply = client.delete(location, params={"reload": "false"}, headers=writer)
    assert reply.status_code == 204
    assert reply.content == b""
    problem(client.get(location, headers=reader), "ResourceNotFound", 404)
    problem(client.delete(location, headers=writer), "ResourceNotFound", 404)
    assert url not in client.get(CONTEXTS, headers=reader).json()
    # Its URL no longer resolves.
    reply = client.get(
        f"{BASE}/entities", params={"type": "T"}, headers={**reader, "Link": link(url)}
    )
    problem(reply, "LdContextNotAvailable", 504)

    # An unknown id is 404 whatever reload says (clause 5.13.5.4 checks the id first).
    for reload in (None, "false", "true"):
        params = {} if reload is None else {"reload": reload}
        problem(
            client.delete(f"{CONTEXTS}/wrong_id_context", params=params, headers=writer),
            "ResourceNotFound",
            404,
        )
    problem(client.delete(f"{CONTEXTS}/", headers=writer), "BadRequestData", 400)


def test_delete_and_reload_cached_copies(client: TestClient, writer: H, reader: H) -> None:
    add(client, writer, USER, url=REMOTE)
    # No host to fetch from (the default): not downloaded again, and kept (clause 5.13.5.4).
    reply = client.delete(f"{CONTEXTS}/{enc(REMOTE)}", params={"reload": "true"}, headers=writer)
    problem(reply, "LdContextNotAvailable", 504)
    assert details(client, reader, REMOTE)["kind"] == "Cached"
    assert client.delete(f"{CONTEXTS}/{enc(REMOTE)}", headers=writer).status_code == 204
    problem(
        client.get(f"{CONTEXTS}/{enc(REMOTE)}", params={"details": "true"}, headers=reader),
        "ResourceNotFound",
        404,
    )
    assert client.get(CONTEXTS, headers=reader).json() == [CORE]


def test_the_core_context_cannot_be_deleted_but_reloads(
    client: TestClient, writer: H, reader: H
) -> None:
    for context_id in (CORE, "core", "urn:ngsi-ld:jsonldContext:core"):
        for params in ({}, {"reload": "false"}):
            reply = client.delete(f"{CONTEXTS}/{enc(context_id)}", params=params, headers=writer)
            problem(reply, "BadRequestData", 400)
    before = details(client, reader, CORE)
    # reload=true reloads it from the copy shipped with Pujiang.
    reply = client.delete(f"{CONTEXTS}/{enc(CORE)}", params={"reload": "true"}, headers=writer)
    assert reply.status_code == 204, reply.text
    after = details(client, reader, CORE)
    assert after["kind"] == "Cached"
    assert after["createdAt"] >= before["createdAt"]
    assert client.get(CONTEXTS, headers=reader).json() == [CORE]
    created = client.post(f"{BASE}/entities", json=station(1), headers=writer)
    assert created.status_code == 201
    entity = client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1", headers=reader).json()
    assert entity["location"]["type"] == "GeoProperty"
