"""Routes of the city model: units, boundary import, locate, responsibility grids."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status

from pujiang.city import service
from pujiang.city.ingest import DEFAULT_TOLERANCE_M
from pujiang.city.levels import LEVELS, Level
from pujiang.city.locator import Location, Locations
from pujiang.city.models import CityUnit
from pujiang.city.schemas import (
    CitySummaryOut,
    ImportErrorOut,
    ImportReportOut,
    LevelUnitRefOut,
    LocateBatchIn,
    LocateBatchOut,
    LocationOut,
    ResponsibilityGridIn,
    ResponsibilityGridOut,
    UnitDetailOut,
    UnitOut,
    UnitPage,
)
from pujiang.platform.deps import Context, DbSession, require
from pujiang.platform.geo import Crs
from pujiang.platform.roles import CITY_READ, CITY_WRITE
from pujiang.platform.security import CurrentPrincipal

router = APIRouter(prefix="/api/city", tags=["城市区划 City model"])

Reader = Annotated[CurrentPrincipal, Depends(require(CITY_READ))]
Writer = Annotated[CurrentPrincipal, Depends(require(CITY_WRITE))]
WithGeometry = Annotated[bool, Query(description="Include the polygon as GeoJSON.")]


def _unit_out(unit: CityUnit, geometry: bool) -> UnitOut:
    return UnitOut(
        code=unit.code,
        level=Level(unit.level),
        name=unit.name,
        name_en=unit.name_en,
        parent_code=unit.parent_code,
        source=unit.source,
        bbox=(unit.min_lon, unit.min_lat, unit.max_lon, unit.max_lat),
        area_km2=round(unit.area_m2 / 1e6, 6),
        geometry=service.geojson_geometry(unit.geometry) if geometry else None,
    )


@router.get("", summary="城市区划概况 / What the city model holds")
def city_summary(session: DbSession, _: Reader) -> CitySummaryOut:
    found = service.summary(session)
    return CitySummaryOut(
        revision=found.revision,
        source=found.source,
        changed_at=found.changed_at,
        counts=found.counts,
    )


@router.get(
    "/units",
    summary="区划单元列表 / List units",
    response_model=UnitPage,
    responses={200: {"content": {"application/geo+json": {}}}},
)
def list_units(
    session: DbSession,
    _: Reader,
    level: Level | None = None,
    parent: Annotated[str | None, Query(pattern=r"^\d{6,12}$", description="Parent code.")] = None,
    code: Annotated[list[str] | None, Query(description="Exact codes; repeat for several.")] = None,
    name: Annotated[str | None, Query(max_length=64, description="Part of the name.")] = None,
    after: Annotated[
        str | None, Query(max_length=15, description="Last code of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    geometry: WithGeometry = False,
    format: Annotated[
        Literal["json", "geojson"], Query(description="geojson: a FeatureCollection.")
    ] = "json",
) -> Any:
    units = service.list_units(
        session, level=level, parent=parent, codes=code or (), name=name, after=after, limit=limit
    )
    next_after = units[-1].code if len(units) == limit else None
    if format == "geojson":
        features = [
            {
                "type": "Feature",
                "id": unit.code,
                "geometry": service.geojson_geometry(unit.geometry),
                "properties": _unit_out(unit, False).model_dump(mode="json", exclude={"geometry"}),
            }
            for unit in units
        ]
        body = {"type": "FeatureCollection", "features": features, "next_after": next_after}
        return Response(orjson.dumps(body), media_type="application/geo+json")
    return UnitPage(items=[_unit_out(unit, geometry) for unit in units], next_after=next_after)


@router.get("/units/{code}", summary="区划单元详情 / One unit, its ancestors and child count")
def get_unit(
    session: DbSession,
    _: Reader,
    code: Annotated[str, Path(pattern=r"^\d{6,15}$")],
    geometry: WithGeometry = False,
) -> UnitDetailOut:
    unit = service.get_unit(session, code)
    out = _unit_out(unit, geometry)
    ancestors = [
        LevelUnitRefOut(code=a.code, name=a.name, level=Level(a.level))
        for a in service.ancestors(session, code)
    ]
    return UnitDetailOut(
        **out.model_dump(), ancestors=ancestors, children=service.child_count(session, code)
    )


@router.post(
    "/import/{level}",
    summary="导入区划边界 / Import boundaries (GeoJSON FeatureCollection)",
    responses={422: {"description": "Invalid features; the problem's `errors` lists each one."}},
)
def import_units(
    request: Request,
    session: DbSession,
    principal: Writer,
    level: Level,
    data: Annotated[dict[str, Any], Body(description="A GeoJSON FeatureCollection in WGS84.")],
    skip_invalid: Annotated[
        bool, Query(description="Import the valid features, skip the rest.")
    ] = False,
    tolerance_m: Annotated[
        float, Query(ge=0, le=5000, description="How far a unit may leave its parent.")
    ] = (DEFAULT_TOLERANCE_M),
    code_property: Annotated[str, Query(min_length=1, max_length=64)] = "code",
    name_property: Annotated[str, Query(min_length=1, max_length=64)] = "name",
    source: Annotated[
        str, Query(max_length=128, description="Where the boundaries come from.")
    ] = "import",
) -> ImportReportOut:
    report = service.import_geojson(
        session,
        data,
        level,
        source=source,
        code_property=code_property,
        name_property=name_property,
        skip_invalid=skip_invalid,
        tolerance_m=tolerance_m,
        actor=principal.actor,
        request_id=getattr(request.state, "request_id", ""),
    )
    return ImportReportOut(
        level=report.level,
        received=report.received,
        inserted=report.inserted,
        updated=report.updated,
        skipped=report.skipped,
        revision=report.revision,
        errors=[ImportErrorOut(**e.as_dict()) for e in report.errors],
    )


# -- locate ---------------------------------------------------------------------------------------


def _location_dict(location: Location, lon: float, lat: float, crs: Crs) -> dict[str, Any]:
    def ref(unit: Any) -> dict[str, str] | None:
        return {"code": unit.code, "name": unit.name} if unit is not None else None

    team = location.responsibility
    nearest = location.nearest_district
    return {
        "lon": lon,
        "lat": lat,
        "crs": crs.value,
        "wgs84": [location.lon, location.lat],
        "inside": location.inside,
        "district": ref(location.district),
        "street": ref(location.street),
        "community": ref(location.community),
        "grid": ref(location.grid),
        "responsibility": (
            {"code": team.code, "name": team.name, "department_code": team.department_code}
            if team
            else None
        ),
        "message": None if location.inside else service.outside_message(location),
        "nearest_district": (
            {
                "code": nearest.code,
                "name": nearest.name,
                "distance_m": round(location.nearest_distance_m or 0.0, 1),
            }
            if nearest
            else None
        ),
    }


@router.get(
    "/locate", summary="定位一个点 / Which district, street, community and grid a point is in"
)
def locate_point(
    context: Context,
    _: Reader,
    lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False, description="Longitude.")],
    lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False, description="Latitude.")],
    crs: Annotated[
        Crs, Query(description="wgs84 (= cgcs2000 here) or gcj02 (Amap/Tencent).")
    ] = Crs.WGS84,
) -> LocationOut:
    found = service.locate_many(context, [lon], [lat], crs)
    service.require_loaded(found)
    return LocationOut.model_validate(_location_dict(found[0], lon, lat, crs))


def _batch_body(found: Locations, lons: list[float], lats: list[float], crs: Crs) -> dict[str, Any]:
    # Built from the columns, not point by point through Location objects: 10,000 results
    # stay a few milliseconds.
    columns: dict[Level, tuple[list[str], list[str]]] = {
        level: (found.codes(level).tolist(), found.names(level).tolist()) for level in LEVELS
    }
    teams = found.team.tolist()
    team_table = found.team_table
    nearest_position, nearest_m = found.nearest if not bool(found.inside.all()) else (None, None)
    wgs_lon, wgs_lat = found.lon.tolist(), found.lat.tolist()
    inside = found.inside.tolist()
    results = []
    for i in range(len(lons)):
        item: dict[str, Any] = {
            "lon": lons[i],
            "lat": lats[i],
            "crs": crs.value,
            "wgs84": [wgs_lon[i], wgs_lat[i]],
        }
        item["inside"] = inside[i]
        for level in LEVELS:
            codes, names = columns[level]
            item[level.value] = {"code": codes[i], "name": names[i]} if codes[i] else None
        team = teams[i]
        item["responsibility"] = (
            {
                "code": team_table.codes[team],
                "name": team_table.names[team],
                "department_code": team_table.departments[team],
            }
            if team >= 0
            else None
        )
        item["message"] = None
        item["nearest_district"] = None
        if not inside[i]:
            location = found[i]
            item["message"] = service.outside_message(location)
            if location.nearest_district is not None and nearest_position is not None:
                item["nearest_district"] = {
                    "code": location.nearest_district.code,
                    "name": location.nearest_district.name,
                    "distance_m": round(float(nearest_m[i]) if nearest_m is not None else 0.0, 1),
                }
        results.append(item)
    return {
        "crs": crs.value,
        "count": len(results),
        "inside": int(np.count_nonzero(found.inside)),
        "results": results,
    }


@router.post(
    "/locate",
    summary="批量定位 / Locate up to 10,000 points",
    response_model=LocateBatchOut,
)
def locate_points(context: Context, _: Reader, body: LocateBatchIn) -> Response:
    lons = [p[0] for p in body.points]
    lats = [p[1] for p in body.points]
    found = service.locate_many(context, lons, lats, body.crs)
    service.require_loaded(found)
    return Response(
        orjson.dumps(_batch_body(found, lons, lats, body.crs)), media_type="application/json"
    )


# -- responsibility grids -------------------------------------------------------------------------


def _rgrid_out(
    info: service.ResponsibilityGridInfo, *, members: bool, geometry: dict[str, Any] | None = None
) -> ResponsibilityGridOut:
    return ResponsibilityGridOut(
        code=info.code,
        name=info.name,
        department_code=info.department_code,
        grid_count=len(info.grid_codes),
        grid_codes=info.grid_codes if members else None,
        updated_at=info.updated_at,
        geometry=geometry,
    )


RgridCode = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_.-]+$")]


@router.get("/responsibility-grids", summary="责任网格列表 / List responsibility grids")
def list_rgrids(
    session: DbSession,
    _: Reader,
    department: Annotated[str | None, Query(max_length=64, description="Department code.")] = None,
) -> list[ResponsibilityGridOut]:
    return [
        _rgrid_out(i, members=False)
        for i in service.list_responsibility_grids(session, department_code=department)
    ]


@router.get("/responsibility-grids/{code}", summary="责任网格详情 / One responsibility grid")
def get_rgrid(
    session: DbSession, _: Reader, code: RgridCode, geometry: WithGeometry = False
) -> ResponsibilityGridOut:
    info = service.get_responsibility_grid(session, code)
    outline = service.responsibility_grid_geometry(session, info) if geometry else None
    return _rgrid_out(info, members=True, geometry=outline)


@router.put(
    "/responsibility-grids/{code}", summary="设置责任网格 / Create or replace a responsibility grid"
)
def put_rgrid(
    request: Request,
    session: DbSession,
    principal: Writer,
    code: RgridCode,
    body: ResponsibilityGridIn,
) -> ResponsibilityGridOut:
    info = service.put_responsibility_grid(
        session,
        code,
        name=body.name,
        department_code=body.department_code,
        grid_codes=body.grid_codes,
        actor=principal.actor,
        request_id=getattr(request.state, "request_id", ""),
    )
    return _rgrid_out(info, members=True)


@router.delete(
    "/responsibility-grids/{code}",
    summary="删除责任网格 / Delete a responsibility grid",
    status_code=status.HTTP_204_NO_CONTENT,
)
def delete_rgrid(
    request: Request, session: DbSession, principal: Writer, code: RgridCode
) -> Response:
    service.delete_responsibility_grid(
        session, code, actor=principal.actor, request_id=getattr(request.state, "request_id", "")
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
