"""The `datasetId` parameter of the temporal API (ETSI GS CIM 009 v1.8, clauses 4.5.5, 5.7.3.4,
5.7.4.4; the Query data type's `datasetId`, clause 5.2.23): only the instances of the datasetIds
named are returned, `@none` naming the default instance; attributes left with no instance are
removed, the entities themselves stay selected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from .conftest import BASE, problem

TEMPORAL = f"{BASE}/temporal/entities"
QUERY = f"{BASE}/temporal/entityOperations/query"
STOP = "urn:ngsi-ld:BusStop:xuhui-12"
OTHER = "urn:ngsi-ld:BusStop:xuhui-13"
CAM = "urn:ngsi-ld:Dataset:cam"
LIDAR = "urn:ngsi-ld:Dataset:lidar"


def at(minutes: int) -> str:
    moment = datetime(2026, 11, 24, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def reading(value: int, minutes: int, dataset: str | None = None) -> dict[str, Any]:
    instance: dict[str, Any] = {"type": "Property", "value": value, "observedAt": at(minutes)}
    if dataset:
        instance["datasetId"] = dataset
    return instance


@pytest.fixture
def stops(client: TestClient, writer: dict[str, str]) -> dict[str, str]:
    """STOP: `waiting` default 1, 2; camera 3, 4; lidar 5 — `occupancy` default 10 only.
    OTHER: `waiting` default 7 only."""
    stop = {
        "id": STOP,
        "type": "BusStop",
        "waiting": [
            reading(1, 0),
            reading(2, 1),
            reading(3, 2, CAM),
            reading(4, 3, CAM),
            reading(5, 4, LIDAR),
        ],
        "occupancy": [reading(10, 0)],
    }
    other = {"id": OTHER, "type": "BusStop", "waiting": [reading(7, 0)]}
    for body in (stop, other):
        reply = client.post(TEMPORAL, json=body, headers=writer)
        assert reply.status_code == 201, reply.text
    return writer


def get(client: TestClient, headers: dict[str, str], url: str, **params: Any) -> Any:
    reply = client.get(url, params=params, headers=headers)
    assert reply.status_code == 200, reply.text
    return reply.json()


def values(instances: list[dict[str, Any]]) -> list[Any]:
    return [i["value"] for i in instances]


def test_retrieve_one_dataset(client: TestClient, stops: dict[str, str]) -> None:
    entity = get(client, stops, f"{TEMPORAL}/{STOP}", datasetId=CAM)
    assert entity["id"] == STOP
    assert entity["type"] == "BusStop"
    assert values(entity["waiting"]) == [3, 4]
    assert {i["datasetId"] for i in entity["waiting"]} == {CAM}
    assert "occupancy" not in entity  # it has no camera instance: the attribute is removed


def test_retrieve_default_instances(client: TestClient, stops: dict[str, str]) -> None:
    entity = get(client, stops, f"{TEMPORAL}/{STOP}", datasetId="@none")
    assert values(entity["waiting"]) == [1, 2]
    assert all("datasetId" not in i for i in entity["waiting"])
    assert values(entity["occupancy"]) == [10]


def test_retrieve_several_datasets(client: TestClient, stops: dict[str, str]) -> None:
    entity = get(client, stops, f"{TEMPORAL}/{STOP}", datasetId=f"{CAM},@none")
    assert sorted(values(entity["waiting"])) == [1, 2, 3, 4]  # not the lidar's 5
    assert values(entity["occupancy"]) == [10]
    nothing = get(client, stops, f"{TEMPORAL}/{STOP}", datasetId="urn:ngsi-ld:Dataset:none")
    assert nothing == {"id": STOP, "type": "BusStop"}


def test_dataset_in_other_representations(client: TestClient, stops: dict[str, str]) -> None:
    url = f"{TEMPORAL}/{STOP}"
    simple = get(client, stops, url, datasetId=f"{CAM},{LIDAR}", options="temporalValues")
    assert simple == {
        "id": STOP,
        "type": "BusStop",
        "waiting": [
            {"type": "Property", "values": [[3, at(2)], [4, at(3)]], "datasetId": CAM},
            {"type": "Property", "values": [[5, at(4)]], "datasetId": LIDAR},
        ],
    }
    aggregated = get(
        client, stops, url, datasetId=CAM, format="aggregatedValues", aggrMethods="sum,totalCount"
    )
    assert aggregated["waiting"]["datasetId"] == CAM
    assert aggregated["waiting"]["sum"][0][0] == 7
    assert aggregated["waiting"]["totalCount"][0][0] == 2
    assert "occupancy" not in aggregated
    concise = get(client, stops, url, datasetId="@none", format="concise")
    assert values(concise["waiting"]) == [1, 2]
    last = get(client, stops, url, datasetId=f"{CAM},@none", lastN="1")
    assert sorted(values(last["waiting"])) == [2, 4]  # the newest of each instance


def test_dataset_with_attrs_and_pick(client: TestClient, stops: dict[str, str]) -> None:
    url = f"{TEMPORAL}/{STOP}"
    entity = get(client, stops, url, datasetId="@none", attrs="occupancy")
    assert values(entity["occupancy"]) == [10]
    assert "waiting" not in entity
    entity = get(client, stops, url, datasetId=LIDAR, pick="waiting")
    assert entity == {"waiting": [entity["waiting"][0]]}
    assert values(entity["waiting"]) == [5]


def test_query_with_dataset(client: TestClient, stops: dict[str, str]) -> None:
    found = get(client, stops, TEMPORAL, type="BusStop", datasetId=CAM)
    # both stops are selected; OTHER keeps no attribute
    assert [e["id"] for e in found] == [STOP, OTHER]
    assert values(found[0]["waiting"]) == [3, 4]
    assert found[1] == {"id": OTHER, "type": "BusStop"}
    found = get(client, stops, TEMPORAL, type="BusStop", datasetId="@none", count="true")
    assert [values(e["waiting"]) for e in found] == [[1, 2], [7]]


def test_query_filters_before_the_dataset_selection(
    client: TestClient, stops: dict[str, str]
) -> None:
    """q is matched on every instance in the window (clause 5.7.4.4: S2), the datasetId
    selection applies to what is returned (S8): the lidar's 5 selects STOP, the camera's
    instances are shown."""
    found = get(client, stops, TEMPORAL, type="BusStop", q="waiting==5", datasetId=CAM)
    assert [e["id"] for e in found] == [STOP]
    assert values(found[0]["waiting"]) == [3, 4]


def test_query_post_with_dataset(client: TestClient, stops: dict[str, str]) -> None:
    body: dict[str, Any] = {
        "type": "Query",
        "entities": [{"type": "BusStop"}],
        "datasetId": [LIDAR, "@none"],
    }
    reply = client.post(QUERY, json=body, headers=stops)
    assert reply.status_code == 200, reply.text
    found = reply.json()
    assert sorted(values(found[0]["waiting"])) == [1, 2, 5]
    assert values(found[1]["waiting"]) == [7]
    reply = client.post(QUERY, json={**body, "datasetId": CAM}, headers=stops)
    assert reply.status_code == 200, reply.text
    assert values(reply.json()[0]["waiting"]) == [3, 4]


@pytest.mark.parametrize(
    "value", ["bad id", "", f"{CAM},,@none", "@default", "none", f"{CAM}, not a uri"]
)
def test_bad_dataset_ids(client: TestClient, stops: dict[str, str], value: str) -> None:
    body = problem(
        client.get(f"{TEMPORAL}/{STOP}", params={"datasetId": value}, headers=stops),
        "BadRequestData",
        400,
    )
    assert "datasetId" in body["detail"]
    problem(
        client.get(TEMPORAL, params={"type": "BusStop", "datasetId": value}, headers=stops),
        "BadRequestData",
        400,
    )


@pytest.mark.parametrize("value", [[], [1], ["bad id"], {"id": CAM}, 7])
def test_bad_dataset_ids_in_query_body(
    client: TestClient, stops: dict[str, str], value: Any
) -> None:
    body = {"type": "Query", "entities": [{"type": "BusStop"}], "datasetId": value}
    reply = problem(client.post(QUERY, json=body, headers=stops), "BadRequestData", 400)
    assert "datasetId" in reply["detail"]
