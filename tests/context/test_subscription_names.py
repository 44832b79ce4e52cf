"""A subscription read back shows its names as the reading request's @context names them
(clause 5.8.2), whichever @context it was written with; `q` too, when its names have terms."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.context.conftest import BASE, LD

H = dict[str, str]
CONTEXTS = f"{BASE}/jsonldContexts"
SUBS = f"{BASE}/subscriptions"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
AIR = "https://example.org/air#"


def hosted(client: TestClient, writer: H, terms: dict[str, str]) -> str:
    """The URL of a new Hosted @context mapping these short names onto AIR's IRIs."""
    document = {"@context": {name: AIR + iri for name, iri in terms.items()}}
    reply = client.post(CONTEXTS, json=document, headers=writer)
    assert reply.status_code == 201, reply.text
    listed = client.get(CONTEXTS, params={"kind": "Hosted"}, headers=writer).json()
    url: str = next(u for u in listed if u.endswith(reply.headers["location"]))
    return url


def link(headers: H, url: str) -> H:
    return {**headers, "Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"'}


def read(client: TestClient, headers: H, sub_id: str) -> Any:
    reply = client.get(f"{SUBS}/{sub_id}", headers=headers)
    assert reply.status_code == 200, reply.text
    return reply


def test_names_follow_the_reading_context(client: TestClient, writer: H) -> None:
    english = hosted(
        client, writer, {"Station": "Station", "Car": "Car", "pm": "pm25", "where": "place"}
    )
    chinese = hosted(
        client, writer, {"监测站": "Station", "车辆": "Car", "细颗粒物": "pm25", "位置": "place"}
    )
    doc = {
        "id": "urn:ngsi-ld:Subscription:names",
        "type": "Subscription",
        "entities": [{"type": "(Station;Car),Other", "idPattern": ".*"}],
        "watchedAttributes": ["pm"],
        "q": 'pm>50;(where.observedAt>=2026-01-01T00:00:00Z|Other.sub=="细")',
        "geoQ": {
            "georel": "near;maxDistance==500",
            "geometry": "Point",
            "coordinates": [121.47, 31.23],
            "geoproperty": "where",
        },
        "notification": {"attributes": ["pm"], "endpoint": {"uri": "http://127.0.0.1:9/n"}},
    }
    made = client.post(SUBS, json=doc, headers=link(writer, english))
    assert made.status_code == 201, made.text

    # with the @context it was written with: as written, and the Link names that @context
    same = read(client, link(writer, english), "urn:ngsi-ld:Subscription:names")
    assert english in same.headers["link"]
    body = same.json()
    assert body["entities"] == [{"type": "(Station;Car),Other", "idPattern": ".*"}]
    assert (body["watchedAttributes"], body["notification"]["attributes"]) == (["pm"], ["pm"])
    assert body["geoQ"]["geoproperty"] == "where"

    # with another: its names (a term neither defines stays in the default vocabulary)
    other = read(client, link(writer, chinese), "urn:ngsi-ld:Subscription:names")
    assert chinese in other.headers["link"]
    body = other.json()
    assert body["entities"] == [{"type": "(监测站;车辆),Other", "idPattern": ".*"}]
    assert body["watchedAttributes"] == ["细颗粒物"]
    assert body["notification"]["attributes"] == ["细颗粒物"]
    assert body["geoQ"]["geoproperty"] == "位置"
    assert body["q"] == '细颗粒物>50;(位置.observedAt>=2026-01-01T00:00:00Z|Other.sub=="细")'
    assert body["jsonldContext"] == english  # what notifications are compacted with

    # with none: the core context, so full IRIs; in JSON-LD the @context says so
    core = read(client, {**writer, "Accept": LD}, "urn:ngsi-ld:Subscription:names").json()
    assert core["@context"] == CORE
    assert core["entities"][0]["type"] == f"({AIR}Station;{AIR}Car),Other"
    assert core["watchedAttributes"] == [f"{AIR}pm25"]
    assert core["q"] == doc["q"]  # as written: the query language has no syntax for full IRIs

    # the list reads every subscription the same way
    [listed] = client.get(SUBS, headers=link(writer, chinese)).json()
    assert listed["watchedAttributes"] == ["细颗粒物"]


def test_an_unknown_reading_context_is_504_not_the_names_as_written(
    client: TestClient, writer: H
) -> None:
    doc = {
        "id": "urn:ngsi-ld:Subscription:unknown-ctx",
        "type": "Subscription",
        "entities": [{"type": "Station"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}},
    }
    assert client.post(SUBS, json=doc, headers=writer).status_code == 201
    reply = client.get(
        f"{SUBS}/urn:ngsi-ld:Subscription:unknown-ctx",
        headers=link(writer, "https://example.org/nowhere.jsonld"),
    )
    assert reply.status_code == 504, reply.text
    assert reply.json()["type"].endswith("LdContextNotAvailable")
