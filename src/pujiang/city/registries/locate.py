"""Locating registry points: a narrow bridge to the city model's `locate_many`.

The import pipeline sees only `Locator`: a function from a batch of WGS84 points to the place
each lies in (or None outside the city). Tests hand in a fake; the app hands in the city
module's vectorised `locate_many`. When the city module has no locator, points are stored
unlocated and the import report says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from pujiang.platform.deps import AppContext
from pujiang.platform.geo import Crs


class Place(NamedTuple):
    """The codes of the units a point lies in; finer levels may be unknown."""

    district_code: str | None
    community_code: str | None
    grid_code: str | None


# None for the whole batch when there is no city to locate in (no boundaries loaded yet).
Locator = Callable[[Sequence[float], Sequence[float]], list[Place | None] | None]


def city_locator(context: AppContext) -> Locator | None:
    """The city model's batch locator for this app, or None if the city module has none."""
    from pujiang import city

    locate_many: Callable[..., Any] | None = getattr(city, "locate_many", None)
    if locate_many is None:
        return None

    def locate(lons: Sequence[float], lats: Sequence[float]) -> list[Place | None] | None:
        result = locate_many(context, lons, lats, Crs.WGS84)
        if getattr(result, "city_empty", False):
            return None
        return places_from(result, len(lons))

    return locate


_KEYS = ("district_code", "community_code", "grid_code")


def places_from(result: Any, count: int) -> list[Place | None]:
    """Read locate_many's answer: code columns ("" or None where a point has no unit), as
    attributes (the city module's `Locations`) or a mapping, or one record per point."""
    if isinstance(result, Mapping) or not isinstance(
        getattr(result, "community_code", None), (str, type(None))
    ):
        columns = [_column(result, key, count) for key in _KEYS]
        return [_place(d, c, g) for d, c, g in zip(*columns, strict=True)]
    return [_record_place(item) for item in result]


def _column(result: Any, key: str, count: int) -> list[Any]:
    values = result.get(key) if isinstance(result, Mapping) else getattr(result, key, None)
    if values is None:
        return [None] * count
    return list(values.tolist() if hasattr(values, "tolist") else values)


def _record_place(item: Any) -> Place | None:
    if item is None:
        return None
    if isinstance(item, Mapping):
        return _place(*(item.get(key) for key in _KEYS))
    return _place(*(getattr(item, key, None) for key in _KEYS))


def _place(district: Any, community: Any, grid: Any) -> Place | None:
    codes = [str(code) if code else None for code in (district, community, grid)]
    if codes[2] and not codes[1]:
        codes[1] = codes[2][:12]
    if codes[1] and not codes[0]:
        codes[0] = codes[1][:6]
    if not any(codes):
        return None
    return Place(codes[0], codes[1], codes[2])
