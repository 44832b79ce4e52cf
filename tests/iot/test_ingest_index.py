"""Readings keep the attribute index true: `q` finds devices by their newest values.

The lean write path updates only the index column a reading changed (or nothing when the value
is the same); these tests follow values through every such case and query them back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from pujiang.iot.service import Message, ingestor_of
from pujiang.platform.deps import AppContext

ATTRS = [
    {"object_id": "t", "name": "temperature", "type": "Number"},
    {"object_id": "s", "name": "status", "type": "Text"},
    {"object_id": "v", "name": "reading", "type": "Property"},
]


def at(minutes: int) -> str:
    moment = datetime(2026, 11, 20, 8, 0, tzinfo=UTC) + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture
def send(
    context: AppContext, provision: Callable[..., dict[str, Any]]
) -> Callable[[str, int, dict[str, Any]], None]:
    provision("ix", "d1", "d2", attributes=ATTRS)

    def post(device: str, minute: int, measures: dict[str, Any]) -> None:
        body = orjson.dumps({**measures, "TimeInstant": at(minute)})
        report = ingestor_of(context).ingest([Message("ix", device, body)])
        assert [o.status for o in report.outcomes] == ["stored"]

    return post


@pytest.fixture
def find(client: TestClient, login: Callable[..., dict[str, str]]) -> Callable[[str], list[str]]:
    headers = login("operator", "operator")

    def ids(q: str) -> list[str]:
        params = {"type": "WeatherObserved", "q": q}
        reply = client.get("/ngsi-ld/v1/entities", params=params, headers=headers)
        assert reply.status_code == 200, reply.text
        return sorted(e["id"].rsplit(":", 1)[1] for e in reply.json())

    return ids


def test_a_changed_number_moves_in_the_index(send: Any, find: Any) -> None:
    send("d1", 1, {"t": 20.5})
    send("d2", 1, {"t": 10})
    assert find("temperature>15") == ["d1"]
    send("d1", 2, {"t": 12})
    send("d2", 2, {"t": 30})
    assert find("temperature>15") == ["d2"]
    assert find("temperature==12") == ["d1"]


def test_an_unchanged_number_stays_found(send: Any, find: Any) -> None:
    send("d1", 1, {"t": 20})
    send("d1", 2, {"t": 20})
    send("d1", 3, {"t": 20.0})
    assert find("temperature==20") == ["d1"]
    assert find("temperature>=19;temperature<=21") == ["d1"]


def test_a_changed_text_moves_in_the_index(send: Any, find: Any) -> None:
    send("d1", 1, {"s": "正常"})
    send("d2", 1, {"s": "正常"})
    send("d1", 2, {"s": "故障"})
    assert find('status=="故障"') == ["d1"]
    assert find('status=="正常"') == ["d2"]


def test_a_value_changing_kind_is_indexed_as_its_new_kind(send: Any, find: Any) -> None:
    send("d1", 1, {"v": 7})
    assert find("reading==7") == ["d1"]
    send("d1", 2, {"v": "high"})
    assert find("reading==7") == []
    assert find('reading=="high"') == ["d1"]
    send("d1", 3, {"v": True})  # booleans are not indexed: decided on the document
    assert find('reading=="high"') == []
    assert find("reading==true") == ["d1"]
    send("d1", 4, {"v": 3.5})
    assert find("reading<4") == ["d1"]


def test_a_new_attribute_of_an_existing_entity_is_indexed(send: Any, find: Any) -> None:
    send("d1", 1, {"t": 5})
    send("d1", 2, {"s": "ok"})
    assert find('status=="ok";temperature==5') == ["d1"]
