"""Where a case lies: a narrow bridge to the city model's `locate`.

Cases see only `Place` (with the responsibility grid and its team, which dispatch reads).
The app's locator is `pujiang.city.locate(context, lon, lat, crs)`; a test or a deployment may
put another callable in `context.extras[LOCATOR_KEY]`. Without either, cases are kept
unlocated (and go to the city-level operations center).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pujiang.platform.geo import Crs, to_wgs84

LOCATOR_KEY = "cases.locator"


@dataclass(frozen=True)
class Place:
    inside: bool = False
    lon: float | None = None
    lat: float | None = None
    district_code: str | None = None
    street_code: str | None = None
    community_code: str | None = None
    grid_code: str | None = None
    # The responsibility grid (责任网格) the point's unit grid belongs to, and its team.
    responsibility_code: str | None = None
    responsibility_department: str | None = None
    name: str = ""  # "黄浦区 南京东路街道 …", for people


NOWHERE = Place()


def _field(result: Any, name: str) -> Any:
    if isinstance(result, Mapping):
        return result.get(name)
    return getattr(result, name, None)


def _unit(result: Any, level: str) -> tuple[str | None, str]:
    code = _field(result, f"{level}_code")
    unit = _field(result, level)
    if code is None and unit is not None:
        code = _field(unit, "code")
    name = _field(unit, "name") if unit is not None else _field(result, f"{level}_name")
    return (str(code) if code else None), str(name or "")


def read_place(result: Any, lon: float, lat: float) -> Place:
    """Read the city model's answer (an object or a mapping) into a Place."""
    if result is None:
        return Place(lon=lon, lat=lat)
    units = {level: _unit(result, level) for level in ("district", "street", "community", "grid")}
    codes = {level: code for level, (code, _) in units.items()}
    # The finer codes carry their ancestors, so a missing coarse code can be read off them.
    for finer, coarse, width in (
        ("grid", "community", 12),
        ("community", "street", 9),
        ("street", "district", 6),
    ):
        code = codes[finer]
        if code and not codes[coarse]:
            codes[coarse] = code[:width]
    inside = _field(result, "inside")
    team = _field(result, "responsibility")
    team_code = _field(team, "code") if team is not None else _field(result, "responsibility_code")
    team_department = (
        _field(team, "department_code")
        if team is not None
        else _field(result, "responsibility_department_code")
    )
    return Place(
        inside=bool(inside if inside is not None else codes["district"]),
        lon=float(_field(result, "lon") or lon),
        lat=float(_field(result, "lat") or lat),
        district_code=codes["district"],
        street_code=codes["street"],
        community_code=codes["community"],
        grid_code=codes["grid"],
        responsibility_code=str(team_code) if team_code else None,
        responsibility_department=str(team_department) if team_department else None,
        name=" ".join(name for _, name in units.values() if name),
    )


def locator(context: Any) -> Callable[[float, float, Crs], Any] | None:
    override: Callable[[float, float, Crs], Any] | None = context.extras.get(LOCATOR_KEY)
    if override is not None:
        return override
    from pujiang import city

    city_locate: Callable[..., Any] | None = getattr(city, "locate", None)
    if city_locate is None:
        return None

    def call(lon: float, lat: float, crs: Crs) -> Any:
        return city_locate(context, lon, lat, crs)

    return call


def locate(context: Any, lon: float, lat: float, crs: Crs = Crs.WGS84) -> Place:
    """The district, street, community and grid of a point (a Place with inside=False if none)."""
    find = locator(context)
    if find is None:
        lon, lat = to_wgs84(lon, lat, crs)
        return Place(lon=lon, lat=lat)
    return read_place(find(lon, lat, crs), lon, lat)
