"""Batch operations, tenants, permissions, history rows and change events."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from pujiang.context.models import history_rows
from pujiang.platform.deps import AppContext
from tests.context.conftest import BASE, VOCAB, create, problem, station

HISTORY = history_rows()  # the broker's history rows with their series' columns

H = dict[str, str]
OPS = f"{BASE}/entityOperations"


def test_batch_create_upsert_update_delete(client: TestClient, writer: H) -> None:
    reply = client.post(f"{OPS}/create", json=[station(1), station(2)], headers=writer)
    assert reply.status_code == 201, reply.text
    assert reply.json() == ["urn:ngsi-ld:AirQualityObserved:1", "urn:ngsi-ld:AirQualityObserved:2"]
    reply = client.post(
        f"{OPS}/create", json=[station(2), station(3), {"id": "bad", "type": "T"}], headers=writer
    )
    assert reply.status_code == 207
    body = reply.json()
    assert body["success"] == ["urn:ngsi-ld:AirQualityObserved:3"]
    kinds = sorted(e["error"]["type"].rsplit("/", 1)[1] for e in body["errors"])
    assert kinds == ["AlreadyExists", "BadRequestData"]
    # upsert: replace by default, update with options=update
    reply = client.post(f"{OPS}/upsert", json=[station(1, pm25=99)], headers=writer)
    assert reply.status_code == 204, reply.text
    reply = client.post(f"{OPS}/upsert", json=[station(1, pm25=98), station(4)], headers=writer)
    assert reply.status_code == 201
    assert reply.json() == ["urn:ngsi-ld:AirQualityObserved:4"]
    partial = {"id": "urn:ngsi-ld:AirQualityObserved:1", "type": "AirQualityObserved", "no2": 5}
    reply = client.post(
        f"{OPS}/upsert", params={"options": "update"}, json=[partial], headers=writer
    )
    assert reply.status_code == 204
    one = client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1", headers=writer).json()
    assert one["pm25"]["value"] == 98
    assert one["no2"]["value"] == 5
    reply = client.post(f"{OPS}/upsert", json=[partial], headers=writer)  # replace
    assert reply.status_code == 204
    one = client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1", headers=writer).json()
    assert "pm25" not in one
    problem(  # an options value the operation does not define (clause 6.3.20)
        client.post(f"{OPS}/upsert", params={"options": "both"}, json=[partial], headers=writer),
        "InvalidRequest",
        400,
    )
    # update
    reply = client.post(
        f"{OPS}/update",
        json=[
            {"id": "urn:ngsi-ld:AirQualityObserved:2", "pm25": 7},
            {"id": "urn:ngsi-ld:X:404", "a": 1},
        ],
        headers=writer,
    )
    assert reply.status_code == 207
    assert reply.json()["success"] == ["urn:ngsi-ld:AirQualityObserved:2"]
    assert reply.json()["errors"][0]["error"]["type"].endswith("ResourceNotFound")
    # delete
    reply = client.post(
        f"{OPS}/delete",
        json=["urn:ngsi-ld:AirQualityObserved:1", "urn:ngsi-ld:AirQualityObserved:404"],
        headers=writer,
    )
    assert reply.status_code == 207
    reply = client.post(f"{OPS}/delete", json=["urn:ngsi-ld:AirQualityObserved:2"], headers=writer)
    assert reply.status_code == 204
    problem(client.post(f"{OPS}/delete", json={}, headers=writer), "BadRequestData", 400)
    problem(client.post(f"{OPS}/create", json=[], headers=writer), "BadRequestData", 400)
    problem(client.post(f"{OPS}/create", json={"id": "x"}, headers=writer), "BadRequestData", 400)


def test_tenants_are_isolated(client: TestClient, writer: H) -> None:
    east = {**writer, "NGSILD-Tenant": "pudong"}
    west = {**writer, "NGSILD-Tenant": "putuo"}
    problem(
        client.get(f"{BASE}/entities", params={"type": "T"}, headers=east), "NonexistentTenant", 404
    )
    create(client, east, station(1))
    create(client, writer, station(1, pm25=1))
    assert (
        client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1", headers=east).json()[
            "pm25"
        ]["value"]
        == 35
    )
    assert (
        client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1", headers=writer).json()[
            "pm25"
        ]["value"]
        == 1
    )
    problem(
        client.get(f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:1", headers=west),
        "NonexistentTenant",
        404,
    )
    problem(client.get(f"{BASE}/types", headers=west), "NonexistentTenant", 404)
    problem(
        client.get(
            f"{BASE}/entities", params={"type": "T"}, headers={**writer, "NGSILD-Tenant": "a b"}
        ),
        "BadRequestData",
        400,
    )
    found = client.get(f"{BASE}/entities", params={"type": "AirQualityObserved"}, headers=east)
    assert len(found.json()) == 1


def test_permissions(client: TestClient, reader: H, login: Any) -> None:
    assert client.get(f"{BASE}/entities", params={"type": "T"}).status_code == 401
    assert client.post(f"{BASE}/entities", json=station(1)).status_code == 401
    assert client.post(f"{BASE}/entities", json=station(1), headers=reader).status_code == 403
    assert client.get(f"{BASE}/entities", params={"type": "T"}, headers=reader).status_code == 200
    citizen = login("citizen1", "citizen")
    assert client.get(f"{BASE}/entities", params={"type": "T"}, headers=citizen).status_code == 403
    assert client.delete(f"{BASE}/entities/urn:x:1", headers=reader).status_code == 403


def test_history_and_events(client: TestClient, writer: H, context: AppContext) -> None:
    events: list[dict[str, Any]] = []
    context.bus.subscribe("context.entity.changed", lambda _t, payload: events.append(payload))
    entity = station(1)
    entity["pm25"]["observedAt"] = "2026-11-24T01:00:00Z"
    create(client, writer, entity)
    eid = entity["id"]
    client.patch(f"{BASE}/entities/{eid}/attrs/pm25", json={"value": 40}, headers=writer)
    client.delete(f"{BASE}/entities/{eid}/attrs/location", headers=writer)
    client.delete(f"{BASE}/entities/{eid}", headers=writer)
    assert [e["operation"] for e in events] == ["create", "update", "delete_attrs", "delete"]
    first = events[0]
    assert first["tenant"] == ""
    assert first["id"] == eid
    assert first["type"] == [VOCAB + "AirQualityObserved"]
    assert set(first["attributes"]) == {VOCAB + "pm25", "https://uri.etsi.org/ngsi-ld/location"}
    assert first["previous"] is None
    assert first["entity"][VOCAB + "pm25"][0]["value"] == 35
    update = events[1]
    assert update["attributes"] == [VOCAB + "pm25"]
    assert update["previous"][VOCAB + "pm25"][0]["value"] == 35
    assert update["entity"][VOCAB + "pm25"][0]["value"] == 40
    assert events[3]["entity"] is None
    assert events[3]["previous"]["id"] == eid
    with context.db.session() as session:
        rows = session.execute(
            select(
                HISTORY.c.attr,
                HISTORY.c.num,
                HISTORY.c.deleted,
                HISTORY.c.observed_at,
            )
            .where(HISTORY.c.entity_id == eid)
            .order_by(HISTORY.c.id)
        ).all()
    pm = VOCAB + "pm25"
    loc = "https://uri.etsi.org/ngsi-ld/location"
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (pm, 35.0, False),
        (loc, None, False),
        (pm, 40.0, False),
        (loc, None, True),
        (pm, None, True),
    ]
    observed = rows[0][3]
    assert observed is not None
    assert observed.year == 2026


def test_spatial_index_follows_batch_creates_replaces_and_deletes(context: Any) -> None:
    """The service writes the SQLite R*Tree itself (no triggers): after creates, replaces,
    updates and deletes it holds exactly the boxes of `context_geo`, and geo-queries agree."""
    from sqlalchemy import text

    from pujiang.context.entity_form import LOCATION
    from pujiang.context.ngsild_geo import parse_geoquery
    from pujiang.context.queries import Query
    from pujiang.context.service import ContextBroker

    broker = ContextBroker(context.db)
    kind = "https://uri.etsi.org/ngsi-ld/default-context/Spot"

    def spot(i: int, lon: float) -> dict[str, Any]:
        point = {"type": "Point", "coordinates": [lon, 31.0]}
        return {
            "id": f"urn:ngsi-ld:Spot:{i}",
            "type": [kind],
            LOCATION: [{"type": "GeoProperty", "value": point}],
        }

    def near(lon: float) -> list[str]:
        geo = parse_geoquery("near;maxDistance==100", "Point", [lon, 31.0], LOCATION)
        found, _ = broker.query("", Query(geo=geo, limit=100))
        return sorted(e["id"] for e in found)

    broker.batch_upsert("", [spot(i, 121.0 + i) for i in range(3)])
    broker.batch_upsert("", [spot(1, 110.0)])  # replace: the box moves
    broker.batch_update("", [spot(2, 112.0)])  # update: the box moves
    broker.batch_delete("", ["urn:ngsi-ld:Spot:0"])
    broker.create("", spot(3, 113.0))
    broker.delete("", "urn:ngsi-ld:Spot:3")
    for gone in (121.0, 122.0, 123.0, 113.0):
        assert near(gone) == []
    assert near(110.0) == ["urn:ngsi-ld:Spot:1"]
    assert near(112.0) == ["urn:ngsi-ld:Spot:2"]
    if context.db.engine.dialect.name == "sqlite":
        with context.db.engine.connect() as connection:
            boxes = connection.execute(
                text("SELECT id, minx, maxx, miny, maxy FROM context_geo ORDER BY id")
            ).all()
            tree = connection.execute(
                text("SELECT id, minx, maxx, miny, maxy FROM context_geo_rtree ORDER BY id")
            ).all()
            triggers = connection.execute(
                text(
                    "SELECT name FROM sqlite_master "
                    "WHERE type = 'trigger' AND name LIKE 'context_geo%'"
                )
            ).all()
        assert [b[0] for b in tree] == [b[0] for b in boxes]
        assert len(boxes) == 2
        assert triggers == []
