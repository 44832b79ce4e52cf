"""The city model's logic: importing boundaries, reading units, responsibility grids, locating.

Plain functions over a session (or the app context for locate); no HTTP here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import orjson
import shapely
from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from pujiang.city import democity
from pujiang.city.ingest import (
    DEFAULT_TOLERANCE_M,
    FeatureError,
    UnitBatch,
    area_m2,
    check_containment,
    check_units,
    read_feature_collection,
)
from pujiang.city.levels import LEVELS, Level, level_of
from pujiang.city.locator import Location, Locations, city_index
from pujiang.city.models import CityState, CityUnit, ResponsibilityGrid, ResponsibilityGridUnit
from pujiang.platform import audit
from pujiang.platform.db import bulk_insert, utcnow
from pujiang.platform.deps import AppContext
from pujiang.platform.errors import Problem
from pujiang.platform.geo import Crs, to_wgs84_many
from pujiang.platform.i18n import EN, ZH, register, translate
from pujiang.platform.models import Department

register(
    {
        "city.import.rejected": (
            "{count} 个要素有误，未导入任何数据（可用 skip_invalid 跳过错误要素）：{first}",
            "{count} features are invalid, nothing was imported (skip_invalid imports the rest): "
            "{first}",
        ),
        "city.import.feature": (
            "第 {index} 项（{code}）：{reason}",
            "feature {index} ({code}): {reason}",
        ),
        "city.unit_not_found": (
            "不存在编码为 {code} 的区划单元",
            "There is no city unit with code {code}",
        ),
        "city.not_loaded": (
            "尚未导入城市区划数据：请运行 `pujiang city import` 或 `make demo`",
            "No city boundaries are loaded yet: run `pujiang city import` or `make demo`",
        ),
        "city.outside": ("该点不在本市范围内", "The point is outside the city"),
        "city.outside_near": (
            "该点不在本市范围内（距最近的{name}约 {distance} 米）",
            "The point is outside the city (about {distance} m from {name}, the nearest district)",
        ),
        "city.rgrid_not_found": (
            "不存在编码为 {code} 的责任网格",
            "There is no responsibility grid with code {code}",
        ),
        "city.rgrid_department": (
            "字段 department_code 的值 {value} 无效：没有这个部门",
            "Field department_code has an invalid value {value}: no such department",
        ),
        "city.rgrid_unknown_grids": (
            "字段 grid_codes 含有不存在的单元网格：{codes}",
            "Field grid_codes lists unit grids that do not exist: {codes}",
        ),
        "city.rgrid_taken": (
            "单元网格已属于其他责任网格：{pairs}；请先从原责任网格中移除",
            "Unit grids already belong to another responsibility grid: {pairs}; remove them there "
            "first",
        ),
    }
)

IMPORT_CHUNK = 5_000
T = TypeVar("T")


# -- revision -------------------------------------------------------------------------------------


def bump_revision(session: Session, source: str) -> int:
    """Count one change of the city data (caches compare this number to notice it)."""
    revision = session.execute(
        update(CityState)
        .where(CityState.id == 1)
        .values(revision=CityState.revision + 1, source=source, changed_at=utcnow())
        .returning(CityState.revision)
    ).scalar()
    if revision is None:  # a fresh database without the row
        session.add(CityState(id=1, revision=1, source=source, changed_at=utcnow()))
        session.flush()
        revision = 1
    return int(revision)


@dataclass(frozen=True)
class CitySummary:
    revision: int
    source: str
    changed_at: datetime | None
    counts: dict[Level, int]


def summary(session: Session) -> CitySummary:
    state = session.get(CityState, 1)
    rows = session.execute(select(CityUnit.level, func.count()).group_by(CityUnit.level)).all()
    found = {str(level): int(count) for level, count in rows}
    return CitySummary(
        revision=state.revision if state else 0,
        source=state.source if state else "",
        changed_at=state.changed_at if state else None,
        counts={level: found.get(level.value, 0) for level in LEVELS},
    )


# -- importing ------------------------------------------------------------------------------------


class ImportRejected(Problem):
    """A file with invalid features, imported without skip_invalid: nothing was stored."""

    def __init__(self, level: Level, errors: list[FeatureError]) -> None:
        first = "; ".join(
            translate("city.import.feature", index=e.index, code=e.code or "-", reason=e.reason())
            for e in errors[:3]
        )
        detail = translate("city.import.rejected", count=len(errors), first=first)
        super().__init__(
            422, "invalid-features", detail, level=level.value, errors=[e.as_dict() for e in errors]
        )
        self.level = level
        self.errors = errors


@dataclass
class ImportReport:
    level: Level
    received: int
    inserted: int
    updated: int
    skipped: int
    revision: int
    errors: list[FeatureError] = field(default_factory=list)


def _chunks(items: Sequence[T], size: int = 900) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _parents(session: Session, level: Level, codes: Iterable[str]) -> dict[str, tuple[str, Any]]:
    """Code -> (name, geometry) of the units of `level` with these codes."""
    wanted = sorted(set(codes))
    found: dict[str, tuple[str, Any]] = {}
    for chunk in _chunks(wanted):
        rows = session.execute(
            select(CityUnit.code, CityUnit.name, CityUnit.geometry).where(
                CityUnit.level == level.value, CityUnit.code.in_(chunk)
            )
        )
        for code, name, blob in rows:
            found[code] = (name, shapely.from_wkb(blob))
    return found


def validate_batch(
    session: Session, batch: UnitBatch, tolerance_m: float = DEFAULT_TOLERANCE_M
) -> tuple[list[FeatureError], set[int]]:
    """All checks on a batch: codes, duplicates, polygons, parents and containment."""
    errors, bad = check_units(batch)
    parent = batch.level.parent
    if parent is not None:
        width = parent.code_length
        parents = _parents(
            session, parent, (c[:width] for k, c in enumerate(batch.codes) if k not in bad)
        )
        more, more_bad = check_containment(batch, parents, tolerance_m, skip=bad)
        errors += more
        bad |= more_bad
    return errors, bad


_UNIT_COLUMNS = (
    "level", "code", "parent_code", "name", "name_en", "source",
    "geometry", "min_lon", "min_lat", "max_lon", "max_lat", "area_m2",
)  # fmt: skip


def store_units(session: Session, batch: UnitBatch) -> tuple[int, int]:
    """Insert new codes and update existing ones (by code). Returns (inserted, updated)."""
    level = batch.level
    existing = set(session.scalars(select(CityUnit.code).where(CityUnit.level == level.value)))
    table = cast(Table, CityUnit.__table__)
    parent = level.parent
    width = parent.code_length if parent else 0
    inserted = updated = 0
    geometries = np.asarray(batch.geometries, dtype=object)
    for start in range(0, len(batch), IMPORT_CHUNK):
        stop = start + IMPORT_CHUNK
        chunk = geometries[start:stop]
        rows = zip(
            batch.codes[start:stop],
            batch.names[start:stop],
            batch.names_en[start:stop],
            batch.sources[start:stop],
            shapely.to_wkb(chunk).tolist(),
            *shapely.bounds(chunk).T.tolist(),
            area_m2(chunk).tolist(),
            strict=True,
        )
        new_rows: list[tuple[Any, ...]] = []
        changed_rows: list[dict[str, Any]] = []
        for code, *values in rows:
            if code in existing:
                changed_rows.append(dict(zip(_UPDATE_KEYS, [code, *values], strict=True)))
            else:
                new_rows.append((level.value, code, code[:width] or None, *values))
                existing.add(code)
        # Plain rows straight to the driver (COPY on PostgreSQL): the demo city is 10^5+ rows.
        inserted += bulk_insert(session, table.name, _UNIT_COLUMNS, new_rows)
        if changed_rows:
            session.execute(
                update(table)
                .where(table.c.code == bindparam("b_code"))
                .values({key[2:]: bindparam(key) for key in _UPDATE_KEYS[1:]}),
                changed_rows,
            )
            updated += len(changed_rows)
    return inserted, updated


_UPDATE_KEYS = tuple(f"b_{column}" for column in ("code", *_UNIT_COLUMNS[3:]))


def import_units(
    session: Session,
    batch: UnitBatch,
    *,
    skip_invalid: bool = False,
    tolerance_m: float = DEFAULT_TOLERANCE_M,
    prior_errors: Sequence[FeatureError] = (),
    actor: str = "system",
    request_id: str = "",
) -> ImportReport:
    """Validate a batch and store it. With errors and no `skip_invalid`, raise ImportRejected
    and store nothing; with `skip_invalid`, store the valid units and report the others."""
    errors, bad = validate_batch(session, batch, tolerance_m)
    errors = sorted([*prior_errors, *errors], key=lambda e: (e.index, e.key))
    if errors and not skip_invalid:
        raise ImportRejected(batch.level, errors)
    good = batch.without(bad) if bad else batch
    inserted, updated = store_units(session, good)
    revision = bump_revision(session, "import")
    received = len(batch) + len({e.index for e in prior_errors})
    skipped = received - len(good)
    audit.append(
        session,
        actor=actor,
        action="city.import",
        target=f"city:{batch.level.value}",
        request_id=request_id,
        detail={
            "level": batch.level.value,
            "inserted": inserted,
            "updated": updated,
            "skipped": skipped,
            "sources": sorted(set(good.sources))[:5],
        },
    )
    return ImportReport(batch.level, received, inserted, updated, skipped, revision, errors)


def import_geojson(
    session: Session,
    data: Any,
    level: Level,
    *,
    source: str = "import",
    code_property: str = "code",
    name_property: str = "name",
    skip_invalid: bool = False,
    tolerance_m: float = DEFAULT_TOLERANCE_M,
    actor: str = "system",
    request_id: str = "",
) -> ImportReport:
    """Import a parsed GeoJSON FeatureCollection as units of `level` (see import_units)."""
    batch, errors = read_feature_collection(
        data, level, source=source, code_property=code_property, name_property=name_property
    )
    return import_units(
        session,
        batch,
        skip_invalid=skip_invalid,
        tolerance_m=tolerance_m,
        prior_errors=errors,
        actor=actor,
        request_id=request_id,
    )


# -- reading units --------------------------------------------------------------------------------


def geojson_geometry(blob: bytes) -> dict[str, Any]:
    text = shapely.to_geojson(shapely.from_wkb(blob))
    result: dict[str, Any] = orjson.loads(text)
    return result


def list_units(
    session: Session,
    *,
    level: Level | None = None,
    parent: str | None = None,
    codes: Sequence[str] = (),
    name: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[CityUnit]:
    """Units in code order, filtered; page with `after` (the last code of the previous page)."""
    query = select(CityUnit).order_by(CityUnit.code).limit(limit)
    if level is not None:
        query = query.where(CityUnit.level == level.value)
    if parent is not None:
        query = query.where(CityUnit.parent_code == parent)
    if codes:
        query = query.where(CityUnit.code.in_(list(codes)))
    if name:
        query = query.where(CityUnit.name.contains(name, autoescape=True))
    if after:
        query = query.where(CityUnit.code > after)
    return list(session.scalars(query))


def get_unit(session: Session, code: str) -> CityUnit:
    unit = session.scalars(select(CityUnit).where(CityUnit.code == code)).one_or_none()
    if unit is None:
        raise Problem.of(404, "not-found", "city.unit_not_found", code=code)
    return unit


def ancestors(session: Session, code: str) -> list[CityUnit]:
    """The units above `code`, district first."""
    level = level_of(code)
    prefixes = [
        code[: up.code_length] for up in LEVELS if level and up.code_length < level.code_length
    ]
    if not prefixes:
        return []
    return list(
        session.scalars(select(CityUnit).where(CityUnit.code.in_(prefixes)).order_by(CityUnit.code))
    )


def child_count(session: Session, code: str) -> int:
    return int(session.scalar(select(func.count()).where(CityUnit.parent_code == code)) or 0)


# -- responsibility grids -------------------------------------------------------------------------


@dataclass(frozen=True)
class ResponsibilityGridInfo:
    code: str
    name: str
    department_code: str
    grid_codes: list[str]
    updated_at: datetime


def _department_codes(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(select(Department.id, Department.code).where(Department.id.in_(ids)))
    return {int(i): str(c) for i, c in rows}


def _members(session: Session, grid_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {i: [] for i in grid_ids}
    if not grid_ids:
        return found
    rows = session.execute(
        select(ResponsibilityGridUnit.rgrid_id, CityUnit.code)
        .join(CityUnit, CityUnit.id == ResponsibilityGridUnit.unit_id)
        .where(ResponsibilityGridUnit.rgrid_id.in_(grid_ids))
        .order_by(CityUnit.code)
    )
    for grid_id, code in rows:
        found[int(grid_id)].append(str(code))
    return found


def _info(session: Session, rows: list[ResponsibilityGrid]) -> list[ResponsibilityGridInfo]:
    departments = _department_codes(session, {r.department_id for r in rows})
    members = _members(session, [r.id for r in rows])
    return [
        ResponsibilityGridInfo(
            r.code, r.name, departments.get(r.department_id, ""), members[r.id], r.updated_at
        )
        for r in rows
    ]


def put_responsibility_grid(
    session: Session,
    code: str,
    *,
    name: str,
    department_code: str,
    grid_codes: Sequence[str],
    actor: str = "system",
    request_id: str = "",
) -> ResponsibilityGridInfo:
    """Create or replace a responsibility grid: its name, team and the unit grids it holds."""
    department_id = session.scalar(select(Department.id).where(Department.code == department_code))
    if department_id is None:
        raise Problem.of(422, "validation-error", "city.rgrid_department", value=department_code)
    wanted = sorted(set(grid_codes))
    units: dict[str, int] = {}
    for chunk in _chunks(wanted):
        rows = session.execute(
            select(CityUnit.code, CityUnit.id).where(
                CityUnit.level == Level.GRID.value, CityUnit.code.in_(chunk)
            )
        )
        units.update({str(c): int(i) for c, i in rows})
    unknown = [c for c in wanted if c not in units]
    if unknown:
        raise Problem.of(
            422, "validation-error", "city.rgrid_unknown_grids", codes=", ".join(unknown[:10])
        )
    grid = session.scalars(
        select(ResponsibilityGrid).where(ResponsibilityGrid.code == code)
    ).one_or_none()
    taken: list[str] = []
    for ids in _chunks(list(units.values())):
        rows = session.execute(
            select(CityUnit.code, ResponsibilityGrid.code)
            .join(ResponsibilityGridUnit, ResponsibilityGridUnit.unit_id == CityUnit.id)
            .join(ResponsibilityGrid, ResponsibilityGrid.id == ResponsibilityGridUnit.rgrid_id)
            .where(ResponsibilityGridUnit.unit_id.in_(ids), ResponsibilityGrid.code != code)
        )
        taken += [f"{unit}→{owner}" for unit, owner in rows]
    if taken:
        raise Problem.of(409, "conflict", "city.rgrid_taken", pairs=", ".join(sorted(taken)[:10]))
    if grid is None:
        grid = ResponsibilityGrid(
            code=code, name=name, department_id=department_id, updated_at=utcnow()
        )
        session.add(grid)
        session.flush()
    else:
        grid.name = name
        grid.department_id = department_id
        grid.updated_at = utcnow()
        session.execute(
            delete(ResponsibilityGridUnit).where(ResponsibilityGridUnit.rgrid_id == grid.id)
        )
    if units:
        session.execute(
            insert(ResponsibilityGridUnit),
            [{"unit_id": unit_id, "rgrid_id": grid.id} for unit_id in units.values()],
        )
    bump_revision(session, _current_source(session))
    audit.append(
        session,
        actor=actor,
        action="city.responsibility_grid.put",
        target=f"responsibility_grid:{code}",
        request_id=request_id,
        detail={"department": department_code, "grids": len(units)},
    )
    return ResponsibilityGridInfo(code, name, department_code, wanted, grid.updated_at)


def _current_source(session: Session) -> str:
    # Changing teams does not change where the boundaries came from.
    return session.scalar(select(CityState.source).where(CityState.id == 1)) or "import"


def list_responsibility_grids(
    session: Session, *, department_code: str | None = None
) -> list[ResponsibilityGridInfo]:
    query = select(ResponsibilityGrid).order_by(ResponsibilityGrid.code)
    if department_code:
        query = query.join(Department, Department.id == ResponsibilityGrid.department_id).where(
            Department.code == department_code
        )
    return _info(session, list(session.scalars(query)))


def get_responsibility_grid(session: Session, code: str) -> ResponsibilityGridInfo:
    grid = session.scalars(
        select(ResponsibilityGrid).where(ResponsibilityGrid.code == code)
    ).one_or_none()
    if grid is None:
        raise Problem.of(404, "not-found", "city.rgrid_not_found", code=code)
    return _info(session, [grid])[0]


def responsibility_grid_geometry(
    session: Session, info: ResponsibilityGridInfo
) -> dict[str, Any] | None:
    """The outline of a responsibility grid: the union of its unit grids, as GeoJSON."""
    blobs: list[bytes] = []
    for chunk in _chunks(info.grid_codes):
        blobs += list(session.scalars(select(CityUnit.geometry).where(CityUnit.code.in_(chunk))))
    if not blobs:
        return None
    union = shapely.union_all(shapely.from_wkb(blobs))
    result: dict[str, Any] = orjson.loads(shapely.to_geojson(union))
    return result


def delete_responsibility_grid(
    session: Session, code: str, *, actor: str = "system", request_id: str = ""
) -> None:
    grid = session.scalars(
        select(ResponsibilityGrid).where(ResponsibilityGrid.code == code)
    ).one_or_none()
    if grid is None:
        raise Problem.of(404, "not-found", "city.rgrid_not_found", code=code)
    session.execute(
        delete(ResponsibilityGridUnit).where(ResponsibilityGridUnit.rgrid_id == grid.id)
    )
    session.delete(grid)
    bump_revision(session, _current_source(session))
    audit.append(
        session,
        actor=actor,
        action="city.responsibility_grid.delete",
        target=f"responsibility_grid:{code}",
        request_id=request_id,
    )


# -- locating -------------------------------------------------------------------------------------


def locate_many(
    context: AppContext,
    lons: npt.ArrayLike,
    lats: npt.ArrayLike,
    crs: Crs | str = Crs.WGS84,
) -> Locations:
    """Locate many points at once (vectorised; around a million points per CPU-second).

    `lons`/`lats`: equal-length sequences or numpy arrays in `crs` ("wgs84", "cgcs2000" -
    treated as WGS84 - or "gcj02"). Returns `Locations`: numpy columns per point (`inside`,
    `district_code`, `street_code`, `community_code`, `grid_code`, ... with "" where a
    point has no unit of a level), `codes(level)`/`names(level)`, `columns()` as lists, and
    `result[i]` as a `Location`. NaN or out-of-range coordinates are reported as not inside.
    Raises ValueError for an unknown crs or arrays of different lengths.
    """
    lon, lat = to_wgs84_many(lons, lats, Crs(crs))
    index = city_index(context.db, context.extras)
    return index.locate(np.ravel(lon), np.ravel(lat))


def locate(context: AppContext, lon: float, lat: float, crs: Crs | str = Crs.WGS84) -> Location:
    """Locate one point; see `locate_many`."""
    return locate_many(context, [lon], [lat], crs)[0]


def outside_message(location: Location) -> str:
    if location.nearest_district is not None and location.nearest_distance_m is not None:
        return translate(
            "city.outside_near",
            name=location.nearest_district.name,
            distance=f"{location.nearest_distance_m:,.0f}",
        )
    return translate("city.outside")


def require_loaded(locations: Locations) -> None:
    if locations.city_empty:
        raise Problem.of(503, "city-not-loaded", "city.not_loaded")


# -- the demo city --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoLoadReport:
    loaded: bool
    fingerprint: str
    counts: dict[Level, int]
    seconds: float
    note_key: str = ""

    def summary(self) -> str:
        counts = self.counts
        numbers = (
            counts[Level.DISTRICT],
            counts[Level.STREET],
            counts[Level.COMMUNITY],
            counts[Level.GRID],
        )
        zh = "演示城市{0}：{1} 个区、{2} 个街镇、{3} 个居村、{4} 个单元网格（{5:.1f} 秒）"
        en = (
            "demo city {0}: {1} districts, {2} streets/towns, {3} communities, "
            "{4} unit grids ({5:.1f} s)"
        )
        state_zh = "已导入" if self.loaded else "已存在，未重复导入"
        state_en = "loaded" if self.loaded else "already there, not reloaded"
        if self.note_key:
            state_zh, state_en = translate(self.note_key, ZH), translate(self.note_key, EN)
        zh_text = zh.format(state_zh, *numbers, self.seconds)
        return f"{zh_text} / {en.format(state_en, *numbers, self.seconds)}"


register(
    {
        "city.demo_kept": (
            "保留已导入的真实区划数据，未加载演示城市",
            "kept the imported boundaries; the demo city was not loaded",
        )
    }
)


def clear_city(session: Session) -> None:
    """Remove every unit and responsibility grid (used to replace an older demo city)."""
    session.execute(delete(ResponsibilityGridUnit))
    session.execute(delete(ResponsibilityGrid))
    session.execute(delete(CityUnit))


def load_demo_city(
    context: AppContext, options: democity.DemoOptions | None = None
) -> DemoLoadReport:
    """Load the demo city unless it is already there. Idempotent; never overwrites imported
    (non-demo) data. Everything is validated exactly like an import, in one transaction."""
    options = options or democity.DemoOptions()
    started = time.perf_counter()
    with context.db.session() as session:
        current = summary(session)
    has_units = any(current.counts.values())
    if has_units and current.source == options.fingerprint:
        return DemoLoadReport(
            False, options.fingerprint, current.counts, time.perf_counter() - started
        )
    if has_units and not current.source.startswith("demo-"):
        return DemoLoadReport(
            False,
            options.fingerprint,
            current.counts,
            time.perf_counter() - started,
            "city.demo_kept",
        )
    city = democity.generate(options)
    with context.db.session() as session:
        if has_units:
            clear_city(session)
        for level in LEVELS:
            batch = city.units[level]
            errors, _ = validate_batch(session, batch)
            if errors:
                raise ImportRejected(level, errors)  # a generator bug, not bad input
            store_units(session, batch)
        departments = set(session.scalars(select(Department.code)))
        for team in city.teams:
            if team.department_code in departments:
                put_responsibility_grid(
                    session,
                    team.code,
                    name=team.name,
                    department_code=team.department_code,
                    grid_codes=team.grid_codes,
                    actor="system:demo",
                )
        bump_revision(session, options.fingerprint)
        counts = city.counts()
        audit.append(
            session,
            actor="system:demo",
            action="city.demo_load",
            target="city",
            detail={"fingerprint": options.fingerprint, **{k.value: v for k, v in counts.items()}},
        )
    return DemoLoadReport(True, options.fingerprint, counts, time.perf_counter() - started)
