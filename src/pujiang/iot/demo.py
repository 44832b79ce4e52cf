"""The demo fleet: one service group per kind of device and one device per demo entity.

Each demo entity of `pujiang.context.demo` (streetlights, underpass water-level gauges,
gas-pressure points, elevators, parking spots, traffic counters, air-quality stations and
water-quality points) gets a device bound to its id, so the simulator (`simulate.py`) feeds the
entities `pujiang demo` loads. Devices send short measure names (IoT Agent `object_id`s) that the
service group maps to the entity's attributes. Provisioning tops up: it never duplicates a row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from pujiang.context.demo import DISTRICTS, demo_entities
from pujiang.iot.models import IotDevice, IotService
from pujiang.iot.provisioning import Tenancy, create_devices, create_services
from pujiang.iot.schemas import MAX_ITEMS, DeviceIn, ServiceGroupIn
from pujiang.platform.deps import AppContext

DEMO_TENANT = ""  # the default tenant, where `pujiang demo` loads its entities
SIM_PREFIX = "SIM-"  # entity-id key of devices the simulator adds beyond the demo fleet


def _measure(
    object_id: str, name: str, kind: str, unit: str | None = None, source_unit: str | None = None
) -> dict[str, Any]:
    """An IoT Agent attribute mapping: the device's short name to the entity's attribute."""
    mapping: dict[str, Any] = {"object_id": object_id, "name": name, "type": kind}
    if unit:
        mapping["unitCode"] = unit
    if source_unit:
        mapping["sourceUnit"] = source_unit
    return mapping


@dataclass(frozen=True)
class DeviceKind:
    """A kind of demo device: its service group and how its demo entities are recognised."""

    name: str  # also the device-id prefix, e.g. "streetlight" -> "streetlight-310101-001"
    apikey: str
    entity_type: str
    entity_prefix: str = field(repr=False)  # demo entity ids of this kind start with it
    description: str = field(repr=False)
    attributes: tuple[dict[str, Any], ...] = field(repr=False)
    expected_interval: int = field(repr=False)  # seconds between messages the platform expects
    commands: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    def declared_types(self) -> dict[str, str]:
        """object_id -> the type its mapping declares."""
        return {a["object_id"]: a["type"] for a in self.attributes}


KINDS: tuple[DeviceKind, ...] = (
    DeviceKind(
        name="streetlight",
        apikey="demo-streetlight",
        entity_type="Streetlight",
        entity_prefix="urn:ngsi-ld:Streetlight:",
        description="演示路灯 / demo streetlights",
        attributes=(
            _measure("p", "powerState", "Text"),
            _measure("l", "illuminanceLevel", "Number"),
            _measure("s", "status", "Text"),
        ),
        expected_interval=300,
        commands=({"name": "switch", "type": "command"},),
    ),
    DeviceKind(
        name="waterlevel",
        apikey="demo-waterlevel",
        entity_type="Device",
        entity_prefix="urn:ngsi-ld:Device:WL-",
        description="演示下立交积水监测 / demo underpass water-level gauges",
        # The gauges report centimetres; the entity keeps metres, as the demo entities do.
        attributes=(_measure("h", "value", "Number", "MTR", source_unit="CMT"),),
        expected_interval=60,
    ),
    DeviceKind(
        name="gaspressure",
        apikey="demo-gaspressure",
        entity_type="Device",
        entity_prefix="urn:ngsi-ld:Device:GP-",
        description="演示燃气压力点 / demo gas-pressure points",
        attributes=(_measure("p", "value", "Number", "MPA"),),
        expected_interval=60,
    ),
    DeviceKind(
        name="elevator",
        apikey="demo-elevator",
        entity_type="Device",
        entity_prefix="urn:ngsi-ld:Device:EL-",
        description="演示电梯 / demo elevators",
        attributes=(_measure("f", "floor", "Integer"), _measure("s", "deviceState", "Text")),
        expected_interval=60,
        commands=({"name": "stop", "type": "command"},),
    ),
    DeviceKind(
        name="parking",
        apikey="demo-parking",
        entity_type="ParkingSpot",
        entity_prefix="urn:ngsi-ld:ParkingSpot:",
        description="演示路内泊位 / demo on-street parking spots",
        attributes=(_measure("s", "status", "Text"),),
        expected_interval=300,
    ),
    DeviceKind(
        name="traffic",
        apikey="demo-traffic",
        entity_type="TrafficFlowObserved",
        entity_prefix="urn:ngsi-ld:TrafficFlowObserved:",
        description="演示交通流量计数 / demo traffic counters",
        attributes=(
            _measure("f", "intensity", "Integer"),
            _measure("v", "averageVehicleSpeed", "Number", "KMH"),
            _measure("o", "occupancy", "Number"),
            _measure("c", "congested", "Boolean"),
        ),
        expected_interval=300,
    ),
    DeviceKind(
        name="airquality",
        apikey="demo-airquality",
        entity_type="AirQualityObserved",
        entity_prefix="urn:ngsi-ld:AirQualityObserved:",
        description="演示空气质量监测站 / demo air-quality stations",
        attributes=(
            _measure("pm25", "pm25", "Number", "GQ"),
            _measure("pm10", "pm10", "Number", "GQ"),
            _measure("no2", "no2", "Number", "GQ"),
            _measure("o3", "o3", "Number", "GQ"),
            _measure("so2", "so2", "Number", "GQ"),
            _measure("co", "co", "Number", "GP"),
        ),
        expected_interval=3600,
    ),
    DeviceKind(
        name="waterquality",
        apikey="demo-waterquality",
        entity_type="WaterQualityObserved",
        entity_prefix="urn:ngsi-ld:WaterQualityObserved:",
        description="演示水质监测点 / demo water-quality points",
        attributes=(
            _measure("t", "temperature", "Number", "CEL"),
            _measure("ph", "pH", "Number"),
            _measure("o2", "O2", "Number", "M1"),
            _measure("tu", "turbidity", "Number", "NTU"),
        ),
        expected_interval=3600,
    ),
)
KIND_BY_NAME = {kind.name: kind for kind in KINDS}


@dataclass(frozen=True)
class FleetDevice:
    """One simulated device: which kind, its IoT Agent identity and the entity it feeds."""

    kind: DeviceKind
    device_id: str
    entity_id: str
    # Extra devices (beyond the demo entities) carry their place as static attributes, so the
    # entity the ingest creates on their first message is on the map.
    static_attributes: tuple[dict[str, Any], ...] = field(default=())

    @property
    def apikey(self) -> str:
        return self.kind.apikey


def _kind_of(entity_id: str) -> DeviceKind | None:
    return next((k for k in KINDS if entity_id.startswith(k.entity_prefix)), None)


def demo_fleet() -> list[FleetDevice]:
    """One device per demo entity that measures something, in the demo's own order."""
    fleet: list[FleetDevice] = []
    for entity in demo_entities():
        kind = _kind_of(entity["id"])
        if kind is None:
            continue  # the stations' analyser `Device`s: the station entity is fed instead
        key = entity["id"].removeprefix(kind.entity_prefix)
        fleet.append(FleetDevice(kind, f"{kind.name}-{key}", entity["id"]))
    return fleet


def _extra_device(kind: DeviceKind, number: int) -> FleetDevice:
    """Extra simulated device `number` (from 1), placed around a district's centre."""
    code, _, _, lon, lat, area = DISTRICTS[(number - 1) % len(DISTRICTS)]
    # A deterministic spot inside the district: golden-angle spiral within its radius.
    radius_m = math.sqrt(area * 1e6 / math.pi) * 0.5 * math.sqrt((number * 0.618034) % 1.0)
    angle = number * 2.399963
    dlon = radius_m * math.cos(angle) / (111_320.0 * math.cos(math.radians(lat)))
    dlat = radius_m * math.sin(angle) / 111_320.0
    key = f"{SIM_PREFIX}{number:06d}"
    point = {"type": "Point", "coordinates": [round(lon + dlon, 6), round(lat + dlat, 6)]}
    static = (
        {"name": "location", "type": "geo:json", "value": point},
        {"name": "districtCode", "type": "Text", "value": code},
    )
    return FleetDevice(kind, f"{kind.name}-{key}", f"{kind.entity_prefix}{key}", static)


def fleet_of(count: int) -> list[FleetDevice]:
    """`count` devices: the demo fleet interleaved by kind, then extra simulated devices.

    Interleaving gives every size a mix of kinds; past the demo fleet, extras cycle over the
    kinds (urn:ngsi-ld:Streetlight:SIM-000001, ...), spread over the 16 districts.
    """
    if count < 1:
        raise ValueError("设备数必须至少为 1 / the device count must be at least 1")
    by_kind = {kind.name: [d for d in demo_fleet() if d.kind is kind] for kind in KINDS}
    interleaved: list[FleetDevice] = []
    for rank in range(max(len(devices) for devices in by_kind.values())):
        interleaved += [devices[rank] for devices in by_kind.values() if rank < len(devices)]
    chosen = interleaved[:count]
    for extra in range(1, count - len(chosen) + 1):
        chosen.append(_extra_device(KINDS[(extra - 1) % len(KINDS)], extra))
    return chosen


def _group_doc(kind: DeviceKind) -> ServiceGroupIn:
    return ServiceGroupIn.model_validate(
        {
            "apikey": kind.apikey,
            "entity_type": kind.entity_type,
            "resource": "/iot/json",
            "attributes": list(kind.attributes),
            "commands": list(kind.commands),
            "expected_interval": kind.expected_interval,
            "description": kind.description,
        }
    )


def _device_doc(device: FleetDevice) -> DeviceIn:
    return DeviceIn.model_validate(
        {
            "device_id": device.device_id,
            "apikey": device.apikey,
            "entity_name": device.entity_id,
            "entity_type": device.kind.entity_type,
            "transport": "MQTT",
            "static_attributes": list(device.static_attributes),
            "expected_interval": device.kind.expected_interval,
        }
    )


def provision(context: AppContext, devices: list[FleetDevice]) -> int:
    """Provision these devices, and their kinds' service groups, where missing (in the demo
    tenant); returns how many devices were added."""
    kinds = {d.apikey: d.kind for d in devices}
    with context.db.session() as session:
        groups = set(session.scalars(select(IotService.apikey).where(IotService.apikey.in_(kinds))))
        have = {
            (apikey, device_id)
            for apikey, device_id in session.execute(
                select(IotDevice.apikey, IotDevice.device_id).where(IotDevice.apikey.in_(kinds))
            )
        }
    tenancy = Tenancy(DEMO_TENANT)
    new_groups = [_group_doc(kind) for apikey, kind in kinds.items() if apikey not in groups]
    if new_groups:
        create_services(context, tenancy, new_groups)
    missing = [d for d in devices if (d.apikey, d.device_id) not in have]
    for start in range(0, len(missing), MAX_ITEMS):
        create_devices(
            context, tenancy, [_device_doc(d) for d in missing[start : start + MAX_ITEMS]]
        )
    return len(missing)


def provision_demo_fleet(context: AppContext) -> int:
    """Provision the demo fleet (topping up what is missing); returns the fleet's size."""
    fleet = demo_fleet()
    provision(context, fleet)
    return len(fleet)
