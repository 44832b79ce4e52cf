"""Linked Entity Retrieval (ETSI GS CIM 009 v1.8, clause 4.5.23): `join=inline|flat|@none`,
`joinLevel` and `containedBy` on GET /entities/{id}, GET /entities and POST
/entityOperations/query, with pick/omit `rel{...}` terms (clause 4.21) and every representation."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from pujiang.context import ngsild_join
from pujiang.context.errors import BadData
from pujiang.context.ngsild_join import Shape, parse_join, plan

from .conftest import BASE, LD, VOCAB, create, problem

ENTITIES = f"{BASE}/entities"
QUERY = f"{BASE}/entityOperations/query"
EIFFEL = "urn:ngsi-ld:Building:eiffel"
LOUVRE = "urn:ngsi-ld:Building:louvre"
PARIS = "urn:ngsi-ld:City:paris"
FRANCE = "urn:ngsi-ld:Country:france"
NOBODY = "urn:ngsi-ld:Person:nobody"  # never created


def rel(target: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Relationship", "object": target, **extra}


def prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


@pytest.fixture
def paris(client: TestClient, writer: dict[str, str]) -> dict[str, str]:
    """Two buildings in Paris, Paris in France; the Eiffel tower's owner does not exist."""
    create(client, writer, {"id": FRANCE, "type": "Country", "name": prop("France")})
    create(
        client,
        writer,
        {"id": PARIS, "type": "City", "name": prop("Paris"), "isInCountry": rel(FRANCE)},
    )
    create(
        client,
        writer,
        {
            "id": EIFFEL,
            "type": "Building",
            "name": prop("Eiffel Tower"),
            "locatedAt": rel(PARIS),
            "owner": rel(NOBODY),
        },
    )
    create(client, writer, {"id": LOUVRE, "type": "Building", "locatedAt": rel(PARIS)})
    return writer


def get(client: TestClient, headers: dict[str, str], url: str, **params: Any) -> Any:
    reply = client.get(url, params=params, headers=headers)
    assert reply.status_code == 200, reply.text
    return reply.json()


PARIS_NORMALIZED = {
    "id": PARIS,
    "type": "City",
    "name": prop("Paris"),
    "isInCountry": rel(FRANCE),
}
FRANCE_NORMALIZED = {"id": FRANCE, "type": "Country", "name": prop("France")}


# -------------------------------------------------------------------------------------------
# retrieve


def test_retrieve_inline_puts_the_target_in_an_entity_member(
    client: TestClient, paris: dict[str, str]
) -> None:
    body = get(client, paris, f"{ENTITIES}/{EIFFEL}", join="inline", joinLevel="1")
    assert body == {
        "id": EIFFEL,
        "type": "Building",
        "name": prop("Eiffel Tower"),
        "locatedAt": {**rel(PARIS), "entity": PARIS_NORMALIZED},
        "owner": rel(NOBODY),  # a missing target: the Relationship stays as stored
    }
    # joinLevel defaults to 1; a second level joins the city's country too
    assert get(client, paris, f"{ENTITIES}/{EIFFEL}", join="inline") == body
    two = get(client, paris, f"{ENTITIES}/{EIFFEL}", join="inline", joinLevel="2")
    assert two["locatedAt"]["entity"]["isInCountry"] == {
        **rel(FRANCE),
        "entity": FRANCE_NORMALIZED,
    }


def test_retrieve_inline_simplified_and_concise(client: TestClient, paris: dict[str, str]) -> None:
    url = f"{ENTITIES}/{EIFFEL}"
    simple = get(client, paris, url, join="inline", joinLevel="2", options="keyValues")
    assert simple == {
        "id": EIFFEL,
        "type": "Building",
        "name": "Eiffel Tower",
        "locatedAt": {
            "id": PARIS,
            "type": "City",
            "name": "Paris",
            "isInCountry": {"id": FRANCE, "type": "Country", "name": "France"},
        },
        "owner": NOBODY,
    }
    concise = get(client, paris, url, join="inline", format="concise")
    assert concise["locatedAt"] == {
        "object": PARIS,
        "entity": {"id": PARIS, "type": "City", "name": "Paris", "isInCountry": {"object": FRANCE}},
    }
    assert concise["owner"] == {"object": NOBODY}


def test_retrieve_flat_answers_an_array(client: TestClient, paris: dict[str, str]) -> None:
    url = f"{ENTITIES}/{EIFFEL}"
    body = get(client, paris, url, join="flat", joinLevel="1")
    assert [e["id"] for e in body] == [EIFFEL, PARIS]
    assert body[1] == PARIS_NORMALIZED
    assert body[0]["locatedAt"] == rel(PARIS)  # no entity member in the flat form
    deep = get(client, paris, url, join="flat", joinLevel="2", options="keyValues")
    assert deep == [
        {
            "id": EIFFEL,
            "type": "Building",
            "name": "Eiffel Tower",
            "locatedAt": PARIS,
            "owner": NOBODY,
        },
        {"id": PARIS, "type": "City", "name": "Paris", "isInCountry": FRANCE},
        {"id": FRANCE, "type": "Country", "name": "France"},
    ]


def test_join_none_and_unfound_targets_leave_the_entity_as_is(
    client: TestClient, paris: dict[str, str]
) -> None:
    plain = get(client, paris, f"{ENTITIES}/{FRANCE}")
    for join in ("inline", "flat", "@none"):
        # France links nowhere: the reply is the entity itself, not an array
        assert get(client, paris, f"{ENTITIES}/{FRANCE}", join=join) == plain
    assert get(client, paris, f"{ENTITIES}/{EIFFEL}", join="@none")["locatedAt"] == rel(PARIS)
    # the owner never existed: flat has nothing to append
    only_owner = get(client, paris, f"{ENTITIES}/{EIFFEL}", join="flat", pick="id,owner")
    assert only_owner == {"id": EIFFEL, "owner": rel(NOBODY)}


def test_linked_entities_follow_sys_attrs_and_ld_json(
    client: TestClient, paris: dict[str, str]
) -> None:
    url = f"{ENTITIES}/{EIFFEL}"
    inline = get(client, paris, url, join="inline", options="sysAttrs")
    assert "createdAt" in inline["locatedAt"]["entity"]
    assert "modifiedAt" in inline["locatedAt"]["entity"]
    reply = client.get(url, params={"join": "flat"}, headers={**paris, "Accept": LD})
    assert reply.status_code == 200, reply.text
    assert [e["id"] for e in reply.json()] == [EIFFEL, PARIS]
    assert all("@context" in e for e in reply.json())


# -------------------------------------------------------------------------------------------
# query


def test_query_inline_joins_a_shared_target_for_every_entity(
    client: TestClient, paris: dict[str, str]
) -> None:
    reply = client.get(
        ENTITIES,
        params={"type": "Building", "join": "inline", "count": "true"},
        headers=paris,
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["NGSILD-Results-Count"] == "2"
    body = reply.json()
    assert [e["id"] for e in body] == [EIFFEL, LOUVRE]
    assert [e["locatedAt"]["entity"] for e in body] == [PARIS_NORMALIZED, PARIS_NORMALIZED]


def test_query_flat_appends_each_linked_entity_once(
    client: TestClient, paris: dict[str, str]
) -> None:
    body = get(client, paris, ENTITIES, type="Building", join="flat", joinLevel="2")
    assert [e["id"] for e in body] == [EIFFEL, LOUVRE, PARIS, FRANCE]
    # a linked entity that is also one of the query's own is not repeated
    both = get(client, paris, ENTITIES, type="Building,City", join="flat", joinLevel="2")
    assert [e["id"] for e in both] == [PARIS, EIFFEL, LOUVRE, FRANCE]
    # the page limit counts the queried entities only
    first = get(client, paris, ENTITIES, type="Building", join="flat", limit="1")
    assert [e["id"] for e in first] == [EIFFEL, PARIS]


def test_post_query_takes_join_from_the_body(client: TestClient, paris: dict[str, str]) -> None:
    query = {"type": "Query", "entities": [{"type": "Building"}]}
    reply = client.post(QUERY, json={**query, "join": "flat"}, headers=paris)
    assert reply.status_code == 200, reply.text
    assert [e["id"] for e in reply.json()] == [EIFFEL, LOUVRE, PARIS]  # joinLevel 1 by default
    reply = client.post(
        QUERY, json={**query, "join": "inline", "joinLevel": 2}, headers=paris, params={}
    )
    assert reply.status_code == 200, reply.text
    city = reply.json()[1]["locatedAt"]["entity"]
    assert city["isInCountry"]["entity"] == FRANCE_NORMALIZED
    reply = client.post(
        QUERY,
        json={**query, "join": "inline", "pick": ["id", "locatedAt{name}"]},
        headers=paris,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()[0] == {
        "id": EIFFEL,
        "locatedAt": {**rel(PARIS), "entity": {"name": prop("Paris")}},
    }


# -------------------------------------------------------------------------------------------
# pick / omit on linked entities (clause 4.21)


def test_pick_selects_members_of_linked_entities(client: TestClient, paris: dict[str, str]) -> None:
    url = f"{ENTITIES}/{EIFFEL}"
    body = get(client, paris, url, join="inline", joinLevel="2", pick="id,locatedAt{id,name}")
    # isInCountry is not picked for the city, so the country is not joined
    assert body == {
        "id": EIFFEL,
        "locatedAt": {**rel(PARIS), "entity": {"id": PARIS, "name": prop("Paris")}},
    }
    deep = get(
        client,
        paris,
        url,
        join="flat",
        joinLevel="2",
        pick="id,locatedAt{id,isInCountry{name}}",
    )
    assert deep == [
        {"id": EIFFEL, "locatedAt": rel(PARIS)},
        {"id": PARIS, "isInCountry": rel(FRANCE)},
        {"name": prop("France")},
    ]
    # picking no relationship joins nothing
    assert get(client, paris, url, join="flat", pick="id,name") == {
        "id": EIFFEL,
        "name": prop("Eiffel Tower"),
    }


def test_omit_applies_to_the_entities_it_names(client: TestClient, paris: dict[str, str]) -> None:
    url = f"{ENTITIES}/{EIFFEL}"
    # entity-level omit does not reach linked entities; locatedAt{...} does
    body = get(client, paris, url, join="inline", omit="type,name,owner")
    assert body["locatedAt"]["entity"] == PARIS_NORMALIZED
    assert set(body) == {"id", "locatedAt"}
    body = get(client, paris, url, join="flat", omit="name,locatedAt{name,type}")
    assert body[1] == {"id": PARIS, "isInCountry": rel(FRANCE)}
    assert "name" not in body[0]
    assert "locatedAt" in body[0]
    # an omitted relationship is not followed
    assert get(client, paris, url, join="flat", omit="locatedAt")["id"] == EIFFEL


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"pick": "id,locatedAt{name}"}, "needs join=inline or join=flat"),
        ({"pick": "id,locatedAt{name}", "join": "@none"}, "needs join=inline or join=flat"),
        ({"omit": "locatedAt{name}", "joinLevel": "3"}, "needs join=inline or join=flat"),
        ({"pick": "locatedAt{isInCountry{name}}", "join": "inline"}, "2 hops deep"),
        ({"omit": "locatedAt{isInCountry{name}}", "join": "flat"}, "beyond joinLevel=1"),
        ({"pick": "locatedAt{name}", "omit": "locatedAt{name}", "join": "flat"}, "both picked"),
        ({"join": "inline", "pick": "id,locatedAt{name", "joinLevel": "2"}, "is not closed"),
    ],
)
def test_bad_linked_projections(
    client: TestClient, paris: dict[str, str], params: dict[str, str], message: str
) -> None:
    for url, extra in ((f"{ENTITIES}/{EIFFEL}", {}), (ENTITIES, {"type": "Building"})):
        body = problem(
            client.get(url, params={**extra, **params}, headers=paris), "BadRequestData", 400
        )
        assert message in body["detail"], body


# -------------------------------------------------------------------------------------------
# loops, containedBy, objectType, several objects, datasetIds, tenants, limits


def test_loops_stop(client: TestClient, writer: dict[str, str]) -> None:
    a, b = "urn:ngsi-ld:Node:a", "urn:ngsi-ld:Node:b"
    create(client, writer, {"id": a, "type": "Node", "next": rel(b)})
    create(client, writer, {"id": b, "type": "Node", "next": rel(a), "self": rel(b)})
    body = get(client, writer, f"{ENTITIES}/{a}", join="inline", joinLevel="10")
    linked = body["next"]["entity"]
    assert linked["id"] == b
    assert linked["next"] == rel(a)  # a is on the path: not joined again
    assert linked["self"] == rel(b)  # nor is b itself
    flat = get(client, writer, f"{ENTITIES}/{a}", join="flat", joinLevel="10")
    assert [e["id"] for e in flat] == [a, b]


def test_contained_by_names_entities_already_encountered(
    client: TestClient, paris: dict[str, str]
) -> None:
    url = f"{ENTITIES}/{EIFFEL}"
    assert get(client, paris, url, join="flat", joinLevel="2", containedBy=PARIS) == get(
        client, paris, url
    )
    body = get(client, paris, url, join="flat", joinLevel="2", containedBy=f"{FRANCE},{NOBODY}")
    assert [e["id"] for e in body] == [EIFFEL, PARIS]
    inline = get(client, paris, url, join="inline", joinLevel="2", containedBy=FRANCE)
    assert inline["locatedAt"]["entity"]["isInCountry"] == rel(FRANCE)


def test_object_type_restricts_the_target(client: TestClient, paris: dict[str, str]) -> None:
    create(
        client,
        paris,
        {
            "id": "urn:ngsi-ld:Building:typed",
            "type": "Building",
            "wrong": rel(PARIS, objectType="Country"),
            "right": rel(PARIS, objectType="City"),
        },
    )
    body = get(client, paris, f"{ENTITIES}/urn:ngsi-ld:Building:typed", join="inline")
    assert "entity" not in body["wrong"]
    assert body["right"]["entity"]["id"] == PARIS
    assert body["right"]["objectType"] == "City"


def test_several_objects_and_list_relationships(client: TestClient, paris: dict[str, str]) -> None:
    multi = "urn:ngsi-ld:Tour:multi"
    create(
        client,
        paris,
        {
            "id": multi,
            "type": "Tour",
            "visits": rel([PARIS, NOBODY, FRANCE]),
            "route": {
                "type": "ListRelationship",
                "objectList": [{"object": FRANCE}, {"object": NOBODY}, {"object": PARIS}],
            },
        },
    )
    url = f"{ENTITIES}/{multi}"
    body = get(client, paris, url, join="inline")
    assert [e["id"] for e in body["visits"]["entity"]] == [PARIS, FRANCE]
    assert [e["id"] for e in body["route"]["entityList"]] == [FRANCE, PARIS]
    assert body["route"]["objectList"][1] == {"object": NOBODY}
    simple = get(client, paris, url, join="inline", options="keyValues")
    assert [v if isinstance(v, str) else v["id"] for v in simple["visits"]] == [
        PARIS,
        NOBODY,
        FRANCE,
    ]
    assert isinstance(simple["visits"][0], dict)
    assert simple["visits"][1] == NOBODY
    assert [v.get("id", v.get("object")) for v in simple["route"]] == [FRANCE, NOBODY, PARIS]
    flat = get(client, paris, url, join="flat")
    assert [e["id"] for e in flat] == [multi, PARIS, FRANCE]


def test_each_dataset_instance_gets_its_own_target(
    client: TestClient, paris: dict[str, str]
) -> None:
    twin = "urn:ngsi-ld:Building:twin"
    create(
        client,
        paris,
        {
            "id": twin,
            "type": "Building",
            "locatedAt": [rel(PARIS), rel(FRANCE, datasetId="urn:ngsi-ld:Dataset:country")],
        },
    )
    body = get(client, paris, f"{ENTITIES}/{twin}", join="inline")
    assert [i["entity"]["id"] for i in body["locatedAt"]] == [PARIS, FRANCE]
    simple = get(client, paris, f"{ENTITIES}/{twin}", join="inline", options="keyValues")
    assert simple["locatedAt"]["dataset"]["@none"]["id"] == PARIS
    assert simple["locatedAt"]["dataset"]["urn:ngsi-ld:Dataset:country"]["id"] == FRANCE
    # datasetId selects the instances, and so what is joined
    only = get(
        client,
        paris,
        f"{ENTITIES}/{twin}",
        join="flat",
        datasetId="urn:ngsi-ld:Dataset:country",
    )
    assert [e["id"] for e in only] == [twin, FRANCE]


def test_targets_of_another_tenant_are_not_joined(
    client: TestClient, paris: dict[str, str]
) -> None:
    other = {**paris, "NGSILD-Tenant": "lyon"}
    create(client, other, {"id": EIFFEL, "type": "Building", "locatedAt": rel(PARIS)})
    body = get(client, other, f"{ENTITIES}/{EIFFEL}", join="inline")
    assert body["locatedAt"] == rel(PARIS)  # Paris exists only in the default tenant
    assert get(client, other, ENTITIES, type="Building", join="flat") == [body]


def test_a_reader_may_join(
    client: TestClient, paris: dict[str, str], reader: dict[str, str]
) -> None:
    body = get(client, reader, f"{ENTITIES}/{EIFFEL}", join="inline")
    assert body["locatedAt"]["entity"]["id"] == PARIS


def test_too_many_linked_entities(
    client: TestClient, paris: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ngsild_join, "MAX_LINKED", 1)
    assert len(get(client, paris, f"{ENTITIES}/{EIFFEL}", join="flat")) == 2
    body = problem(
        client.get(f"{ENTITIES}/{EIFFEL}", params={"join": "flat", "joinLevel": 2}, headers=paris),
        "TooManyResults",
        403,
    )
    assert "linked entities" in body["detail"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"join": "nested"}, "join must be flat, inline or @none"),
        ({"join": "INLINE"}, "join must be flat, inline or @none"),
        ({"join": ""}, "join must be flat, inline or @none"),
        ({"join": "inline", "joinLevel": "0"}, "joinLevel must be a positive integer"),
        ({"join": "inline", "joinLevel": "-1"}, "joinLevel must be a positive integer"),
        ({"join": "flat", "joinLevel": "1.5"}, "joinLevel must be a positive integer"),
        ({"join": "flat", "joinLevel": "two"}, "joinLevel must be a positive integer"),
        ({"joinLevel": ""}, "joinLevel must be a positive integer"),
        ({"join": "flat", "containedBy": "paris"}, "containedBy must be entity ids"),
        ({"join": "flat", "containedBy": f"{PARIS},"}, "containedBy must be entity ids"),
    ],
)
def test_bad_join_parameters(
    client: TestClient, paris: dict[str, str], params: dict[str, str], message: str
) -> None:
    for url, extra in ((f"{ENTITIES}/{EIFFEL}", {}), (ENTITIES, {"type": "Building"})):
        body = problem(
            client.get(url, params={**extra, **params}, headers=paris), "BadRequestData", 400
        )
        assert message in body["detail"]
        assert body["title"]


@pytest.mark.parametrize(
    "members",
    [
        {"join": "inline", "joinLevel": 0},
        {"join": "inline", "joinLevel": "1"},
        {"join": "inline", "joinLevel": True},
        {"join": "inline", "joinLevel": 1.0},
        {"join": ["inline"]},
        {"join": "flat", "containedBy": [1]},
    ],
)
def test_bad_join_members_in_a_query(
    client: TestClient, paris: dict[str, str], members: dict[str, Any]
) -> None:
    query = {"type": "Query", "entities": [{"type": "Building"}], **members}
    problem(client.post(QUERY, json=query, headers=paris), "BadRequestData", 400)


def test_unknown_query_parameters_are_still_refused(
    client: TestClient, paris: dict[str, str]
) -> None:
    problem(
        client.get(f"{ENTITIES}/{EIFFEL}", params={"joinlevel": "1"}, headers=paris),
        "InvalidRequest",
        400,
    )


# -------------------------------------------------------------------------------------------
# the pure part


def test_parse_join() -> None:
    assert parse_join(None) == (None, 1, frozenset())
    assert parse_join("@none", "3") == (None, 3, frozenset())
    assert parse_join("flat", "12", f"{PARIS}, {FRANCE}") == (
        "flat",
        12,
        frozenset({PARIS, FRANCE}),
    )
    assert parse_join("inline", 2, [PARIS]) == ("inline", 2, frozenset({PARIS}))
    for join, level, contained in (
        ("Flat", None, None),
        ("inline", "+1", None),
        ("inline", " ", None),
        ("inline", None, ""),
        ("inline", None, [PARIS, "x"]),
    ):
        with pytest.raises(BadData):
            parse_join(join, level, contained)


def expand(name: str) -> str:
    return VOCAB + name


def test_plan_splits_linked_terms() -> None:
    split = plan("inline", "2", None, "id,locatedAt{id,name,isInCountry{x}}", None, expand)
    assert split.pick == "id,locatedAt"
    assert split.omit is None
    city = split.links[VOCAB + "locatedAt"]
    assert city.pick == frozenset({"id", VOCAB + "name", VOCAB + "isInCountry"})
    assert city.linked(VOCAB + "isInCountry") == Shape(frozenset({VOCAB + "x"}))
    assert city.linked(VOCAB + "other") == Shape()
    split = plan("flat", None, None, None, ["type", "locatedAt{name}"], expand)
    assert split.pick is None
    assert split.omit == "type"
    assert split.links[VOCAB + "locatedAt"] == Shape(None, frozenset({VOCAB + "name"}))
    assert plan("flat", None, None, None, "locatedAt{name}", expand).omit is None
    # without braces pick/omit pass on untouched, even when malformed (checked elsewhere)
    assert plan(None, None, None, ["name"], "a,,b", expand) == ngsild_join.Plan(
        pick=["name"], omit="a,,b"
    )
