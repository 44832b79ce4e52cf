"""Shanghai's 16 districts (GB/T 2260 codes, 2020 census population) shipped with the package."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class DistrictFact:
    code: str
    name: str
    name_en: str
    zone: str
    area_km2: float
    population: int
    centroid: tuple[float, float]


@cache
def districts() -> tuple[DistrictFact, ...]:
    raw = json.loads(
        resources.files("pujiang.city").joinpath("data/districts.json").read_text("utf-8")
    )
    return tuple(
        DistrictFact(
            code=d["code"],
            name=d["name"],
            name_en=d["name_en"],
            zone=d["zone_2020_census"],
            area_km2=float(d["area_km2"]),
            population=int(d["population_2020_census"]),
            centroid=(float(d["centroid"][0]), float(d["centroid"][1])),
        )
        for d in raw["districts"]
    )
