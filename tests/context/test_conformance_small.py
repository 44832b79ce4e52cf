"""Small NGSI-LD conformance items: percent-encoded `q`, query parameters of the temporal routes,
GeoJSON refused on the discovery routes, `numberOfHits` of stored @contexts, and an @context
in one item of an application/json batch."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pujiang.context.jsonld import ContextProcessor
from pujiang.context.models import ContextJsonld
from pujiang.context.ngsild_q import QSyntaxError, parse_q, parse_url_q
from pujiang.platform.deps import AppContext
from tests.context.conftest import BASE, problem, station

H = dict[str, str]
TEMPORAL = f"{BASE}/temporal/entities"
GEO = "application/geo+json"
CAFE = "urn:ngsi-ld:AirQualityObserved:1"


def twice(text: str) -> str:
    """`text` as a client that percent-encodes it twice puts it in a URL."""
    return quote(quote(text, safe=""), safe="")


def ids(reply: Any) -> list[str]:
    assert reply.status_code == 200, reply.text
    return [e["id"] for e in reply.json()]


@pytest.fixture
def cafe(client: TestClient, writer: H) -> H:
    """Station 1 named `café; bar`, labelled `50%25 off` (a literal percent-escape); station 2
    named `tea`. Both have an observed pm25, so the temporal API knows them too."""
    at = "2026-11-24T01:00:00Z"
    for n, name, label in ((1, "café; bar", "50%25 off"), (2, "tea", "full price")):
        entity = station(
            n,
            name={"type": "Property", "value": name, "observedAt": at},
            label={"type": "Property", "value": label, "observedAt": at},
        )
        entity["pm25"] = {"type": "Property", "value": 35, "observedAt": at}
        reply = client.post(f"{BASE}/entities", json=entity, headers=writer)
        assert reply.status_code == 201, reply.text
    return writer


# -- 1. percent-encoded q -------------------------------------------------------------------------


def test_parse_url_q_decodes_a_q_encoded_twice() -> None:
    assert parse_url_q(quote('name=="café; bar"', safe="")) == parse_q('name=="café; bar"')
    assert parse_url_q("pm25%3E30;name%3D%3D%22a%20b%22") == parse_q('pm25>30;name=="a b"')
    assert parse_url_q(quote("(a==1|b==2);c", safe="")) == parse_q("(a==1|b==2);c")


def test_parse_url_q_keeps_a_q_that_parses() -> None:
    # A percent-escape inside a quoted string, a pattern or a URI is literal once q parses.
    assert parse_url_q('label=="50%25 off"') == parse_q('label=="50%25 off"')
    assert str(parse_url_q('label=="50%25 off"')) == 'label=="50%25 off"'
    assert parse_url_q("ref==https://example.org/a%20b") == parse_q(
        "ref==https://example.org/a%20b"
    )
    assert parse_url_q('name~="^caf%C3"') == parse_q('name~="^caf%C3"')


@pytest.mark.parametrize(
    "text",
    [
        "pm25%3E%3E30",  # still no q once decoded: the error names the q as received
        "pm25%FF30",  # not UTF-8 once decoded
        "pm25>>30",  # no escape at all
    ],
)
def test_parse_url_q_reports_the_q_as_received(text: str) -> None:
    with pytest.raises(QSyntaxError) as caught:
        parse_url_q(text)
    assert caught.value.text == text


def test_q_percent_encoded_once_or_twice(client: TestClient, cafe: H) -> None:
    url = f"{BASE}/entities?type=AirQualityObserved&q="
    q = 'name=="café; bar"'
    # Once (the usual case): the HTTP layer decodes it.
    assert ids(client.get(url + quote(q, safe=""), headers=cafe)) == [CAFE]
    # Characters RFC 3986 allows in a query left as they are, the others encoded.
    assert ids(client.get(url + 'name=="caf%C3%A9;%20bar"', headers=cafe)) == [CAFE]
    # Twice: decoded once more because it does not parse after the first decoding.
    assert ids(client.get(url + twice(q), headers=cafe)) == [CAFE]
    assert ids(client.get(url + twice('pm25>30;name!="tea"'), headers=cafe)) == [CAFE]
    # A q that parses is literal: a value holding a percent-escape is found as it is stored.
    assert ids(client.get(url + quote('label=="50%25 off"', safe=""), headers=cafe)) == [CAFE]
    assert ids(client.get(url + quote('label=="50% off"', safe=""), headers=cafe)) == []
    # Still no q after a second decoding: 400 naming the q as it arrived.
    body = problem(client.get(url + twice("pm25>>30"), headers=cafe), "BadRequestData", 400)
    assert "pm25⟨here⟩%3E%3E30" in body["detail"]


def test_temporal_q_percent_encoded_twice(client: TestClient, cafe: H) -> None:
    url = f"{TEMPORAL}?type=AirQualityObserved&timerel=after&timeAt=2026-11-24T00:00:00Z&q="
    assert ids(client.get(url + twice('name=="café; bar"'), headers=cafe)) == [CAFE]
    assert ids(client.get(url + quote('name=="café; bar"', safe=""), headers=cafe)) == [CAFE]


def test_q_in_a_body_is_not_percent_decoded(client: TestClient, cafe: H) -> None:
    """A q in a JSON body was never part of a URL: it is parsed as it is."""
    encoded = quote('name=="café; bar"', safe="")
    for url in (f"{BASE}/entityOperations/query", f"{BASE}/temporal/entityOperations/query"):
        body = {"type": "Query", "entities": [{"type": "AirQualityObserved"}], "q": encoded}
        problem(client.post(url, json=body, headers=cafe), "BadRequestData", 400)
        body["q"] = 'name=="café; bar"'
        assert ids(client.post(url, json=body, headers=cafe)) == [CAFE]


# -- 2. query parameters of the temporal routes ---------------------------------------------------


def test_temporal_routes_refuse_undefined_parameters(client: TestClient, cafe: H) -> None:
    for reply in (
        client.get(f"{TEMPORAL}?type=AirQualityObserved&colour=red", headers=cafe),
        client.get(f"{TEMPORAL}/{CAFE}?colour=red", headers=cafe),
        client.post(
            f"{BASE}/temporal/entityOperations/query?colour=red",
            json={"type": "Query", "entities": [{"type": "AirQualityObserved"}]},
            headers=cafe,
        ),
    ):
        body = problem(reply, "InvalidRequest", 400)
        assert "colour" in body["detail"]
    # Parameters of the GET query are not URL parameters of the POST query (they go in the body).
    reply = client.post(
        f"{BASE}/temporal/entityOperations/query?timerel=after",
        json={"type": "Query", "entities": [{"type": "AirQualityObserved"}]},
        headers=cafe,
    )
    assert "timerel" in problem(reply, "InvalidRequest", 400)["detail"]
    # Checked before the body is read: a malformed body does not hide the unknown parameter.
    reply = client.post(
        f"{BASE}/temporal/entityOperations/query?colour=red",
        content=b"{not json",
        headers={**cafe, "Content-Type": "application/json"},
    )
    assert "colour" in problem(reply, "InvalidRequest", 400)["detail"]
    # Values are still checked as before.
    reply = client.get(f"{TEMPORAL}/{CAFE}?options=noOverwrite", headers=cafe)
    problem(reply, "InvalidRequest", 400)


WINDOW = "timerel=after&timeAt=2026-11-24T00:00:00Z"

QUERY_PARAMS = [
    "id=" + CAFE,
    "idPattern=.*:1$",
    "attrs=pm25",
    "pick=id,type,pm25",
    "omit=label",
    "q=pm25>0",
    "georel=near;maxDistance==5000&geometry=Point&coordinates=[121.471,31.23]&geoproperty=location",
    "scopeQ=/Shanghai",
    "timeproperty=observedAt",
    "lastN=3",
    "aggrMethods=max&aggrPeriodDuration=PT1H&options=aggregatedValues",
    "options=temporalValues",
    "format=temporalValues",
    "options=sysAttrs",
    "datasetId=@none",
    "limit=5&offset=0&count=true",
    "lang=en",
    "local=true",
    "via=urn:ngsi-ld:broker:1",
    "csf=p==1",
    "expandValues=name",
    "join=inline&joinLevel=1",
    "containedBy=urn:ngsi-ld:X:1",
    "entityMap=false",
]


@pytest.mark.parametrize("params", QUERY_PARAMS)
def test_temporal_query_accepts_its_parameters(client: TestClient, cafe: H, params: str) -> None:
    reply = client.get(f"{TEMPORAL}?type=AirQualityObserved&{WINDOW}&{params}", headers=cafe)
    assert reply.status_code == 200, reply.text


RETRIEVE_PARAMS = [
    "attrs=pm25",
    "pick=id,pm25",
    "omit=label",
    "timeproperty=observedAt",
    "lastN=3",
    "aggrMethods=max&aggrPeriodDuration=PT1H&options=aggregatedValues",
    "options=temporalValues,sysAttrs",
    "format=temporalValues",
    "datasetId=@none",
    "type=AirQualityObserved",
    "lang=en",
    "local=true",
    "via=urn:ngsi-ld:broker:1",
    "expandValues=name",
    "join=inline&joinLevel=1",
]


@pytest.mark.parametrize("params", RETRIEVE_PARAMS)
def test_temporal_retrieve_accepts_its_parameters(client: TestClient, cafe: H, params: str) -> None:
    reply = client.get(f"{TEMPORAL}/{CAFE}?{WINDOW}&{params}", headers=cafe)
    assert reply.status_code == 200, reply.text


def test_temporal_post_query_accepts_its_parameters(client: TestClient, cafe: H) -> None:
    body = {
        "type": "Query",
        "entities": [{"type": "AirQualityObserved"}],
        "temporalQ": {"timerel": "after", "timeAt": "2026-11-24T00:00:00Z"},
    }
    for params in ("limit=1&offset=1&count=true", "options=temporalValues", "format=concise"):
        url = f"{BASE}/temporal/entityOperations/query?{params}&local=true&via=x"
        reply = client.post(url, json=body, headers=cafe)
        assert reply.status_code == 200, reply.text


# -- 3. GeoJSON is for entities only --------------------------------------------------------------

DISCOVERY = ["/types", "/types?details=true", "/types/AirQualityObserved", "/attributes",
             "/attributes?details=true", "/attributes/pm25"]  # fmt: skip


@pytest.mark.parametrize("path", DISCOVERY)
def test_discovery_refuses_geojson(client: TestClient, cafe: H, path: str) -> None:
    body = problem(client.get(BASE + path, headers={**cafe, "Accept": GEO}), "NotAcceptable", 406)
    assert GEO in body["detail"]
    # GeoJSON preferred but JSON acceptable: JSON.
    reply = client.get(BASE + path, headers={**cafe, "Accept": f"{GEO}, application/json;q=0.5"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    reply = client.get(BASE + path, headers={**cafe, "Accept": "*/*"})
    assert reply.status_code == 200, reply.text


def test_discovery_406_before_404(client: TestClient, cafe: H) -> None:
    for path in ("/types/Unknown", "/attributes/unknown"):
        problem(client.get(BASE + path, headers={**cafe, "Accept": GEO}), "NotAcceptable", 406)
        problem(client.get(BASE + path, headers=cafe), "ResourceNotFound", 404)


def test_entities_still_answer_geojson(client: TestClient, cafe: H) -> None:
    reply = client.get(f"{BASE}/entities/{CAFE}", headers={**cafe, "Accept": GEO})
    assert reply.status_code == 200, reply.text
    assert reply.json()["type"] == "Feature"


# -- 4. numberOfHits counts every use -------------------------------------------------------------

SDM = "https://smartdatamodels.org/dataModel.Environment/"
USER = {"@context": {"sdm": SDM, "pm25": "sdm:pm25"}}


def link(url: str) -> str:
    return f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def stored_hits(context: AppContext, local_id: str) -> int:
    with context.db.session() as session:
        hits = session.scalar(select(ContextJsonld.hits).where(ContextJsonld.id == local_id))
    assert hits is not None
    return hits


def test_number_of_hits_counts_cached_uses(
    client: TestClient, context: AppContext, cafe: H, reader: H
) -> None:
    created = client.post(f"{BASE}/jsonldContexts", json=USER, headers=cafe)
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    local_id = location.rsplit("/", 1)[1]
    url = client.get(f"{location}?details=true", headers=reader).json()["URL"]
    for _ in range(5):  # the first builds the active context, the other four hit the cache
        reply = client.get(f"{BASE}/entities/{CAFE}", headers={**reader, "Link": link(url)})
        assert reply.status_code == 200, reply.text
        assert f"{SDM}pm25" not in reply.json()  # pm25 compacted with the stored context
    # Not written per request: the store still holds nothing ...
    assert stored_hits(context, local_id) == 0
    # ... until the counts are read, which writes them first.
    info = client.get(f"{location}?details=true", headers=reader).json()
    assert info["numberOfHits"] == 5
    assert datetime.fromisoformat(info["lastUsage"].replace("Z", "+00:00")) <= datetime.now(UTC)
    assert stored_hits(context, local_id) == 5
    reply = client.get(f"{BASE}/entities/{CAFE}", headers={**reader, "Link": link(url)})
    assert reply.status_code == 200
    listed = client.get(f"{BASE}/jsonldContexts?details=true", headers=reader).json()
    assert [e["numberOfHits"] for e in listed if e["URL"] == url] == [6]


def _resolver(store: dict[str, Any], calls: list[str]) -> Any:
    def resolve(url: str) -> Any:
        calls.append(url)
        return store.get(url)

    return resolve


def test_processor_counts_every_use_and_flushes_in_batches() -> None:
    inner, outer = "https://example.org/inner.jsonld", "https://example.org/outer.jsonld"
    store = {inner: {"a": "https://example.org/a"}, outer: [inner, {"b": "https://example.org/b"}]}
    calls: list[str] = []
    flushed: list[dict[str, tuple[int, datetime]]] = []
    processor = ContextProcessor(
        _resolver(store, calls), on_uses=flushed.append, flush_every=10, flush_seconds=3600
    )
    for _ in range(3):
        assert processor.active(outer).expand("a") == "https://example.org/a"
    assert calls == [outer, inner]  # built once, then served from the cache
    assert flushed == []  # nothing handed over yet
    processor.flush_uses()
    assert {url: uses for url, (uses, _) in flushed[0].items()} == {outer: 3, inner: 3}
    processor.flush_uses()
    assert len(flushed) == 1  # nothing new: no empty write
    # The core context is no stored context and never counts.
    processor.active(None)
    processor.active("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld")
    assert processor.take_uses() == {}
    # Ten uses since the last flush hand them over at once.
    for _ in range(5):
        processor.active(outer)
    assert len(flushed) == 2
    assert {url: uses for url, (uses, _) in flushed[1].items()} == {outer: 5, inner: 5}


def test_processor_flushes_after_a_while() -> None:
    url = "https://example.org/c.jsonld"
    flushed: list[dict[str, tuple[int, datetime]]] = []
    processor = ContextProcessor(
        _resolver({url: {"c": "https://example.org/c"}}, []),
        on_uses=flushed.append,
        flush_every=1000,
        flush_seconds=0,
    )
    processor.active(url)
    processor.active(url)
    assert [{u: n for u, (n, _) in f.items()} for f in flushed] == [{url: 1}, {url: 1}]


def test_processor_keeps_uses_when_the_write_fails() -> None:
    url = "https://example.org/c.jsonld"
    attempts: list[dict[str, tuple[int, datetime]]] = []

    def failing(uses: dict[str, tuple[int, datetime]]) -> None:
        attempts.append(uses)
        raise RuntimeError("database is locked")

    processor = ContextProcessor(
        _resolver({url: {"c": "https://example.org/c"}}, []),
        on_uses=failing,
        flush_every=2,
        flush_seconds=3600,
    )
    processor.active(url)
    processor.active(url)  # the flush fails, the request does not
    assert len(attempts) == 1
    processor.active(url)  # kept, but not retried at once
    assert len(attempts) == 1
    processor.on_uses = None
    processor.active(url)
    assert {u: n for u, (n, _) in processor.take_uses().items()} == {url: 4}


def test_an_at_context_in_one_json_batch_item_fails_that_entity_only(
    client: TestClient, cafe: H
) -> None:
    """application/json: an @context belongs in the Link header. In a batch the item that
    carries one fails on its own (207, BadRequestData); the others are created."""
    good = station(41)
    bad = {**station(42), "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"}
    reply = client.post(f"{BASE}/entityOperations/create", json=[good, bad], headers=cafe)
    assert reply.status_code == 207, reply.text
    result = reply.json()
    assert result["success"] == [good["id"]]
    (error,) = result["errors"]
    assert error["entityId"] == bad["id"]
    assert error["error"]["type"].endswith("BadRequestData")
    assert "must not contain @context" in error["error"]["detail"]
    assert client.get(f"{BASE}/entities/{bad['id']}", headers=cafe).status_code == 404
    # a single entity so sent is refused whole, as before
    reply = client.post(f"{BASE}/entities", json={**station(43), "@context": []}, headers=cafe)
    problem(reply, "BadRequestData", 400)
