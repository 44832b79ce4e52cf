"""The demo fleet: a device per measuring demo entity, provisioned once, topped up, not doubled."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import delete, func, select

from pujiang.context.demo import DISTRICTS, PER_DISTRICT, demo_entities
from pujiang.iot.demo import KINDS, demo_fleet, fleet_of, provision, provision_demo_fleet
from pujiang.iot.models import IotDevice, IotService
from pujiang.iot.service import ingestor_of
from pujiang.platform.deps import AppContext


def _measuring_entities() -> set[str]:
    """Every demo entity but the stations' analyser Devices (their station entity reports)."""
    return {e["id"] for e in demo_entities() if not e["id"].startswith("urn:ngsi-ld:Device:AQ-")}


def _counts(context: AppContext) -> tuple[int, int]:
    with context.db.session() as session:
        services = session.scalar(select(func.count()).select_from(IotService))
        devices = session.scalar(select(func.count()).select_from(IotDevice))
    return services or 0, devices or 0


def test_one_device_per_measuring_demo_entity() -> None:
    fleet = demo_fleet()
    bound = [device.entity_id for device in fleet]
    assert len(bound) == len(set(bound))
    assert set(bound) == _measuring_entities()
    assert len({device.device_id for device in fleet}) == len(fleet)
    per_kind = Counter(device.kind.name for device in fleet)
    districts = len(DISTRICTS)
    assert per_kind["streetlight"] == PER_DISTRICT["Streetlight"] * districts
    assert per_kind["waterlevel"] == PER_DISTRICT["WaterLevelGauge"] * districts
    assert per_kind["elevator"] == PER_DISTRICT["Elevator"] * districts
    assert per_kind["airquality"] == 20  # the 20 national monitoring stations
    assert set(per_kind) == {kind.name for kind in KINDS}


def test_provisioning_binds_the_demo_entities_and_is_idempotent(context: AppContext) -> None:
    assert provision_demo_fleet(context) == len(demo_fleet())
    assert _counts(context) == (len(KINDS), len(demo_fleet()))
    assert provision_demo_fleet(context) == len(demo_fleet())
    assert _counts(context) == (len(KINDS), len(demo_fleet()))  # nothing doubled

    registry = ingestor_of(context).registry
    light = registry.profile("demo-streetlight", "streetlight-310101-001")
    assert light.entity_id == "urn:ngsi-ld:Streetlight:310101-001"
    assert light.entity_type == "Streetlight"
    assert light.commands == ("switch",)
    assert light.attrs["l"].name == "illuminanceLevel"
    assert light.attrs["p"].name == "powerState"
    assert light.expected_interval == 300
    station = registry.profile("demo-airquality", "airquality-1141A")
    assert station.entity_id == "urn:ngsi-ld:AirQualityObserved:1141A"
    assert station.attrs["pm25"].unit_code == "GQ"
    assert station.commands == ()
    lift = registry.profile("demo-elevator", "elevator-310115-004")
    assert lift.entity_id == "urn:ngsi-ld:Device:EL-310115-004"
    assert lift.commands == ("stop",)
    gauge = registry.profile("demo-waterlevel", "waterlevel-310101-001")
    assert gauge.attrs["h"].unit_code == "MTR"
    convert = gauge.attrs["h"].convert
    assert convert is not None
    assert convert(25.0) == 0.25  # the gauges send centimetres


def test_provisioning_tops_up_what_is_missing(context: AppContext) -> None:
    provision_demo_fleet(context)
    with context.db.session() as session:
        session.execute(delete(IotDevice).where(IotDevice.device_id.like("parking-%")))
        session.execute(delete(IotService).where(IotService.apikey == "demo-parking"))
    assert _counts(context) == (len(KINDS) - 1, len(demo_fleet()) - 96)
    provision_demo_fleet(context)
    assert _counts(context) == (len(KINDS), len(demo_fleet()))
    profile = ingestor_of(context).registry.profile("demo-parking", "parking-310101-001")
    assert profile.entity_id == "urn:ngsi-ld:ParkingSpot:310101-001"


def test_fleets_beyond_the_demo_add_simulated_devices_across_districts(
    context: AppContext,
) -> None:
    size = len(demo_fleet())
    assert {d.device_id for d in fleet_of(size)} == {d.device_id for d in demo_fleet()}
    small = fleet_of(len(KINDS))
    assert {d.kind.name for d in small} == {k.name for k in KINDS}  # any size mixes kinds
    bigger = fleet_of(size + 40)
    extras = bigger[size:]
    assert len(extras) == 40
    assert extras[0].entity_id == "urn:ngsi-ld:Streetlight:SIM-000001"
    assert extras[1].entity_id == "urn:ngsi-ld:Device:WL-SIM-000002"
    assert {d.kind.name for d in extras} == {k.name for k in KINDS}
    districts = set()
    for device in extras:
        place = {a["name"]: a["value"] for a in device.static_attributes}
        lon, lat = place["location"]["coordinates"]
        assert 120.8 < lon < 122.2, device  # within Shanghai
        assert 30.6 < lat < 31.9, device
        districts.add(place["districtCode"])
    assert districts == {code for code, *_ in DISTRICTS}

    assert provision(context, bigger) == size + 40
    assert provision(context, bigger) == 0
    profile = ingestor_of(context).registry.profile("demo-streetlight", extras[0].device_id)
    assert profile.entity_id == extras[0].entity_id
    assert profile.statics  # location and district become the created entity's attributes


def test_a_fleet_needs_a_device() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fleet_of(0)
