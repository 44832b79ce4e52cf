"""Temporal evolution, continued: the concise temporal representation, type expressions with
`;`, geo-queries and `scopeQ` on /temporal/entities (and their POST query), and bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.context.conftest import BASE, create, problem

H = dict[str, str]
TEMPORAL = f"{BASE}/temporal/entities"
QUERY = f"{BASE}/temporal/entityOperations/query"
PEOPLE = (121.4737, 31.2304)  # People's Square


def at(minutes: int) -> str:
    moment = datetime(2026, 11, 24, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def sensor(
    n: int,
    lon: float,
    lat: float,
    *,
    types: Any = "NoiseSensor",
    scope: Any = None,
    level: float = 50,
) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "id": f"urn:ngsi-ld:NoiseSensor:{n}",
        "type": types,
        "noise": {"type": "Property", "value": level, "unitCode": "2N", "observedAt": at(0)},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
    }
    if scope is not None:
        entity["scope"] = scope
    return entity


def reading(client: TestClient, headers: H, n: int, level: float, minutes: int) -> None:
    body = {
        "noise": {"type": "Property", "value": level, "unitCode": "2N", "observedAt": at(minutes)}
    }
    reply = client.patch(
        f"{BASE}/entities/urn:ngsi-ld:NoiseSensor:{n}/attrs", json=body, headers=headers
    )
    assert reply.status_code == 204, reply.text


@pytest.fixture
def sensors(client: TestClient, writer: H) -> H:
    """1 at People's Square (scope /上海/黄浦区), 2 ~300 m east (also a Device, scope
    /上海/黄浦区/外滩), 3 in Pudong ~5 km away (scope /上海/浦东新区), 4 with no scope far
    north; each with noise at 01:00 and 01:30."""
    create(client, writer, sensor(1, *PEOPLE, scope="/上海/黄浦区"))
    create(
        client,
        writer,
        sensor(
            2,
            PEOPLE[0] + 0.003,
            PEOPLE[1],
            types=["NoiseSensor", "Device"],
            scope=["/上海/黄浦区/外滩", "/CompanyA"],
        ),
    )
    create(client, writer, sensor(3, 121.5270, 31.2330, scope="/上海/浦东新区"))
    create(client, writer, sensor(4, 121.45, 31.40))
    for n in (1, 2, 3, 4):
        reading(client, writer, n, 60 + n, 30)
    return writer


def ids(reply: Any) -> list[int]:
    assert reply.status_code == 200, reply.text
    return sorted(int(e["id"].rsplit(":", 1)[1]) for e in reply.json())


# -------------------------------------------------------------------------------------------
# the concise temporal representation


def test_concise_retrieve(client: TestClient, sensors: H) -> None:
    eid = "urn:ngsi-ld:NoiseSensor:1"
    reply = client.get(f"{TEMPORAL}/{eid}", params={"options": "concise"}, headers=sensors)
    assert reply.status_code == 200, reply.text
    entity = reply.json()
    assert entity["type"] == "NoiseSensor"
    noise = entity["noise"]
    assert [i["value"] for i in noise] == [50, 61]
    assert [i["observedAt"] for i in noise] == [at(0), at(30)]
    assert all("type" not in i for i in noise)  # told by "value"
    assert all(i["unitCode"] == "2N" and i["instanceId"] for i in noise)
    location = entity["location"]
    assert location == [
        {
            "value": {"type": "Point", "coordinates": list(PEOPLE)},
            "instanceId": location[0]["instanceId"],
        }
    ]
    same = client.get(f"{TEMPORAL}/{eid}", params={"format": "concise"}, headers=sensors)
    assert same.json() == entity
    # with sysAttrs
    reply = client.get(
        f"{TEMPORAL}/{eid}",
        params={"options": "concise,sysAttrs", "attrs": "noise"},
        headers=sensors,
    )
    assert all("createdAt" in i and "modifiedAt" in i for i in reply.json()["noise"])
    # format wins over options; among options, temporalValues over concise
    values = client.get(
        f"{TEMPORAL}/{eid}", params={"options": "concise,temporalValues"}, headers=sensors
    ).json()
    assert values["noise"] == {"type": "Property", "values": [[50, at(0)], [61, at(30)]]}
    concise = client.get(
        f"{TEMPORAL}/{eid}",
        params={"options": "temporalValues", "format": "concise"},
        headers=sensors,
    ).json()
    assert concise == entity


def test_concise_keeps_type_where_it_cannot_be_told(client: TestClient, writer: H) -> None:
    body = {
        "id": "urn:ngsi-ld:BusStop:xuhui-12",
        "type": "BusStop",
        "name": [
            {
                "type": "LanguageProperty",
                "languageMap": {"zh": "徐家汇", "en": "Xujiahui"},
                "observedAt": at(0),
            }
        ],
        "category": [{"type": "VocabProperty", "vocab": "busStop", "observedAt": at(0)}],
        "servedBy": [
            {
                "type": "Relationship",
                "object": "urn:ngsi-ld:BusLine:926",
                "observedAt": at(0),
                "since": {"type": "Property", "value": "2019"},
                "reliability": {"type": "Property", "value": 0.9, "unitCode": "P1"},
            }
        ],
        "shape": [
            {
                "type": "Property",
                "value": {"type": "Point", "coordinates": [1, 2]},
                "observedAt": at(0),
            }
        ],
        "info": [{"type": "JsonProperty", "json": {"a": 1}, "observedAt": at(0)}],
        "stops": [{"type": "ListProperty", "valueList": [1, 2], "observedAt": at(0)}],
    }
    assert client.post(TEMPORAL, json=body, headers=writer).status_code == 201
    entity = client.get(f"{TEMPORAL}/{body['id']}?format=concise", headers=writer).json()

    def strip(instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in i.items() if k not in ("instanceId", "observedAt")} for i in instances
        ]

    assert strip(entity["name"]) == [{"languageMap": {"zh": "徐家汇", "en": "Xujiahui"}}]
    assert strip(entity["category"]) == [{"vocab": "busStop"}]
    assert strip(entity["info"]) == [{"json": {"a": 1}}]
    assert strip(entity["stops"]) == [{"valueList": [1, 2]}]
    # sub-properties as in the concise representation: a bare value where that is all
    assert strip(entity["servedBy"]) == [
        {
            "object": "urn:ngsi-ld:BusLine:926",
            "since": "2019",
            "reliability": {"value": 0.9, "unitCode": "P1"},
        }
    ]
    # a Property holding a GeoJSON value would read back as a GeoProperty: it keeps its type
    assert strip(entity["shape"]) == [
        {"type": "Property", "value": {"type": "Point", "coordinates": [1, 2]}}
    ]
    # lossless: the concise form, posted back, gives the same normalized evolution
    copy = {**entity, "id": "urn:ngsi-ld:BusStop:copy"}
    for name in ("name", "category", "servedBy", "shape", "info", "stops"):
        copy[name] = [{k: v for k, v in i.items() if k != "instanceId"} for i in entity[name]]
    assert client.post(TEMPORAL, json=copy, headers=writer).status_code == 201, copy
    original = client.get(f"{TEMPORAL}/{body['id']}", headers=writer).json()
    again = client.get(f"{TEMPORAL}/urn:ngsi-ld:BusStop:copy", headers=writer).json()
    for name in ("name", "category", "servedBy", "shape", "info", "stops"):
        assert strip(again[name]) == strip(original[name]), name


def test_concise_deletions_keep_their_type(client: TestClient, writer: H) -> None:
    entity = {
        "id": "urn:ngsi-ld:Car:1",
        "type": "Car",
        "parkedIn": {"type": "Relationship", "object": "urn:ngsi-ld:Parking:1"},
    }
    create(client, writer, entity)
    reply = client.delete(f"{BASE}/entities/urn:ngsi-ld:Car:1/attrs/parkedIn", headers=writer)
    assert reply.status_code == 204
    history = client.get(
        f"{TEMPORAL}/urn:ngsi-ld:Car:1?options=concise&timeproperty=deletedAt", headers=writer
    ).json()
    (deleted,) = history["parkedIn"]
    # the Relationship's Null is in `object`, which tells the type in the concise form
    assert deleted.get("type", "Relationship") == "Relationship"
    assert deleted["object"] == "urn:ngsi-ld:null"
    assert "value" not in deleted
    assert "deletedAt" in deleted
    whole = client.get(f"{TEMPORAL}/urn:ngsi-ld:Car:1?options=concise", headers=writer).json()
    assert whole["parkedIn"][0] == {
        "object": "urn:ngsi-ld:Parking:1",
        "instanceId": whole["parkedIn"][0]["instanceId"],
    }


def test_concise_query(client: TestClient, sensors: H) -> None:
    reply = client.get(
        TEMPORAL,
        params={"type": "NoiseSensor", "attrs": "noise", "format": "concise", "lastN": "1"},
        headers=sensors,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert len(body) == 4
    assert all(
        set(e["noise"][0]) == {"value", "unitCode", "observedAt", "instanceId"} for e in body
    )
    reply = client.post(
        f"{QUERY}?options=concise",
        json={"type": "Query", "entities": [{"type": "NoiseSensor"}], "attrs": ["noise"]},
        headers=sensors,
    )
    assert all("type" not in i for e in reply.json() for i in e["noise"])


def test_bad_representations(client: TestClient, sensors: H) -> None:
    eid = "urn:ngsi-ld:NoiseSensor:1"
    reply = client.get(f"{TEMPORAL}/{eid}?format=keyValues", headers=sensors)
    assert "concise" in problem(reply, "InvalidRequest", 400)["detail"]
    reply = client.get(f"{TEMPORAL}/{eid}?options=simplified", headers=sensors)
    assert "simplified" in problem(reply, "InvalidRequest", 400)["detail"]


# -------------------------------------------------------------------------------------------
# type expressions


def test_type_expressions(client: TestClient, sensors: H) -> None:
    def found(expression: str) -> list[int]:
        return ids(client.get(TEMPORAL, params={"type": expression}, headers=sensors))

    assert found("NoiseSensor") == [1, 2, 3, 4]
    assert found("Device") == [2]
    assert found("NoiseSensor;Device") == [2]
    assert found("Device;NoiseSensor") == [2]
    assert found("(NoiseSensor;Device),Car") == [2]
    assert found("Device|Car") == [2]
    assert found("Device;Car") == []
    body = {"type": "Query", "entities": [{"type": "NoiseSensor;Device"}]}
    assert ids(client.post(QUERY, json=body, headers=sensors)) == [2]
    body = {"type": "Query", "entities": [{"type": "Device;Car"}, {"type": "NoiseSensor;Device"}]}
    assert ids(client.post(QUERY, json=body, headers=sensors)) == [2]
    # an entity gone from the current state keeps its first type in the history only
    assert (
        client.delete(f"{BASE}/entities/urn:ngsi-ld:NoiseSensor:2", headers=sensors).status_code
        == 204
    )
    assert found("NoiseSensor") == [1, 2, 3, 4]
    assert found("NoiseSensor;Device") == []


@pytest.mark.parametrize("expression", ["A;", "(A", "A,,B", ";", "A;B)", "A<b"])
def test_bad_type_expressions(client: TestClient, sensors: H, expression: str) -> None:
    reply = client.get(TEMPORAL, params={"type": expression}, headers=sensors)
    detail = problem(reply, "BadRequestData", 400)["detail"]
    assert "type expression" in detail or expression in detail


# -------------------------------------------------------------------------------------------
# geo-queries


def test_geo_queries(client: TestClient, sensors: H) -> None:
    near = {
        "georel": "near;maxDistance==500",
        "geometry": "Point",
        "coordinates": f"[{PEOPLE[0]},{PEOPLE[1]}]",
    }
    reply = client.get(TEMPORAL, params={**near, "attrs": "noise"}, headers=sensors)
    assert ids(reply) == [1, 2]
    history = {e["id"]: [i["value"] for i in e["noise"]] for e in reply.json()}
    assert history["urn:ngsi-ld:NoiseSensor:1"] == [50, 61]
    # with type, time window, count and paging
    reply = client.get(
        TEMPORAL,
        params={
            **near,
            "type": "NoiseSensor",
            "timerel": "after",
            "timeAt": at(10),
            "count": "true",
            "limit": "1",
        },
        headers=sensors,
    )
    assert ids(reply) == [1]
    assert reply.headers["NGSILD-Results-Count"] == "2"
    assert [i["value"] for i in reply.json()[0]["noise"]] == [61]
    # far: minDistance, and a polygon around Pudong
    far = {**near, "georel": "near;minDistance==2000"}
    assert ids(client.get(TEMPORAL, params={**far, "type": "NoiseSensor"}, headers=sensors)) == [
        3,
        4,
    ]
    pudong = [[[121.50, 31.20], [121.56, 31.20], [121.56, 31.26], [121.50, 31.26], [121.50, 31.20]]]
    params = {"georel": "within", "geometry": "Polygon", "coordinates": str(pudong)}
    assert ids(client.get(TEMPORAL, params=params, headers=sensors)) == [3]
    # POST with geoQ
    body = {
        "type": "Query",
        "entities": [{"type": "NoiseSensor"}],
        "geoQ": {
            "georel": "near;maxDistance==500",
            "geometry": "Point",
            "coordinates": list(PEOPLE),
        },
    }
    assert ids(client.post(QUERY, json=body, headers=sensors)) == [1, 2]
    # the current location decides for an entity that exists: a moved sensor leaves; a
    # deleted one is decided on its past locations in the window (here the whole history)
    moved = {
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [121.45, 31.40]},
        }
    }
    reply = client.patch(
        f"{BASE}/entities/urn:ngsi-ld:NoiseSensor:2/attrs", json=moved, headers=sensors
    )
    assert reply.status_code == 204
    assert ids(client.get(TEMPORAL, params=near, headers=sensors)) == [1]
    assert (
        client.delete(f"{BASE}/entities/urn:ngsi-ld:NoiseSensor:1", headers=sensors).status_code
        == 204
    )
    assert ids(client.get(TEMPORAL, params=near, headers=sensors)) == [1]
    recent = {**near, "timerel": "after", "timeAt": "2100-01-01T00:00:00Z"}
    assert ids(client.get(TEMPORAL, params=recent, headers=sensors)) == []


def test_geo_query_on_another_geoproperty(client: TestClient, writer: H) -> None:
    entity = sensor(9, 100.0, 10.0)
    entity["observationSpace"] = {
        "type": "GeoProperty",
        "value": {"type": "Point", "coordinates": list(PEOPLE)},
    }
    create(client, writer, entity)
    params = {
        "georel": "near;maxDistance==100",
        "geometry": "Point",
        "coordinates": f"[{PEOPLE[0]},{PEOPLE[1]}]",
    }
    assert ids(client.get(TEMPORAL, params=params, headers=writer)) == []
    params["geoproperty"] = "observationSpace"
    assert ids(client.get(TEMPORAL, params=params, headers=writer)) == [9]


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"georel": "near;maxDistance==500"}, "georel, geometry and coordinates"),
        (
            {"georel": "near;maxDistance==500", "geometry": "Point"},
            "georel, geometry and coordinates",
        ),
        ({"geometry": "Point", "coordinates": "[121,31]"}, "georel, geometry and coordinates"),
        ({"georel": "nearby", "geometry": "Point", "coordinates": "[121,31]"}, "georel"),
        (
            {"georel": "near;maxDistance==-5", "geometry": "Point", "coordinates": "[121,31]"},
            "maxDistance must be a positive",
        ),
        ({"georel": "within", "geometry": "Point", "coordinates": "[121,31"}, "coordinates"),
        ({"georel": "within", "geometry": "Circle", "coordinates": "[121,31]"}, "geometry"),
        ({"georel": "within", "geometry": "Point", "coordinates": "[200,31]"}, "outside -180..180"),
        (
            {
                "georel": "within",
                "geometry": "Point",
                "coordinates": "[121,31]",
                "geoproperty": "a b",
            },
            "a b",
        ),
    ],
)
def test_bad_geo_queries_are_400(
    client: TestClient, sensors: H, params: dict[str, str], says: str
) -> None:
    reply = client.get(TEMPORAL, params={"type": "NoiseSensor", **params}, headers=sensors)
    assert says in problem(reply, "BadRequestData", 400)["detail"]


@pytest.mark.parametrize(
    ("geo_q", "says"),
    [
        ("near", "geoQ must be an object"),
        ([1, 2], "geoQ must be an object"),
        ({"georel": "near;maxDistance==5"}, "georel, geometry and coordinates"),
        ({"georel": "near;maxDistance==5", "geometry": "Point", "coordinates": "x"}, "coordinates"),
        (
            {"georel": "within", "geometry": "Point", "coordinates": [1, 2], "geoproperty": 5},
            "geoproperty",
        ),
    ],
)
def test_bad_geo_q_bodies_are_400(client: TestClient, sensors: H, geo_q: Any, says: str) -> None:
    body = {"type": "Query", "entities": [{"type": "NoiseSensor"}], "geoQ": geo_q}
    reply = client.post(QUERY, json=body, headers=sensors)
    assert says in problem(reply, "BadRequestData", 400)["detail"]


# -------------------------------------------------------------------------------------------
# scopeQ


def test_scope_queries(client: TestClient, sensors: H) -> None:
    def found(scope_q: str, **extra: str) -> list[int]:
        return ids(client.get(TEMPORAL, params={"scopeQ": scope_q, **extra}, headers=sensors))

    assert found("/上海/#") == [1, 2, 3]
    assert found("/上海/黄浦区") == [1]
    assert found("/上海/黄浦区/#") == [1, 2]
    assert found("/上海/+") == [1, 3]
    assert found("/#") == [1, 2, 3]
    assert found("/上海/#;/CompanyA") == [2]
    assert found("(/上海/浦东新区)|/CompanyA") == [2, 3]
    assert found("/Nowhere") == []
    assert found("/上海/#", type="NoiseSensor;Device") == [2]
    near = {
        "georel": "near;maxDistance==500",
        "geometry": "Point",
        "coordinates": f"[{PEOPLE[0]},{PEOPLE[1]}]",
    }
    assert found("/上海/黄浦区", **near) == [1]
    body = {"type": "Query", "entities": [{"type": "NoiseSensor"}], "scopeQ": "/上海/+"}
    assert ids(client.post(QUERY, json=body, headers=sensors)) == [1, 3]
    # the current scope decides
    reply = client.patch(
        f"{BASE}/entities/urn:ngsi-ld:NoiseSensor:4",
        json={"scope": "/上海/宝山区"},
        headers=sensors,
    )
    assert reply.status_code == 204, reply.text
    assert found("/上海/+") == [1, 3, 4]


@pytest.mark.parametrize(
    ("scope_q", "says"),
    [
        ("", "empty"),
        ("上海", "starts with '/'"),
        ("/上海/#/x", "last level"),
        ("(/a", "missing ')'"),
    ],
)
def test_bad_scope_q_is_400(client: TestClient, sensors: H, scope_q: str, says: str) -> None:
    reply = client.get(TEMPORAL, params={"type": "NoiseSensor", "scopeQ": scope_q}, headers=sensors)
    detail = problem(reply, "BadRequestData", 400)["detail"]
    assert says in detail
    assert "scopeQ" in detail
    body = {"type": "Query", "entities": [{"type": "NoiseSensor"}], "scopeQ": scope_q}
    assert (
        says
        in problem(client.post(QUERY, json=body, headers=sensors), "BadRequestData", 400)["detail"]
    )
    body["scopeQ"] = 7
    assert (
        "must be a string"
        in problem(client.post(QUERY, json=body, headers=sensors), "BadRequestData", 400)["detail"]
    )


# -------------------------------------------------------------------------------------------
# several entity selectors in a POST query


def selected(client: TestClient, headers: H, selectors: list[Any], **params: Any) -> Any:
    body = {"type": "Query", "entities": selectors}
    return client.post(QUERY, json=body, params=params, headers=headers)


def test_several_selectors_select_entities_matching_any(client: TestClient, sensors: H) -> None:
    one, device = {"id": "urn:ngsi-ld:NoiseSensor:1"}, {"type": "Device"}
    assert ids(selected(client, sensors, [one, device])) == [1, 2]
    # each selector's members hold together: sensor 1 is no Device, so only 2 and 4 match
    both = {"idPattern": "urn:ngsi-ld:NoiseSensor:[12]", "type": "Device"}
    assert ids(selected(client, sensors, [both, {"idPattern": ".*:4"}])) == [2, 4]
    # a pattern with alternatives has no literal prefix: every id is tested against it
    assert ids(selected(client, sensors, [{"idPattern": ".*:3|.*:1"}, device])) == [1, 2, 3]
    assert ids(selected(client, sensors, [{"type": "Car"}, {"idPattern": ".*:9"}])) == []


def test_several_selectors_page_and_count_as_one_result(client: TestClient, sensors: H) -> None:
    selectors = [{"idPattern": ".*:[34]"}, {"id": "urn:ngsi-ld:NoiseSensor:1"}]
    first = selected(client, sensors, selectors, limit=2, count="true")
    assert ids(first) == [1, 3]
    assert first.headers["NGSILD-Results-Count"] == "3"
    assert ids(selected(client, sensors, selectors, limit=2, offset=2)) == [4]


def test_several_selectors_stay_in_their_tenant(client: TestClient, sensors: H) -> None:
    other = {**sensors, "NGSILD-Tenant": "minhang"}
    create(client, other, sensor(1, *PEOPLE))
    selectors = [{"id": "urn:ngsi-ld:NoiseSensor:1"}, {"idPattern": ".*:2"}]
    assert ids(selected(client, other, selectors)) == [1]
    assert ids(selected(client, sensors, selectors)) == [1, 2]


@pytest.mark.parametrize(
    ("selectors", "says"),
    [
        ([{"type": "NoiseSensor"}, {}], "entities[1] needs a type, id or idPattern"),
        ([{"type": "NoiseSensor"}, "Device"], "entities[1] must be an object"),
        ([{"type": 5}], "the type of entities[0] must be a string"),
        ([{"idPattern": "("}, {"type": "Device"}], "idPattern is not a regex"),
        ([{"type": "Device"}, {"id": "not an id"}], "not an id"),
    ],
)
def test_bad_selectors_are_400(client: TestClient, sensors: H, selectors: Any, says: str) -> None:
    assert says in problem(selected(client, sensors, selectors), "BadRequestData", 400)["detail"]


def test_entities_must_be_an_array(client: TestClient, sensors: H) -> None:
    reply = client.post(QUERY, json={"type": "Query", "entities": {"type": "X"}}, headers=sensors)
    assert "entities must be an array" in problem(reply, "BadRequestData", 400)["detail"]


def test_id_pattern_with_alternatives_finds_each(client: TestClient, sensors: H) -> None:
    # (the literal text before the `|` is no prefix of every match)
    pattern = "urn:ngsi-ld:NoiseSensor:3|urn:ngsi-ld:NoiseSensor:1"
    assert ids(client.get(TEMPORAL, params={"idPattern": pattern}, headers=sensors)) == [1, 3]
    assert ids(selected(client, sensors, [{"idPattern": pattern}])) == [1, 3]
