"""Temporal evolution of entities: parameters, aggregation, and the /temporal API end to end."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pujiang.context.errors import BadData
from pujiang.context.temporal import (
    Duration,
    aggregate,
    parse_duration,
    parse_temporal_query,
)
from pujiang.settings import Settings

BASE = "/ngsi-ld/v1"
TEMPORAL = f"{BASE}/temporal/entities"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
STATION = "urn:ngsi-ld:AirQualityObserved:310101-1"


def problem(reply: Any, kind: str, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = reply.json()
    assert body["type"] == ERR + kind, body
    return body


# -------------------------------------------------------------------------------------------
# durations and parameters (pure)


@pytest.mark.parametrize(
    ("text", "months", "span"),
    [
        ("PT1H", 0, timedelta(hours=1)),
        ("PT15M", 0, timedelta(minutes=15)),
        ("PT30S", 0, timedelta(seconds=30)),
        ("PT0.5S", 0, timedelta(milliseconds=500)),
        ("P1D", 0, timedelta(days=1)),
        ("P1W", 0, timedelta(weeks=1)),
        ("P1DT12H", 0, timedelta(days=1, hours=12)),
        ("P1Y", 12, timedelta(0)),
        ("P1Y2M", 14, timedelta(0)),
        ("P3Y6M4DT12H30M5S", 42, timedelta(days=4, hours=12, minutes=30, seconds=5)),
        ("PT0S", 0, timedelta(0)),
        ("P0D", 0, timedelta(0)),
    ],
)
def test_parse_duration(text: str, months: int, span: timedelta) -> None:
    assert parse_duration(text) == Duration(months, span)


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "1H", "PT1D", "P1H", "P-1D", "P1M2Y", "x"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(BadData, match="ISO 8601"):
        parse_duration(text)


def test_months_are_calendar_months() -> None:
    jan31 = datetime(2026, 1, 31, 8, tzinfo=UTC)
    assert Duration(1).after(jan31) == datetime(2026, 2, 28, 8, tzinfo=UTC)
    assert Duration(12).after(datetime(2024, 2, 29, tzinfo=UTC)) == datetime(
        2025, 2, 28, tzinfo=UTC
    )
    assert Duration(1, timedelta(days=1)).after(jan31) == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert Duration().is_zero


def test_temporal_parameters() -> None:
    query = parse_temporal_query(
        timerel="between",
        time_at="2026-11-24T09:00:00+08:00",
        end_time_at="2026-11-24T02:00:00Z",
        timeproperty="modifiedAt",
        last_n="3",
    )
    assert query.time_at == datetime(2026, 11, 24, 1, tzinfo=UTC)
    assert query.end_time_at == datetime(2026, 11, 24, 2, tzinfo=UTC)
    assert query.timeproperty == "modifiedAt"
    assert query.last_n == 3
    aggregated = parse_temporal_query(aggr_methods="sum, avg,sum", aggr_period="PT1H")
    assert aggregated.aggr_methods == ["sum", "avg"]
    assert aggregated.aggr_period == Duration(0, timedelta(hours=1))
    assert parse_temporal_query(aggr_methods=["max"]).aggr_period == Duration()
    assert parse_temporal_query().timerel is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"timerel": "during", "time_at": "2026-01-01T00:00:00Z"}, "timerel must be"),
        ({"timerel": "before"}, "needs timeAt"),
        ({"timerel": "before", "time_at": "yesterday"}, "ISO 8601 dateTime"),
        ({"timerel": "before", "time_at": "2026-01-01"}, "ISO 8601 dateTime"),
        ({"timerel": "between", "time_at": "2026-01-01T00:00:00Z"}, "needs endTimeAt"),
        (
            {
                "timerel": "between",
                "time_at": "2026-01-02T00:00:00Z",
                "end_time_at": "2026-01-01T00:00:00Z",
            },
            "later than timeAt",
        ),
        (
            {
                "timerel": "after",
                "time_at": "2026-01-01T00:00:00Z",
                "end_time_at": "2026-01-02T00:00:00Z",
            },
            "between only",
        ),
        ({"time_at": "2026-01-01T00:00:00Z"}, "need timerel"),
        ({"timeproperty": "observationTime"}, "timeproperty must be"),
        ({"last_n": "0"}, "positive integer"),
        ({"last_n": "many"}, "positive integer"),
        ({"aggregated": True}, "needs aggrMethods"),
        ({"aggr_methods": "median"}, "unknown aggregation"),
        ({"aggr_methods": ""}, "needs aggrMethods"),
        ({"aggr_period": "PT1H"}, "needs aggrMethods"),
        ({"aggr_methods": "sum", "aggr_period": "hourly"}, "ISO 8601"),
    ],
)
def test_bad_temporal_parameters(params: dict[str, Any], message: str) -> None:
    with pytest.raises(BadData, match=message):
        parse_temporal_query(**params)


def test_aggregation_methods() -> None:
    numbers = [3, 1, 2, 2]
    assert aggregate("totalCount", numbers) == 4
    assert aggregate("distinctCount", numbers) == 3
    assert aggregate("sum", numbers) == 8
    assert aggregate("avg", numbers) == 2
    assert aggregate("min", numbers) == 1
    assert aggregate("max", numbers) == 3
    assert aggregate("sumsq", numbers) == 18
    assert aggregate("stddev", numbers) == pytest.approx(math.sqrt(0.5))
    # booleans count as 0/1, arrays by their size
    assert aggregate("sum", [True, False, True]) == 2
    assert aggregate("avg", [[1, 2], [1, 2, 3, 4]]) == 3
    assert aggregate("max", [[1], [1, 2, 3]]) == 3
    # strings: lexicographic min/max only
    assert aggregate("min", ["moderate", "good", "poor"]) == "good"
    assert aggregate("max", ["moderate", "good", "poor"]) == "poor"
    assert aggregate("sum", ["a", "b"]) is None
    assert aggregate("distinctCount", ["a", "b", "a"]) == 2
    # dateTimes by time, shown as written
    times = ["2026-11-24T09:00:00+08:00", "2026-11-24T00:30:00Z"]
    assert aggregate("min", times) == "2026-11-24T00:30:00Z"
    assert aggregate("max", times) == "2026-11-24T09:00:00+08:00"
    # relationships: counts only
    objects = ["urn:a", "urn:b", "urn:a"]
    assert aggregate("distinctCount", objects, relationship=True) == 2
    assert aggregate("totalCount", objects, relationship=True) == 3
    assert aggregate("max", objects, relationship=True) is None
    assert aggregate("sum", [], relationship=False) is None
    assert aggregate("distinctCount", [{"a": 1, "b": 2}, {"b": 2, "a": 1}]) == 1


# -------------------------------------------------------------------------------------------
# the API


def at(minutes: int) -> str:
    """A time on 2026-11-24 counted in minutes from 01:00Z."""
    moment = datetime(2026, 11, 24, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ms(minutes: int) -> str:
    """The same time as the broker writes it, with milliseconds."""
    return at(minutes)[:-1] + ".000Z"


def station(pm25: float, minutes: int) -> dict[str, Any]:
    return {
        "id": STATION,
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": pm25, "unitCode": "GQ", "observedAt": at(minutes)},
        "airQualityLevel": {"type": "Property", "value": "good", "observedAt": at(minutes)},
        "refDevice": {
            "type": "Relationship",
            "object": "urn:ngsi-ld:Device:aq-17",
            "observedAt": at(minutes),
        },
    }


def observe(client: TestClient, headers: dict[str, str], pm25: float, minutes: int) -> None:
    """A device reading through the ordinary entity API (the broker writes the history)."""
    body = {
        "pm25": {"type": "Property", "value": pm25, "unitCode": "GQ", "observedAt": at(minutes)},
        "airQualityLevel": {
            "type": "Property",
            "value": "moderate" if pm25 > 35 else "good",
            "observedAt": at(minutes),
        },
    }
    reply = client.patch(f"{BASE}/entities/{STATION}/attrs", json=body, headers=headers)
    assert reply.status_code == 204, reply.text


@pytest.fixture
def history(client: TestClient, writer: dict[str, str]) -> dict[str, str]:
    """One station observed five times: pm25 30, 40, 50, 60, 20 at 01:00, :20, :40, 02:00, :20."""
    reply = client.post(f"{BASE}/entities", json=station(30, 0), headers=writer)
    assert reply.status_code == 201, reply.text
    for pm25, minutes in ((40, 20), (50, 40), (60, 60), (20, 80)):
        observe(client, writer, pm25, minutes)
    return writer


def values(attribute: Any) -> list[Any]:
    return [i["value"] for i in attribute]


def test_history_written_by_the_broker(client: TestClient, history: dict[str, str]) -> None:
    reply = client.get(f"{TEMPORAL}/{STATION}", headers=history)
    assert reply.status_code == 200, reply.text
    entity = reply.json()
    assert entity["id"] == STATION
    assert entity["type"] == "AirQualityObserved"
    assert values(entity["pm25"]) == [30, 40, 50, 60, 20]
    assert [i["observedAt"] for i in entity["pm25"]] == [at(m) for m in (0, 20, 40, 60, 80)]
    first = entity["pm25"][0]
    assert first["unitCode"] == "GQ"
    assert first["instanceId"].startswith("urn:ngsi-ld:attribute:instance:")
    assert "createdAt" not in first
    assert len({i["instanceId"] for i in entity["pm25"]}) == 5
    assert [i["object"] for i in entity["refDevice"]] == ["urn:ngsi-ld:Device:aq-17"]
    assert reply.headers["Link"].startswith("<https://uri.etsi.org/ngsi-ld/v1/")


def test_timerel(client: TestClient, history: dict[str, str]) -> None:
    def pm25(params: str) -> list[Any]:
        reply = client.get(f"{TEMPORAL}/{STATION}?attrs=pm25&{params}", headers=history)
        assert reply.status_code == 200, reply.text
        return values(reply.json().get("pm25", []))

    assert pm25(f"timerel=before&timeAt={at(40)}") == [30, 40]  # exclusive
    assert pm25(f"timerel=after&timeAt={at(40)}") == [50, 60, 20]  # inclusive
    assert pm25(f"timerel=between&timeAt={at(20)}&endTimeAt={at(60)}") == [40, 50]
    assert pm25(f"timerel=after&timeAt={at(90)}") == []
    assert pm25("lastN=2") == [60, 20]
    assert pm25(f"lastN=2&timerel=before&timeAt={at(60)}") == [40, 50]
    # an offset time zone is the same instant
    assert pm25("timerel=before&timeAt=2026-11-24T09:20:00%2B08:00") == [30]


def test_attrs_and_sys_attrs(client: TestClient, history: dict[str, str]) -> None:
    reply = client.get(
        f"{TEMPORAL}/{STATION}?attrs=airQualityLevel&options=sysAttrs", headers=history
    )
    entity = reply.json()
    assert set(entity) == {"id", "type", "airQualityLevel"}
    levels = entity["airQualityLevel"]
    assert values(levels) == ["good", "moderate", "moderate", "moderate", "good"]
    assert all("createdAt" in i and "modifiedAt" in i for i in levels)


def test_temporal_values(client: TestClient, history: dict[str, str]) -> None:
    reply = client.get(
        f"{TEMPORAL}/{STATION}?options=temporalValues&timerel=before&timeAt={at(30)}",
        headers=history,
    )
    assert reply.status_code == 200, reply.text
    entity = reply.json()
    assert entity["pm25"] == {"type": "Property", "values": [[30, at(0)], [40, at(20)]]}
    assert entity["refDevice"] == {
        "type": "Relationship",
        "objects": [["urn:ngsi-ld:Device:aq-17", at(0)]],
    }
    same = client.get(
        f"{TEMPORAL}/{STATION}?format=temporalValues&timerel=before&timeAt={at(30)}",
        headers=history,
    )
    assert same.json() == entity


def test_aggregation(client: TestClient, history: dict[str, str]) -> None:
    methods = "totalCount,distinctCount,sum,avg,min,max,stddev,sumsq"
    reply = client.get(
        f"{TEMPORAL}/{STATION}?attrs=pm25&options=aggregatedValues&aggrMethods={methods}"
        f"&aggrPeriodDuration=PT1H&timerel=between&timeAt={at(0)}&endTimeAt={at(120)}",
        headers=history,
    )
    assert reply.status_code == 200, reply.text
    pm25 = reply.json()["pm25"]
    assert pm25["type"] == "Property"
    # period bounds are DateTimes as precise as they are (whole seconds: no fraction)
    first, second = at(0), at(60)
    assert pm25["totalCount"] == [[3, first, second], [2, second, at(120)]]
    assert pm25["sum"] == [[120, first, second], [80, second, at(120)]]
    assert pm25["avg"] == [[40, first, second], [40, second, at(120)]]
    assert pm25["min"] == [[30, first, second], [20, second, at(120)]]
    assert pm25["max"] == [[50, first, second], [60, second, at(120)]]
    assert pm25["sumsq"] == [[5000, first, second], [4000, second, at(120)]]
    assert pm25["distinctCount"][0][0] == 3
    assert pm25["stddev"][1][0] == pytest.approx(20.0)
    # no period: one over the whole range; lastN keeps the last periods
    whole = client.get(
        f"{TEMPORAL}/{STATION}?attrs=pm25,refDevice&format=aggregatedValues&aggrMethods=max,"
        "distinctCount",
        headers=history,
    ).json()
    assert whole["pm25"]["max"][0][0] == 60
    assert whole["refDevice"]["distinctCount"][0][0] == 1
    assert whole["refDevice"]["max"][0][0] is None  # not applicable to relationships
    last = client.get(
        f"{TEMPORAL}/{STATION}?attrs=pm25&format=aggregatedValues&aggrMethods=sum"
        f"&aggrPeriodDuration=PT20M&lastN=2&timerel=after&timeAt={at(0)}",
        headers=history,
    ).json()
    assert last["pm25"]["sum"] == [[60, at(60), at(80)], [20, at(80), at(100)]]


def test_aggregation_needs_methods(client: TestClient, history: dict[str, str]) -> None:
    reply = client.get(f"{TEMPORAL}/{STATION}?options=aggregatedValues", headers=history)
    problem(reply, "BadRequestData", 400)
    reply = client.get(f"{TEMPORAL}/{STATION}?aggrMethods=median", headers=history)
    assert "median" in problem(reply, "BadRequestData", 400)["detail"]


def test_query_temporal_entities(client: TestClient, history: dict[str, str]) -> None:
    other = station(80, 0)
    other["id"] = "urn:ngsi-ld:AirQualityObserved:310104-9"
    assert client.post(f"{BASE}/entities", json=other, headers=history).status_code == 201
    reply = client.get(
        f"{TEMPORAL}?type=AirQualityObserved&attrs=pm25&timerel=before&timeAt={at(30)}"
        "&options=count",
        headers=history,
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["NGSILD-Results-Count"] == "2"
    found = {e["id"]: values(e["pm25"]) for e in reply.json()}
    assert found == {STATION: [30, 40], other["id"]: [80]}
    # q: each term must hold for some instance inside the window
    reply = client.get(
        f"{TEMPORAL}?type=AirQualityObserved&q=pm25>=50&timerel=before&timeAt={at(30)}",
        headers=history,
    )
    assert [e["id"] for e in reply.json()] == [other["id"]]
    reply = client.get(f"{TEMPORAL}?type=AirQualityObserved&q=pm25>=50", headers=history)
    assert {e["id"] for e in reply.json()} == {STATION, other["id"]}
    reply = client.get(f'{TEMPORAL}?q=airQualityLevel=="moderate"', headers=history)
    assert [e["id"] for e in reply.json()] == [STATION]
    reply = client.get(f"{TEMPORAL}?type=Streetlight", headers=history)
    assert reply.json() == []
    reply = client.get(f"{TEMPORAL}?idPattern=.*310104.*&attrs=pm25", headers=history)
    assert [e["id"] for e in reply.json()] == [other["id"]]
    # pages of entities
    reply = client.get(f"{TEMPORAL}?type=AirQualityObserved&limit=1", headers=history)
    assert len(reply.json()) == 1
    assert 'rel="next"' in reply.headers["Link"]
    reply = client.get(f"{TEMPORAL}?type=AirQualityObserved&limit=1&offset=1", headers=history)
    assert len(reply.json()) == 1
    assert 'rel="next"' not in reply.headers.get("Link", "")
    reply = client.get(f"{TEMPORAL}?type=AirQualityObserved&limit=0&count=true", headers=history)
    assert reply.json() == []
    assert reply.headers["NGSILD-Results-Count"] == "2"


def test_query_post(client: TestClient, history: dict[str, str]) -> None:
    body = {
        "type": "Query",
        "entities": [{"type": "AirQualityObserved"}],
        "attrs": ["pm25"],
        "temporalQ": {"timerel": "after", "timeAt": at(60), "lastN": 1},
    }
    reply = client.post(
        f"{BASE}/temporal/entityOperations/query?options=temporalValues",
        json=body,
        headers=history,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == [
        {
            "id": STATION,
            "type": "AirQualityObserved",
            "pm25": {"type": "Property", "values": [[20, at(80)]]},
        }
    ]


def test_query_errors(client: TestClient, history: dict[str, str]) -> None:
    problem(client.get(TEMPORAL, headers=history), "BadRequestData", 400)
    reply = client.get(f"{TEMPORAL}?type=A&timerel=during&timeAt={at(0)}", headers=history)
    assert "timerel" in problem(reply, "BadRequestData", 400)["detail"]
    reply = client.get(f"{TEMPORAL}?type=A&q=pm25>>3", headers=history)
    assert "position" in problem(reply, "BadRequestData", 400)["detail"]
    problem(client.get(f"{TEMPORAL}?type=A&limit=5000", headers=history), "TooManyResults", 403)
    # geo-queries and type conjunctions are served now: tests/context/test_temporal_more.py
    reply = client.get(f"{TEMPORAL}?type=A&georel=near;maxDistance==10", headers=history)
    assert "georel, geometry and coordinates" in problem(reply, "BadRequestData", 400)["detail"]
    assert client.get(f"{TEMPORAL}?type=A;B", headers=history).json() == []
    problem(client.get(f"{TEMPORAL}/not-a-uri", headers=history), "BadRequestData", 400)
    reply = client.get(f"{TEMPORAL}/urn:ngsi-ld:X:nothing", headers=history)
    problem(reply, "ResourceNotFound", 404)
    reply = client.get(f"{TEMPORAL}/{STATION}?options=keyValues", headers=history)
    problem(reply, "InvalidRequest", 400)  # an options value the operation lacks (6.3.20)
    reply = client.get(f"{TEMPORAL}/{STATION}", headers={**history, "NGSILD-Tenant": "nowhere"})
    problem(reply, "NonexistentTenant", 404)
    # as for GET /entities (clause 5.7.2): ids alone are not a query; local=true is enough
    reply = client.get(f"{TEMPORAL}?id={STATION}&timerel=after&timeAt={at(0)}", headers=history)
    assert "local=true" in problem(reply, "BadRequestData", 400)["detail"]
    reply = client.get(f"{TEMPORAL}?local=true&timerel=after&timeAt={at(0)}", headers=history)
    assert [e["id"] for e in reply.json()] == [STATION]
    # attributes the entity never had: not found (clause 5.7.1); outside the window: empty
    reply = client.get(f"{TEMPORAL}/{STATION}?attrs=noSuchThing", headers=history)
    assert "none of the requested" in problem(reply, "ResourceNotFound", 404)["detail"]
    reply = client.get(
        f"{TEMPORAL}/{STATION}?attrs=pm25&timerel=before&timeAt=2000-01-01T00:00:00Z",
        headers=history,
    )
    assert reply.status_code == 200, reply.text


def test_permissions(client: TestClient, history: dict[str, str], reader: dict[str, str]) -> None:
    assert client.get(f"{TEMPORAL}/{STATION}", headers=reader).status_code == 200
    assert client.get(f"{TEMPORAL}/{STATION}").status_code == 401
    body = {"id": "urn:ngsi-ld:X:1", "type": "X", "a": [{"value": 1}]}
    assert client.post(TEMPORAL, json=body, headers=reader).status_code == 403
    assert client.delete(f"{TEMPORAL}/{STATION}", headers=reader).status_code == 403


def test_partial_content(client: TestClient, history: dict[str, str], settings: Settings) -> None:
    settings.context_temporal_page_size = 3  # read per request
    reply = client.get(f"{TEMPORAL}/{STATION}?attrs=pm25,airQualityLevel", headers=history)
    assert reply.status_code == 206, reply.text
    assert reply.headers["Content-Range"] == f"date-time {ms(0)}-{ms(40)}/*"
    entity = reply.json()
    assert values(entity["pm25"]) == [30, 40, 50]
    assert len(entity["airQualityLevel"]) == 3
    # the next page starts where this one ended
    reply = client.get(
        f"{TEMPORAL}/{STATION}?attrs=pm25&timerel=after&timeAt={at(40)}", headers=history
    )
    assert reply.status_code == 200
    assert values(reply.json()["pm25"]) == [50, 60, 20]
    # lastN pages backwards and says how many were asked for
    reply = client.get(
        f"{TEMPORAL}/{STATION}?attrs=pm25&lastN=5&timerel=before&timeAt={at(100)}",
        headers=history,
    )
    assert reply.status_code == 206
    assert reply.headers["Content-Range"] == f"date-time {ms(100)}-{ms(40)}/5"
    assert values(reply.json()["pm25"]) == [50, 60, 20]
    # within the limit: the whole answer, 200
    reply = client.get(f"{TEMPORAL}/{STATION}?attrs=pm25&lastN=3", headers=history)
    assert reply.status_code == 200
    assert "Content-Range" not in reply.headers


def test_time_properties(client: TestClient, history: dict[str, str]) -> None:
    start = datetime.now(UTC) - timedelta(minutes=5)
    stamp = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    reply = client.get(
        f"{TEMPORAL}/{STATION}?attrs=pm25&timeproperty=modifiedAt&timerel=after&timeAt={stamp}",
        headers=history,
    )
    pm25 = reply.json()["pm25"]
    assert values(pm25) == [30, 40, 50, 60, 20]
    assert all("modifiedAt" in i for i in pm25)
    reply = client.get(
        f"{TEMPORAL}/{STATION}?attrs=pm25&timeproperty=createdAt&format=temporalValues",
        headers=history,
    )
    pairs = reply.json()["pm25"]["values"]
    assert [p[0] for p in pairs] == [30, 40, 50, 60, 20]
    assert all(p[1] >= stamp for p in pairs)
    # deletions are instances of their own, seen through deletedAt
    assert (
        client.delete(f"{BASE}/entities/{STATION}/attrs/refDevice", headers=history).status_code
        == 204
    )
    reply = client.get(f"{TEMPORAL}/{STATION}?timeproperty=deletedAt", headers=history)
    entity = reply.json()
    assert set(entity) == {"id", "type", "refDevice"}
    assert entity["refDevice"][0]["deletedAt"] >= stamp
    reply = client.get(f"{TEMPORAL}/{STATION}?attrs=refDevice", headers=history)
    assert [i.get("object") for i in reply.json()["refDevice"]] == ["urn:ngsi-ld:Device:aq-17"]


# -------------------------------------------------------------------------------------------
# temporal writes


def bus_stop(**attrs: Any) -> dict[str, Any]:
    return {"id": "urn:ngsi-ld:BusStop:xuhui-12", "type": "BusStop", **attrs}


def test_create_and_upsert(client: TestClient, writer: dict[str, str]) -> None:
    waiting = [
        {"type": "Property", "value": 4, "observedAt": at(0)},
        {"type": "Property", "value": 9, "observedAt": at(10)},
        {
            "type": "Property",
            "value": 2,
            "observedAt": at(20),
            "datasetId": "urn:ngsi-ld:Dataset:cam",
        },
    ]
    reply = client.post(TEMPORAL, json=bus_stop(waiting=waiting), headers=writer)
    assert reply.status_code == 201, reply.text
    assert reply.headers["Location"] == f"{TEMPORAL}/urn:ngsi-ld:BusStop:xuhui-12"
    # the simplified representation is accepted too; a known entity answers 204
    more = {"waiting": {"type": "Property", "values": [[7, at(30)], [5, at(40)]]}}
    reply = client.post(TEMPORAL, json=bus_stop(**more), headers=writer)
    assert reply.status_code == 204, reply.text
    reply = client.get(f"{TEMPORAL}/urn:ngsi-ld:BusStop:xuhui-12", headers=writer)
    entity = reply.json()
    assert entity["type"] == "BusStop"
    assert values(entity["waiting"]) == [4, 9, 7, 5, 2]  # default instances, then the camera's
    simple = client.get(
        f"{TEMPORAL}/urn:ngsi-ld:BusStop:xuhui-12?options=temporalValues", headers=writer
    ).json()
    assert simple["waiting"] == [
        {"type": "Property", "values": [[4, at(0)], [9, at(10)], [7, at(30)], [5, at(40)]]},
        {"type": "Property", "values": [[2, at(20)]], "datasetId": "urn:ngsi-ld:Dataset:cam"},
    ]
    # the first POST created the current entity from the latest instances; the second, on an
    # entity that exists, added to the history only
    current = client.get(f"{BASE}/entities/urn:ngsi-ld:BusStop:xuhui-12", headers=writer).json()
    assert sorted((i["value"], i.get("datasetId")) for i in current["waiting"]) == [
        (2, "urn:ngsi-ld:Dataset:cam"),
        (9, None),
    ]


def test_create_with_json_ld(client: TestClient, writer: dict[str, str]) -> None:
    body = {
        "@context": [{"waiting": "https://example.org/transit/waiting"}],
        **bus_stop(waiting=[{"type": "Property", "value": 4, "observedAt": at(0)}]),
    }
    reply = client.post(
        TEMPORAL,
        content=json.dumps(body),
        headers={**writer, "Content-Type": "application/ld+json"},
    )
    assert reply.status_code == 201, reply.text
    reply = client.get(f"{TEMPORAL}/urn:ngsi-ld:BusStop:xuhui-12", headers=writer)
    assert "https://example.org/transit/waiting" in reply.json()


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"type": "BusStop"}, "BadRequestData"),
        ({"id": "not a uri", "type": "BusStop"}, "BadRequestData"),
        (bus_stop(waiting=[{"type": "Nonsense", "value": 1}]), "BadRequestData"),
        (
            bus_stop(waiting=[{"type": "Property", "value": 1, "observedAt": "noon"}]),
            "BadRequestData",
        ),
        (bus_stop(waiting={"type": "Property", "values": [[1]]}), "BadRequestData"),
        (bus_stop(waiting=[]), "BadRequestData"),
        ({"id": "urn:ngsi-ld:BusStop:9", "waiting": [{"value": 1}]}, "BadRequestData"),
        (["not", "an", "object"], "BadRequestData"),
    ],
)
def test_create_errors(client: TestClient, writer: dict[str, str], body: Any, kind: str) -> None:
    problem(client.post(TEMPORAL, json=body, headers=writer), kind, 400)


def test_add_delete_and_modify(client: TestClient, writer: dict[str, str]) -> None:
    stop = "urn:ngsi-ld:BusStop:xuhui-12"
    waiting = [{"type": "Property", "value": n, "observedAt": at(n)} for n in (1, 2, 3)]
    assert client.post(TEMPORAL, json=bus_stop(waiting=waiting), headers=writer).status_code == 201
    # add attributes
    fragment = {
        "shelter": [{"type": "Property", "value": "intact", "observedAt": at(5)}],
        "waiting": {"type": "Property", "value": 4, "observedAt": at(4)},
    }
    reply = client.post(f"{TEMPORAL}/{stop}/attrs", json=fragment, headers=writer)
    assert reply.status_code == 204, reply.text
    entity = client.get(f"{TEMPORAL}/{stop}", headers=writer).json()
    assert values(entity["waiting"]) == [1, 2, 3, 4]
    assert values(entity["shelter"]) == ["intact"]
    missing = client.post(f"{TEMPORAL}/urn:ngsi-ld:BusStop:0/attrs", json=fragment, headers=writer)
    problem(missing, "ResourceNotFound", 404)
    # modify one instance: createdAt kept, modifiedAt moves
    second = entity["waiting"][1]["instanceId"]
    before = client.get(f"{TEMPORAL}/{stop}?attrs=waiting&options=sysAttrs", headers=writer).json()
    created = before["waiting"][1]["createdAt"]
    patch = {"waiting": [{"type": "Property", "value": 20, "observedAt": at(2)}]}
    reply = client.patch(f"{TEMPORAL}/{stop}/attrs/waiting/{second}", json=patch, headers=writer)
    assert reply.status_code == 204, reply.text
    after = client.get(f"{TEMPORAL}/{stop}?attrs=waiting&options=sysAttrs", headers=writer).json()
    changed = after["waiting"][1]
    assert changed["value"] == 20
    assert changed["instanceId"] == second
    assert changed["createdAt"] == created
    assert changed["modifiedAt"] >= created
    bad = client.patch(
        f"{TEMPORAL}/{stop}/attrs/waiting/urn:ngsi-ld:attribute:instance:999999",
        json=patch,
        headers=writer,
    )
    problem(bad, "ResourceNotFound", 404)
    bad = client.patch(f"{TEMPORAL}/{stop}/attrs/waiting/nope", json=patch, headers=writer)
    problem(bad, "BadRequestData", 400)
    bad = client.patch(f"{TEMPORAL}/{stop}/attrs/shelter/{second}", json=patch, headers=writer)
    problem(bad, "BadRequestData", 400)  # the body names another attribute
    shelter = {"shelter": [{"type": "Property", "value": "broken"}]}
    bad = client.patch(f"{TEMPORAL}/{stop}/attrs/shelter/{second}", json=shelter, headers=writer)
    problem(bad, "ResourceNotFound", 404)  # the instance belongs to another attribute
    two = {"waiting": [patch["waiting"][0], patch["waiting"][0]]}
    bad = client.patch(f"{TEMPORAL}/{stop}/attrs/waiting/{second}", json=two, headers=writer)
    problem(bad, "BadRequestData", 400)
    # delete one instance
    reply = client.delete(f"{TEMPORAL}/{stop}/attrs/waiting/{second}", headers=writer)
    assert reply.status_code == 204
    entity = client.get(f"{TEMPORAL}/{stop}", headers=writer).json()
    assert values(entity["waiting"]) == [1, 3, 4]
    again = client.delete(f"{TEMPORAL}/{stop}/attrs/waiting/{second}", headers=writer)
    problem(again, "ResourceNotFound", 404)
    # delete an attribute
    assert client.delete(f"{TEMPORAL}/{stop}/attrs/shelter", headers=writer).status_code == 204
    problem(
        client.delete(f"{TEMPORAL}/{stop}/attrs/shelter", headers=writer), "ResourceNotFound", 404
    )
    entity = client.get(f"{TEMPORAL}/{stop}", headers=writer).json()
    assert "shelter" not in entity
    # delete the whole evolution: the entity is gone from both views
    assert client.delete(f"{TEMPORAL}/{stop}", headers=writer).status_code == 204
    problem(client.get(f"{TEMPORAL}/{stop}", headers=writer), "ResourceNotFound", 404)
    problem(client.get(f"{BASE}/entities/{stop}", headers=writer), "ResourceNotFound", 404)
    problem(client.delete(f"{TEMPORAL}/{stop}", headers=writer), "ResourceNotFound", 404)


def test_delete_attribute_by_dataset(client: TestClient, writer: dict[str, str]) -> None:
    stop = "urn:ngsi-ld:BusStop:xuhui-12"
    cam = "urn:ngsi-ld:Dataset:cam"
    waiting = [
        {"type": "Property", "value": 1, "observedAt": at(1)},
        {"type": "Property", "value": 2, "observedAt": at(2), "datasetId": cam},
        {"type": "Property", "value": 3, "observedAt": at(3), "datasetId": cam},
    ]
    assert client.post(TEMPORAL, json=bus_stop(waiting=waiting), headers=writer).status_code == 201
    reply = client.delete(f"{TEMPORAL}/{stop}/attrs/waiting?datasetId={cam}", headers=writer)
    assert reply.status_code == 204
    assert values(client.get(f"{TEMPORAL}/{stop}", headers=writer).json()["waiting"]) == [1]
    problem(
        client.delete(f"{TEMPORAL}/{stop}/attrs/waiting?datasetId=bad id", headers=writer),
        "BadRequestData",
        400,
    )
    waiting2 = [{"type": "Property", "value": 5, "observedAt": at(5), "datasetId": cam}]
    assert (
        client.post(
            f"{TEMPORAL}/{stop}/attrs", json={"waiting": waiting2}, headers=writer
        ).status_code
        == 204
    )
    reply = client.delete(f"{TEMPORAL}/{stop}/attrs/waiting?deleteAll=true", headers=writer)
    assert reply.status_code == 204
    assert "waiting" not in client.get(f"{TEMPORAL}/{stop}", headers=writer).json()


def test_tenants(client: TestClient, writer: dict[str, str]) -> None:
    tenant = {**writer, "NGSILD-Tenant": "minhang"}
    body = bus_stop(waiting=[{"type": "Property", "value": 1, "observedAt": at(1)}])
    assert client.post(TEMPORAL, json=body, headers=tenant).status_code == 201
    assert client.get(f"{TEMPORAL}/{body['id']}", headers=tenant).status_code == 200
    problem(client.get(f"{TEMPORAL}/{body['id']}", headers=writer), "ResourceNotFound", 404)
    reply = client.get(f"{TEMPORAL}?type=BusStop", headers=tenant)
    assert [e["id"] for e in reply.json()] == [body["id"]]


def test_language_and_vocab_values(client: TestClient, writer: dict[str, str]) -> None:
    body = bus_stop(
        name=[
            {
                "type": "LanguageProperty",
                "languageMap": {"zh": "徐家汇", "en": "Xujiahui"},
                "observedAt": at(0),
            }
        ],
        category=[{"type": "VocabProperty", "vocab": "busStop", "observedAt": at(0)}],
    )
    assert client.post(TEMPORAL, json=body, headers=writer).status_code == 201
    entity = client.get(f"{TEMPORAL}/{body['id']}?options=temporalValues", headers=writer).json()
    assert entity["name"] == {
        "type": "LanguageProperty",
        "languageMaps": [[{"languageMap": {"zh": "徐家汇", "en": "Xujiahui"}}, at(0)]],
    }
    assert entity["category"] == {
        "type": "VocabProperty",
        "vocabs": [[{"vocab": "busStop"}, at(0)]],
    }
    normalized = client.get(f"{TEMPORAL}/{body['id']}", headers=writer).json()
    assert normalized["category"][0]["vocab"] == "busStop"
    assert VOCAB not in str(normalized)
