"""The device cache of ingest sees provisioning changes made by another process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import delete, update

from pujiang.iot.mapping import PayloadError
from pujiang.iot.models import IotDevice, IotService
from pujiang.iot.registry import DeviceRegistry
from pujiang.platform.db import utcnow
from pujiang.platform.deps import AppContext


def _expander(_url: str | None) -> Callable[[str], str]:
    return lambda name: "https://uri.etsi.org/ngsi-ld/default-context/" + name


@pytest.fixture
def other_process(context: AppContext) -> DeviceRegistry:
    """A registry as another worker holds it: nobody calls its invalidate()."""
    return DeviceRegistry(context.db, _expander, ttl=0)


def _object_ids(registry: DeviceRegistry, device: str) -> set[str]:
    return set(registry.profile("k1", device).attrs)


def test_a_device_provisioned_elsewhere_is_found(
    context: AppContext, provision: Callable[..., dict[str, Any]], other_process: DeviceRegistry
) -> None:
    provision("k1", "d1")
    assert other_process.profile("k1", "d1").device_id == "d1"
    with pytest.raises(PayloadError) as missing:
        other_process.profile("k1", "d2")
    assert missing.value.reason == "unknown_device"
    provision_row(context, "d2")
    assert other_process.profile("k1", "d2").entity_id == "urn:ngsi-ld:WeatherObserved:d2"


def test_a_changed_mapping_is_seen(
    context: AppContext, provision: Callable[..., dict[str, Any]], other_process: DeviceRegistry
) -> None:
    provision("k1", "d1")
    assert "t" in _object_ids(other_process, "d1")
    with context.db.session() as session:
        session.execute(
            update(IotService)
            .where(IotService.apikey == "k1")
            .values(
                attributes=[{"object_id": "x", "name": "level", "type": "Number"}],
                modified_at=utcnow(),
            )
        )
    assert _object_ids(other_process, "d1") == {"x"}


def test_a_deleted_device_is_refused(
    context: AppContext, provision: Callable[..., dict[str, Any]], other_process: DeviceRegistry
) -> None:
    provision("k1", "d1", "d2")
    assert other_process.profile("k1", "d1").device_id == "d1"
    with context.db.session() as session:
        session.execute(delete(IotDevice).where(IotDevice.device_id == "d1"))
    with pytest.raises(PayloadError) as gone:
        other_process.profile("k1", "d1")
    assert gone.value.reason == "unknown_device"
    assert other_process.profile("k1", "d2").device_id == "d2"


def provision_row(context: AppContext, device_id: str) -> None:
    with context.db.session() as session:
        session.add(
            IotDevice(
                tenant="",
                apikey="k1",
                device_id=device_id,
                entity_id=f"urn:ngsi-ld:WeatherObserved:{device_id}",
                entity_type="WeatherObserved",
            )
        )


def test_an_unchanged_fleet_is_not_read_again(
    context: AppContext,
    provision: Callable[..., dict[str, Any]],
    other_process: DeviceRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rereading every device on a timer cost a quarter of ingest time at 100,000 devices."""
    provision("k1", "d1", "d2")
    keys = [("k1", "d1"), ("k1", "d2")]
    other_process.profiles(keys)
    reads: list[int] = []
    fill = other_process._fill
    monkeypatch.setattr(other_process, "_fill", lambda k, e: reads.append(len(k)) or fill(k, e))
    for _ in range(3):
        other_process.profiles(keys)
    assert reads == []
    with context.db.session() as session:  # a change: the next look reads the devices again
        session.execute(update(IotDevice).values(modified_at=utcnow()))
    other_process.profiles(keys)
    assert reads == [2]


def test_a_device_added_and_deleted_between_two_looks_is_refused(
    context: AppContext, provision: Callable[..., dict[str, Any]]
) -> None:
    """Provisioned and deleted again between two looks at the stamp, the stamp reads as it
    was before: the cache must not have been checked against that older stamp."""
    provision("k1", "d1")
    registry = DeviceRegistry(context.db, _expander, ttl=3600)  # the timer does not look
    assert registry.profile("k1", "d1").device_id == "d1"
    provision_row(context, "d2")  # the newest device, so its deletion restores the stamp
    assert registry.profile("k1", "d2").device_id == "d2"  # read on a miss, within the ttl
    with context.db.session() as session:
        session.execute(delete(IotDevice).where(IotDevice.device_id == "d2"))
    registry.ttl = 0  # the next look
    with pytest.raises(PayloadError) as gone:
        registry.profile("k1", "d2")
    assert gone.value.reason == "unknown_device"
