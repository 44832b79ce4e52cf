"""The NGSI-LD geo-query language (ETSI GS CIM 009 v1.8, clause 4.10). Pure: no database.

    gq = parse_geoquery("near;maxDistance==500", "Point", "[121.4737,31.2304]")
    gq.matches({"type": "Point", "coordinates": [121.475, 31.231]})   # -> True
    gq.bbox()     # lon/lat box every match intersects, for the spatial-index prefilter

Coordinates are WGS84 longitude, latitude (GeoJSON order). Distances are metres on the WGS84
ellipsoid: exact geodesics between points; for lines and areas, an azimuthal equidistant
projection centred on the reference point (exact for distances from that centre; edges are
densified so the straight-edge error stays far below 0.1 % at city scale).

Semantics follow the OGC Simple Features predicates the spec cites ([14]), as in PostGIS:
`within`, `contains`, `intersects`, `overlaps`, `disjoint`, `equals` relate the *target*
geometry (the entity's GeoProperty) to the *reference* geometry of the query. `near` takes a
Point: `maxDistance==d` matches targets some part of which lies within d metres (as PostGIS
ST_DWithin), `minDistance==d` targets all of which lie farther than d metres.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
import shapely
from pyproj import Geod, Transformer
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

__all__ = [
    "GEOMETRY_TYPES",
    "GEORELS",
    "GeoQuery",
    "GeoQueryError",
    "geometry_from_geojson",
    "parse_geometry",
    "parse_geoquery",
]

GEORELS = ("near", "within", "contains", "intersects", "overlaps", "disjoint", "equals")
GEOMETRY_TYPES = (
    "Point",
    "LineString",
    "Polygon",
    "MultiPoint",
    "MultiLineString",
    "MultiPolygon",
)
_TYPES_BY_LOWER = {t.lower(): t for t in GEOMETRY_TYPES}
# PositiveNumber: a JSON number without a minus sign (zero is refused after parsing).
_POSITIVE_NUMBER = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_MAX_COORDINATES_TEXT = 1_000_000
_DENSIFY_DEGREES = 0.005  # ~500 m: longest edge projected as a straight line
_GEOD = Geod(ellps="WGS84")
# Below the WGS84 meridional radius of curvature at the equator (6 335 439 m): bbox stays wide.
_CONSERVATIVE_RADIUS_M = 6_330_000.0


class GeoQueryError(ValueError):
    """A geo-query that is not valid; the message names the parameter and the fault."""


@lru_cache(maxsize=256)
def _aeqd(lon: float, lat: float) -> Transformer:
    """WGS84 lon/lat -> metres in an azimuthal equidistant projection centred on (lon, lat)."""
    return Transformer.from_crs(
        "EPSG:4326",
        f"+proj=aeqd +lat_0={lat!r} +lon_0={lon!r} +datum=WGS84 +units=m +no_defs",
        always_xy=True,
    )


def _distance_m(lon: float, lat: float, target: BaseGeometry) -> float:
    """Shortest distance in metres from the point (lon, lat) to `target` on WGS84."""
    if target.geom_type == "Point":
        _, _, metres = _GEOD.inv(lon, lat, target.x, target.y)
        return float(metres)
    if target.geom_type == "MultiPoint":
        return min(_distance_m(lon, lat, p) for p in target.geoms)
    transformer = _aeqd(lon, lat)
    dense = shapely.segmentize(target, _DENSIFY_DEGREES)

    def project(coords: Any) -> Any:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack((x, y))

    projected = shapely.transform(dense, project)
    return float(projected.distance(shapely.Point(0.0, 0.0)))


def _bbox_around(lon: float, lat: float, metres: float) -> tuple[float, float, float, float]:
    """A lon/lat box holding every point within `metres` of (lon, lat).

    Spherical formulas with a radius below WGS84's smallest radius of curvature, so the box is
    a little generous everywhere; it widens to all longitudes when the circle holds a pole or
    crosses the antimeridian."""
    angle = (metres + 1.0) / _CONSERVATIVE_RADIUS_M
    if angle >= math.pi / 2:
        return (-180.0, -90.0, 180.0, 90.0)
    north = lat + math.degrees(angle)
    south = lat - math.degrees(angle)
    if north >= 90.0 or south <= -90.0:
        return (-180.0, max(-90.0, south), 180.0, min(90.0, north))
    ratio = math.sin(angle) / math.cos(math.radians(lat))
    if ratio >= 1.0:
        return (-180.0, south, 180.0, north)
    delta = math.degrees(math.asin(ratio))
    if lon - delta < -180.0 or lon + delta > 180.0:
        return (-180.0, south, 180.0, north)
    return (lon - delta, south, lon + delta, north)


# --------------------------------------------------------------------------------------------
# reference geometry


def _position(value: Any, where: str) -> tuple[float, ...]:
    if not isinstance(value, list | tuple) or len(value) not in (2, 3):
        raise GeoQueryError(
            f"coordinates: {where} must be a position [longitude, latitude], got {_short(value)}"
        )
    for number in value:
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise GeoQueryError(f"coordinates: {where} holds a non-number {_short(number)}")
        if not math.isfinite(number):
            raise GeoQueryError(f"coordinates: {where} holds a non-finite number")
    lon, lat = float(value[0]), float(value[1])
    if not -180.0 <= lon <= 180.0:
        raise GeoQueryError(
            f"coordinates: {where} has longitude {lon}, outside -180..180 "
            "(positions are [longitude, latitude])"
        )
    if not -90.0 <= lat <= 90.0:
        raise GeoQueryError(
            f"coordinates: {where} has latitude {lat}, outside -90..90 "
            "(positions are [longitude, latitude])"
        )
    return tuple(float(n) for n in value)


def _positions(value: Any, where: str, minimum: int) -> list[tuple[float, ...]]:
    if not isinstance(value, list | tuple):
        raise GeoQueryError(f"coordinates: {where} must be an array of positions")
    if len(value) < minimum:
        raise GeoQueryError(
            f"coordinates: {where} needs at least {minimum} positions, got {len(value)}"
        )
    positions = [_position(p, f"{where} position {i}") for i, p in enumerate(value)]
    if len({p[:2] for p in positions}) < 2:
        raise GeoQueryError(f"coordinates: {where} needs at least 2 distinct positions")
    return positions


def _rings(value: Any, where: str) -> list[list[tuple[float, ...]]]:
    if not isinstance(value, list | tuple) or not value:
        raise GeoQueryError(f"coordinates: {where} must be a non-empty array of linear rings")
    rings = []
    for i, ring in enumerate(value):
        name = f"{where} ring {i}"
        positions = _positions(ring, name, 4)
        if positions[0][:2] != positions[-1][:2]:
            raise GeoQueryError(
                f"coordinates: {name} is not closed: its first position {list(positions[0])} "
                f"must be repeated as its last"
            )
        rings.append(positions)
    return rings


def _many(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list | tuple) or not value:
        raise GeoQueryError(f"coordinates: {where} must be a non-empty array")
    return list(value)


def parse_geometry(geometry: str, coordinates: Any) -> BaseGeometry:
    """A validated shapely geometry from a GeoJSON type name and coordinates (parsed)."""
    kind = geometry
    if kind == "Point":
        return shapely.Point(_position(coordinates, "the Point"))
    if kind == "LineString":
        return shapely.LineString(_positions(coordinates, "the LineString", 2))
    if kind == "Polygon":
        geom: BaseGeometry = _polygon(_rings(coordinates, "the Polygon"), "Polygon")
    elif kind == "MultiPoint":
        items = _many(coordinates, "the MultiPoint")
        return shapely.MultiPoint([_position(p, f"point {i}") for i, p in enumerate(items)])
    elif kind == "MultiLineString":
        items = _many(coordinates, "the MultiLineString")
        return shapely.MultiLineString(
            [_positions(line, f"line {i}", 2) for i, line in enumerate(items)]
        )
    elif kind == "MultiPolygon":
        items = _many(coordinates, "the MultiPolygon")
        polygons: list[Any] = []
        for i, polygon in enumerate(items):
            part = _polygon(_rings(polygon, f"polygon {i}"), f"polygon {i}")
            polygons.extend(getattr(part, "geoms", [part]))
        geom = shapely.MultiPolygon(polygons)
    else:  # pragma: no cover - callers pass a known type
        raise GeoQueryError(f"geometry: unknown type {geometry!r}")
    if not geom.is_valid:
        _invalid(geom, kind)
    return geom


def _invalid(geom: BaseGeometry, kind: str) -> None:
    reason = shapely.is_valid_reason(geom)
    raise GeoQueryError(
        f"coordinates: the {kind} is not a valid area ({reason}); holes must lie inside their "
        "polygon and the polygons of a MultiPolygon must not overlap"
    )


def _polygon(rings: list[Any], kind: str) -> BaseGeometry:
    """One polygon. GeoJSON (RFC 7946, which NGSI-LD geometries follow) does not forbid a ring
    that crosses itself or another ring (the suite's own polygons do): such a polygon is
    repaired (shapely's make_valid, keeping every lobe) so that relations are decided on a
    proper area; a polygon with no area left is refused. Faults of structure that RFC 7946
    rules out (a hole outside its exterior ring) are refused as before."""
    geom = shapely.Polygon(rings[0], rings[1:])
    if geom.is_valid:
        return geom
    reason = shapely.is_valid_reason(geom)
    if not reason.startswith(("Self-intersection", "Ring Self-intersection")):
        _invalid(geom, kind)
    repaired = _areal(shapely.make_valid(geom))
    if repaired is None:
        raise GeoQueryError(f"coordinates: the {kind} encloses no area ({reason})")
    return repaired


def _areal(geom: BaseGeometry) -> BaseGeometry | None:
    """The areal part of a repaired geometry (make_valid may add stray lines or points where
    a ring folds back on itself), or None if nothing areal is left."""
    parts = getattr(geom, "geoms", None)
    if parts is not None:
        polygons: list[Any] = []
        for part in parts:
            if isinstance(part, shapely.Polygon):
                polygons.append(part)
            elif isinstance(part, shapely.MultiPolygon):
                polygons.extend(part.geoms)
        if not polygons:
            return None
        geom = polygons[0] if len(polygons) == 1 else shapely.MultiPolygon(polygons)
    if geom.is_empty or geom.area <= 0:
        return None
    return geom


def geometry_from_geojson(value: Any) -> BaseGeometry | None:
    """A shapely geometry from a GeoJSON geometry object, or None if it is not one."""
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    try:
        geom = shape(value)
    except Exception:  # shapely raises a zoo of types on malformed input
        return None
    return None if geom.is_empty else geom


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------
# the query


@dataclass(frozen=True)
class GeoQuery:
    """A parsed geo-query. `reference` is the query geometry (shapely, lon/lat)."""

    georel: str
    geometry: str
    coordinates: Any = field(compare=False)
    geoproperty: str = "location"
    max_distance: float | None = None
    min_distance: float | None = None
    reference: BaseGeometry = field(default=None, compare=False, repr=False)

    @property
    def georel_text(self) -> str:
        """The georel parameter as the spec writes it (e.g. `near;maxDistance==2000`)."""
        text = self.georel
        if self.max_distance is not None:
            text += f";maxDistance=={_number_text(self.max_distance)}"
        if self.min_distance is not None:
            text += f";minDistance=={_number_text(self.min_distance)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The GeoQuery data type (clause 5.2.13), e.g. for a subscription's `geoQ`."""
        return {
            "georel": self.georel_text,
            "geometry": self.geometry,
            "coordinates": self.coordinates,
            "geoproperty": self.geoproperty,
        }

    def map_geoproperty(self, fn: Callable[[str], str]) -> GeoQuery:
        """The same query with its geoproperty name passed through `fn` (term expansion)."""
        return replace(self, geoproperty=fn(self.geoproperty))

    def matches(self, geojson: Any) -> bool:
        """Whether a target GeoJSON geometry satisfies the query (False if it is not one)."""
        target = geometry_from_geojson(geojson)
        if target is None:
            return False
        if not target.is_valid:  # judged as the query's own areas are: repaired
            with contextlib.suppress(shapely.errors.GEOSException):
                target = shapely.make_valid(target)
        try:
            return self._test(target)
        except shapely.errors.GEOSException:
            try:
                return self._test(shapely.make_valid(target))
            except shapely.errors.GEOSException:
                return False

    def matches_entity(self, entity: dict[str, Any], geoproperty: str | None = None) -> bool:
        """Whether any instance of the entity's GeoProperty matches (internal entity form)."""
        instances = entity.get(geoproperty or self.geoproperty)
        if isinstance(instances, dict):
            instances = [instances]
        if not isinstance(instances, list):
            return False
        return any(isinstance(i, dict) and self.matches(i.get("value")) for i in instances)

    def _test(self, target: BaseGeometry) -> bool:
        ref = self.reference
        rel = self.georel
        if rel == "near":
            return self._near(target)
        if rel == "within":
            return bool(target.within(ref))
        if rel == "contains":
            return bool(target.contains(ref))
        if rel == "intersects":
            return bool(target.intersects(ref))
        if rel == "overlaps":
            return bool(target.overlaps(ref))
        if rel == "disjoint":
            return bool(target.disjoint(ref))
        return bool(target.equals(ref))

    def _near(self, target: BaseGeometry) -> bool:
        lon, lat = self.reference.x, self.reference.y
        if self.max_distance is not None:
            box = self.bbox()
            if box is not None and not shapely.box(*box).intersects(target):
                return False
        distance = _distance_m(lon, lat, target)
        if self.max_distance is not None and distance > self.max_distance:
            return False
        return not (self.min_distance is not None and distance <= self.min_distance)

    def bbox(self) -> tuple[float, float, float, float] | None:
        """(minlon, minlat, maxlon, maxlat) that every matching target intersects; None when
        the relation cannot be narrowed that way (`disjoint`, `near` with only minDistance)."""
        if self.georel == "disjoint":
            return None
        if self.georel == "near":
            if self.max_distance is None:
                return None
            return _bbox_around(self.reference.x, self.reference.y, self.max_distance)
        minx, miny, maxx, maxy = self.reference.bounds
        return (float(minx), float(miny), float(maxx), float(maxy))


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _parse_georel(georel: str) -> tuple[str, float | None, float | None]:
    if not isinstance(georel, str) or not georel.strip():
        raise GeoQueryError(
            "georel is missing: use one of near;maxDistance==<metres>, near;minDistance=="
            "<metres>, within, contains, intersects, overlaps, disjoint, equals"
        )
    parts = georel.strip().split(";")
    rel = parts[0].strip()
    if rel not in GEORELS:
        hint = next((g for g in GEORELS if g.lower() == rel.lower()), None)
        extra = f" (did you mean {hint!r}?)" if hint else ""
        raise GeoQueryError(
            f"georel: unknown relation {rel!r}{extra}; use near, within, contains, intersects, "
            "overlaps, disjoint or equals"
        )
    modifiers = [p.strip() for p in parts[1:]]
    if rel != "near":
        if modifiers:
            raise GeoQueryError(f"georel: {rel} takes no modifiers, got {';'.join(modifiers)!r}")
        return rel, None, None
    if not modifiers:
        raise GeoQueryError(
            "georel: near needs a distance in metres: near;maxDistance==<metres> or "
            "near;minDistance==<metres>"
        )
    distances: dict[str, float] = {}
    for modifier in modifiers:
        name, sep, number = modifier.partition("==")
        name = name.strip()
        if name not in ("maxDistance", "minDistance") or not sep:
            raise GeoQueryError(
                f"georel: bad near modifier {modifier!r}; write maxDistance==<metres> or "
                "minDistance==<metres>"
            )
        if name in distances:
            raise GeoQueryError(f"georel: {name} is given twice")
        number = number.strip()
        if not _POSITIVE_NUMBER.fullmatch(number):
            raise GeoQueryError(
                f"georel: {name} must be a positive number of metres, got {number!r}"
            )
        value = float(number)
        if not math.isfinite(value) or value <= 0:
            raise GeoQueryError(
                f"georel: {name} must be a positive number of metres, got {number!r}"
            )
        distances[name] = value
    high, low = distances.get("maxDistance"), distances.get("minDistance")
    if high is not None and low is not None and low >= high:
        raise GeoQueryError(
            f"georel: minDistance ({_number_text(low)}) must be below maxDistance "
            f"({_number_text(high)})"
        )
    return rel, high, low


def _parse_coordinates(coordinates: str | list[Any] | Any) -> Any:
    if isinstance(coordinates, str):
        text = coordinates.strip()
        if not text:
            raise GeoQueryError("coordinates are missing: give a JSON array, e.g. [121.47,31.23]")
        if len(text) > _MAX_COORDINATES_TEXT:
            raise GeoQueryError(f"coordinates are longer than {_MAX_COORDINATES_TEXT} characters")
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise GeoQueryError(
                f"coordinates are not a JSON array ({exc}); write e.g. [121.47,31.23]"
            ) from None
    if coordinates is None:
        raise GeoQueryError("coordinates are missing: give a JSON array, e.g. [121.47,31.23]")
    return coordinates


def parse_geoquery(
    georel: str,
    geometry: str,
    coordinates: str | list[Any],
    geoproperty: str = "location",
) -> GeoQuery:
    """Validate the four geo-query parameters; raise GeoQueryError naming the fault.

    `coordinates` is the JSON text of a query string or an already parsed array (POST bodies,
    subscriptions). `geometry` is a GeoJSON type name (matched case-insensitively).
    """
    rel, max_distance, min_distance = _parse_georel(georel)
    if not isinstance(geometry, str) or not geometry.strip():
        raise GeoQueryError(f"geometry is missing: use one of {', '.join(GEOMETRY_TYPES)}")
    kind = _TYPES_BY_LOWER.get(geometry.strip().lower())
    if kind is None:
        raise GeoQueryError(
            f"geometry: unknown type {geometry!r}; use one of {', '.join(GEOMETRY_TYPES)}"
        )
    if rel == "near" and kind != "Point":
        raise GeoQueryError(f"georel near measures from a Point, not a {kind}")
    if not isinstance(geoproperty, str) or not geoproperty.strip():
        raise GeoQueryError("geoproperty must name a GeoProperty, e.g. location")
    parsed = _parse_coordinates(coordinates)
    reference = parse_geometry(kind, parsed)
    return GeoQuery(
        georel=rel,
        geometry=kind,
        coordinates=parsed,
        geoproperty=geoproperty.strip(),
        max_distance=max_distance,
        min_distance=min_distance,
        reference=reference,
    )
