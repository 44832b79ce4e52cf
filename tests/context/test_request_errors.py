"""Request validation of the entity API and its error types (ETSI GS CIM 009 v1.8):

- clause 6.3.20: a query parameter the operation does not define, or an `options` value it does
  not support, is 400 InvalidRequest (so is an unknown `format`, clause 6.3.7); a defined
  parameter with a malformed value stays BadRequestData;
- empty id path segments are 400 BadRequestData, not 404; IRIs with `%2F`-encoded slashes work
  as path parameters;
- PATCH takes application/merge-patch+json (clause 6.3.4);
- batch results: the same id twice in a delete, `noOverwrite` on batch update (207 bodies).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.context.conftest import BASE, create, problem, station

H = dict[str, str]
ONE = "urn:ngsi-ld:AirQualityObserved:1"
OPS = f"{BASE}/entityOperations"
MERGE_PATCH = "application/merge-patch+json"


def invalid_request(reply: Any) -> str:
    detail: str = problem(reply, "InvalidRequest", 400)["detail"]
    return detail


def stored(client: TestClient, headers: H, entity_id: str = ONE) -> dict[str, Any]:
    reply = client.get(f"{BASE}/entities/{quote(entity_id, safe=':')}", headers=headers)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


# -- options and format (clauses 6.3.7, 6.3.20) ---------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"format": "invalidFormat"},
        {"format": ""},
        {"options": "invalidOptions"},
        {"options": "keyValues,invalid"},
        {"format": "keyValues", "options": "invalid"},
        {"options": "noOverwrite"},  # an update option, not one of retrieval
    ],
)
def test_bad_options_or_format_on_reads(client: TestClient, writer: H, params: H) -> None:
    create(client, writer, station(1))
    reply = client.get(f"{BASE}/entities/{ONE}", params=params, headers=writer)
    invalid_request(reply)
    # checked before the entity is looked up
    reply = client.get(f"{BASE}/entities/urn:ngsi-ld:X:404", params=params, headers=writer)
    invalid_request(reply)
    reply = client.get(
        f"{BASE}/entities", params={"type": "AirQualityObserved", **params}, headers=writer
    )
    invalid_request(reply)
    reply = client.post(
        f"{OPS}/query",
        params=params,
        json={"type": "Query", "entities": [{"type": "AirQualityObserved"}]},
        headers=writer,
    )
    invalid_request(reply)


def test_known_options_and_formats_still_work(client: TestClient, writer: H) -> None:
    create(client, writer, station(1))
    for params in (
        {"options": "keyValues"},
        {"options": "simplified,sysAttrs"},
        {"options": "concise"},
        {"options": "normalized"},
        {"format": "simplified"},
        {"format": "keyValues"},
        {"format": "concise", "options": "sysAttrs"},
        {"options": ""},
    ):
        reply = client.get(f"{BASE}/entities/{ONE}", params=params, headers=writer)
        assert reply.status_code == 200, (params, reply.text)
    assert stored(client, writer)["pm25"]["value"] == 35


def test_bad_options_on_writes(client: TestClient, writer: H) -> None:
    create(client, writer, station(1))
    reply = client.post(
        f"{BASE}/entities/{ONE}/attrs",
        params={"options": "replace"},
        json={"no2": 5},
        headers=writer,
    )
    assert "replace" in invalid_request(reply)
    assert "no2" not in stored(client, writer)
    upd = {"id": ONE, "pm25": 1}
    invalid_request(
        client.post(f"{OPS}/update", params={"options": "update"}, json=[upd], headers=writer)
    )
    # upsert defines replace or update only: noOverwrite belongs to batch update
    for bad in ("noOverwrite", "update,noOverwrite", "update,replace", "bogus"):
        reply = client.post(
            f"{OPS}/upsert", params={"options": bad}, json=[station(1, pm25=2)], headers=writer
        )
        invalid_request(reply)
    assert stored(client, writer)["pm25"]["value"] == 35


# -- query parameters the operation does not define (clause 6.3.20) -------------------------------


def test_unknown_parameter_on_create_is_invalid_request(client: TestClient, writer: H) -> None:
    reply = client.post(
        f"{BASE}/entities",
        params={"invalidParams": "invalidValue"},
        json=station(1),
        headers=writer,
    )
    assert "invalidParams" in invalid_request(reply)
    problem(client.get(f"{BASE}/entities/{ONE}", headers=writer), "ResourceNotFound", 404)


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/entities", {"invalidParams": "x", "type": "AirQualityObserved"}),
        ("GET", f"/entities/{ONE}", {"q": "pm25>1"}),  # a query parameter, not a retrieval one
        ("GET", f"/entities/{ONE}", {"limit": "5"}),
        ("DELETE", f"/entities/{ONE}", {"attrs": "pm25"}),
        ("PATCH", f"/entities/{ONE}/attrs", {"options": "noOverwrite"}),
        ("DELETE", f"/entities/{ONE}/attrs/pm25", {"invalidParams": "x"}),
        ("GET", "/types", {"invalidParams": "x"}),
        ("GET", "/types/AirQualityObserved", {"details": "true"}),
        ("GET", "/attributes", {"limit": "5"}),
        ("GET", "/attributes/pm25", {"details": "true"}),
        ("POST", "/entityOperations/delete", {"options": "x"}),
        ("POST", "/entityOperations/query", {"type": "AirQualityObserved"}),
    ],
)
def test_unknown_parameters(
    client: TestClient, writer: H, method: str, path: str, params: H
) -> None:
    create(client, writer, station(1))
    body: Any = None
    if path.endswith("/attrs"):
        body = {"pm25": 1}
    elif path.endswith("/delete"):
        body = [ONE]
    elif path.endswith("/query"):
        body = {"type": "Query", "entities": [{"type": "AirQualityObserved"}]}
    reply = client.request(method, BASE + path, params=params, json=body, headers=writer)
    detail = invalid_request(reply)
    assert any(name in detail for name in params)  # names the offending parameter
    assert stored(client, writer)["pm25"]["value"] == 35  # nothing was changed or deleted


def test_spec_parameters_we_do_not_forward_are_accepted(client: TestClient, writer: H) -> None:
    create(client, writer, station(1), params={"local": "true"})
    reply = client.get(
        f"{BASE}/entities", params={"type": "AirQualityObserved", "local": "true"}, headers=writer
    )
    assert [e["id"] for e in reply.json()] == [ONE]
    reply = client.get(f"{BASE}/entities/{ONE}", params={"local": "true"}, headers=writer)
    assert reply.status_code == 200, reply.text
    reply = client.get(f"{BASE}/types", params={"local": "true", "details": "true"}, headers=writer)
    assert reply.status_code == 200, reply.text


def test_malformed_values_of_defined_parameters_stay_bad_request_data(
    client: TestClient, writer: H
) -> None:
    create(client, writer, station(1))
    for params in ({"limit": "x"}, {"limit": "-1"}, {"count": "maybe"}, {"idPattern": "(["}):
        reply = client.get(
            f"{BASE}/entities", params={"type": "AirQualityObserved", **params}, headers=writer
        )
        problem(reply, "BadRequestData", 400)
    reply = client.get(f"{BASE}/types", params={"details": "maybe"}, headers=writer)
    problem(reply, "BadRequestData", 400)


# -- empty and IRI path segments ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/entities/"),
        ("PATCH", "/entities/"),
        ("DELETE", "/entities/"),
        ("POST", "/entities//attrs"),
        ("POST", "/entities//attrs/"),
        ("PATCH", "/entities//attrs/"),
        ("PATCH", "/entities//attrs/pm25"),
        ("PUT", "/entities//attrs/pm25"),
        ("DELETE", "/entities//attrs/pm25"),
        ("GET", "/entities//"),
        ("PATCH", f"/entities/{ONE}/attrs//"),
        ("GET", "/entities/https://example.org/stations/1"),  # a bare IRI: its // is empty
    ],
)
def test_empty_path_segments_are_bad_request_data(
    client: TestClient, writer: H, method: str, path: str
) -> None:
    create(client, writer, station(1))
    body = None if method in ("GET", "DELETE") else {"pm25": {"type": "Property", "value": 1}}
    reply = client.request(method, BASE + path, json=body, headers=writer)
    detail = problem(reply, "BadRequestData", 400)["detail"]
    assert "%2F" in detail
    assert stored(client, writer)["pm25"]["value"] == 35


def test_trailing_slashes_still_reach_the_collections(client: TestClient, writer: H) -> None:
    reply = client.post(f"{BASE}/entities/", json=station(1), headers=writer)
    assert reply.status_code == 201, reply.text
    reply = client.get(f"{BASE}/entities/", params={"type": "AirQualityObserved"}, headers=writer)
    assert [e["id"] for e in reply.json()] == [ONE]
    reply = client.post(f"{BASE}/entities/{ONE}/attrs/", json={"no2": 5}, headers=writer)
    assert reply.status_code == 204, reply.text
    assert stored(client, writer)["no2"]["value"] == 5
    # the attribute list has no DELETE: 405, and the entity stays as it was
    reply = client.delete(f"{BASE}/entities/{ONE}/attrs/", headers=writer)
    assert reply.status_code == 405
    assert stored(client, writer)["no2"]["value"] == 5


IRI_ID = "https://example.org/stations/黄浦/1"
IRI_TYPE = "https://example.org/ns/Station"
IRI_ATTR = "https://example.org/ns/pm10"


def encoded(iri: str) -> str:
    return quote(iri, safe="")  # ':' and '/' as %3A and %2F


def test_iris_with_encoded_slashes_as_path_parameters(client: TestClient, writer: H) -> None:
    entity = {"id": IRI_ID, "type": IRI_TYPE, IRI_ATTR: {"type": "Property", "value": 40}}
    created = create(client, writer, entity)
    base = f"{BASE}/entities/{encoded(IRI_ID)}"
    location = created.headers["location"]  # the id as one path segment: it leads back
    assert location.startswith(f"{BASE}/entities/https:%2F%2Fexample.org%2Fstations%2F")
    assert client.get(location, headers=writer).json()["id"] == IRI_ID
    assert client.get(base, headers=writer).json()[IRI_ATTR]["value"] == 40
    reply = client.post(f"{base}/attrs/", json={"no2": 3}, headers=writer)  # trailing slash
    assert reply.status_code == 204, reply.text
    reply = client.patch(f"{base}/attrs/{encoded(IRI_ATTR)}", json={"value": 41}, headers=writer)
    assert reply.status_code == 204, reply.text
    assert client.get(base, headers=writer).json()[IRI_ATTR]["value"] == 41
    reply = client.get(f"{BASE}/types/{encoded(IRI_TYPE)}", headers=writer)
    assert reply.status_code == 200, reply.text
    assert reply.json()["entityCount"] == 1
    reply = client.get(f"{BASE}/attributes/{encoded(IRI_ATTR)}", headers=writer)
    assert reply.status_code == 200, reply.text
    assert reply.json()["attributeCount"] == 1
    reply = client.delete(f"{base}/attrs/{encoded(IRI_ATTR)}", headers=writer)
    assert reply.status_code == 204, reply.text
    assert IRI_ATTR not in client.get(base, headers=writer).json()
    assert client.delete(f"{base}/attrs/", headers=writer).status_code == 405
    assert client.get(base, headers=writer).json()["no2"]["value"] == 3
    problem(
        client.get(f"{BASE}/types/{encoded(IRI_TYPE + 'X')}", headers=writer),
        "ResourceNotFound",
        404,
    )
    assert client.delete(base, headers=writer).status_code == 204
    problem(client.get(base, headers=writer), "ResourceNotFound", 404)


# -- application/merge-patch+json on PATCH (clause 6.3.4) -----------------------------------------


def test_merge_patch_json_on_patch(client: TestClient, writer: H) -> None:
    create(client, writer, station(1))
    mp = {**writer, "Content-Type": MERGE_PATCH}
    reply = client.patch(
        f"{BASE}/entities/{ONE}",
        content=b'{"pm25": {"type": "Property", "value": 50}}',
        headers=mp,
    )
    assert reply.status_code == 204, reply.text
    assert stored(client, writer)["pm25"]["value"] == 50
    reply = client.patch(f"{BASE}/entities/{ONE}/attrs", content=b'{"pm25": 51}', headers=mp)
    assert reply.status_code == 204, reply.text
    assert stored(client, writer)["pm25"]["value"] == 51
    reply = client.patch(f"{BASE}/entities/{ONE}/attrs/pm25", content=b'{"value": 52}', headers=mp)
    assert reply.status_code == 204, reply.text
    assert stored(client, writer)["pm25"]["value"] == 52
    # not for POST or PUT
    reply = client.post(f"{BASE}/entities/{ONE}/attrs", content=b'{"no2": 1}', headers=mp)
    problem(reply, "UnsupportedMediaType", 415)
    reply = client.post(f"{BASE}/entities", content=b'{"id": "urn:x:2", "type": "T"}', headers=mp)
    problem(reply, "UnsupportedMediaType", 415)
    # the @context comes from the Link header, as for application/json
    reply = client.patch(
        f"{BASE}/entities/{ONE}",
        content=b'{"pm25": 53, "@context": "https://example.org/c.jsonld"}',
        headers=mp,
    )
    problem(reply, "BadRequestData", 400)
    assert stored(client, writer)["pm25"]["value"] == 52


# -- batch results ---------------------------------------------------------------------------------


def test_batch_delete_same_id_twice(client: TestClient, writer: H) -> None:
    create(client, writer, station(1))
    create(client, writer, station(2))
    two = "urn:ngsi-ld:AirQualityObserved:2"
    reply = client.post(f"{OPS}/delete", json=[ONE, ONE, two], headers=writer)
    assert reply.status_code == 207, reply.text
    body = reply.json()
    assert body["success"] == [ONE, two]
    assert [e["entityId"] for e in body["errors"]] == [ONE]
    assert body["errors"][0]["error"]["type"].endswith("/ResourceNotFound")
    problem(client.get(f"{BASE}/entities/{ONE}", headers=writer), "ResourceNotFound", 404)
    problem(client.get(f"{BASE}/entities/{two}", headers=writer), "ResourceNotFound", 404)
    # a missing id twice: two errors
    create(client, writer, station(3))
    gone = "urn:ngsi-ld:AirQualityObserved:404"
    reply = client.post(f"{OPS}/delete", json=[gone, gone], headers=writer)
    assert reply.status_code == 207
    assert reply.json()["success"] == []
    assert [e["entityId"] for e in reply.json()["errors"]] == [gone, gone]


def test_batch_update_no_overwrite(client: TestClient, writer: H) -> None:
    create(client, writer, station(1))
    create(client, writer, station(2))
    two = "urn:ngsi-ld:AirQualityObserved:2"
    # only new attributes: every entity updated, 204
    reply = client.post(
        f"{OPS}/update",
        params={"options": "noOverwrite"},
        json=[{"id": ONE, "no2": 5}, {"id": two, "no2": 6}],
        headers=writer,
    )
    assert reply.status_code == 204, reply.text
    # existing attributes are kept and reported: 207, the entity in errors naming them
    reply = client.post(
        f"{OPS}/update",
        params={"options": "noOverwrite"},
        json=[{"id": ONE, "pm25": 99, "o3": 7}, {"id": two, "so2": 8}],
        headers=writer,
    )
    assert reply.status_code == 207, reply.text
    body = reply.json()
    assert body["success"] == [two]
    (error,) = body["errors"]
    assert error["entityId"] == ONE
    assert error["error"]["type"].endswith("/BadRequestData")
    assert "pm25" in error["error"]["detail"]
    one = stored(client, writer)
    assert one["pm25"]["value"] == 35  # not overwritten
    assert one["o3"]["value"] == 7  # the new attribute was added
    assert stored(client, writer, two)["so2"]["value"] == 8
    # without noOverwrite the same batch overwrites: 204
    reply = client.post(f"{OPS}/update", json=[{"id": ONE, "pm25": 99}], headers=writer)
    assert reply.status_code == 204, reply.text
    assert stored(client, writer)["pm25"]["value"] == 99
