"""The city model: districts, streets/towns, communities and unit grids, and locating points.

Other modules call these (and nothing else of this package):

    locate(context, lon, lat, crs="wgs84") -> Location
        One point. `Location` is a frozen dataclass: `inside`, `district`, `street`,
        `community`, `grid` (each a `UnitRef(code, name)` or None), `responsibility`
        (`TeamRef(code, name, department_code)` or None), the `*_code` shortcuts, and for a
        point outside the city `nearest_district` with `nearest_distance_m`.

    locate_many(context, lons, lats, crs="wgs84") -> Locations
        Many points at once, vectorised (about a million points per CPU-second).
        `lons`/`lats` are equal-length sequences or numpy arrays; `crs` is "wgs84",
        "cgcs2000" (treated as WGS84) or "gcj02". `Locations` holds numpy columns, one entry
        per point: `inside` (bool), `lon`/`lat` (the WGS84 point used), `district_code`,
        `street_code`, `community_code`, `grid_code`, `responsibility_code` (str, "" where
        none); `codes(level)` and `names(level)` for any `Level`; `columns()` gives plain
        lists with None where none; `result[i]` and iteration give `Location`s (convenient,
        but slow for millions of points). NaN or out-of-range coordinates are "not inside".

Both read the city index cached in `context.extras`, rebuilt when the city data changes.
When a point lies on a shared edge, the unit with the lowest code wins (see locator.py).
"""

from __future__ import annotations

from pujiang.city.levels import Level
from pujiang.city.locator import Location, Locations, TeamRef, UnitRef
from pujiang.city.service import locate, locate_many

__all__ = ["Level", "Location", "Locations", "TeamRef", "UnitRef", "locate", "locate_many"]
