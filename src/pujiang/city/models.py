"""Tables of the city model: administrative units, responsibility grids, and the change counter.

Geometry is stored portably as WKB (WGS84 lon/lat) with its bounding box in plain columns, so
SQLite and PostgreSQL without PostGIS hold the same thing; locating is done in memory by an
STRtree built from these rows (see locator.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from pujiang.platform.db import Base, UtcDateTime, utcnow


class CityUnit(Base):
    """A district, street/town, community or unit grid, with its polygon."""

    __tablename__ = "city_units"
    __table_args__ = (Index("ix_city_units_level_parent_code", "level", "parent_code", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    level: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(15), unique=True)
    # The code of the unit above (a prefix of `code`); None for districts.
    parent_code: Mapped[str | None] = mapped_column(String(15))
    name: Mapped[str] = mapped_column(String(128))
    name_en: Mapped[str] = mapped_column(String(128), default="")
    # Where the boundary came from (e.g. "geoBoundaries 2017", "synthetic", an import label).
    source: Mapped[str] = mapped_column(String(128), default="")
    geometry: Mapped[bytes] = mapped_column(LargeBinary)
    min_lon: Mapped[float] = mapped_column(Float)
    min_lat: Mapped[float] = mapped_column(Float)
    max_lon: Mapped[float] = mapped_column(Float)
    max_lat: Mapped[float] = mapped_column(Float)
    area_m2: Mapped[float] = mapped_column(Float)


class CityState(Base):
    """One row whose revision goes up with every change, so caches notice with one cheap read."""

    __tablename__ = "city_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    revision: Mapped[int] = mapped_column(default=0)
    # What the data is: "demo-v1 seed=... grid=100m ..." for the demo city, else "import".
    source: Mapped[str] = mapped_column(String(255), default="")
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ResponsibilityGrid(Base):
    """A group of unit grids a team (a department) is responsible for (责任网格).

    Tables say "rgrid" so constraint names stay under PostgreSQL's 63 characters.
    """

    __tablename__ = "city_rgrids"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ResponsibilityGridUnit(Base):
    """Membership: each unit grid belongs to at most one responsibility grid."""

    __tablename__ = "city_rgrid_units"

    unit_id: Mapped[int] = mapped_column(
        ForeignKey("city_units.id", ondelete="CASCADE"), primary_key=True
    )
    rgrid_id: Mapped[int] = mapped_column(
        ForeignKey("city_rgrids.id", ondelete="CASCADE"), index=True
    )
