"""Request and response models of the city routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from pujiang.city.levels import Level
from pujiang.platform.geo import Crs
from pujiang.platform.schemas import WriteModel

Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
GridCode = Annotated[str, Field(pattern=r"^\d{15}$")]

MAX_BATCH_POINTS = 10_000


class UnitRefOut(BaseModel):
    code: str
    name: str


class LevelUnitRefOut(UnitRefOut):
    level: Level


class ResponsibilityRefOut(BaseModel):
    code: str
    name: str
    department_code: str


class NearestOut(BaseModel):
    code: str
    name: str
    distance_m: float = Field(description="Approximate distance to the district boundary.")


class LocationOut(BaseModel):
    lon: float = Field(description="Longitude as given, in `crs`.")
    lat: float = Field(description="Latitude as given, in `crs`.")
    crs: Crs
    wgs84: tuple[float, float] = Field(description="The WGS84 point actually looked up.")
    inside: bool
    district: UnitRefOut | None = None
    street: UnitRefOut | None = None
    community: UnitRefOut | None = None
    grid: UnitRefOut | None = None
    responsibility: ResponsibilityRefOut | None = None
    message: str | None = Field(None, description="Why nothing was found (outside the city).")
    nearest_district: NearestOut | None = None


class LocateBatchIn(WriteModel):
    crs: Crs = Crs.WGS84
    points: list[tuple[Longitude, Latitude]] = Field(
        min_length=1,
        max_length=MAX_BATCH_POINTS,
        description="[lon, lat] pairs in `crs`, at most 10,000 per request.",
        examples=[[[121.4905, 31.2397], [121.5055, 31.2355]]],
    )


class LocateBatchOut(BaseModel):
    crs: Crs
    count: int
    inside: int
    results: list[LocationOut]


class UnitOut(BaseModel):
    code: str
    level: Level
    name: str
    name_en: str
    parent_code: str | None
    source: str
    bbox: tuple[float, float, float, float] = Field(
        description="[min lon, min lat, max lon, max lat]"
    )
    area_km2: float
    geometry: dict[str, Any] | None = Field(None, description="GeoJSON, when geometry=true.")


class UnitDetailOut(UnitOut):
    ancestors: list[LevelUnitRefOut]
    children: int


class UnitPage(BaseModel):
    items: list[UnitOut]
    next_after: str | None = Field(
        description="Pass as `after` for the next page; null at the end."
    )


class CitySummaryOut(BaseModel):
    revision: int
    source: str
    changed_at: datetime | None
    counts: dict[Level, int]


class ImportErrorOut(BaseModel):
    index: int = Field(description="Position of the feature in the file, from 0.")
    code: str | None
    reason: str


class ImportReportOut(BaseModel):
    level: Level
    received: int
    inserted: int
    updated: int
    skipped: int
    revision: int
    errors: list[ImportErrorOut]


class ResponsibilityGridIn(WriteModel):
    name: str = Field(min_length=1, max_length=128, examples=["南京东路街道责任网格一"])
    department_code: str = Field(min_length=1, max_length=64, examples=["310101-CGZF"])
    grid_codes: list[GridCode] = Field(max_length=100_000, examples=[["310101002001001"]])


class ResponsibilityGridOut(BaseModel):
    code: str
    name: str
    department_code: str
    grid_count: int
    grid_codes: list[str] | None = None
    updated_at: datetime
    geometry: dict[str, Any] | None = None
