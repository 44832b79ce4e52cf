"""The in-memory spatial index that answers "which district, street, community and grid?".

Per level, an STRtree over the polygons, plus (for unit grids) a bucket lattice of the grids
that are plain boxes; built from the `city_units` rows and kept per app in `context.extras`.
Every call reads the one-row revision counter (`city_state`); when an import has changed it,
the index is rebuilt before answering.

Rule for points on shared edges, and the order of the search: the finest level that has any
unit covering the point decides (boundaries count as covered); among several covering units
of that level the one with the lowest code wins. Its ancestors are read from its code, so the
four answers always form one chain. Coarser levels are searched only for points no finer unit
covers (for example where no unit grids were imported).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from sqlalchemy import select
from sqlalchemy.orm import Session

from pujiang.city.levels import LEVELS, Level
from pujiang.city.models import CityUnit, ResponsibilityGrid, ResponsibilityGridUnit
from pujiang.platform.db import Database
from pujiang.platform.geo import EARTH_MEAN_RADIUS_M
from pujiang.platform.models import Department

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]

CACHE_KEY = "city.locator"
READ_SLICE = 50_000
# Points are located in chunks so a million-point call holds ~100k point geometries at a time.
CHUNK = 131_072
# Polygons with more vertices than this are "prepared" (GEOS builds an edge index): districts
# and streets, not the five-vertex unit grids, where preparing would only cost memory.
PREPARE_ABOVE = 64
# An outside point is told the nearest district when one lies within this distance.
NEAR_LIMIT_M = 50_000.0
_NEAR_LIMIT_DEG = (
    NEAR_LIMIT_M / (math.pi * EARTH_MEAN_RADIUS_M / 180.0) / math.cos(math.radians(32))
)


@dataclass(frozen=True)
class UnitRef:
    code: str
    name: str


@dataclass(frozen=True)
class TeamRef:
    """The responsibility grid (and its department) a unit grid belongs to."""

    code: str
    name: str
    department_code: str


@dataclass(frozen=True)
class Location:
    """Where one point lies. `lon`/`lat` are the WGS84 coordinates actually looked up."""

    lon: float
    lat: float
    inside: bool
    district: UnitRef | None = None
    street: UnitRef | None = None
    community: UnitRef | None = None
    grid: UnitRef | None = None
    responsibility: TeamRef | None = None
    # For points outside the city: the nearest district within NEAR_LIMIT_M, and how far.
    nearest_district: UnitRef | None = None
    nearest_distance_m: float | None = None

    @property
    def district_code(self) -> str | None:
        return self.district.code if self.district else None

    @property
    def street_code(self) -> str | None:
        return self.street.code if self.street else None

    @property
    def community_code(self) -> str | None:
        return self.community.code if self.community else None

    @property
    def grid_code(self) -> str | None:
        return self.grid.code if self.grid else None


class RectangleIndex:
    """Axis-aligned rectangles filed in the buckets of a uniform lattice.

    Unit grids are mostly whole lattice cells. For those the closed-box test is the exact
    answer, so they need no GEOS geometry at all: a point's candidates are the rectangles
    filed in its bucket. This holds ~50 bytes per rectangle where a shapely polygon in an
    STRtree holds ~500, and answers several times faster. The lattice also remembers which
    buckets the other units' bounding boxes reach: only points there (or off the lattice)
    are looked up in the STRtree.
    """

    # A rectangle spanning more buckets than this goes to the STRtree instead.
    MAX_SPAN = 64
    # Past this many bucket entries for the other units, every point goes to the STRtree.
    MAX_MARKS = 20_000_000

    def __init__(self, positions: IntArray, table_bounds: FloatArray) -> None:
        """`positions`: the rectangles' positions in their table; `table_bounds`: the bounds
        of every unit of the table (shared, not copied)."""
        self.positions = positions
        self.table_bounds = table_bounds
        bounds = table_bounds[positions]
        self.keys: IntArray = np.empty(0, dtype=np.int64)
        self.starts: IntArray = np.zeros(1, dtype=np.int64)
        self.members: IntArray = np.empty(0, dtype=np.int64)
        self.marked: IntArray = np.empty(0, dtype=np.int64)
        self.mark_all = True
        self.dense = False
        self.marked_dense: BoolArray = np.zeros(0, dtype=bool)
        self.x0 = self.y0 = 0.0
        self.width = self.height = 1.0
        self.columns = self.rows = 0
        self.refused: IntArray = np.empty(0, dtype=np.int64)
        if not positions.size:
            return
        # Buckets about the size of a typical rectangle: one to four buckets each.
        self.width = float(np.median(bounds[:, 2] - bounds[:, 0])) or 1e-9
        self.height = float(np.median(bounds[:, 3] - bounds[:, 1])) or 1e-9
        self.x0, self.y0 = float(bounds[:, 0].min()), float(bounds[:, 1].min())
        ix0, iy0 = self._bucket(bounds[:, 0], bounds[:, 1])
        ix1, iy1 = self._bucket(bounds[:, 2], bounds[:, 3])
        self.columns, self.rows = int(ix1.max()) + 1, int(iy1.max()) + 1
        # The odd huge rectangle would be filed in thousands of buckets: refuse it.
        wide = (ix1 - ix0 + 1) * (iy1 - iy0 + 1) > self.MAX_SPAN
        self.refused = positions[wide]
        keep = ~wide
        self.positions = positions[keep]
        if not self.positions.size:
            return
        rect, keys = self._spread(ix0[keep], iy0[keep], ix1[keep], iy1[keep])
        order = np.argsort(keys, kind="stable")
        keys, self.members = keys[order], rect[order]
        buckets = self.columns * self.rows
        # Dense tables (one entry per bucket) when the lattice is not much larger than its
        # contents, as for a city's grids; sorted keys and a binary search otherwise.
        self.dense = buckets <= 4 * keys.size + 1_000_000
        if self.dense:
            self.starts = np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=buckets))])
            self.marked_dense = np.zeros(buckets, dtype=bool)
        else:
            self.keys, first = np.unique(keys, return_index=True)
            self.starts = np.append(first, keys.size)
        self.mark_all = False

    def _bucket(self, x: FloatArray, y: FloatArray) -> tuple[IntArray, IntArray]:
        # The same formula files a rectangle and finds a point, so a point exactly on an
        # edge lands in a bucket that lists the rectangle.
        ix = np.floor((x - self.x0) / self.width).astype(np.int64)
        iy = np.floor((y - self.y0) / self.height).astype(np.int64)
        return ix, iy

    def _spread(
        self, ix0: IntArray, iy0: IntArray, ix1: IntArray, iy1: IntArray
    ) -> tuple[IntArray, IntArray]:
        """(box index, bucket key) for every bucket each box [ix0..ix1] × [iy0..iy1] covers."""
        across = ix1 - ix0 + 1
        count = across * (iy1 - iy0 + 1)
        box = np.repeat(np.arange(count.size), count)
        local = np.arange(box.size) - np.repeat(np.cumsum(count) - count, count)
        keys = (iy0[box] + local // across[box]) * self.columns + ix0[box] + local % across[box]
        return box, keys

    def mark(self, bounds: FloatArray) -> None:
        """Note the buckets these (non-rectangle) bounding boxes reach."""
        if self.mark_all or not bounds.shape[0]:
            return
        ix0, iy0 = self._bucket(bounds[:, 0], bounds[:, 1])
        ix1, iy1 = self._bucket(bounds[:, 2], bounds[:, 3])
        ix0, iy0 = np.maximum(ix0, 0), np.maximum(iy0, 0)
        ix1, iy1 = np.minimum(ix1, self.columns - 1), np.minimum(iy1, self.rows - 1)
        on = (ix0 <= ix1) & (iy0 <= iy1)  # boxes wholly off the lattice: points there go anyway
        ix0, iy0, ix1, iy1 = ix0[on], iy0[on], ix1[on], iy1[on]
        if int(((ix1 - ix0 + 1) * (iy1 - iy0 + 1)).sum()) > self.MAX_MARKS:
            self.mark_all = True
            return
        self.marked = np.unique(self._spread(ix0, iy0, ix1, iy1)[1])
        if self.dense:
            self.marked_dense[self.marked] = True

    def hits(self, x: FloatArray, y: FloatArray) -> tuple[IntArray, IntArray, BoolArray]:
        """(point index, table position) for every rectangle covering a point, and which
        points may also lie in a unit of the STRtree."""
        if not self.positions.size:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, np.ones(x.shape[0], dtype=bool)
        with np.errstate(invalid="ignore"):
            ix, iy = self._bucket(np.nan_to_num(x, nan=-1e300), np.nan_to_num(y, nan=-1e300))
        known = (ix >= 0) & (ix < self.columns) & (iy >= 0) & (iy < self.rows)
        keys = np.where(known, iy * self.columns + ix, -1)
        if self.mark_all:
            tree = np.ones(x.shape[0], dtype=bool)
        elif self.dense:
            tree = ~known | self.marked_dense[np.maximum(keys, 0)]
        else:
            mark = np.minimum(np.searchsorted(self.marked, keys), max(self.marked.size - 1, 0))
            tree = ~known | (self.marked[mark] == keys if self.marked.size else False)
        if self.dense:
            slot = np.maximum(keys, 0)
            found = known
        else:
            slot = np.minimum(np.searchsorted(self.keys, keys), self.keys.size - 1)
            found = known & (self.keys[slot] == keys)
        starts = np.where(found, self.starts[slot], 0)
        counts = np.where(found, self.starts[slot + 1] - self.starts[slot], 0)
        point = np.repeat(np.arange(x.shape[0]), counts)
        offset = np.arange(point.size) - np.repeat(np.cumsum(counts) - counts, counts)
        rect = self.members[np.repeat(starts, counts) + offset]
        box = self.table_bounds[self.positions[rect]]
        px, py = x[point], y[point]
        inside = (box[:, 0] <= px) & (px <= box[:, 2]) & (box[:, 1] <= py) & (py <= box[:, 3])
        return point[inside], self.positions[rect[inside]], tree


class LevelTable:
    """The units of one level, sorted by code: unit grids that are plain rectangles in a
    RectangleIndex, every other polygon in an STRtree.

    Arrays that callers index with a unit's position carry one extra last element (the empty
    string, or -1), so position -1 - "not located" - reads as empty without a branch.
    """

    def __init__(
        self,
        level: Level,
        codes: list[str],
        names: list[str],
        bounds: FloatArray,
        geometries: ObjectArray,
    ) -> None:
        """`geometries` holds None where a unit is a rectangle known by its `bounds` alone."""
        order = np.argsort(np.asarray(codes, dtype=f"<U{level.code_length}"), kind="stable")
        self.level = level
        self.size = len(codes)
        self.codes: ObjectArray = np.empty(self.size + 1, dtype=object)
        self.codes[: self.size] = np.asarray(codes, dtype=object)[order]
        self.codes[self.size] = ""
        self.names: ObjectArray = np.empty(self.size + 1, dtype=object)
        self.names[: self.size] = np.asarray(names, dtype=object)[order]
        self.names[self.size] = ""
        self.bounds: FloatArray = bounds[order] if self.size else np.empty((0, 4))
        self.geometries: ObjectArray = geometries[order]
        boxes = shapely.is_missing(self.geometries)
        self.rectangles = RectangleIndex(np.flatnonzero(boxes), self.bounds)
        refused = self.rectangles.refused
        self.geometries[refused] = shapely.box(*self.bounds[refused].T)
        shaped = np.flatnonzero(~shapely.is_missing(self.geometries))
        self.rectangles.mark(self.bounds[shaped])
        self.shaped = shaped  # tree index -> table position
        complex_ = shapely.get_num_coordinates(self.geometries[shaped]) > PREPARE_ABOVE
        prepared = self.geometries[shaped][complex_]
        shapely.prepare(prepared)
        self.tree = shapely.STRtree(self.geometries[shaped])
        # GEOS builds a prepared polygon's point index, and the tree, on first use, and not
        # thread-safely: use each once here, before request threads share them.
        centre = self.bounds[shaped][complex_]
        shapely.intersects_xy(
            prepared, (centre[:, 0] + centre[:, 2]) / 2, (centre[:, 1] + centre[:, 3]) / 2
        )
        self.tree.query(shapely.points(0.0, 0.0))
        self.parent: IntArray = np.full(self.size + 1, -1, dtype=np.int64)
        self.team: IntArray = np.full(self.size + 1, -1, dtype=np.int64)

    def shapes(self) -> ObjectArray:
        """Every unit's polygon (rectangles rebuilt from their bounds), in position order."""
        result = self.geometries.copy()
        boxes = np.flatnonzero(shapely.is_missing(result))
        result[boxes] = shapely.box(*self.bounds[boxes].T)
        return result

    def link_parents(self, parents: LevelTable) -> None:
        """Point each unit at its parent's position (-1 if the parent is missing)."""
        if not self.size or not parents.size:
            return
        width = parents.level.code_length
        prefixes = np.asarray(self.codes[: self.size], dtype=f"<U{width}")  # truncates
        keys = np.asarray(parents.codes[: parents.size], dtype=f"<U{width}")
        found = np.searchsorted(keys, prefixes)
        found = np.minimum(found, parents.size - 1)
        matched = keys[found] == prefixes
        self.parent[: self.size] = np.where(matched, found, -1)

    def positions_of(self, codes: list[str]) -> IntArray:
        """The positions of these codes (-1 for codes not in the table)."""
        if not self.size or not codes:
            return np.full(len(codes), -1, dtype=np.int64)
        keys = np.asarray(self.codes[: self.size], dtype=f"<U{self.level.code_length}")
        wanted = np.asarray(codes, dtype=f"<U{self.level.code_length}")
        found = np.minimum(np.searchsorted(keys, wanted), self.size - 1)
        return np.where(keys[found] == wanted, found, -1)

    def first_hit(self, lon: FloatArray, lat: FloatArray) -> IntArray:
        """Per point, the position of the lowest-coded unit covering it, or -1."""
        best = np.full(lon.shape[0], self.size, dtype=np.int64)
        if not self.size or not lon.shape[0]:
            return np.full(lon.shape[0], -1, dtype=np.int64)
        for start in range(0, lon.shape[0], CHUNK):
            x, y = lon[start : start + CHUNK], lat[start : start + CHUNK]
            point_i, position, maybe = self.rectangles.hits(x, y)
            np.minimum.at(best, point_i + start, position)
            if not self.shaped.size:
                continue
            ask = np.flatnonzero(maybe)
            # Bounding-box candidates from the tree, then the exact test on coordinates:
            # cheaper than a predicate query, which would build a prepared point per pair.
            point_i, tree_i = self.tree.query(shapely.points(x[ask], y[ask]))
            point_i = ask[point_i]
            shapes = self.geometries[self.shaped[tree_i]]
            covered = shapely.intersects_xy(shapes, x[point_i], y[point_i])
            np.minimum.at(best, point_i[covered] + start, self.shaped[tree_i[covered]])
        best[best == self.size] = -1
        return best


# Little-endian WKB of a polygon with one ring of five points: the shape of a plain box.
_BOX_WKB_SIZE = 93
_BOX_WKB_HEADER = np.frombuffer(
    b"\x01" + (3).to_bytes(4, "little") + (1).to_bytes(4, "little") + (5).to_bytes(4, "little"),
    dtype=np.uint8,
)


def wkb_rectangles(blobs: list[bytes]) -> tuple[BoolArray, FloatArray]:
    """Which WKB polygons are axis-aligned rectangles, and the bounds of those, read straight
    from the bytes (no GEOS object is made for them).

    A rectangle here: one ring of five points, closed, every vertex a corner of the bounding
    box, all four corners used, every edge parallel to an axis. A "bow tie" over the same
    corners has a diagonal edge and is not one.
    """
    count = len(blobs)
    mask = np.zeros(count, dtype=bool)
    bounds = np.empty((count, 4))
    sizes = np.fromiter((len(blob) for blob in blobs), dtype=np.int64, count=count)
    candidates = np.flatnonzero(sizes == _BOX_WKB_SIZE)
    if not candidates.size:
        return mask, bounds
    raw = np.frombuffer(b"".join(blobs[i] for i in candidates.tolist()), dtype=np.uint8)
    raw = raw.reshape(-1, _BOX_WKB_SIZE)
    header = (raw[:, :13] == _BOX_WKB_HEADER).all(axis=1)
    xy = raw[:, 13:].copy().view("<f8").reshape(-1, 5, 2)
    x, y = xy[:, :, 0], xy[:, :, 1]
    low_x, high_x = x.min(axis=1), x.max(axis=1)
    low_y, high_y = y.min(axis=1), y.max(axis=1)
    on_x = (x == low_x[:, None]) | (x == high_x[:, None])
    on_y = (y == low_y[:, None]) | (y == high_y[:, None])
    corner = (x[:, :4] == high_x[:, None]) * 2 + (y[:, :4] == high_y[:, None])
    all_corners = (np.left_shift(1, corner).sum(axis=1) == 15) & (low_x < high_x) & (low_y < high_y)
    dx, dy = np.diff(x, axis=1) != 0, np.diff(y, axis=1) != 0
    axis_edges = (dx != dy).all(axis=1)
    closed = (x[:, 0] == x[:, 4]) & (y[:, 0] == y[:, 4])
    ok = header & on_x.all(axis=1) & on_y.all(axis=1) & all_corners & axis_edges & closed
    mask[candidates[ok]] = True
    bounds[candidates[ok]] = np.column_stack([low_x, low_y, high_x, high_y])[ok]
    return mask, bounds


@dataclass(frozen=True)
class Teams:
    codes: ObjectArray
    names: ObjectArray
    departments: ObjectArray


class CityIndex:
    """Everything locate needs, built once per city revision."""

    def __init__(self, revision: int, tables: dict[Level, LevelTable], teams: Teams) -> None:
        self.revision = revision
        self.tables = tables
        self.teams = teams
        for level in LEVELS:
            parent = level.parent
            if parent is not None:
                tables[level].link_parents(tables[parent])

    @property
    def empty(self) -> bool:
        return all(table.size == 0 for table in self.tables.values())

    def counts(self) -> dict[Level, int]:
        return {level: self.tables[level].size for level in LEVELS}

    def locate(self, lon: FloatArray, lat: FloatArray) -> Locations:
        """Locate WGS84 points; invalid coordinates (NaN, out of range) are simply not inside."""
        count = lon.shape[0]
        positions = {level: np.full(count, -1, dtype=np.int64) for level in LEVELS}
        valid = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
        pending = np.flatnonzero(valid)
        for level in reversed(LEVELS):
            if not pending.size:
                break
            hits = self.tables[level].first_hit(lon[pending], lat[pending])
            found = hits >= 0
            positions[level][pending[found]] = hits[found]
            pending = pending[~found]
        # Ancestors follow from the finest answer, so the chain is consistent by construction.
        for level in reversed(LEVELS):
            parent = level.parent
            if parent is None:
                continue
            mine = positions[level]
            up = positions[parent]
            fill = (mine >= 0) & (up < 0)
            up[fill] = self.tables[level].parent[mine[fill]]
        inside = np.zeros(count, dtype=bool)
        for level in LEVELS:
            inside |= positions[level] >= 0
        return Locations(self, lon, lat, inside, positions)

    def nearest_districts(self, lon: FloatArray, lat: FloatArray) -> tuple[IntArray, FloatArray]:
        """For each point, the nearest district within NEAR_LIMIT_M (-1 if none) and metres."""
        table = self.tables[Level.DISTRICT]
        nearest = np.full(lon.shape[0], -1, dtype=np.int64)
        metres = np.full(lon.shape[0], np.nan)
        ok = np.isfinite(lon) & np.isfinite(lat)
        if not table.size or not ok.any():
            return nearest, metres
        where = np.flatnonzero(ok)
        points = shapely.points(lon[where], lat[where])
        pairs = table.tree.query_nearest(points, max_distance=_NEAR_LIMIT_DEG, all_matches=False)
        point_i, tree_i = pairs
        unit_i = table.shaped[tree_i]
        lines = shapely.shortest_line(points[point_i], table.geometries[unit_i])
        ends = shapely.get_coordinates(lines).reshape(-1, 2, 2)
        distance = _haversine_m(ends[:, 0, 0], ends[:, 0, 1], ends[:, 1, 0], ends[:, 1, 1])
        close = distance <= NEAR_LIMIT_M
        nearest[where[point_i[close]]] = unit_i[close]
        metres[where[point_i[close]]] = distance[close]
        return nearest, metres


def _haversine_m(
    lon1: FloatArray, lat1: FloatArray, lon2: FloatArray, lat2: FloatArray
) -> FloatArray:
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    h = (
        np.sin((phi2 - phi1) / 2) ** 2
        + np.cos(phi1) * np.cos(phi2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    )
    result: FloatArray = 2.0 * EARTH_MEAN_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    return result


class Locations:
    """The answer of `locate_many`: one entry per input point, as numpy columns.

    Code and name columns are object arrays of str, with "" where a point has no unit of that
    level. `result[i]` (and iteration) gives a `Location`, which is handy but builds Python
    objects point by point; for millions of points read the columns, or `columns()`.
    """

    def __init__(
        self,
        index: CityIndex,
        lon: FloatArray,
        lat: FloatArray,
        inside: BoolArray,
        positions: dict[Level, IntArray],
    ) -> None:
        self._index = index
        self.lon = lon
        self.lat = lat
        self.inside = inside
        self.positions = positions

    def __len__(self) -> int:
        return int(self.inside.shape[0])

    @property
    def team_table(self) -> Teams:
        """The responsibility grids `team` positions point into."""
        return self._index.teams

    @property
    def city_empty(self) -> bool:
        """True when no city units are loaded at all (every point is then "not inside")."""
        return self._index.empty

    def __iter__(self) -> Iterator[Location]:
        for i in range(len(self)):
            yield self[i]

    def codes(self, level: Level) -> ObjectArray:
        result: ObjectArray = self._index.tables[level].codes[self.positions[level]]
        return result

    def names(self, level: Level) -> ObjectArray:
        result: ObjectArray = self._index.tables[level].names[self.positions[level]]
        return result

    @cached_property
    def district_code(self) -> ObjectArray:
        return self.codes(Level.DISTRICT)

    @cached_property
    def street_code(self) -> ObjectArray:
        return self.codes(Level.STREET)

    @cached_property
    def community_code(self) -> ObjectArray:
        return self.codes(Level.COMMUNITY)

    @cached_property
    def grid_code(self) -> ObjectArray:
        return self.codes(Level.GRID)

    @cached_property
    def team(self) -> IntArray:
        """Position of each point's responsibility grid in the index (-1 if none)."""
        result: IntArray = self._index.tables[Level.GRID].team[self.positions[Level.GRID]]
        return result

    @cached_property
    def responsibility_code(self) -> ObjectArray:
        return self._team_column(self._index.teams.codes)

    def _team_column(self, values: ObjectArray) -> ObjectArray:
        result: ObjectArray = values[self.team]
        return result

    @cached_property
    def nearest(self) -> tuple[IntArray, FloatArray]:
        """Nearest district position and distance (metres) for points outside the city."""
        nearest = np.full(len(self), -1, dtype=np.int64)
        metres = np.full(len(self), np.nan)
        outside = np.flatnonzero(~self.inside)
        if outside.size:
            found, distance = self._index.nearest_districts(self.lon[outside], self.lat[outside])
            nearest[outside] = found
            metres[outside] = distance
        return nearest, metres

    def columns(self, *, none_for_empty: bool = True) -> dict[str, list[Any]]:
        """Plain Python lists per column (codes and names; None where not located)."""
        out: dict[str, list[Any]] = {
            "lon": self.lon.tolist(),
            "lat": self.lat.tolist(),
            "inside": self.inside.tolist(),
        }
        for level in LEVELS:
            for key, values in (("code", self.codes(level)), ("name", self.names(level))):
                column = values.tolist()
                if none_for_empty:
                    column = [value or None for value in column]
                out[f"{level.value}_{key}"] = column
        responsibility = self.responsibility_code.tolist()
        out["responsibility_code"] = (
            [v or None for v in responsibility] if none_for_empty else responsibility
        )
        return out

    def __getitem__(self, i: int) -> Location:
        refs: dict[str, UnitRef | None] = {}
        for level in LEVELS:
            position = int(self.positions[level][i])
            table = self._index.tables[level]
            refs[level.value] = (
                UnitRef(table.codes[position], table.names[position]) if position >= 0 else None
            )
        team = int(self.team[i])
        teams = self._index.teams
        responsibility = (
            TeamRef(teams.codes[team], teams.names[team], teams.departments[team])
            if team >= 0
            else None
        )
        nearest_ref: UnitRef | None = None
        nearest_m: float | None = None
        if not self.inside[i]:
            positions, metres = self.nearest
            position = int(positions[i])
            if position >= 0:
                table = self._index.tables[Level.DISTRICT]
                nearest_ref = UnitRef(table.codes[position], table.names[position])
                nearest_m = float(metres[i])
        return Location(
            lon=float(self.lon[i]),
            lat=float(self.lat[i]),
            inside=bool(self.inside[i]),
            district=refs["district"],
            street=refs["street"],
            community=refs["community"],
            grid=refs["grid"],
            responsibility=responsibility,
            nearest_district=nearest_ref,
            nearest_distance_m=nearest_m,
        )


# -- building from the database ------------------------------------------------------------------


def read_revision(session: Session) -> int:
    from pujiang.city.models import CityState

    revision = session.scalar(select(CityState.revision).where(CityState.id == 1))
    return int(revision or 0)


def build_index(db: Database) -> CityIndex:
    with db.session() as session:
        # The revision first: if an import commits while we read, the index is merely newer
        # than its label and the next call rebuilds; the other order could keep stale data.
        revision = read_revision(session)
        tables = {level: _read_level(session, level) for level in LEVELS}
        team_rows = session.execute(
            select(
                CityUnit.code,
                ResponsibilityGrid.code,
                ResponsibilityGrid.name,
                Department.code,
            )
            .join(ResponsibilityGridUnit, ResponsibilityGridUnit.unit_id == CityUnit.id)
            .join(
                ResponsibilityGrid,
                ResponsibilityGrid.id == ResponsibilityGridUnit.rgrid_id,
            )
            .join(Department, Department.id == ResponsibilityGrid.department_id)
            .order_by(ResponsibilityGrid.code)
        ).all()
    team_codes: list[str] = []
    team_names: list[str] = []
    team_departments: list[str] = []
    team_position: dict[str, int] = {}
    member_codes: list[str] = []
    member_teams: list[int] = []
    for unit_code, team_code, team_name, department_code in team_rows:
        if team_code not in team_position:
            team_position[team_code] = len(team_codes)
            team_codes.append(team_code)
            team_names.append(team_name)
            team_departments.append(department_code)
        member_codes.append(unit_code)
        member_teams.append(team_position[team_code])
    grids = tables[Level.GRID]
    positions = grids.positions_of(member_codes)
    known = positions >= 0
    grids.team[positions[known]] = np.asarray(member_teams, dtype=np.int64)[known]
    teams = Teams(
        codes=np.asarray([*team_codes, ""], dtype=object),
        names=np.asarray([*team_names, ""], dtype=object),
        departments=np.asarray([*team_departments, ""], dtype=object),
    )
    return CityIndex(revision, tables, teams)


def _read_level(session: Session, level: Level) -> LevelTable:
    """Read one level's rows in slices, parsing WKB as they come: a unit grid that turns out
    to be a plain rectangle keeps only its bounds, so the whole city never sits in memory as
    rows or as GEOS objects at once."""
    codes: list[str] = []
    names: list[str] = []
    bounds: list[FloatArray] = []
    shapes: list[ObjectArray] = []
    seen: dict[str, str] = {}
    # Core rows, not ORM ones: the ORM's per-row work doubles the time for a million rows.
    rows = session.connection().execute(
        select(CityUnit.code, CityUnit.name, CityUnit.geometry)
        .where(CityUnit.level == level.value)
        .execution_options(yield_per=READ_SLICE)
    )
    for part in rows.partitions():
        blobs = [bytes(blob) for _, _, blob in part]
        if level is Level.GRID:
            boxes, box_bounds = wkb_rectangles(blobs)
        else:
            boxes, box_bounds = np.zeros(len(blobs), dtype=bool), np.empty((len(blobs), 4))
        others = np.flatnonzero(~boxes)
        geometries = np.full(len(blobs), None, dtype=object)
        geometries[others] = shapely.from_wkb([blobs[i] for i in others.tolist()])
        box_bounds[others] = shapely.bounds(geometries[others])
        codes += [code for code, _, _ in part]
        # Grid names repeat ("017号网格" in every community): keep one string of each.
        names += [seen.setdefault(name, name) for _, name, _ in part]
        bounds.append(box_bounds)
        shapes.append(geometries)
    return LevelTable(
        level,
        codes,
        names,
        np.concatenate(bounds) if bounds else np.empty((0, 4)),
        np.concatenate(shapes) if shapes else np.empty(0, dtype=object),
    )


@dataclass
class _Holder:
    index: CityIndex | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def city_index(db: Database, extras: dict[str, Any]) -> CityIndex:
    """The app's index, rebuilt first if the city data changed since it was built."""
    holder: _Holder = extras.setdefault(CACHE_KEY, _Holder())
    with db.session() as session:
        revision = read_revision(session)
    index = holder.index
    if index is not None and index.revision == revision:
        return index
    with holder.lock:  # one rebuild at a time; the others wait and reuse it
        index = holder.index
        if index is None or index.revision != revision:
            index = build_index(db)
            holder.index = index
        return index
