"""Device liveness: online/offline transitions, announced once each on the bus."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pujiang.iot.models import IotDevice
from pujiang.iot.provisioning import flush_counters
from pujiang.iot.service import Message, ingestor_of
from pujiang.iot.status import check_liveness, periodic_liveness
from pujiang.platform.db import utcnow
from pujiang.platform.deps import AppContext
from tests.iot.test_provisioning import add_devices, add_groups, group, in_tenant

Headers = dict[str, str]
Events = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def writer(login: Callable[..., Headers]) -> Headers:
    return login("steward", "data_steward")


@pytest.fixture
def events(context: AppContext) -> Events:
    received: Events = []
    context.bus.subscribe("iot.device.*", lambda topic, payload: received.append((topic, payload)))
    return received


def hear(context: AppContext, device_id: str, apikey: str = "ak-air") -> datetime:
    """A real message from the device; returns about when it was heard."""
    before = utcnow()
    report = ingestor_of(context).ingest([Message(apikey, device_id, b'{"t": 20}')])
    assert report.stored + report.duplicates == 1, report.outcomes
    return before


def row(context: AppContext, device_id: str) -> IotDevice:
    with context.db.session() as session:
        device = session.scalars(select(IotDevice).where(IotDevice.device_id == device_id)).one()
        session.expunge(device)
        return device


def test_a_device_goes_offline_and_comes_back_once_each(
    client: TestClient, writer: Headers, context: AppContext, events: Events
) -> None:
    add_groups(client, writer, group())
    add_devices(client, writer, {"device_id": "aq-1", "expected_interval": 60})
    heard = hear(context, "aq-1")

    # First heard: online, announced once.
    assert check_liveness(context, heard) == [("aq-1", True)]
    assert check_liveness(context, heard + timedelta(seconds=30)) == []
    assert [topic for topic, _ in events] == ["iot.device.online"]
    assert row(context, "aq-1").online is True

    # Silent for 3 × 60 s is still within the allowance; a moment later it is not.
    assert check_liveness(context, heard + timedelta(seconds=179)) == []
    late = heard + timedelta(seconds=240)
    assert check_liveness(context, late) == [("aq-1", False)]
    assert check_liveness(context, late + timedelta(minutes=5)) == []
    topic, payload = events[-1]
    assert topic == "iot.device.offline"
    assert len(events) == 2
    device = row(context, "aq-1")
    assert device.online is False
    assert payload == {
        "tenant": "",
        "device_id": "aq-1",
        "entity_id": "urn:ngsi-ld:AirQualityObserved:aq-1",
        "entity_type": "AirQualityObserved",
        "last_seen": device.last_seen.isoformat().replace("+00:00", "Z")
        if device.last_seen
        else None,
        "at": late.isoformat().replace("+00:00", "Z"),
    }
    listed = client.get("/iot/devices?online=false", headers=writer).json()
    assert [d["device_id"] for d in listed["devices"]] == ["aq-1"]

    # Heard again: back online, once.
    heard_again = hear(context, "aq-1")
    assert check_liveness(context, heard_again) == [("aq-1", True)]
    assert check_liveness(context, heard_again) == []
    assert [topic for topic, _ in events] == [
        "iot.device.online",
        "iot.device.offline",
        "iot.device.online",
    ]
    assert client.get("/iot/devices/aq-1", headers=writer).json()["online"] is True


def test_interval_falls_back_to_the_group(
    client: TestClient, writer: Headers, context: AppContext, events: Events
) -> None:
    add_groups(client, writer, group(expected_interval=10))
    add_devices(client, writer, {"device_id": "aq-1", "missed_intervals": 2})
    heard = hear(context, "aq-1")
    assert check_liveness(context, heard) == [("aq-1", True)]
    assert check_liveness(context, heard + timedelta(seconds=25)) == [("aq-1", False)]


def test_devices_without_interval_or_never_heard(
    client: TestClient, writer: Headers, context: AppContext, events: Events
) -> None:
    add_groups(client, writer, group())
    add_devices(
        client, writer, {"device_id": "quiet"}, {"device_id": "silent", "expected_interval": 5}
    )
    heard = hear(context, "quiet")
    far = heard + timedelta(days=30)
    # No interval anywhere: online once heard, never offline. Never heard: stays unknown.
    assert check_liveness(context, far) == [("quiet", True)]
    assert check_liveness(context, far + timedelta(days=30)) == []
    assert row(context, "silent").online is None
    about = client.get("/iot/about", headers=writer).json()
    assert (about["online"], about["offline"], about["neverSeen"]) == (1, 0, 1)


def test_events_carry_the_tenant(
    client: TestClient, writer: Headers, context: AppContext, events: Events
) -> None:
    north = in_tenant(writer, "north")
    add_groups(client, north, group("ak-north"))
    add_devices(client, north, {"device_id": "n1", "expected_interval": 60})
    hear(context, "n1", "ak-north")
    check_liveness(context)
    assert events == [("iot.device.online", events[0][1])]
    assert events[0][1]["tenant"] == "north"
    assert events[0][1]["device_id"] == "n1"


def test_a_device_heard_again_stays_online(
    client: TestClient, writer: Headers, context: AppContext, events: Events
) -> None:
    """Offline is decided on the newest message: a device heard again in time stays online."""
    add_groups(client, writer, group())
    add_devices(client, writer, {"device_id": "aq-1", "expected_interval": 60})
    first = hear(context, "aq-1")
    check_liveness(context, first)
    again = hear(context, "aq-1")  # its offline time moves on with it
    flush_counters(context)
    assert row(context, "aq-1").offline_after > again + timedelta(seconds=179)
    assert check_liveness(context, again + timedelta(seconds=179)) == []
    assert [topic for topic, _ in events] == ["iot.device.online"]


def test_several_checkers_announce_each_change_once(
    client: TestClient, writer: Headers, context: AppContext, events: Events
) -> None:
    add_groups(client, writer, group())
    add_devices(
        client, writer, *({"device_id": f"aq-{n}", "expected_interval": 60} for n in range(5))
    )
    heard = min(hear(context, f"aq-{n}") for n in range(5))
    late = heard + timedelta(minutes=10)
    check_liveness(context, heard)
    results = [check_liveness(context, late) for _ in range(3)]
    assert sorted(results[0]) == [(f"aq-{n}", False) for n in range(5)]
    assert results[1:] == [[], []]
    assert [t for t, _ in events].count("iot.device.offline") == 5


def test_naive_time_is_refused(context: AppContext) -> None:
    with pytest.raises(ValueError, match="aware"):
        check_liveness(context, datetime(2026, 1, 1))


def test_periodic_liveness_runs_and_stops(
    client: TestClient, writer: Headers, context: AppContext
) -> None:
    add_groups(client, writer, group())
    add_devices(client, writer, {"device_id": "aq-1", "expected_interval": 60})
    hear(context, "aq-1")
    announced = threading.Event()
    context.bus.subscribe("iot.device.online", lambda topic, payload: announced.set())
    before = {t.name for t in threading.enumerate()}
    with periodic_liveness(context, seconds=0.05):
        assert announced.wait(5), "the periodic check never ran"
        running = [t for t in threading.enumerate() if t.name == "pujiang-iot-liveness"]
        assert running
        assert all(t.daemon for t in running)
    assert "pujiang-iot-liveness" not in before
    assert not [t for t in threading.enumerate() if t.name == "pujiang-iot-liveness"]
    assert row(context, "aq-1").online is True


def test_periodic_liveness_survives_a_failing_check(
    context: AppContext, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from pujiang.iot import status

    calls: list[int] = []

    def failing(_: AppContext, now: datetime | None = None) -> list[tuple[str, bool]]:
        calls.append(1)
        raise RuntimeError("database away")

    monkeypatch.setattr(status, "check_liveness", failing)
    with periodic_liveness(context, seconds=0.02):
        deadline = datetime.now(UTC) + timedelta(seconds=5)
        while len(calls) < 3 and datetime.now(UTC) < deadline:
            threading.Event().wait(0.02)
    assert len(calls) >= 3
    assert "device liveness check failed" in caplog.text


def test_the_newest_last_seen_wins_across_processes(
    client: TestClient, writer: Headers, context: AppContext, settings: Any
) -> None:
    """Two server processes hear one device; the one that heard it earlier flushes last."""
    from pujiang.app import build_context

    add_groups(client, writer, group())
    add_devices(client, writer, {"device_id": "aq-1", "expected_interval": 60})
    other = build_context(settings)  # a second process: its own ingestor and counters
    try:
        hear(context, "aq-1")
        hear(other, "aq-1")
        later = ingestor_of(other)._counters  # what its flush is about to write
        newest = max(c.last_seen for c in later.values() if c.last_seen)
        flush_counters(other)
        flush_counters(context)  # older news, written after
    finally:
        other.db.dispose()
    device = row(context, "aq-1")
    assert device.received == 2
    assert device.last_seen == newest
    assert device.offline_after == newest + timedelta(seconds=180)
