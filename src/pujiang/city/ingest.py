"""Reading and checking boundary files: GeoJSON in, a batch of units plus a list of errors out.

Pure functions, no database: the service adds the checks that need the parents. Every error
names the feature (its index in the file, its code when it has one) and why it was refused.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import shapely

from pujiang.city.levels import Level, code_is_valid
from pujiang.city.reference import districts as reference_districts
from pujiang.platform.errors import Problem
from pujiang.platform.geo import EARTH_MEAN_RADIUS_M
from pujiang.platform.i18n import EN, ZH, register, translate

ObjectArray = npt.NDArray[np.object_]

# A child may stick out of its parent by this much (the two boundaries often come from
# different surveys); beyond it the feature is refused.
DEFAULT_TOLERANCE_M = 20.0
# Along a meridian on the mean sphere (111.2 km); scaled by cos(latitude) along a parallel.
METRES_PER_DEGREE = math.pi * EARTH_MEAN_RADIUS_M / 180.0

register(
    {
        "city.import.not_collection": (
            "文件不是 GeoJSON FeatureCollection（缺少 type=FeatureCollection 或 features 数组）",
            "The file is not a GeoJSON FeatureCollection "
            "(no type=FeatureCollection or no features array)",
        ),
        "city.import.not_feature": (
            "不是 GeoJSON Feature 对象",
            "not a GeoJSON Feature object",
        ),
        "city.import.no_geometry": ("缺少几何 geometry", "it has no geometry"),
        "city.import.geometry_type": (
            "几何类型为 {kind}，应为 Polygon 或 MultiPolygon",
            "geometry type is {kind}; it must be Polygon or MultiPolygon",
        ),
        "city.import.coordinates": (
            "坐标结构错误（{where}）：应为由 [经度, 纬度] 数字对组成的环",
            "malformed coordinates ({where}): rings of [lon, lat] number pairs are expected",
        ),
        "city.import.ring_short": (
            "环 {where} 只有 {count} 个点，闭合环至少需要 4 个",
            "ring {where} has {count} positions; a closed ring needs at least 4",
        ),
        "city.import.ring_unclosed": (
            "环 {where} 未闭合：首点 {first} 与末点 {last} 不同",
            "ring {where} is not closed: first position {first} differs from last {last}",
        ),
        "city.import.out_of_range": (
            "坐标 {position} 超出经纬度范围（文件是否用了投影坐标？需要 WGS84/CGCS2000 经纬度）",
            "position {position} is not a longitude/latitude (projected coordinates? "
            "WGS84/CGCS2000 degrees are required)",
        ),
        "city.import.invalid_polygon": (
            "多边形无效：{reason}",
            "invalid polygon: {reason}",
        ),
        "city.import.empty": ("几何为空", "the geometry is empty"),
        "city.import.code_missing": (
            "缺少编码属性 {property}",
            "the code property {property} is missing",
        ),
        "city.import.code_format": (
            "编码 {code} 无效：{level}编码应为 {length} 位数字，且末段不为全 0",
            "code {code} is invalid: a {level_en} code has {length} digits "
            "and its last part is not all zeros",
        ),
        "city.import.name_missing": (
            "缺少名称属性 {property}",
            "the name property {property} is missing",
        ),
        "city.import.duplicate": (
            "编码 {code} 在文件中重复出现（第 {others} 项）",
            "code {code} appears more than once in the file (features {others})",
        ),
        "city.import.parent_missing": (
            "上级{parent_level} {parent} 不存在：请先导入上级",
            "its parent {parent_level_en} {parent} does not exist: import that level first",
        ),
        "city.import.outside_parent": (
            "超出上级 {parent}（{parent_name}）约 {distance} 米，超过容差 {tolerance} 米",
            "it lies up to about {distance} m outside its parent {parent} ({parent_name}), "
            "beyond the tolerance of {tolerance} m",
        ),
    }
)


@dataclass(frozen=True)
class FeatureError:
    """Why one feature was refused."""

    index: int  # position in the file's features array, from 0
    code: str | None
    key: str
    params: dict[str, Any] = field(default_factory=dict)

    def reason(self, language: str | None = None) -> str:
        if language is None:
            return translate(self.key, **self.params)
        return translate(self.key, language, **self.params)

    def bilingual(self) -> str:
        return f"{self.reason(ZH)} / {self.reason(EN)}"

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "code": self.code, "reason": self.reason()}


@dataclass
class UnitBatch:
    """Units of one level to import, as parallel lists; `indexes` are positions in the file."""

    level: Level
    codes: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    names_en: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    geometries: list[Any] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)

    def add(self, code: str, name: str, geometry: Any, source: str, name_en: str = "") -> None:
        self.indexes.append(len(self.codes))
        self.codes.append(code)
        self.names.append(name)
        self.names_en.append(name_en)
        self.sources.append(source)
        self.geometries.append(geometry)

    def extend(
        self, codes: list[str], names: list[str], geometries: ObjectArray, source: str
    ) -> None:
        start = len(self.codes)
        self.indexes.extend(range(start, start + len(codes)))
        self.codes.extend(codes)
        self.names.extend(names)
        self.names_en.extend([""] * len(codes))
        self.sources.extend([source] * len(codes))
        self.geometries.extend(geometries.tolist())

    def __len__(self) -> int:
        return len(self.codes)

    def without(self, positions: set[int]) -> UnitBatch:
        """A copy leaving out the entries at these list positions."""
        keep = [k for k in range(len(self.codes)) if k not in positions]
        return UnitBatch(
            level=self.level,
            codes=[self.codes[k] for k in keep],
            names=[self.names[k] for k in keep],
            names_en=[self.names_en[k] for k in keep],
            sources=[self.sources[k] for k in keep],
            geometries=[self.geometries[k] for k in keep],
            indexes=[self.indexes[k] for k in keep],
        )


def area_m2(geometries: Any) -> npt.NDArray[np.float64]:
    """Approximate areas in m² (equirectangular at each geometry's own latitude; <0.5 % off)."""
    geoms = np.asarray(geometries, dtype=object)
    lat = shapely.get_y(shapely.centroid(geoms))
    scale = METRES_PER_DEGREE**2 * np.cos(np.radians(np.nan_to_num(lat)))
    result: npt.NDArray[np.float64] = shapely.area(geoms) * scale
    return result


# -- reading GeoJSON ------------------------------------------------------------------------------


def _short(value: Any) -> str:
    return orjson.dumps(value).decode()[:60]


def _check_rings(coordinates: Any, polygon_path: str) -> tuple[str, dict[str, Any]] | None:
    """The first problem with one polygon's rings, as (message key, params), or None."""
    if not isinstance(coordinates, list) or not coordinates:
        return "city.import.coordinates", {"where": polygon_path or "coordinates"}
    for r, ring in enumerate(coordinates):
        where = f"{polygon_path}[{r}]" if polygon_path else f"[{r}]"
        try:
            array = np.asarray(ring)
        except ValueError:
            return "city.import.coordinates", {"where": where}
        if array.ndim != 2 or array.shape[1] not in (2, 3) or array.dtype.kind not in "if":
            return "city.import.coordinates", {"where": where}
        array = array.astype(np.float64)
        if array.shape[0] < 4:
            return "city.import.ring_short", {"where": where, "count": array.shape[0]}
        finite = np.isfinite(array[:, :2]).all(axis=1)
        in_range = finite & (np.abs(array[:, 0]) <= 180) & (np.abs(array[:, 1]) <= 90)
        if not in_range.all():
            bad = array[int(np.argmin(in_range)), :2].tolist()
            return "city.import.out_of_range", {"position": _short(bad)}
        if not np.array_equal(array[0, :2], array[-1, :2]):
            return "city.import.ring_unclosed", {
                "where": where,
                "first": _short(array[0, :2].tolist()),
                "last": _short(array[-1, :2].tolist()),
            }
    return None


def _check_geometry(geometry: Any) -> tuple[str, dict[str, Any]] | None:
    if not isinstance(geometry, dict):
        return "city.import.no_geometry", {}
    kind = geometry.get("type")
    coordinates = geometry.get("coordinates")
    if kind == "Polygon":
        return _check_rings(coordinates, "")
    if kind == "MultiPolygon":
        if not isinstance(coordinates, list) or not coordinates:
            return "city.import.coordinates", {"where": "coordinates"}
        for p, polygon in enumerate(coordinates):
            problem = _check_rings(polygon, f"[{p}]")
            if problem:
                return problem
        return None
    return "city.import.geometry_type", {"kind": _short(kind)}


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):  # GIS tools often write codes as numbers
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def read_feature_collection(
    data: Any,
    level: Level,
    *,
    source: str,
    code_property: str = "code",
    name_property: str = "name",
) -> tuple[UnitBatch, list[FeatureError]]:
    """Read the features of a GeoJSON FeatureCollection; structural errors are listed, not raised.

    District files may leave out codes: a district name found in GB/T 2260 gets its code.
    Grid features may leave out names ("017号网格" is made from the code).
    """
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise Problem.of(422, "invalid-geojson", "city.import.not_collection")
    features = data.get("features")
    if not isinstance(features, list):
        raise Problem.of(422, "invalid-geojson", "city.import.not_collection")
    district_codes = {d.name: d.code for d in reference_districts()}
    batch = UnitBatch(level)
    errors: list[FeatureError] = []
    texts: list[bytes] = []
    for index, feature in enumerate(features):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            errors.append(FeatureError(index, None, "city.import.not_feature"))
            continue
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            props = {}
        code = _text(props.get(code_property))
        name = _text(props.get(name_property))
        if code is None and level is Level.DISTRICT and name in district_codes:
            code = district_codes[name]
        if name is None and level is Level.GRID and code is not None:
            name = f"{code[-3:]}号网格"
        problem = _check_geometry(feature.get("geometry"))
        if problem is not None:
            errors.append(FeatureError(index, code, problem[0], problem[1]))
            continue
        if code is None:
            errors.append(
                FeatureError(index, None, "city.import.code_missing", {"property": code_property})
            )
            continue
        if name is None:
            errors.append(
                FeatureError(index, code, "city.import.name_missing", {"property": name_property})
            )
            continue
        batch.codes.append(code)
        batch.names.append(name)
        batch.names_en.append(_text(props.get("name_en")) or "")
        batch.sources.append(source)
        batch.indexes.append(index)
        texts.append(orjson.dumps(feature["geometry"]))
    if texts:
        batch.geometries = list(
            shapely.from_geojson(np.asarray(texts, dtype=object), on_invalid="ignore")
        )
    unreadable = {k for k, g in enumerate(batch.geometries) if g is None}
    if unreadable:
        errors += [
            FeatureError(
                batch.indexes[k],
                batch.codes[k],
                "city.import.coordinates",
                {"where": "coordinates"},
            )
            for k in sorted(unreadable)
        ]
        batch = batch.without(unreadable)
    return batch, errors


# -- checks on a batch ---------------------------------------------------------------------------


def check_units(batch: UnitBatch) -> tuple[list[FeatureError], set[int]]:
    """Code format, duplicates and polygon validity. Returns errors and the bad list positions."""
    level = batch.level
    errors: list[FeatureError] = []
    bad: set[int] = set()
    title, title_en = level.titles
    for k, code in enumerate(batch.codes):
        if not code_is_valid(level, code):
            errors.append(
                FeatureError(
                    batch.indexes[k],
                    code,
                    "city.import.code_format",
                    {
                        "code": code,
                        "level": title,
                        "level_en": title_en,
                        "length": level.code_length,
                    },
                )
            )
            bad.add(k)
    seen: dict[str, list[int]] = defaultdict(list)
    if len(set(batch.codes)) != len(batch.codes):  # the common case needs no map
        for k, code in enumerate(batch.codes):
            seen[code].append(k)
    for code, positions in seen.items():
        if len(positions) > 1:
            for k in positions:
                others = ", ".join(str(batch.indexes[o]) for o in positions if o != k)
                errors.append(
                    FeatureError(
                        batch.indexes[k],
                        code,
                        "city.import.duplicate",
                        {"code": code, "others": others},
                    )
                )
                bad.add(k)
    geometries = np.asarray(batch.geometries, dtype=object)
    if geometries.size:
        empty = shapely.is_empty(geometries)
        valid = shapely.is_valid(geometries)
        for k in np.flatnonzero(empty | ~valid).tolist():
            if empty[k]:
                errors.append(FeatureError(batch.indexes[k], batch.codes[k], "city.import.empty"))
            else:
                reason = shapely.is_valid_reason(geometries[k])
                errors.append(
                    FeatureError(
                        batch.indexes[k],
                        batch.codes[k],
                        "city.import.invalid_polygon",
                        {"reason": reason},
                    )
                )
            bad.add(k)
    return errors, bad


def excess_m(children: Any, parent: Any) -> npt.NDArray[np.float64]:
    """About how far (m) each child reaches outside `parent`: the farthest vertex of the part
    of the child outside the parent, measured in a local metric frame at the parent's latitude.
    """
    outside = shapely.difference(np.asarray(children, dtype=object), parent)
    result = np.zeros(outside.shape[0])
    coords, owner = shapely.get_coordinates(outside, return_index=True)
    if not owner.size:
        return result
    lat = float(shapely.get_y(shapely.centroid(parent)))
    scale = np.array([METRES_PER_DEGREE * math.cos(math.radians(lat)), METRES_PER_DEGREE])

    def to_metres(xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        scaled: npt.NDArray[np.float64] = xy * scale
        return scaled

    distance = shapely.distance(
        shapely.transform(parent, to_metres), shapely.points(to_metres(coords))
    )
    np.maximum.at(result, owner, distance)
    return result


def check_containment(
    batch: UnitBatch,
    parents: dict[str, tuple[str, Any]],
    tolerance_m: float,
    skip: set[int],
) -> tuple[list[FeatureError], set[int]]:
    """Each unit's parent must exist (`parents`: code -> (name, geometry)) and hold it within
    `tolerance_m`. Units at positions in `skip` are not checked again."""
    parent_level = batch.level.parent
    if parent_level is None:
        return [], set()
    width = parent_level.code_length
    title, title_en = parent_level.titles
    errors: list[FeatureError] = []
    bad: set[int] = set()
    groups: dict[str, list[int]] = defaultdict(list)
    for k, code in enumerate(batch.codes):
        if k not in skip:
            groups[code[:width]].append(k)
    geometries = np.asarray(batch.geometries, dtype=object)
    for parent_code, positions in groups.items():
        if parent_code not in parents:
            for k in positions:
                errors.append(
                    FeatureError(
                        batch.indexes[k],
                        batch.codes[k],
                        "city.import.parent_missing",
                        {"parent": parent_code, "parent_level": title, "parent_level_en": title_en},
                    )
                )
                bad.add(k)
            continue
        parent_name, parent = parents[parent_code]
        shapely.prepare(parent)
        children = geometries[positions]
        # Exactly inside is the common case; the rest (often only rounding) are measured.
        loose = np.flatnonzero(~shapely.covers(parent, children))
        excess = excess_m(children[loose], parent) if loose.size else np.zeros(0)
        for offset, distance in zip(loose.tolist(), excess.tolist(), strict=True):
            k = positions[offset]
            if distance > tolerance_m:
                errors.append(
                    FeatureError(
                        batch.indexes[k],
                        batch.codes[k],
                        "city.import.outside_parent",
                        {
                            "parent": parent_code,
                            "parent_name": parent_name,
                            "distance": f"{distance:,.0f}",
                            "tolerance": f"{tolerance_m:g}",
                        },
                    )
                )
                bad.add(k)
        shapely.destroy_prepared(parent)
    return errors, bad
