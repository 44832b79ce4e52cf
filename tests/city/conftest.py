"""A small deterministic "toy city" on a regular lattice at real Shanghai coordinates.

Two districts side by side (310101 west, 310115 east), each 8 × 6 cells of about 95 m × 100 m:
310101 has two streets (west and east halves), 310115 one; every street has two communities
(south and north halves); every cell is a unit grid. Edges are shared bit for bit, so points on
them exercise the edge rule.

    y=6 ┌───────────┬───────────┬───────────────────────┐
        │ 310101001 │ 310101002 │ 310115001             │  communities: …002 (north)
    y=3 ├───────────┼───────────┼───────────────────────┤
        │           │           │                       │  communities: …001 (south)
    y=0 └───────────┴───────────┴───────────────────────┘
       x=0         x=4         x=8                     x=16
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pujiang.city import service
from pujiang.city.levels import Level
from pujiang.platform.deps import AppContext

LON0, LAT0 = 121.470, 31.220
DX, DY = 0.001, 0.0009


def xy(x: float, y: float) -> tuple[float, float]:
    """Lattice coordinates to lon/lat, with the formula the polygons use."""
    return LON0 + x * DX, LAT0 + y * DY


def ring(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    corners = [xy(x0, y0), xy(x1, y0), xy(x1, y1), xy(x0, y1), xy(x0, y0)]
    return [[lon, lat] for lon, lat in corners]


def feature(code: str, name: str, x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"code": code, "name": name},
        "geometry": {"type": "Polygon", "coordinates": [ring(x0, y0, x1, y1)]},
    }


def collection(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features}


# (code, name, x0, x1) per street; districts are the union of their streets.
STREETS = (
    ("310101001", "西街道", 0, 4),
    ("310101002", "东街道", 4, 8),
    ("310115001", "浦东街道", 8, 16),
)
DISTRICTS = (("310101", "黄浦区", 0, 8), ("310115", "浦东新区", 8, 16))


def toy_city() -> dict[Level, dict[str, Any]]:
    """The toy city as one GeoJSON FeatureCollection per level."""
    streets, communities, grids = [], [], []
    for code, name, x0, x1 in STREETS:
        streets.append(feature(code, name, x0, 0, x1, 6))
        for number, (y0, y1) in enumerate(((0, 3), (3, 6)), start=1):
            community = f"{code}{number:03d}"
            communities.append(feature(community, f"{name}第{number}居委", x0, y0, x1, y1))
            sequence = 0
            for y in range(y0, y1):
                for x in range(x0, x1):
                    sequence += 1
                    grids.append(
                        feature(
                            f"{community}{sequence:03d}",
                            f"{sequence:03d}号网格",
                            x,
                            y,
                            x + 1,
                            y + 1,
                        )
                    )
    return {
        Level.DISTRICT: collection([feature(c, n, x0, 0, x1, 6) for c, n, x0, x1 in DISTRICTS]),
        Level.STREET: collection(streets),
        Level.COMMUNITY: collection(communities),
        Level.GRID: collection(grids),
    }


def grid_code(x: int, y: int) -> str:
    """The code of the toy grid whose south-west corner is lattice (x, y)."""
    for code, _, x0, x1 in STREETS:
        if x0 <= x < x1:
            number, y0 = (1, 0) if y < 3 else (2, 3)
            sequence = (y - y0) * (x1 - x0) + (x - x0) + 1
            return f"{code}{number:03d}{sequence:03d}"
    raise ValueError((x, y))


def load_toy_city(context: AppContext) -> None:
    with context.db.session() as session:
        for level, data in toy_city().items():
            service.import_geojson(session, data, level)


@pytest.fixture
def toy(context: AppContext) -> AppContext:
    """The app context with the toy city loaded."""
    load_toy_city(context)
    return context


@pytest.fixture
def steward(login: Callable[..., dict[str, str]]) -> dict[str, str]:
    return login("chen.data", "data_steward")


@pytest.fixture
def reader(login: Callable[..., dict[str, str]]) -> dict[str, str]:
    return login("zhang.handler", "handler")
