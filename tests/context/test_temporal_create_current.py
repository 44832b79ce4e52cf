"""`POST /temporal/entities` (clause 5.6.11) creates the current entity too when it has none:
per attribute and datasetId the instance with the latest `observedAt` (the last given when none
has one), its types and scope; every instance lands in the history exactly once. An entity that
exists keeps today's behaviour (instances added to the history only). Also: the temporal write
routes refuse query parameters they do not define (clause 6.3.20), and `GET /subscriptions`
pages with `Link` rel="next"/"prev" as `/entities` does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from pujiang.context import subscriptions
from pujiang.platform.deps import AppContext
from tests.context import test_subscriptions as shared
from tests.context.conftest import BASE, problem
from tests.context.test_subscriptions import Receiver, subscription

# The fixtures of test_subscriptions.py, used here by name.
api = shared.api
auth = shared.auth
receiver = shared.receiver
runtime = shared.runtime

TEMPORAL = f"{BASE}/temporal/entities"
ENTITIES = f"{BASE}/entities"
SUBS = f"{BASE}/subscriptions"
STOP = "urn:ngsi-ld:BusStop:xuhui-12"
CAM = "urn:ngsi-ld:Dataset:cam"
H = dict[str, str]


def at(minute: int) -> str:
    return f"2026-11-24T08:{minute:02d}:00Z"


def reading(value: Any, minute: int | None = None, **extra: Any) -> dict[str, Any]:
    instance: dict[str, Any] = {"type": "Property", "value": value, **extra}
    if minute is not None:
        instance["observedAt"] = at(minute)
    return instance


def bus_stop(**attrs: Any) -> dict[str, Any]:
    return {"id": STOP, "type": "BusStop", **attrs}


def history(client: TestClient, headers: H, entity_id: str = STOP) -> dict[str, Any]:
    reply = client.get(f"{TEMPORAL}/{entity_id}", headers=headers)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def instances(entity: dict[str, Any], name: str) -> list[dict[str, Any]]:
    found = entity.get(name, [])
    return found if isinstance(found, list) else [found]


def series(entity: dict[str, Any], name: str) -> list[tuple[Any, str | None]]:
    """(value, datasetId) of every instance of an attribute, sorted."""
    return sorted(
        ((i["value"], i.get("datasetId")) for i in instances(entity, name)),
        key=lambda pair: (pair[1] or "", pair[0]),
    )


def current(client: TestClient, headers: H, entity_id: str = STOP) -> dict[str, Any]:
    reply = client.get(f"{ENTITIES}/{entity_id}", headers=headers)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


# -------------------------------------------------------------------------------------------
# the current entity created with the temporal one


def test_creates_the_current_entity_from_the_latest_instances(
    client: TestClient, writer: H
) -> None:
    body = bus_stop(
        waiting=[
            reading(9, 10),
            reading(12, 30),  # the latest default instance, though not the last given
            reading(4, 0),
            reading(2, 20, datasetId=CAM),
            reading(3, 5, datasetId=CAM),
        ],
        shelter=reading("intact", 1),
        operator={"type": "Relationship", "object": "urn:ngsi-ld:Company:bus-5"},
    )
    reply = client.post(TEMPORAL, json=body, headers=writer)
    assert reply.status_code == 201, reply.text
    assert reply.headers["Location"] == f"{TEMPORAL}/{STOP}"

    entity = current(client, writer)
    assert entity["type"] == "BusStop"
    waiting = {i.get("datasetId"): i for i in instances(entity, "waiting")}
    assert set(waiting) == {None, CAM}
    assert (waiting[None]["value"], waiting[None]["observedAt"]) == (12, at(30))
    assert (waiting[CAM]["value"], waiting[CAM]["observedAt"]) == (2, at(20))
    assert entity["shelter"]["value"] == "intact"
    assert entity["operator"]["object"] == "urn:ngsi-ld:Company:bus-5"
    assert "instanceId" not in waiting[None]

    # every instance in the history exactly once, whether it went through the current entity
    # or straight to the history
    evolution = history(client, writer)
    assert series(evolution, "waiting") == [(4, None), (9, None), (12, None), (2, CAM), (3, CAM)]
    assert [i["value"] for i in instances(evolution, "shelter")] == ["intact"]
    assert [i["object"] for i in instances(evolution, "operator")] == ["urn:ngsi-ld:Company:bus-5"]
    ids = [i["instanceId"] for name in ("waiting", "shelter", "operator") for i in evolution[name]]
    assert len(ids) == len(set(ids)) == 7
    # time order is kept whichever way an instance was written
    default = [i["value"] for i in instances(evolution, "waiting") if "datasetId" not in i]
    assert default == [4, 9, 12]


def test_without_observed_at_the_last_given_is_current(client: TestClient, writer: H) -> None:
    body = bus_stop(waiting=[reading(1), reading(2), reading(3)])
    assert client.post(TEMPORAL, json=body, headers=writer).status_code == 201
    assert current(client, writer)["waiting"]["value"] == 3
    evolution = history(client, writer)
    assert series(evolution, "waiting") == [(1, None), (2, None), (3, None)]
    # instances without observedAt are placed at their recording time: the current one last
    assert [i["value"] for i in instances(evolution, "waiting")][-1] == 3
    reply = client.get(f"{TEMPORAL}/{STOP}", params={"lastN": 1}, headers=writer)
    assert [i["value"] for i in instances(reply.json(), "waiting")] == [3]


def test_an_observed_instance_beats_unobserved_ones(client: TestClient, writer: H) -> None:
    body = bus_stop(waiting=[reading(5, 10), reading(6), reading(7, 2)])
    assert client.post(TEMPORAL, json=body, headers=writer).status_code == 201
    assert current(client, writer)["waiting"]["value"] == 5
    assert series(history(client, writer), "waiting") == [(5, None), (6, None), (7, None)]


def test_equal_observed_at_the_last_given_wins(client: TestClient, writer: H) -> None:
    # the same instant written two ways: the offset is applied when comparing
    body = bus_stop(
        waiting=[
            reading(1, 10),
            {"type": "Property", "value": 2, "observedAt": "2026-11-24T16:10:00+08:00"},
        ]
    )
    assert client.post(TEMPORAL, json=body, headers=writer).status_code == 201
    assert current(client, writer)["waiting"]["value"] == 2
    assert series(history(client, writer), "waiting") == [(1, None), (2, None)]


def test_simplified_form_types_and_scope(client: TestClient, writer: H) -> None:
    body = {
        "id": STOP,
        "type": ["BusStop", "Shelter"],
        "scope": ["/Shanghai/Xuhui", "/Transit"],
        "waiting": {"type": "Property", "values": [[4, at(0)], [7, at(30)], [5, at(20)]]},
    }
    assert client.post(TEMPORAL, json=body, headers=writer).status_code == 201
    entity = current(client, writer)
    assert sorted(entity["type"]) == ["BusStop", "Shelter"]
    assert entity["scope"] == ["/Shanghai/Xuhui", "/Transit"]
    assert (entity["waiting"]["value"], entity["waiting"]["observedAt"]) == (7, at(30))
    # the current entity is found by the entity queries
    reply = client.get(
        ENTITIES, params={"type": "Shelter", "scopeQ": "/Shanghai/#"}, headers=writer
    )
    assert [e["id"] for e in reply.json()] == [STOP]
    assert series(history(client, writer), "waiting") == [(4, None), (5, None), (7, None)]


def test_an_existing_entity_gets_history_only(client: TestClient, writer: H) -> None:
    reply = client.post(
        ENTITIES, json=bus_stop(waiting=reading(1, 0), shelter=reading("intact")), headers=writer
    )
    assert reply.status_code == 201, reply.text
    before = current(client, writer)
    body = bus_stop(waiting=[reading(8, 40), reading(9, 50)], lamp=reading("on", 45))
    reply = client.post(TEMPORAL, json=body, headers=writer)
    assert reply.status_code == 204, reply.text
    after = current(client, writer)
    assert after == before  # the current state is not touched
    evolution = history(client, writer)
    assert series(evolution, "waiting") == [(1, None), (8, None), (9, None)]
    assert [i["value"] for i in instances(evolution, "lamp")] == ["on"]


def test_history_without_current_state(client: TestClient, writer: H) -> None:
    """An entity deleted from the current state keeps its history: a later POST (without a
    type) creates it again from the history's type and answers 204, the evolution existing."""
    reply = client.post(TEMPORAL, json=bus_stop(waiting=reading(1, 0)), headers=writer)
    assert reply.status_code == 201, reply.text
    assert client.delete(f"{ENTITIES}/{STOP}", headers=writer).status_code == 204
    problem(client.get(f"{ENTITIES}/{STOP}", headers=writer), "ResourceNotFound", 404)
    body = {"id": STOP, "waiting": [reading(3, 30), reading(2, 20)]}
    reply = client.post(TEMPORAL, json=body, headers=writer)
    assert reply.status_code == 204, reply.text
    entity = current(client, writer)
    assert entity["type"] == "BusStop"
    assert entity["waiting"]["value"] == 3
    assert series(history(client, writer), "waiting") == [(1, None), (2, None), (3, None)]


def test_a_deleted_evolution_can_be_created_again(client: TestClient, writer: H) -> None:
    """`DELETE /temporal/entities/{id}` removes the entity from both views, so the same POST
    creates it again (201), with no instance of the first life left in its history."""
    body = bus_stop(waiting=[reading(1, 0), reading(2, 1)])
    assert client.post(TEMPORAL, json=body, headers=writer).status_code == 201
    assert client.delete(f"{TEMPORAL}/{STOP}", headers=writer).status_code == 204
    problem(client.get(f"{ENTITIES}/{STOP}", headers=writer), "ResourceNotFound", 404)
    found = client.get(ENTITIES, params={"type": "BusStop"}, headers=writer).json()
    assert found == []
    again = bus_stop(waiting=[reading(7, 5)])
    assert client.post(TEMPORAL, json=again, headers=writer).status_code == 201
    assert current(client, writer)["waiting"]["value"] == 7
    assert series(history(client, writer), "waiting") == [(7, None)]


def test_delete_attribute_of_an_entity_made_through_the_temporal_api(
    client: TestClient, writer: H
) -> None:
    """The flow of ETSI 020_17-020_20: create through the temporal API, delete an attribute
    through the entity API, find the deletion with timeproperty=deletedAt."""
    body = bus_stop(waiting=[reading(1, 0), reading(2, 10)], shelter=reading("intact", 5))
    assert client.post(TEMPORAL, json=body, headers=writer).status_code == 201
    reply = client.delete(f"{ENTITIES}/{STOP}/attrs/shelter", headers=writer)
    assert reply.status_code == 204, reply.text
    reply = client.get(f"{TEMPORAL}/{STOP}", params={"timeproperty": "deletedAt"}, headers=writer)
    assert reply.status_code == 200, reply.text
    deleted = reply.json()
    assert set(deleted) == {"id", "type", "shelter"}
    assert deleted["shelter"][0]["value"] == "urn:ngsi-ld:null"
    assert "deletedAt" in deleted["shelter"][0]


def test_the_create_notifies_subscribers(
    api: TestClient,
    auth: H,
    context: AppContext,
    runtime: subscriptions.Runtime,
    receiver: Receiver,
) -> None:
    events: list[dict[str, Any]] = []
    context.bus.subscribe("context.entity.changed", lambda _t, payload: events.append(payload))
    doc = subscription(receiver.url, entities=[{"type": "BusStop"}])
    assert api.post(SUBS, json=doc, headers=auth).status_code == 201
    body = bus_stop(waiting=[reading(4, 0), reading(9, 10)])
    assert api.post(TEMPORAL, json=body, headers=auth).status_code == 201
    [got] = receiver.wait(1)
    [notified] = got.body["data"]
    assert notified["id"] == STOP
    assert notified["waiting"]["value"] == 9
    assert [e["operation"] for e in events] == ["create"]
    # adding to the history of the entity now existing changes nothing current: no notification
    more = bus_stop(waiting=[reading(1, 20)])
    assert api.post(TEMPORAL, json=more, headers=auth).status_code == 204
    assert receiver.quiet() == []


def test_nothing_is_written_when_the_type_is_missing(client: TestClient, writer: H) -> None:
    body = {"id": STOP, "waiting": [reading(1, 0)]}
    reply = client.post(TEMPORAL, json=body, headers=writer)
    detail = problem(reply, "BadRequestData", 400)["detail"]
    assert "type" in detail
    problem(client.get(f"{ENTITIES}/{STOP}", headers=writer), "ResourceNotFound", 404)
    problem(client.get(f"{TEMPORAL}/{STOP}", headers=writer), "ResourceNotFound", 404)


@pytest.mark.parametrize("scope", ["Shanghai", ["/ok", 3], {"a": 1}])
def test_bad_scope_is_refused(client: TestClient, writer: H, scope: Any) -> None:
    body = {**bus_stop(waiting=[reading(1, 0)]), "scope": scope}
    detail = problem(client.post(TEMPORAL, json=body, headers=writer), "BadRequestData", 400)
    assert "scope" in detail["detail"]
    problem(client.get(f"{TEMPORAL}/{STOP}", headers=writer), "ResourceNotFound", 404)


# -------------------------------------------------------------------------------------------
# query parameters of the temporal write routes (clause 6.3.20)


def _instance_id(client: TestClient, writer: H) -> str:
    evolution = history(client, writer)
    return str(instances(evolution, "waiting")[0]["instanceId"])


WRITE_ROUTES: list[tuple[str, str, Callable[[str], str], Any]] = [
    ("post", "create", lambda _i: TEMPORAL, bus_stop(waiting=[reading(5, 50)])),
    ("post", "add attrs", lambda _i: f"{TEMPORAL}/{STOP}/attrs", {"waiting": [reading(6, 51)]}),
    ("delete", "delete attr", lambda _i: f"{TEMPORAL}/{STOP}/attrs/waiting", None),
    (
        "patch",
        "modify instance",
        lambda i: f"{TEMPORAL}/{STOP}/attrs/waiting/{i}",
        {"waiting": [reading(7, 0)]},
    ),
    ("delete", "delete instance", lambda i: f"{TEMPORAL}/{STOP}/attrs/waiting/{i}", None),
    ("delete", "delete entity", lambda _i: f"{TEMPORAL}/{STOP}", None),
]


@pytest.mark.parametrize(
    ("method", "name", "path", "body"), WRITE_ROUTES, ids=[r[1] for r in WRITE_ROUTES]
)
def test_write_routes_refuse_unknown_parameters(
    client: TestClient, writer: H, method: str, name: str, path: Callable[[str], str], body: Any
) -> None:
    reply = client.post(TEMPORAL, json=bus_stop(waiting=[reading(1, 0)]), headers=writer)
    assert reply.status_code == 201, reply.text
    url = path(_instance_id(client, writer))
    kwargs: dict[str, Any] = {"headers": writer}
    if body is not None:
        kwargs["json"] = body
    reply = client.request(method, url, params={"nonsense": "1", "options": "x"}, **kwargs)
    detail = problem(reply, "InvalidRequest", 400)["detail"]
    assert "nonsense" in detail, detail
    assert "options" in detail, detail
    # nothing was written
    assert series(history(client, writer), "waiting") == [(1, None)]
    # local and via are defined for every operation and change nothing here
    reply = client.request(method, url, params={"local": "true", "via": "broker-2"}, **kwargs)
    assert reply.status_code in (201, 204), (name, reply.text)


def test_attribute_delete_takes_dataset_id_and_delete_all(client: TestClient, writer: H) -> None:
    body = bus_stop(
        waiting=[reading(1, 0), reading(2, 1, datasetId=CAM), reading(3, 2)],
        shelter=[reading("intact", 0)],
    )
    assert client.post(TEMPORAL, json=body, headers=writer).status_code == 201
    url = f"{TEMPORAL}/{STOP}/attrs/waiting"
    reply = client.delete(url, params={"datasetId": CAM}, headers=writer)
    assert reply.status_code == 204, reply.text
    assert series(history(client, writer), "waiting") == [(1, None), (3, None)]
    reply = client.delete(url, params={"deleteAll": "true"}, headers=writer)
    assert reply.status_code == 204, reply.text
    assert "waiting" not in history(client, writer)
    bad = client.delete(url, params={"deleteall": "true"}, headers=writer)  # names are exact
    assert "deleteall" in problem(bad, "InvalidRequest", 400)["detail"]


# -------------------------------------------------------------------------------------------
# paging links on GET /subscriptions (ETSI 031_02)


def _links(reply: Any) -> dict[str, str]:
    """rel -> URL of the Link header's entries."""
    found = {}
    for part in reply.headers.get("Link", "").split(", <"):
        url, _, rest = part.lstrip("<").partition(">")
        for param in rest.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "rel":
                found[value.strip('"')] = url
    return found


def test_subscription_list_pages_with_links(api: TestClient, auth: H) -> None:
    made = []
    for n in range(5):
        doc = subscription(f"http://127.0.0.1:9/notify-{n}", id=f"urn:ngsi-ld:Subscription:s{n}")
        assert api.post(SUBS, json=doc, headers=auth).status_code == 201
        made.append(doc["id"])

    first = api.get(SUBS, params={"limit": 2}, headers=auth)
    assert first.status_code == 200, first.text
    links = _links(first)
    assert "prev" not in links
    assert parse_qs(urlsplit(links["next"]).query) == {"limit": ["2"], "offset": ["2"]}
    # the @context Link is still there beside the paging links
    assert any("ld+json" in value for value in first.headers.get_list("Link")), first.headers
    assert "http://www.w3.org/ns/json-ld#context" in first.headers["Link"]

    seen = [s["id"] for s in first.json()]
    reply = first
    while "next" in _links(reply):
        reply = api.get(_links(reply)["next"], headers=auth)
        assert reply.status_code == 200, reply.text
        seen += [s["id"] for s in reply.json()]
    assert seen == made
    last = _links(reply)
    assert "next" not in last
    assert parse_qs(urlsplit(last["prev"]).query) == {"limit": ["2"], "offset": ["2"]}

    # other parameters are kept; an exact last page has no next; a count alone pages nothing
    middle = _links(api.get(SUBS, params={"limit": 2, "offset": 2, "count": "true"}, headers=auth))
    assert parse_qs(urlsplit(middle["next"]).query)["count"] == ["true"]
    assert "next" not in _links(api.get(SUBS, params={"limit": 5}, headers=auth))
    counted = api.get(SUBS, params={"limit": 0, "count": "true"}, headers=auth)
    assert counted.headers["NGSILD-Results-Count"] == "5"
    assert set(_links(counted)) <= {"http://www.w3.org/ns/json-ld#context"}
    # JSON-LD replies carry the paging links alone
    jsonld = api.get(SUBS, params={"limit": 2}, headers={**auth, "Accept": "application/ld+json"})
    assert set(_links(jsonld)) == {"next"}
    # the route's own path, typed with the reply's media type, whatever slash the request had
    slashed = api.get(
        f"{SUBS}/",
        params={"limit": 2, "offset": 2},
        headers={**auth, "Accept": "application/ld+json"},
    )
    header = slashed.headers["Link"]
    assert f'<{SUBS}?limit=2&offset=0>; rel="prev"; type="application/ld+json"' in header
    assert f'<{SUBS}?limit=2&offset=4>; rel="next"; type="application/ld+json"' in header


def test_subscription_routes_refuse_unknown_parameters(api: TestClient, auth: H) -> None:
    doc = subscription("http://127.0.0.1:9/notify", id="urn:ngsi-ld:Subscription:p1")
    assert api.post(SUBS, json=doc, headers=auth).status_code == 201
    for reply in (
        api.get(SUBS, params={"invalidParam": "x"}, headers=auth),
        api.get(f"{SUBS}/{doc['id']}", params={"limt": "1"}, headers=auth),
        api.post(
            SUBS, params={"x": "1"}, json={**doc, "id": "urn:ngsi-ld:Subscription:p2"}, headers=auth
        ),
        api.delete(f"{SUBS}/{doc['id']}", params={"force": "true"}, headers=auth),
    ):
        detail = problem(reply, "InvalidRequest", 400)["detail"]
        assert "not defined for this operation" in detail
    assert api.get(SUBS, params={"local": "true"}, headers=auth).status_code == 200
    assert api.get(f"{SUBS}/{doc['id']}", headers=auth).status_code == 200  # nothing deleted
