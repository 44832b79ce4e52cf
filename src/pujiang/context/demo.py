"""Demo entities for the live city: the 20 real air-quality stations and devices by district.

The stations (`data/stations-shanghai.csv`, CNEMC's national monitoring sites) become
`AirQualityObserved` entities with their analysers as `Device`s. Around each district's centroid
the demo places streetlights, water-level gauges at underpasses, gas-pressure points, elevators,
parking spots and traffic counters, shaped after the FIWARE Smart Data Models (written here,
not copied). Readings are synthetic and reproducible (seeded). When the city model is loaded,
each entity carries the unit grid it lies in (`pujiang.city.locate_many`).
"""

from __future__ import annotations

import csv
import io
import math
import random
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from pujiang.context.entity_form import Entity
from pujiang.context.jsonld import ContextProcessor, expand_entity
from pujiang.context.service import ContextBroker
from pujiang.platform.deps import AppContext

DEMO_SEED = 20260101
METRES_PER_DEGREE = 111_320.0

# The 16 districts (GB/T 2260 code, name, English name, approximate WGS84 centroid, km²),
# from the project's reference data (standards.json).
DISTRICTS: tuple[tuple[str, str, str, float, float, float], ...] = (
    ("310101", "黄浦区", "Huangpu", 121.479068, 31.217909, 20.46),
    ("310104", "徐汇区", "Xuhui", 121.434788, 31.164883, 54.76),
    ("310105", "长宁区", "Changning", 121.376316, 31.209229, 38.3),
    ("310106", "静安区", "Jing'an", 121.446055, 31.27268, 36.88),
    ("310107", "普陀区", "Putuo", 121.387393, 31.259722, 54.83),
    ("310109", "虹口区", "Hongkou", 121.48094, 31.27859, 23.48),
    ("310110", "杨浦区", "Yangpu", 121.524953, 31.300412, 60.73),
    ("310112", "闵行区", "Minhang", 121.414266, 31.089124, 370.75),
    ("310113", "宝山区", "Baoshan", 121.400195, 31.393885, 270.99),
    ("310114", "嘉定区", "Jiading", 121.239952, 31.360107, 464.2),
    ("310115", "浦东新区", "Pudong New Area", 121.737812, 31.085916, 1210.41),
    ("310116", "金山区", "Jinshan", 121.250753, 30.821184, 586.05),
    ("310117", "松江区", "Songjiang", 121.215803, 31.01731, 605.64),
    ("310118", "青浦区", "Qingpu", 121.080591, 31.12658, 670.14),
    ("310120", "奉贤区", "Fengxian", 121.558288, 30.90035, 687.39),
    ("310151", "崇明区", "Chongming", 121.564213, 31.637999, 1185.49),
)

# Per district: how many of each kind of thing the demo places.
PER_DISTRICT = {
    "Streetlight": 8,
    "WaterLevelGauge": 3,
    "GasPressurePoint": 3,
    "Elevator": 4,
    "ParkingSpot": 6,
    "TrafficFlowObserved": 2,
}


def _prop(value: Any, **meta: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **meta}


def _rel(target: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": target}


def _point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def _name(zh: str, en: str) -> dict[str, Any]:
    return {"type": "LanguageProperty", "languageMap": {"zh": zh, "en": en}}


def stations() -> list[dict[str, str]]:
    text = (
        resources.files("pujiang.context")
        .joinpath("data", "stations-shanghai.csv")
        .read_text(encoding="utf-8")
    )
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


def _observed_at(now: datetime) -> str:
    return now.replace(minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def air_quality(now: datetime, rng: random.Random) -> list[dict[str, Any]]:
    at = _observed_at(now)
    out: list[dict[str, Any]] = []
    for row in stations():
        code, lon, lat = row["code"], float(row["lon"]), float(row["lat"])
        device = f"urn:ngsi-ld:Device:AQ-{code}"
        background = row["background"] == "Y"
        base = 18 if background else 32
        out.append(
            {
                "id": f"urn:ngsi-ld:AirQualityObserved:{code}",
                "type": "AirQualityObserved",
                "name": _name(row["name"], f"Station {code}"),
                "stationCode": _prop(code),
                "location": _point(lon, lat),
                "dateObserved": _prop(at),
                "pm25": _prop(round(base + rng.uniform(-8, 25), 1), unitCode="GQ", observedAt=at),
                "pm10": _prop(
                    round(base * 1.6 + rng.uniform(-10, 30), 1), unitCode="GQ", observedAt=at
                ),
                "no2": _prop(round(rng.uniform(15, 60), 1), unitCode="GQ", observedAt=at),
                "o3": _prop(round(rng.uniform(30, 140), 1), unitCode="GQ", observedAt=at),
                "so2": _prop(round(rng.uniform(3, 12), 1), unitCode="GQ", observedAt=at),
                "co": _prop(round(rng.uniform(0.4, 1.2), 2), unitCode="GP", observedAt=at),
                "typeofLocation": _prop("rural" if background else "urban"),
                "refDevice": _rel(device),
            }
        )
        out.append(
            {
                "id": device,
                "type": "Device",
                "category": _prop(["sensor"]),
                "controlledProperty": _prop(["pm25", "pm10", "no2", "o3", "so2", "co"]),
                "deviceState": _prop("ok"),
                "location": _point(lon, lat),
                "serialNumber": _prop(f"CNEMC-{code}"),
            }
        )
    return out


def _spread(rng: random.Random, lon: float, lat: float, area_km2: float) -> tuple[float, float]:
    radius_m = math.sqrt(area_km2 * 1e6 / math.pi) * 0.5
    r = radius_m * math.sqrt(rng.random())
    angle = rng.uniform(0, 2 * math.pi)
    dlon = r * math.cos(angle) / (METRES_PER_DEGREE * math.cos(math.radians(lat)))
    dlat = r * math.sin(angle) / METRES_PER_DEGREE
    return round(lon + dlon, 6), round(lat + dlat, 6)


def district_things(now: datetime, rng: random.Random) -> list[dict[str, Any]]:
    at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    out: list[dict[str, Any]] = []
    for code, name, name_en, clon, clat, area in DISTRICTS:
        area_prop = _prop(code)
        for kind, count in PER_DISTRICT.items():
            for n in range(1, count + 1):
                lon, lat = _spread(rng, clon, clat, area)
                key = f"{code}-{n:03d}"
                if kind == "Streetlight":
                    out.append(
                        {
                            "id": f"urn:ngsi-ld:Streetlight:{key}",
                            "type": "Streetlight",
                            "location": _point(lon, lat),
                            "districtCode": area_prop,
                            "powerState": _prop(rng.choice(["on", "on", "off"])),
                            "status": _prop(rng.choice(["ok", "ok", "ok", "defectiveLamp"])),
                            "illuminanceLevel": _prop(round(rng.uniform(0.4, 1.0), 2)),
                            "dateLastSwitchingOn": _prop(at),
                        }
                    )
                elif kind == "WaterLevelGauge":
                    level = round(rng.uniform(0.0, 0.35), 2)
                    out.append(
                        {
                            "id": f"urn:ngsi-ld:Device:WL-{key}",
                            "type": "Device",
                            "name": _name(
                                f"{name}下立交积水监测 {n}", f"{name_en} underpass gauge {n}"
                            ),
                            "category": _prop(["sensor"]),
                            "controlledProperty": _prop(["waterLevel"]),
                            "value": _prop(level, unitCode="MTR", observedAt=at),
                            "alertThreshold": _prop(0.25, unitCode="MTR"),
                            "location": _point(lon, lat),
                            "districtCode": area_prop,
                        }
                    )
                elif kind == "GasPressurePoint":
                    out.append(
                        {
                            "id": f"urn:ngsi-ld:Device:GP-{key}",
                            "type": "Device",
                            "name": _name(f"{name}燃气压力点 {n}", f"{name_en} gas pressure {n}"),
                            "category": _prop(["sensor"]),
                            "controlledProperty": _prop(["pressure"]),
                            "value": _prop(
                                round(rng.uniform(0.18, 0.32), 3), unitCode="MPA", observedAt=at
                            ),
                            "location": _point(lon, lat),
                            "districtCode": area_prop,
                        }
                    )
                elif kind == "Elevator":
                    out.append(
                        {
                            "id": f"urn:ngsi-ld:Device:EL-{key}",
                            "type": "Device",
                            "name": _name(f"{name}电梯 {n}", f"{name_en} elevator {n}"),
                            "category": _prop(["actuator", "sensor"]),
                            "controlledProperty": _prop(["motion"]),
                            "deviceState": _prop(rng.choice(["ok", "ok", "ok", "ok", "fault"])),
                            "floor": _prop(rng.randint(1, 30)),
                            "location": _point(lon, lat),
                            "districtCode": area_prop,
                        }
                    )
                elif kind == "ParkingSpot":
                    out.append(
                        {
                            "id": f"urn:ngsi-ld:ParkingSpot:{key}",
                            "type": "ParkingSpot",
                            "status": _prop(
                                rng.choice(["free", "occupied", "occupied"]), observedAt=at
                            ),
                            "category": _prop(["onStreet"]),
                            "location": _point(lon, lat),
                            "districtCode": area_prop,
                        }
                    )
                else:
                    out.append(
                        {
                            "id": f"urn:ngsi-ld:TrafficFlowObserved:{key}",
                            "type": "TrafficFlowObserved",
                            "intensity": _prop(rng.randint(200, 2400), observedAt=at),
                            "averageVehicleSpeed": _prop(
                                round(rng.uniform(12, 60), 1), unitCode="KMH"
                            ),
                            "occupancy": _prop(round(rng.uniform(0.05, 0.9), 2)),
                            "congested": _prop(rng.random() < 0.2),
                            "location": _point(lon, lat),
                            "districtCode": area_prop,
                        }
                    )
    # Water quality on the Huangpu and Suzhou Creek.
    for n, (lon, lat) in enumerate(
        [(121.4905, 31.2400), (121.5020, 31.2050), (121.4400, 31.2450), (121.5600, 31.3500)], 1
    ):
        out.append(
            {
                "id": f"urn:ngsi-ld:WaterQualityObserved:HP-{n:02d}",
                "type": "WaterQualityObserved",
                "location": _point(lon, lat),
                "temperature": _prop(round(rng.uniform(12, 24), 1), unitCode="CEL", observedAt=at),
                "pH": _prop(round(rng.uniform(6.8, 8.0), 2), observedAt=at),
                "O2": _prop(round(rng.uniform(5, 9), 2), unitCode="M1", observedAt=at),
                "turbidity": _prop(round(rng.uniform(5, 40), 1), unitCode="NTU", observedAt=at),
            }
        )
    return out


def demo_entities(now: datetime | None = None, seed: int = DEMO_SEED) -> list[dict[str, Any]]:
    """Every demo entity, in the NGSI-LD normalized form with short (default-vocab) names."""
    moment = now or datetime.now(UTC)
    rng = random.Random(seed)  # noqa: S311 - demo readings, not secrets
    return air_quality(moment, rng) + district_things(moment, rng)


def _with_grids(context: AppContext, entities: list[dict[str, Any]]) -> None:
    """Add the unit grid each entity lies in, when the city model is loaded."""
    try:
        from pujiang.city import locate_many
    except ImportError:
        return
    lons = [e["location"]["value"]["coordinates"][0] for e in entities]
    lats = [e["location"]["value"]["coordinates"][1] for e in entities]
    try:
        found = locate_many(context, lons, lats)
        grids = found.columns()["grid_code"]
    except Exception:
        return  # no city loaded (or an older city module): entities stay without grids
    for entity, grid in zip(entities, grids, strict=False):
        if grid:
            entity["gridCode"] = _prop(grid)


def load_demo(context: AppContext, broker: ContextBroker | None = None) -> int:
    """Upsert the demo entities into the default tenant; returns how many."""
    entities = demo_entities()
    _with_grids(context, entities)
    core = ContextProcessor().core
    expanded: list[Entity] = [expand_entity(e, core) for e in entities]
    (broker or ContextBroker(context.db, context.bus)).batch_upsert("", expanded)
    return len(expanded)
