"""The demo city: real boundaries where open data has them, deterministic synthesis below that.

Real (ODbL, "© OpenStreetMap contributors; geoBoundaries", files in `data/`):
- the 16 district boundaries (geoBoundaries CHN ADM3, 2017, from OpenStreetMap);
- 113 street/town boundaries of 8 districts (OpenStreetMap admin_level=8, 2026). The two
  sources disagree by metres to kilometres, so each street is clipped to its district and the
  slivers of district no street covers go to the neighbouring street sharing most border.

Synthetic (the same seed gives the same city, byte for byte, on the same GEOS version):
- streets/towns of the other 8 districts: k-means centres of points scattered in the district,
  their Voronoi cells clipped to it (codes 1xx, named "…第n镇（合成）");
- communities: k-means groups of the unit grids of each street (codes 0xx residents'
  committees, 2xx villages in towns), so a community is a union of whole grids;
- unit grids: one city-wide lattice of cells about `grid_m` metres square (exact at 31.2°N,
  ±1 % across the city), cut where a street boundary crosses a cell;
- responsibility grids for 黄浦区: one per street, assigned to 黄浦区城管执法局.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from pujiang.city.ingest import METRES_PER_DEGREE, UnitBatch, area_m2
from pujiang.city.levels import LEVELS, Level
from pujiang.city.reference import districts as reference_districts

ObjectArray = npt.NDArray[np.object_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Bump when the generator would make a different city from the same options.
DEMO_VERSION = 1
DEFAULT_SEED = 20260101
GRID_M = 100.0

SOURCE_DISTRICTS = "geoBoundaries CHN ADM3 2017 (© OpenStreetMap contributors; ODbL)"
SOURCE_STREETS = "OpenStreetMap admin_level=8 2026, clipped (© OpenStreetMap contributors; ODbL)"
SOURCE_SYNTHETIC = "synthetic (Pujiang demo city)"
DEMO_TEAM_DEPARTMENT = "310101-CGZF"  # 黄浦区城管执法局, seeded by the demo

# The lattice: cells are exactly grid_m square at this latitude; its origin lies south-west of
# Shanghai, so every cell has non-negative indices.
LATTICE_REF_LAT = 31.2
LATTICE_LON0 = 120.8
LATTICE_LAT0 = 30.6

# Cells of a synthetic community: ~0.15 km² in a street (街道), ~1.5 km² in a town (镇),
# close to Shanghai's averages (about 4,700 residents' committees and 1,500 villages).
CELLS_PER_URBAN_COMMUNITY = 15
CELLS_PER_TOWN_COMMUNITY = 150
TOWN_RESIDENTIAL_SHARE = 0.3
MAX_GRIDS_PER_COMMUNITY = 999  # three digits of sequence
# A cut cell smaller than this share of a cell (about 1 m² at 100 m) is dropped: it is noise
# from the two boundary sources, not a place.
MIN_PIECE_SHARE = 1e-4


@dataclass(frozen=True)
class DemoOptions:
    seed: int = DEFAULT_SEED
    grid_m: float = GRID_M
    # GB/T 2260 codes of the districts to build; empty means all 16.
    districts: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        which = ",".join(sorted(self.districts)) if self.districts else "all"
        return f"demo-v{DEMO_VERSION} seed={self.seed} grid={self.grid_m:g}m districts={which}"


@dataclass(frozen=True)
class DemoTeam:
    code: str
    name: str
    department_code: str
    grid_codes: tuple[str, ...]


@dataclass
class DemoCity:
    options: DemoOptions
    units: dict[Level, UnitBatch]
    teams: list[DemoTeam]

    def digest(self) -> str:
        """SHA-256 over every unit's level, code, name, source and WKB, and the teams."""
        digest = hashlib.sha256()
        for level in LEVELS:
            units = self.units[level]
            wkbs = shapely.to_wkb(np.asarray(units.geometries, dtype=object))
            for code, name, source, wkb in zip(
                units.codes, units.names, units.sources, wkbs, strict=True
            ):
                digest.update(f"{level}|{code}|{name}|{source}|".encode())
                digest.update(wkb)
        for team in self.teams:
            digest.update(f"{team.code}|{team.name}|{team.department_code}|".encode())
            digest.update(",".join(team.grid_codes).encode())
        return digest.hexdigest()

    def counts(self) -> dict[Level, int]:
        return {level: len(self.units[level]) for level in LEVELS}


# -- geometry helpers ---------------------------------------------------------------------------


def polygonal(geometry: Any) -> Any:
    """The polygons of an overlay result (dropping lines and points it may carry), or None."""
    if geometry is None or shapely.is_empty(geometry):
        return None
    kind = shapely.get_type_id(geometry)
    if kind in (3, 6):  # Polygon, MultiPolygon
        return geometry
    parts = [p for p in shapely.get_parts(geometry) if shapely.get_type_id(p) in (3, 6)]
    if not parts:
        return None
    merged = shapely.union_all(parts)
    return merged if not shapely.is_empty(merged) else None


def _kmeans(
    x: FloatArray, y: FloatArray, k: int, rng: np.random.Generator, rounds: int = 8
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Lloyd's k-means on lon/lat (lon scaled by cos(lat) so distances are isotropic)."""
    kx = math.cos(math.radians(float(np.mean(y)) if y.size else LATTICE_REF_LAT))
    sx = x * kx
    start = rng.choice(x.shape[0], size=k, replace=False)
    cx, cy = sx[start].copy(), y[start].copy()
    labels = np.zeros(x.shape[0], dtype=np.int64)
    for _ in range(rounds + 1):
        d2 = (sx[:, None] - cx[None, :]) ** 2 + (y[:, None] - cy[None, :]) ** 2
        labels = np.argmin(d2, axis=1)
        counts = np.bincount(labels, minlength=k)
        used = counts > 0
        cx[used] = np.bincount(labels, weights=sx, minlength=k)[used] / counts[used]
        cy[used] = np.bincount(labels, weights=y, minlength=k)[used] / counts[used]
    return cx / kx, cy, labels


def _north_to_south(x: FloatArray, y: FloatArray, row_height: float) -> IntArray:
    """An order reading like a page: rows from north to south, west to east in each row."""
    rows = np.floor((y.max() - y) / row_height) if y.size else y
    order: IntArray = np.lexsort((x, rows))
    return order


# -- the lattice of unit grids ------------------------------------------------------------------


class Lattice:
    """A city-wide lattice of cells about `cell_m` metres square, in lon/lat degrees."""

    def __init__(self, cell_m: float) -> None:
        self.cell_m = cell_m
        self.dlat = cell_m / METRES_PER_DEGREE
        self.dlon = cell_m / (METRES_PER_DEGREE * math.cos(math.radians(LATTICE_REF_LAT)))
        self.cell_area_deg2 = self.dlat * self.dlon

    def xs(self, i: IntArray) -> FloatArray:
        # One formula for every edge, so neighbouring cells share bit-identical coordinates.
        return np.asarray(LATTICE_LON0 + i * self.dlon, dtype=np.float64)

    def ys(self, j: IntArray) -> FloatArray:
        return np.asarray(LATTICE_LAT0 + j * self.dlat, dtype=np.float64)

    def boxes(self, i: IntArray, j: IntArray) -> ObjectArray:
        result: ObjectArray = shapely.box(self.xs(i), self.ys(j), self.xs(i + 1), self.ys(j + 1))
        return result

    def cut(self, area: Any) -> tuple[IntArray, IntArray, ObjectArray, npt.NDArray[np.bool_]]:
        """The cells meeting `area`: lattice indices, their piece inside it, and whether whole."""
        minx, miny, maxx, maxy = shapely.bounds(area)
        i0 = math.floor((minx - LATTICE_LON0) / self.dlon)
        i1 = math.ceil((maxx - LATTICE_LON0) / self.dlon)
        j0 = math.floor((miny - LATTICE_LAT0) / self.dlat)
        j1 = math.ceil((maxy - LATTICE_LAT0) / self.dlat)
        grid_i, grid_j = np.meshgrid(np.arange(i0, i1), np.arange(j0, j1))
        i, j = grid_i.ravel(), grid_j.ravel()
        boxes = self.boxes(i, j)
        shapely.prepare(area)
        meets = shapely.intersects(area, boxes)
        whole = shapely.covers(area, boxes)
        i, j, boxes, whole = i[meets], j[meets], boxes[meets], whole[meets]
        pieces = boxes.copy()
        edge = np.flatnonzero(~whole)
        if edge.size:
            cut = shapely.intersection(boxes[edge], area)
            pieces[edge] = [polygonal(g) for g in cut]
        keep = np.array([p is not None for p in pieces], dtype=bool)
        areas = np.zeros(pieces.shape[0])
        areas[keep] = shapely.area(pieces[keep])
        keep &= areas >= MIN_PIECE_SHARE * self.cell_area_deg2
        shapely.destroy_prepared(area)
        return i[keep], j[keep], pieces[keep], whole[keep]


# -- reading the real boundaries -----------------------------------------------------------------


def _load_geojson(name: str) -> dict[str, Any]:
    text = resources.files("pujiang.city").joinpath(f"data/{name}").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def real_districts() -> list[tuple[str, str, str, Any]]:
    """(code, name, English name, polygon) of the 16 districts, codes from GB/T 2260 by name."""
    by_name = {d.name: d for d in reference_districts()}
    out = []
    for feature in _load_geojson("shanghai-districts.geojson")["features"]:
        fact = by_name[feature["properties"]["district"]]
        geometry = shapely.from_geojson(json.dumps(feature["geometry"]))
        out.append((fact.code, fact.name, fact.name_en, geometry))
    out.sort(key=lambda row: row[0])
    return out


def real_streets() -> dict[str, list[tuple[str, str, Any]]]:
    """District code -> [(9-digit street code, name, polygon)] from the OSM street layer."""
    by_district: dict[str, list[tuple[str, str, Any]]] = {}
    for feature in _load_geojson("shanghai-streets-partial.geojson")["features"]:
        props = feature["properties"]
        # The 12-digit statistics code is street (9) + "000"; the street's code is its head.
        code = str(props["official_control_code_2023"])[:9]
        geometry = shapely.from_geojson(json.dumps(feature["geometry"]))
        by_district.setdefault(code[:6], []).append(
            (code, props["official_control_name_2023"], geometry)
        )
    for streets in by_district.values():
        streets.sort(key=lambda row: row[0])
    return by_district


# -- streets --------------------------------------------------------------------------------------


def fit_streets(district: Any, streets: list[Any]) -> list[Any]:
    """Clip streets to their district and hand each uncovered sliver to a neighbouring street."""
    clipped = [polygonal(shapely.intersection(s, district)) for s in streets]
    present = [g for g in clipped if g is not None]
    gaps = shapely.difference(district, shapely.union_all(present)) if present else district
    extra: dict[int, list[Any]] = {}
    candidates = np.asarray(
        [g if g is not None else shapely.Polygon() for g in clipped], dtype=object
    )
    tree = shapely.STRtree(candidates)
    for piece in shapely.get_parts(polygonal(gaps) or shapely.MultiPolygon()):
        touching = tree.query(piece, predicate="dwithin", distance=1e-7)
        if touching.size:
            # The neighbour along most of the sliver's border: overlap with a thin halo.
            halo = shapely.buffer(piece, 1e-6)
            shared = shapely.area(shapely.intersection(candidates[touching], halo))
            chosen = int(touching[int(np.argmax(shared))])
        else:
            chosen = int(tree.query_nearest(piece, all_matches=False)[0])
        extra.setdefault(chosen, []).append(piece)
    out = []
    for k, geometry in enumerate(clipped):
        pieces = extra.get(k, [])
        if pieces:
            geometry = polygonal(
                shapely.union_all([g for g in [geometry, *pieces] if g is not None])
            )
        out.append(geometry)
    return out


def synthetic_streets(
    code: str, name: str, district: Any, rng: np.random.Generator
) -> list[tuple[str, str, Any]]:
    """Towns for a district without open street data: Voronoi cells of k-means centres."""
    area_km2 = float(area_m2([district])[0]) / 1e6
    k = int(min(20, max(5, round(area_km2 / 40))))
    minx, miny, maxx, maxy = shapely.bounds(district)
    shapely.prepare(district)
    xs: list[FloatArray] = []
    ys: list[FloatArray] = []
    total = 0
    while total < 4000:
        x = rng.uniform(minx, maxx, 4000)
        y = rng.uniform(miny, maxy, 4000)
        inside = shapely.contains_xy(district, x, y)
        xs.append(x[inside])
        ys.append(y[inside])
        total += int(inside.sum())
    shapely.destroy_prepared(district)
    cx, cy, _ = _kmeans(np.concatenate(xs), np.concatenate(ys), k, rng)
    order = _north_to_south(cx, cy, row_height=0.05)
    cx, cy = cx[order], cy[order]
    frame = shapely.box(minx - 0.1, miny - 0.1, maxx + 0.1, maxy + 0.1)
    cells = shapely.voronoi_polygons(
        shapely.multipoints(np.column_stack([cx, cy])), extend_to=frame, ordered=True
    )
    short = name.removesuffix("区").removesuffix("新")
    out = []
    for n, cell in enumerate(shapely.get_parts(cells), start=1):
        geometry = polygonal(shapely.intersection(cell, district))
        if geometry is not None:
            out.append((f"{code}{100 + n:03d}", f"{short}第{n}镇（合成）", geometry))
    return out


# -- communities and unit grids ------------------------------------------------------------------


@dataclass
class StreetCells:
    street_code: str
    street_name: str
    community_codes: list[str]
    community_names: list[str]
    communities: ObjectArray
    grid_codes: list[str]
    grid_names: list[str]
    grids: ObjectArray


def _community_numbers(
    is_town: bool, k: int, residential: npt.NDArray[np.bool_]
) -> list[tuple[int, bool]]:
    """(three-digit number, residential?) per community in the given order."""
    numbers = []
    next_res, next_village = 1, 201
    for res in residential:
        if res or not is_town:
            numbers.append((next_res, True))
            next_res += 1
        else:
            numbers.append((next_village, False))
            next_village += 1
    if next_res > 200 or next_village > 1000:
        raise ValueError(f"too many communities ({k}) for three-digit codes")
    return numbers


def street_cells(
    street_code: str, street_name: str, street: Any, lattice: Lattice, rng: np.random.Generator
) -> StreetCells:
    """Cut the lattice to a street, group its cells into communities, number everything."""
    i, j, pieces, whole = lattice.cut(street)
    n = pieces.shape[0]
    if not n:  # a sliver of a street with no cell worth keeping
        nothing = np.empty(0, dtype=object)
        return StreetCells(street_code, street_name, [], [], nothing, [], [], nothing)
    is_town = int(street_code[6:9]) >= 100
    per = CELLS_PER_TOWN_COMMUNITY if is_town else CELLS_PER_URBAN_COMMUNITY
    k = int(max(1, min(n, round(n / per))))
    cx = lattice.xs(i) + lattice.dlon / 2
    cy = lattice.ys(j) + lattice.dlat / 2
    while True:
        centre_x, centre_y, labels = (
            _kmeans(cx, cy, k, rng)
            if k > 1
            else (np.array([cx.mean()]), np.array([cy.mean()]), np.zeros(n, dtype=np.int64))
        )
        sizes = np.bincount(labels, minlength=k)
        if sizes.max() <= MAX_GRIDS_PER_COMMUNITY:
            break
        k += max(1, k // 4)
    used = np.flatnonzero(sizes > 0)
    centre_x, centre_y = centre_x[used], centre_y[used]
    relabel = np.full(k, -1, dtype=np.int64)
    relabel[used] = np.arange(used.size)
    labels = relabel[labels]
    order = _north_to_south(centre_x, centre_y, row_height=lattice.dlat * 10)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    labels = rank[labels]
    centre_x, centre_y = centre_x[order], centre_y[order]
    # In towns the communities nearest the town centre are residents' committees, the rest villages.
    residential = np.ones(order.size, dtype=bool)
    if is_town and order.size > 1:
        mid_x, mid_y = cx.mean(), cy.mean()
        distance = np.hypot(centre_x - mid_x, centre_y - mid_y)
        cut = max(1, round(order.size * TOWN_RESIDENTIAL_SHARE))
        residential[:] = False
        residential[np.argsort(distance, kind="stable")[:cut]] = True
    numbers = _community_numbers(is_town, order.size, residential)
    community_codes = [f"{street_code}{num:03d}" for num, _ in numbers]
    community_names = [
        f"{street_name}第{num}居委（合成）" if res else f"{street_name}第{num - 200}村（合成）"
        for num, res in numbers
    ]
    # Grids numbered within their community, north to south, west to east.
    grid_order = np.lexsort((i, -j, labels))
    labels_sorted = labels[grid_order]
    starts = np.searchsorted(labels_sorted, np.arange(order.size))
    sequence = np.arange(n) - starts[labels_sorted] + 1
    grid_codes = [
        f"{community_codes[c]}{s:03d}"
        for c, s in zip(labels_sorted.tolist(), sequence.tolist(), strict=True)
    ]
    grid_names = [f"{s:03d}号网格" for s in sequence.tolist()]
    grids = pieces[grid_order]
    # A community is the union of its cells' full boxes (exact on the lattice), cut back to
    # the street only where one of its cells was cut.
    full = lattice.boxes(i[grid_order], j[grid_order])
    whole_sorted = whole[grid_order]
    ends = np.append(starts[1:], n)
    communities = np.empty(order.size, dtype=object)
    shapely.prepare(street)
    for c in range(order.size):
        block = slice(int(starts[c]), int(ends[c]))
        union = shapely.simplify(shapely.coverage_union_all(full[block]), 0.0)
        if not whole_sorted[block].all():
            union = polygonal(shapely.intersection(union, street))
        communities[c] = union
    shapely.destroy_prepared(street)
    return StreetCells(
        street_code,
        street_name,
        community_codes,
        community_names,
        communities,
        grid_codes,
        grid_names,
        grids,
    )


# -- the whole city -------------------------------------------------------------------------------


def _rng(seed: int, code: str, salt: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, int(code), salt]))


def iter_streets(
    options: DemoOptions,
) -> Iterator[tuple[str, str, str, Any, list[tuple[str, str, Any, str]]]]:
    """Per district: (code, name, English name, polygon, [(street code, name, polygon, source)])."""
    streets = real_streets()
    wanted = set(options.districts)
    for code, name, name_en, district in real_districts():
        if wanted and code not in wanted:
            continue
        if code in streets:
            rows = streets[code]
            fitted = fit_streets(district, [g for _, _, g in rows])
            mine = [
                (c, n, g, SOURCE_STREETS)
                for (c, n, _), g in zip(rows, fitted, strict=True)
                if g is not None
            ]
        else:
            made = synthetic_streets(code, name, district, _rng(options.seed, code, 1))
            mine = [(c, n, g, SOURCE_SYNTHETIC) for c, n, g in made]
        yield code, name, name_en, district, mine


def generate(options: DemoOptions | None = None) -> DemoCity:
    """Build the demo city in memory (no database)."""
    options = options or DemoOptions()
    lattice = Lattice(options.grid_m)
    units = {level: UnitBatch(level) for level in LEVELS}
    teams: list[DemoTeam] = []
    for code, name, name_en, district, streets in iter_streets(options):
        units[Level.DISTRICT].add(code, name, district, SOURCE_DISTRICTS, name_en)
        for street_code, street_name, street, source in streets:
            units[Level.STREET].add(street_code, street_name, street, source)
            cells = street_cells(
                street_code, street_name, street, lattice, _rng(options.seed, street_code, 2)
            )
            units[Level.COMMUNITY].extend(
                cells.community_codes, cells.community_names, cells.communities, SOURCE_SYNTHETIC
            )
            units[Level.GRID].extend(
                cells.grid_codes, cells.grid_names, cells.grids, SOURCE_SYNTHETIC
            )
            if code == DEMO_TEAM_DEPARTMENT[:6]:
                teams.append(
                    DemoTeam(
                        code=f"{street_code}-01",
                        name=f"{street_name}责任网格一",
                        department_code=DEMO_TEAM_DEPARTMENT,
                        grid_codes=tuple(cells.grid_codes),
                    )
                )
    return DemoCity(options, units, teams)
