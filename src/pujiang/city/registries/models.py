"""The three base registries (三大基础库): population, legal entities, addresses and buildings.

Each table has a natural key that imports upsert on (ID number, credit code, standard address
text) and the codes of the place it lies in: the 6-digit district (GB/T 2260), the 12-digit
community (statistics code) and, for addresses, the 15-digit unit grid (GB/T 30428).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, Float, String
from sqlalchemy.orm import Mapped, mapped_column

from pujiang.platform.db import Base, BigIntPK, UtcDateTime, utcnow


def ordered_text(length: int) -> String:
    """Text compared by code point on both databases.

    SQLite compares bytes; PostgreSQL would use the database's locale (a zh_CN locale sorts
    by pinyin), which breaks prefix range scans. Collation "C" makes both agree, so one
    `>= prefix AND < next(prefix)` query uses the plain B-tree index everywhere.
    """
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class Person(Base):
    """One resident (人口基础库). Name, ID number, phone and addresses are personal data."""

    __tablename__ = "registry_persons"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    id_number: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(ordered_text(64), index=True)
    # Both derived from the ID number (GB 11643); a supplied value must agree with it.
    sex: Mapped[str] = mapped_column(String(1))
    birth_date: Mapped[date] = mapped_column(Date)
    phone: Mapped[str | None] = mapped_column(String(20))
    household_address: Mapped[str | None] = mapped_column(String(255))
    residence_address: Mapped[str | None] = mapped_column(String(255))
    residence_lon: Mapped[float | None] = mapped_column(Float)
    residence_lat: Mapped[float | None] = mapped_column(Float)
    district_code: Mapped[str | None] = mapped_column(String(6), index=True)
    community_code: Mapped[str | None] = mapped_column(String(12), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class LegalEntity(Base):
    """A legal person or other organisation (法人基础库), keyed by its credit code (GB 32100)."""

    __tablename__ = "registry_entities"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    credit_code: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(ordered_text(255), index=True)
    entity_type: Mapped[str] = mapped_column(String(64))
    registered_address: Mapped[str | None] = mapped_column(String(255))
    # A person's name: personal data, masked like any other name.
    legal_representative: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(8))
    established_on: Mapped[date | None] = mapped_column(Date)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    district_code: Mapped[str | None] = mapped_column(String(6), index=True)
    community_code: Mapped[str | None] = mapped_column(String(12), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Address(Base):
    """A standard address and its building (地址与建筑物基础库), located to a unit grid."""

    __tablename__ = "registry_addresses"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # Normalised text (full-width folded, no whitespace) is the key; its unique index also
    # serves prefix search.
    address: Mapped[str] = mapped_column(ordered_text(255), unique=True)
    building_name: Mapped[str | None] = mapped_column(String(128))
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    district_code: Mapped[str | None] = mapped_column(String(6), index=True)
    community_code: Mapped[str | None] = mapped_column(String(12), index=True)
    grid_code: Mapped[str | None] = mapped_column(String(15), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
