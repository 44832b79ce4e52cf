"""Device measures to NGSI-LD attribute instances: types, units, times. Pure, no database.

A `DeviceProfile` is a device resolved with its service group (`registry.py` builds it). The
mapping follows the IoT Agent JSON convention: each measure is keyed by its `object_id`; a
mapped one takes the mapping's attribute name, type and unit; an unmapped one passes through
under its own name with the type its JSON value has, unless the device (or its group) says
`explicitAttrs`, which drops it. The measure time is the payload's `TimeInstant`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pujiang.context.jsonld import check_name, is_uri

Instance = dict[str, Any]
Conversion = Callable[[float], float]

TIME_KEY = "TimeInstant"
# A clock a little fast is normal; a reading from further in the future is refused.
FUTURE_TOLERANCE = timedelta(minutes=5)
# Epoch numbers above this are milliseconds (1e11 s is the year 5138).
EPOCH_MS_ABOVE = 1e11

NUMERIC = frozenset({"Number", "Float", "Integer"})
TEXT = frozenset({"Text", "String"})
GEO = frozenset({"geo:point", "geo:json", "GeoProperty"})
GEOMETRY_TYPES = frozenset(
    {"Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon"}
)


class PayloadError(ValueError):
    """A message refused: `reason` is a short code (counted per device), `detail` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class AttrMap:
    """How one measure becomes an attribute: name, IRI, type, stored unit and conversion."""

    object_id: str
    name: str
    iri: str
    value_type: str
    unit_code: str | None = None
    convert: Conversion | None = None


@dataclass(frozen=True)
class DeviceProfile:
    """A provisioned device with its group's defaults applied."""

    pk: int
    tenant: str
    device_id: str
    apikey: str
    entity_id: str
    entity_type: str
    type_iri: str
    transport: str = "MQTT"
    endpoint: str | None = None
    commands: tuple[str, ...] = ()
    expected_interval: int | None = None
    missed_intervals: int = 3
    explicit_attrs: bool = False
    attrs: dict[str, AttrMap] = field(default_factory=dict)  # by object_id
    statics: dict[str, Instance] = field(default_factory=dict)  # IRI -> instance
    expand: Callable[[str], str] = str  # short attribute name -> IRI (the group's @context)

    @property
    def silent_after(self) -> timedelta | None:
        """How long without a message before the device counts as offline."""
        if not self.expected_interval:
            return None
        return timedelta(seconds=self.expected_interval * self.missed_intervals)

    def seed_entity(self) -> dict[str, Any]:
        """The entity to create when the first measure arrives: id, type, static attributes."""
        entity: dict[str, Any] = {"id": self.entity_id, "type": [self.type_iri]}
        for iri, instance in self.statics.items():
            entity[iri] = [dict(instance)]
        return entity


# -- times ----------------------------------------------------------------------------------------


def canonical_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_latest_cache: tuple[datetime, str] | None = None


def _latest(now: datetime) -> str:
    """The latest acceptable measure time for `now`, as canonical text (cached per `now`)."""
    global _latest_cache
    cached = _latest_cache
    if cached is None or cached[0] is not now:
        cached = _latest_cache = (now, canonical_time(now + FUTURE_TOLERANCE))
    return cached[1]


_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def measure_time(value: Any, now: datetime | None) -> str:
    """A device time (ISO 8601 with a zone, or epoch seconds/milliseconds) as canonical UTC;
    with `now`, a time beyond it (and the tolerance) is refused."""
    if isinstance(value, str) and _CANONICAL.fullmatch(value):
        # Already canonical (what our simulator and most gateways send): checked as a date,
        # then compared as text (canonical texts sort as the times they name).
        try:
            datetime.fromisoformat(value[:-1])
        except ValueError as exc:
            raise PayloadError("bad_time", f"时间无效：{value!r} / not a valid time") from exc
        if now is not None and value > _latest(now):
            raise PayloadError(
                "future_time",
                f"测量时间 {value} 在未来 / the measure time {value} is in the future",
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PayloadError("bad_time", f"时间格式无效：{value!r} / not a time: {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise PayloadError("bad_time", f"时间不是有限数：{value!r} / time is not finite")
        seconds = value / 1000.0 if value > EPOCH_MS_ABOVE else float(value)
        try:
            moment = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise PayloadError("bad_time", f"时间超出范围：{value!r} / time out of range") from exc
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise PayloadError(
                "bad_time", f"时间不是 ISO 8601：{value!r} / not an ISO 8601 time: {value!r}"
            ) from exc
        if moment.tzinfo is None:
            raise PayloadError(
                "bad_time",
                f"时间缺少时区（如 Z 或 +08:00）：{value!r} / the time has no zone "
                f"(add Z or +08:00): {value!r}",
            )
    if now is not None and moment > now + FUTURE_TOLERANCE:
        raise PayloadError(
            "future_time",
            f"测量时间 {canonical_time(moment)} 在未来 / the measure time "
            f"{canonical_time(moment)} is in the future",
        )
    return canonical_time(moment)


# -- values ---------------------------------------------------------------------------------------


def _wrong(name: str, value_type: str, value: Any) -> PayloadError:
    shown = repr(value)[:80]
    return PayloadError(
        "wrong_type",
        f"属性 {name} 应为 {value_type}，收到 {shown} / attribute {name} must be {value_type}, "
        f"got {shown}",
    )


def _number(name: str, value_type: str, value: Any) -> float | int:
    if isinstance(value, bool):
        raise _wrong(name, value_type, value)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError as exc:
            raise _wrong(name, value_type, value) from exc
    if not isinstance(value, int | float):
        raise _wrong(name, value_type, value)
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(
            "not_finite", f"属性 {name} 不是有限数：{value} / attribute {name} is not finite"
        )
    if value_type == "Integer" and isinstance(value, float):
        if not value.is_integer():
            raise _wrong(name, value_type, value)
        return int(value)
    number: float | int = value
    return number


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _wrong(name, "Boolean", value)


def _point(name: str, value: Any) -> dict[str, Any]:
    """geo:point: "lat, lon" (IoT Agent convention), [lon, lat], or a GeoJSON Point."""
    if isinstance(value, dict):
        return _geometry(name, value)
    if isinstance(value, str):
        parts = value.split(",")
        if len(parts) != 2:
            raise _wrong(name, 'geo:point ("lat, lon")', value)
        try:
            lat, lon = float(parts[0]), float(parts[1])
        except ValueError as exc:
            raise _wrong(name, 'geo:point ("lat, lon")', value) from exc
    elif isinstance(value, list) and len(value) == 2:
        lon, lat = value
    else:
        raise _wrong(name, "geo:point", value)
    return _geometry(name, {"type": "Point", "coordinates": [lon, lat]})


def _position(name: str, position: Any) -> None:
    if not (isinstance(position, list) and len(position) in (2, 3)):
        raise _wrong(name, "GeoJSON position [lon, lat]", position)
    for coordinate in position:
        if isinstance(coordinate, bool) or not isinstance(coordinate, int | float):
            raise _wrong(name, "GeoJSON position [lon, lat]", position)
        if not math.isfinite(coordinate):
            raise PayloadError("not_finite", f"属性 {name} 的坐标不是有限数 / not finite")
    if not (-180 <= position[0] <= 180 and -90 <= position[1] <= 90):
        raise _wrong(name, "WGS84 position within [-180, 180] × [-90, 90]", position)


def _positions(name: str, coordinates: Any, depth: int) -> None:
    if depth == 0:
        _position(name, coordinates)
        return
    if not isinstance(coordinates, list) or not coordinates:
        raise _wrong(name, "GeoJSON coordinates", coordinates)
    for item in coordinates:
        _positions(name, item, depth - 1)


_DEPTH = {
    "Point": 0,
    "LineString": 1,
    "MultiPoint": 1,
    "Polygon": 2,
    "MultiLineString": 2,
    "MultiPolygon": 3,
}


def _geometry(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("type") not in GEOMETRY_TYPES:
        raise _wrong(name, "GeoJSON geometry", value)
    _positions(name, value.get("coordinates"), _DEPTH[value["type"]])
    return {"type": value["type"], "coordinates": value["coordinates"]}


def _plain(name: str, value: Any) -> Any:
    """An unmapped measure, or a `Property`: any JSON value but null; numbers must be finite."""
    if value is None:
        raise _wrong(name, "a value (not null)", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError("not_finite", f"属性 {name} 不是有限数 / attribute {name} is not finite")
    return value


def _typed(attr: AttrMap, value: Any) -> tuple[str, Any]:
    """(NGSI-LD attribute kind, value) of a mapped measure."""
    kind, name, value_type = "Property", attr.name, attr.value_type
    if value_type in NUMERIC:
        number = _number(name, value_type, value)
        if attr.convert is not None:
            converted = attr.convert(float(number))
            return kind, round(converted, 9)
        return kind, number
    if value_type in TEXT:
        if isinstance(value, str):
            return kind, value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return kind, str(value)
        raise _wrong(name, value_type, value)
    if value_type == "Boolean":
        return kind, _boolean(name, value)
    if value_type == "DateTime":
        if not isinstance(value, str):
            raise _wrong(name, value_type, value)
        return kind, measure_time(value, None)
    if value_type == "geo:point":
        return "GeoProperty", _point(name, value)
    if value_type in ("geo:json", "GeoProperty"):
        return "GeoProperty", _geometry(name, value)
    if value_type == "Object":
        if not isinstance(value, dict):
            raise _wrong(name, value_type, value)
        return kind, value
    if value_type == "Array":
        if not isinstance(value, list):
            raise _wrong(name, value_type, value)
        return kind, value
    if value_type == "Relationship":
        if not is_uri(value):
            raise _wrong(name, "Relationship (a URI)", value)
        return "Relationship", value
    return kind, _plain(name, value)


def _instance(kind: str, value: Any, observed_at: str, unit_code: str | None) -> Instance:
    instance: Instance = {"type": kind}
    instance["object" if kind == "Relationship" else "value"] = value
    instance["observedAt"] = observed_at
    if unit_code and kind == "Property":
        instance["unitCode"] = unit_code
    return instance


def static_instance(attr: AttrMap, value: Any) -> Instance:
    """A static attribute's instance (no observedAt: it is a fact, not a reading)."""
    kind, typed = _typed(attr, value)
    instance = _instance(kind, typed, "", attr.unit_code)
    del instance["observedAt"]
    return instance


def convert(
    profile: DeviceProfile, measures: dict[str, Any], observed_at: str
) -> list[tuple[str, Instance]]:
    """The (attribute IRI, instance) pairs of one message's measures, or PayloadError.

    `TimeInstant` is the measure time (the caller read it into `observed_at`) and not an
    attribute. A message with nothing to store is refused (`empty`)."""
    out: list[tuple[str, Instance]] = []
    for object_id, value in measures.items():
        if object_id == TIME_KEY:
            continue
        attr = profile.attrs.get(object_id)
        if attr is not None:
            kind, typed = _typed(attr, value)
            out.append((attr.iri, _instance(kind, typed, observed_at, attr.unit_code)))
            continue
        if profile.explicit_attrs:
            continue  # IoT Agent convention: unmapped measures are dropped
        try:
            check_name(object_id)
        except ValueError as exc:
            raise PayloadError(
                "unknown_attribute",
                f"测量名 {object_id!r} 不是合法的属性名 / {object_id!r} is not a valid "
                "attribute name",
            ) from exc
        value = _plain(object_id, value)
        kind = "Relationship" if is_uri(value) and object_id.startswith("ref") else "Property"
        out.append((profile.expand(object_id), _instance(kind, value, observed_at, None)))
    if not out:
        raise PayloadError(
            "empty", "消息中没有可存储的测量值 / the message holds no measure to store"
        )
    return out
