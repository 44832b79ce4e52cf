"""Entity projection with `pick` and `omit` (ETSI GS CIM 009 v1.8, clause 4.21; clauses
5.7.1-5.7.4 and the Query data type, clause 5.2.23): the parser, and the parameters on
/entities, /entityOperations/query and the temporal API in every representation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pujiang.context.ngsild_projection import (
    Projection,
    ProjectionError,
    ProjectionSyntaxError,
    Term,
    parse_projection,
    parse_terms,
)
from pujiang.settings import Settings

from .conftest import BASE, LD, VOCAB, create, problem

ENTITIES = f"{BASE}/entities"
TEMPORAL = f"{BASE}/temporal/entities"
TOWER = "urn:ngsi-ld:Building:eiffel"
PISA = "urn:ngsi-ld:Building:pisa"
CAR = "urn:ngsi-ld:Vehicle:A"
BUS = "urn:ngsi-ld:Bus:C"


# -------------------------------------------------------------------------------------------
# the language (pure)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("temperature", ["temperature"]),
        ("temperature,humidity", ["temperature", "humidity"]),
        ("temperature|humidity", ["temperature", "humidity"]),
        (" id , name ", ["id", "name"]),
        ("schema:name", ["schema:name"]),
        ("https://example.org/air/pm25", ["https://example.org/air/pm25"]),
        ("名称,pm2_5", ["名称", "pm2_5"]),
    ],
)
def test_parse_terms(text: str, names: list[str]) -> None:
    assert [t.name for t in parse_terms(text)] == names
    assert all(t.linked == () for t in parse_terms(text))


def test_parse_linked_terms() -> None:
    # clause 4.21 example 3, and a nested selection
    assert parse_terms("observation{temperature,humidity}") == (
        Term("observation", (Term("temperature"), Term("humidity"))),
    )
    assert parse_terms("id,locatedAt{owner{name}|id}") == (
        Term("id"),
        Term("locatedAt", (Term("owner", (Term("name"),)), Term("id"))),
    )


@pytest.mark.parametrize(
    ("text", "position", "reason"),
    [
        ("", 0, "it is empty"),
        ("   ", 0, "it is empty"),
        ("id;name", 2, "';' is not allowed in a member name; separate names with ','"),
        ("id,,name", 3, "expected a member name after ',', found ','"),
        (",id", 0, "expected a member name, found ','"),
        ("id,", 3, "expected a member name after ',', found the end of the text"),
        ("id|", 3, "expected a member name after '|'"),
        ("id,locatedAt{name", 17, "the '{' at position 12 is not closed"),
        ("id,locatedAt{{name}", 13, "expected a member name after '{', found '{'"),
        ("id,locatedAt{,name}", 13, "expected a member name after '{', found ','"),
        ("id,locatedAt{}", 13, "locatedAt{} is empty"),
        ("id}", 2, "'}' without a matching '{'"),
        ("1st", 0, "must start with a letter, found '1'"),
        ("@id", 0, "must start with a letter, found '@'"),
        ("na me", 3, "expected ',' or '|' after a name, found 'm'"),
        ("name==1", 4, "'=' is not allowed"),
    ],
)
def test_syntax_errors(text: str, position: int, reason: str) -> None:
    with pytest.raises(ProjectionSyntaxError) as caught:
        parse_terms(text, "omit")
    assert caught.value.position == position
    assert reason in caught.value.reason
    message = str(caught.value)
    assert message.startswith("omit 无效：")
    assert "/ invalid omit: " in message
    assert "⟨here⟩" in message


def test_nesting_and_length_limits() -> None:
    with pytest.raises(ProjectionSyntaxError, match="more than 64 nested"):
        parse_terms("a{" * 70 + "b" + "}" * 70)
    with pytest.raises(ProjectionError, match="longer than 16384"):
        parse_terms("a," * 9000 + "a")


def test_parse_projection() -> None:
    assert parse_projection(None, None) == Projection()
    assert parse_projection(None, None).is_identity
    both = parse_projection("id,name", "type")
    assert both == Projection(frozenset({"id", "name"}), frozenset({"type"}))
    assert both.keeps("id")
    assert both.keeps("name")
    assert not both.keeps("type")
    assert not both.keeps("category")
    # the Query data type's arrays (clause 5.2.23), each a projection text
    assert parse_projection(["name", "id|type"], None).pick == {"name", "id", "type"}
    assert parse_projection(None, ["name"]).keeps("id")
    assert not parse_projection(None, ["name"]).keeps("name")


@pytest.mark.parametrize(
    ("pick", "omit", "attrs", "message"),
    [
        ("name", "name", False, "name cannot be both picked and omitted"),
        ("id,name", "type|name", False, "name cannot be both picked and omitted"),
        ("name", None, True, "attrs cannot be combined with pick"),
        (None, "name", True, "attrs cannot be combined with omit"),
        ("owner{name}", None, False, "asks for Linked Entity retrieval"),
        (None, "locatedAt{id,name}", False, "asks for Linked Entity retrieval"),
        ([], None, False, "pick must be a string or a non-empty array of strings"),
        (None, [1], False, "omit must be a string or a non-empty array of strings"),
        (None, {"a": 1}, False, "omit must be a string or a non-empty array"),
        (["name", ""], None, False, "invalid pick: it is empty"),
    ],
)
def test_bad_projections(pick: Any, omit: Any, attrs: bool, message: str) -> None:
    with pytest.raises(ProjectionError, match=message):
        parse_projection(pick, omit, attrs_given=attrs)


def test_projection_names() -> None:
    projection = parse_projection("id,name,createdAt", "speed").map_names(lambda n: VOCAB + n)
    assert projection.pick == {"id", VOCAB + "name", "createdAt"}
    assert projection.omit == {VOCAB + "speed"}
    assert projection.attributes() == ([VOCAB + "name"], [VOCAB + "speed"])
    assert Projection().attributes() == (None, [])
    assert parse_projection("id,type", None).attributes() == ([], [])


# -------------------------------------------------------------------------------------------
# /entities


def building(entity_id: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": entity_id,
        "type": "Building",
        "name": {"type": "Property", "value": name},
        "category": {"type": "Property", "value": ["commercial"]},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [2.29, 48.8]},
        },
        **extra,
    }


@pytest.fixture
def towers(client: TestClient, writer: dict[str, str]) -> dict[str, str]:
    create(client, writer, building(TOWER, "Eiffel Tower", scope="/Paris"))
    create(client, writer, building(PISA, "Pisa Tower"))
    return writer


def get(client: TestClient, headers: dict[str, str], url: str, **params: Any) -> Any:
    reply = client.get(url, params=params, headers=headers)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_retrieve_with_pick_and_omit(client: TestClient, towers: dict[str, str]) -> None:
    url = f"{ENTITIES}/{TOWER}"
    assert get(client, towers, url, pick="name") == {
        "name": {"type": "Property", "value": "Eiffel Tower"}
    }
    assert get(client, towers, url, pick="id") == {"id": TOWER}
    assert set(get(client, towers, url, pick="id,name")) == {"id", "name"}
    assert set(get(client, towers, url, pick="id|name")) == {"id", "name"}
    assert set(get(client, towers, url, omit="id")) == {
        "type",
        "scope",
        "name",
        "category",
        "location",
    }
    assert set(get(client, towers, url, omit="type,name")) == {
        "id",
        "scope",
        "category",
        "location",
    }
    assert get(client, towers, url, pick="scope") == {"scope": "/Paris"}
    assert "scope" not in get(client, towers, url, omit="scope")
    # pick and omit together (naming different members): omit takes away nothing picked
    assert set(get(client, towers, url, pick="id,name", omit="type")) == {"id", "name"}
    # an attribute named by its IRI is the same attribute
    assert set(get(client, towers, url, pick=f"id,{VOCAB}name")) == {"id", "name"}


def test_retrieve_projection_in_every_representation(
    client: TestClient, towers: dict[str, str]
) -> None:
    url = f"{ENTITIES}/{TOWER}"
    assert get(client, towers, url, pick="id,name", options="keyValues") == {
        "id": TOWER,
        "name": "Eiffel Tower",
    }
    assert get(client, towers, url, omit="id,type,scope,location", format="concise") == {
        "name": "Eiffel Tower",
        "category": ["commercial"],
    }
    with_sys = get(client, towers, url, pick="id,name", options="sysAttrs")
    assert set(with_sys) == {"id", "name"}  # the entity's createdAt is a member, not picked
    assert "createdAt" in with_sys["name"]  # the attribute keeps its own
    assert set(get(client, towers, url, pick="id,createdAt", options="sysAttrs")) == {
        "id",
        "createdAt",
    }
    assert "modifiedAt" not in get(client, towers, url, omit="modifiedAt", options="sysAttrs")
    reply = client.get(url, params={"pick": "name"}, headers={**towers, "Accept": LD})
    assert reply.status_code == 200, reply.text
    assert set(reply.json()) == {"@context", "name"}


def test_retrieve_with_nothing_left_is_not_found(
    client: TestClient, towers: dict[str, str]
) -> None:
    url = f"{ENTITIES}/{TOWER}"
    problem(client.get(url, params={"pick": "unknown"}, headers=towers), "ResourceNotFound", 404)
    everything = "id,type,scope,name,category,location"
    problem(client.get(url, params={"omit": everything}, headers=towers), "ResourceNotFound", 404)
    # a missing entity stays a plain 404 and a bad pick a 400, whatever else
    problem(
        client.get(f"{ENTITIES}/urn:ngsi-ld:Building:none", params={"pick": "id"}, headers=towers),
        "ResourceNotFound",
        404,
    )


BAD = [
    ({"pick": "name", "omit": "name"}, "cannot be both picked and omitted"),
    ({"pick": "name", "attrs": "category"}, "attrs cannot be combined with pick"),
    ({"omit": "name", "attrs": "category"}, "attrs cannot be combined with omit"),
    ({"pick": "id;name"}, "';' is not allowed"),
    ({"pick": "id,locatedAt{name"}, "is not closed"),
    ({"pick": "id,locatedAt{{name}"}, "after '{'"),
    ({"pick": "id,,name"}, "after ','"),
    ({"pick": "id,locatedAt{,name}"}, "after '{'"),
    ({"pick": "id,locatedAt{}"}, "is empty"),
    ({"pick": "owner{name}"}, "Linked Entity retrieval"),
    ({"omit": ""}, "invalid omit: it is empty"),
]


@pytest.mark.parametrize(("params", "message"), BAD)
def test_bad_pick_and_omit_on_entities(
    client: TestClient, towers: dict[str, str], params: dict[str, str], message: str
) -> None:
    body = problem(
        client.get(f"{ENTITIES}/{TOWER}", params=params, headers=towers), "BadRequestData", 400
    )
    assert message in body["detail"]
    assert body["title"]
    body = problem(
        client.get(ENTITIES, params={"type": "Building", **params}, headers=towers),
        "BadRequestData",
        400,
    )
    assert message in body["detail"]


def test_query_with_pick_and_omit(client: TestClient, towers: dict[str, str]) -> None:
    picked = get(client, towers, ENTITIES, type="Building", pick="name", count="true")
    assert sorted(picked, key=lambda e: e["name"]["value"]) == [
        {"name": {"type": "Property", "value": "Eiffel Tower"}},
        {"name": {"type": "Property", "value": "Pisa Tower"}},
    ]
    assert get(client, towers, ENTITIES, type="Building", pick="id", options="keyValues") == [
        {"id": TOWER},
        {"id": PISA},
    ]
    omitted = get(client, towers, ENTITIES, type="Building", omit="type,name,location")
    assert omitted == [
        {"id": TOWER, "scope": "/Paris", "category": {"type": "Property", "value": ["commercial"]}},
        {"id": PISA, "category": {"type": "Property", "value": ["commercial"]}},
    ]
    # the projection does not select: an entity lacking the picked attribute is an empty object
    create(client, towers, {"id": "urn:ngsi-ld:Building:plain", "type": "Building"})
    reply = client.get(ENTITIES, params={"type": "Building", "pick": "name"}, headers=towers)
    assert reply.json()[2] == {}
    reply = client.get(
        ENTITIES, params={"type": "Building", "pick": "name", "count": "true"}, headers=towers
    )
    assert reply.headers["NGSILD-Results-Count"] == "3"


def test_query_post_with_pick_and_omit(client: TestClient, towers: dict[str, str]) -> None:
    url = f"{BASE}/entityOperations/query"
    query: dict[str, Any] = {"type": "Query", "entities": [{"type": "Building"}]}
    reply = client.post(url, json={**query, "pick": ["id", "name"]}, headers=towers)
    assert reply.status_code == 200, reply.text
    assert [set(e) for e in reply.json()] == [{"id", "name"}, {"id", "name"}]
    reply = client.post(url, json={**query, "omit": ["name", "location"]}, headers=towers)
    assert reply.status_code == 200, reply.text
    assert {"name", "location"}.isdisjoint(reply.json()[0])
    assert "category" in reply.json()[0]
    reply = client.post(url, json={**query, "pick": "id|name"}, headers=towers)
    assert [set(e) for e in reply.json()] == [{"id", "name"}, {"id", "name"}]
    for bad, message in (
        ({"pick": []}, "non-empty array"),
        ({"pick": [1]}, "non-empty array"),
        ({"pick": ["name"], "attrs": ["name"]}, "attrs cannot be combined with pick"),
        ({"pick": ["name"], "omit": ["name"]}, "both picked and omitted"),
        ({"omit": ["a,,b"]}, "after ','"),
        ({"pick": ["locatedAt{name}"]}, "Linked Entity retrieval"),
    ):
        body = problem(
            client.post(url, json={**query, **bad}, headers=towers), "BadRequestData", 400
        )
        assert message in body["detail"], bad


# -------------------------------------------------------------------------------------------
# the temporal API


def at(minutes: int) -> str:
    moment = datetime(2026, 11, 24, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def series(values: list[float], start: int = 0) -> list[dict[str, Any]]:
    return [
        {"type": "Property", "value": v, "observedAt": at(start + i)} for i, v in enumerate(values)
    ]


@pytest.fixture
def fleet(client: TestClient, writer: dict[str, str]) -> dict[str, str]:
    car = {
        "id": CAR,
        "type": "Vehicle",
        "speed": series([120, 80, 100]),
        "fuelLevel": series([67, 53]),
    }
    bus = {"id": BUS, "type": "Bus", "speed": series([45, 25]), "fuelLevel": series([210])}
    for body in (car, bus):
        reply = client.post(TEMPORAL, json=body, headers=writer)
        assert reply.status_code == 201, reply.text
    return writer


WINDOW = {"timerel": "after", "timeAt": "2026-11-24T00:00:00Z"}


def test_temporal_retrieve_with_pick_and_omit(client: TestClient, fleet: dict[str, str]) -> None:
    url = f"{TEMPORAL}/{CAR}"
    picked = get(client, fleet, url, pick="speed")
    assert list(picked) == ["speed"]
    assert [i["value"] for i in picked["speed"]] == [120, 80, 100]
    assert set(get(client, fleet, url, pick="id,speed")) == {"id", "speed"}
    assert set(get(client, fleet, url, omit="speed")) == {"id", "type", "fuelLevel"}
    assert set(get(client, fleet, url, omit="type,speed")) == {"id", "fuelLevel"}
    assert get(client, fleet, url, pick="id") == {"id": CAR}
    assert set(get(client, fleet, url, pick="type,fuelLevel", **WINDOW)) == {"type", "fuelLevel"}


def test_temporal_projection_in_every_representation(
    client: TestClient, fleet: dict[str, str]
) -> None:
    url = f"{TEMPORAL}/{CAR}"
    assert get(client, fleet, url, pick="id,speed", options="temporalValues") == {
        "id": CAR,
        "speed": {"type": "Property", "values": [[120, at(0)], [80, at(1)], [100, at(2)]]},
    }
    assert get(client, fleet, url, omit="id,type,speed", format="temporalValues") == {
        "fuelLevel": {"type": "Property", "values": [[67, at(0)], [53, at(1)]]}
    }
    concise = get(client, fleet, url, pick="fuelLevel", format="concise")
    assert list(concise) == ["fuelLevel"]
    assert [i["value"] for i in concise["fuelLevel"]] == [67, 53]
    assert "type" not in concise["fuelLevel"][0]
    aggregated = get(
        client, fleet, url, pick="speed", format="aggregatedValues", aggrMethods="max,totalCount"
    )
    assert list(aggregated) == ["speed"]
    assert aggregated["speed"]["max"][0][0] == 120
    assert aggregated["speed"]["totalCount"][0][0] == 3
    aggregated = get(
        client,
        fleet,
        url,
        omit="type,speed",
        options="aggregatedValues",
        aggrMethods="sum",
        **WINDOW,
    )
    assert set(aggregated) == {"id", "fuelLevel"}
    assert aggregated["fuelLevel"]["sum"][0][0] == 120
    with_sys = get(client, fleet, url, pick="speed", options="sysAttrs")
    assert list(with_sys) == ["speed"]
    assert "createdAt" in with_sys["speed"][0]
    reply = client.get(url, params={"pick": "speed"}, headers={**fleet, "Accept": LD})
    assert set(reply.json()) == {"@context", "speed"}


def test_temporal_retrieve_with_nothing_left(client: TestClient, fleet: dict[str, str]) -> None:
    url = f"{TEMPORAL}/{CAR}"
    problem(client.get(url, params={"pick": "unknown"}, headers=fleet), "ResourceNotFound", 404)
    problem(
        client.get(url, params={"omit": "id,type,fuelLevel,speed"}, headers=fleet),
        "ResourceNotFound",
        404,
    )


def test_temporal_query_with_pick_and_omit(client: TestClient, fleet: dict[str, str]) -> None:
    params = {"type": "Bus,Vehicle", **WINDOW}
    picked = get(client, fleet, TEMPORAL, pick="speed", **params)
    assert sorted([i["value"] for i in e["speed"]] for e in picked) == [[45, 25], [120, 80, 100]]
    assert all(list(e) == ["speed"] for e in picked)
    assert get(client, fleet, TEMPORAL, pick="id", **params) == [{"id": BUS}, {"id": CAR}]
    no_type = get(client, fleet, TEMPORAL, omit="type", **params)
    assert [set(e) for e in no_type] == [{"id", "speed", "fuelLevel"}] * 2
    no_speed = get(client, fleet, TEMPORAL, omit="type,speed", options="temporalValues", **params)
    assert no_speed == [
        {"id": BUS, "fuelLevel": {"type": "Property", "values": [[210, at(0)]]}},
        {"id": CAR, "fuelLevel": {"type": "Property", "values": [[67, at(0)], [53, at(1)]]}},
    ]
    # POST /temporal/entityOperations/query takes the Query's arrays
    body = {
        "type": "Query",
        "entities": [{"type": "Vehicle"}],
        "temporalQ": WINDOW,
        "pick": ["id", "fuelLevel"],
    }
    reply = client.post(f"{BASE}/temporal/entityOperations/query", json=body, headers=fleet)
    assert reply.status_code == 200, reply.text
    assert [set(e) for e in reply.json()] == [{"id", "fuelLevel"}]
    body = {**body, "pick": None, "omit": ["fuelLevel", "type"]}
    reply = client.post(f"{BASE}/temporal/entityOperations/query", json=body, headers=fleet)
    assert reply.status_code == 200, reply.text
    assert [set(e) for e in reply.json()] == [{"id", "speed"}]


@pytest.mark.parametrize(("params", "message"), BAD)
def test_bad_pick_and_omit_on_temporal(
    client: TestClient, fleet: dict[str, str], params: dict[str, str], message: str
) -> None:
    body = problem(
        client.get(f"{TEMPORAL}/{CAR}", params=params, headers=fleet), "BadRequestData", 400
    )
    assert message in body["detail"]
    body = problem(
        client.get(TEMPORAL, params={"type": "Vehicle", **WINDOW, **params}, headers=fleet),
        "BadRequestData",
        400,
    )
    assert message in body["detail"]


def test_bad_pick_and_omit_in_temporal_post(client: TestClient, fleet: dict[str, str]) -> None:
    url = f"{BASE}/temporal/entityOperations/query"
    query: dict[str, Any] = {
        "type": "Query",
        "entities": [{"type": "Vehicle"}],
        "temporalQ": WINDOW,
    }
    for bad, message in (
        ({"pick": []}, "non-empty array"),
        ({"omit": "speed", "attrs": ["speed"]}, "attrs cannot be combined with omit"),
        ({"pick": ["speed{x}"]}, "Linked Entity retrieval"),
    ):
        body = problem(
            client.post(url, json={**query, **bad}, headers=fleet), "BadRequestData", 400
        )
        assert message in body["detail"], bad


def test_projection_applies_before_temporal_pagination(
    client: TestClient, fleet: dict[str, str], settings: Settings
) -> None:
    """An attribute left out by pick/omit is not read, so it cannot cut the reply (6.3.10)."""
    settings.context_temporal_page_size = 2  # read per request
    url = f"{TEMPORAL}/{CAR}"
    reply = client.get(url, headers=fleet)
    assert reply.status_code == 206  # speed has 3 instances
    reply = client.get(url, params={"omit": "speed"}, headers=fleet)
    assert reply.status_code == 200, reply.text
    assert "Content-Range" not in reply.headers
    assert [i["value"] for i in reply.json()["fuelLevel"]] == [67, 53]
    reply = client.get(url, params={"pick": "id,fuelLevel"}, headers=fleet)
    assert reply.status_code == 200
