"""Tables of the context broker. The columns are part of the design contract (docs/context.md).

The hot tables are written with Core `executemany` from `store.py`; these classes describe
them for Alembic and for readers. Child rows carry `entity_pk` without a foreign key: the
service deletes them in the same transaction, and bulk writes skip the per-row check.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    String,
    Subquery,
    Table,
    Text,
    select,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from pujiang.platform.db import Base, BigIntPK, UtcDateTime

TENANT_LEN = 64
NAME_LEN = 512  # expanded attribute and type names (IRIs)
ID_LEN = 512  # entity ids (URIs)
TXT_LEN = 256  # indexed string values are cut to this length (the exact test reads the doc)

# PostgreSQL: the PostGIS envelope over a bbox row, indexed with GiST (see the migration).
# Strings compare by code point on both databases (SQLite's BINARY; PostgreSQL needs "C").
INDEXED_TEXT = String(TXT_LEN).with_variant(String(TXT_LEN, collation="C"), "postgresql")

PG_ENVELOPE = "postgis.st_makeenvelope(minx, miny, maxx, maxy, 4326)"


class ContextTenant(Base):
    __tablename__ = "context_tenants"

    name: Mapped[str] = mapped_column(String(TENANT_LEN), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class ContextEntity(Base):
    __tablename__ = "context_entities"
    __table_args__ = (
        Index("ix_context_entities_tenant_entity_id", "tenant", "entity_id", unique=True),
        # Pages come in insertion (pk) order: a tenant's entities walked in that order.
        Index("ix_context_entities_tenant_pk", "tenant", "pk"),
    )

    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(TENANT_LEN), nullable=False)
    entity_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    types: Mapped[str] = mapped_column(Text, nullable=False)
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    doc: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    modified_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class ContextEntityType(Base):
    __tablename__ = "context_entity_types"

    tenant: Mapped[str] = mapped_column(String(TENANT_LEN), primary_key=True)
    type: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    entity_pk: Mapped[int] = mapped_column(BigInteger, primary_key=True)

    __table_args__ = (
        Index("ix_context_entity_types_entity_pk", "entity_pk"),
        {"sqlite_with_rowid": False},
    )


class ContextAttr(Base):
    """The current value of every attribute instance, for index-served `q` and discovery."""

    __tablename__ = "context_attrs"
    __table_args__ = (
        Index("ix_context_attrs_num", "tenant", "attr", "num"),
        Index("ix_context_attrs_txt", "tenant", "attr", "txt"),
        {"sqlite_with_rowid": False},
    )

    entity_pk: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    attr: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(TENANT_LEN), nullable=False)
    kind: Mapped[str] = mapped_column(String(24), nullable=False)
    num: Mapped[float | None] = mapped_column(Float, nullable=True)
    txt: Mapped[str | None] = mapped_column(INDEXED_TEXT, nullable=True)


class ContextGeo(Base):
    """The bounding box of every GeoProperty instance; the spatial index sits over it."""

    __tablename__ = "context_geo"
    __table_args__ = (
        Index("ix_context_geo_entity_pk", "entity_pk"),
        Index("ix_context_geo_envelope", text(PG_ENVELOPE), postgresql_using="gist"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(TENANT_LEN), nullable=False)
    entity_pk: Mapped[int] = mapped_column(BigInteger, nullable=False)
    attr: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    dataset_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    minx: Mapped[float] = mapped_column(Float, nullable=False)
    miny: Mapped[float] = mapped_column(Float, nullable=False)
    maxx: Mapped[float] = mapped_column(Float, nullable=False)
    maxy: Mapped[float] = mapped_column(Float, nullable=False)


class ContextSeries(Base):
    """One history series: the strings every history row of one attribute instance shares.

    A row per (tenant, entity, attribute, datasetId, entity type, attribute type) ever written,
    never deleted (the history rows of a series may be), so a cached id stays valid."""

    __tablename__ = "context_series"
    __table_args__ = (
        Index(
            "ix_context_series_key",
            "tenant",
            "entity_id",
            "attr",
            "dataset_id",
            "entity_type",
            "kind",
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(TENANT_LEN), nullable=False)
    entity_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    entity_type: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    attr: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    dataset_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    kind: Mapped[str] = mapped_column(String(24), nullable=False)


class ContextHistory(Base):
    """History: one narrow row per attribute instance written or deleted, in its series.

    The instance id shown by the temporal API (`urn:ngsi-ld:instance:<id>`) is `id`. Readers
    see rows through `history_rows()`, which joins the series' strings back on."""

    __tablename__ = "context_history"
    __table_args__ = (Index("ix_context_history_series", "series_id", "observed_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    series_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    observed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    modified_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    deleted: Mapped[bool] = mapped_column(Boolean, nullable=False)
    num: Mapped[float | None] = mapped_column(Float, nullable=True)
    txt: Mapped[str | None] = mapped_column(INDEXED_TEXT, nullable=True)
    instance: Mapped[str] = mapped_column(Text, nullable=False)


def history_rows() -> Subquery:
    """History rows with their series' columns, as one selectable (`h`) for readers.

    Both databases flatten it into a join: a filter on a series column is served by the
    series' indexes, then the rows of each series by (series_id, observed_at)."""
    series = cast(Table, ContextSeries.__table__)
    history = cast(Table, ContextHistory.__table__)
    return (
        select(
            history.c.id,
            history.c.series_id,
            series.c.tenant,
            series.c.entity_id,
            series.c.entity_type,
            series.c.attr,
            series.c.dataset_id,
            series.c.kind,
            history.c.observed_at,
            history.c.modified_at,
            history.c.deleted,
            history.c.num,
            history.c.txt,
            history.c.instance,
        )
        .join_from(history, series, series.c.id == history.c.series_id)
        .subquery("h")
    )


class ContextJsonld(Base):
    """Stored @contexts (`/jsonldContexts`): hosted ones and cached copies of remote URLs."""

    __tablename__ = "context_jsonld"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(TENANT_LEN), nullable=False)
    url: Mapped[str] = mapped_column(String(2048), nullable=False, unique=True)
    # Hosted, Cached or ImplicitlyCreated (clause 5.13.3.5)
    kind: Mapped[str] = mapped_column(String(24), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    hits: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
