"""context: NGSI-LD entities, attribute index, spatial index, history, stored @contexts

Revision ID: 0006
Revises: 0005

On PostgreSQL, PostGIS is installed (in schema `postgis`, so its `spatial_ref_sys` table stays
out of the application's schema) and a GiST index over each bbox's envelope serves geo-queries.
On SQLite the R*Tree over `context_geo` is a derived index the service creates on first use
(`service.ensure_spatial_index`): Alembic's model comparison cannot describe virtual tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG_ENVELOPE = "postgis.st_makeenvelope(minx, miny, maxx, maxy, 4326)"
SQLITE_RTREE_OBJECTS = (
    "DROP TRIGGER IF EXISTS context_geo_rtree_insert",
    "DROP TRIGGER IF EXISTS context_geo_rtree_delete",
    "DROP TABLE IF EXISTS context_geo_rtree",
)


def _pk(name: str = "id") -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False)


def _indexed_text() -> sa.types.TypeEngine[str]:
    # Code-point order on PostgreSQL too, as the q prefilter compares strings that way.
    return sa.String(length=256).with_variant(sa.String(length=256, collation="C"), "postgresql")


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("CREATE SCHEMA IF NOT EXISTS postgis")
        op.execute("CREATE EXTENSION IF NOT EXISTS postgis SCHEMA postgis")
    op.create_table(
        "context_tenants",
        sa.Column("name", sa.String(length=64), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_context_tenants")),
    )
    op.create_table(
        "context_entities",
        _pk("pk"),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=512), nullable=False),
        sa.Column("types", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("doc", sa.Text(), nullable=False),
        _when("created_at"),
        _when("modified_at"),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_context_entities")),
    )
    op.create_index(
        "ix_context_entities_tenant_entity_id",
        "context_entities",
        ["tenant", "entity_id"],
        unique=True,
    )
    op.create_index("ix_context_entities_tenant_pk", "context_entities", ["tenant", "pk"])
    op.create_table(
        "context_entity_types",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=512), nullable=False),
        sa.Column("entity_pk", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant", "type", "entity_pk", name=op.f("pk_context_entity_types")
        ),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_context_entity_types_entity_pk", "context_entity_types", ["entity_pk"], unique=False
    )
    op.create_table(
        "context_attrs",
        sa.Column("entity_pk", sa.BigInteger(), nullable=False),
        sa.Column("attr", sa.String(length=512), nullable=False),
        sa.Column("dataset_id", sa.String(length=512), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("num", sa.Float(), nullable=True),
        sa.Column("txt", _indexed_text(), nullable=True),
        sa.PrimaryKeyConstraint("entity_pk", "attr", "dataset_id", name=op.f("pk_context_attrs")),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_context_attrs_num", "context_attrs", ["tenant", "attr", "num"])
    op.create_index("ix_context_attrs_txt", "context_attrs", ["tenant", "attr", "txt"])
    op.create_table(
        "context_geo",
        _pk(),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("entity_pk", sa.BigInteger(), nullable=False),
        sa.Column("attr", sa.String(length=512), nullable=False),
        sa.Column("dataset_id", sa.String(length=512), nullable=False),
        sa.Column("minx", sa.Float(), nullable=False),
        sa.Column("miny", sa.Float(), nullable=False),
        sa.Column("maxx", sa.Float(), nullable=False),
        sa.Column("maxy", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_context_geo")),
    )
    op.create_index("ix_context_geo_entity_pk", "context_geo", ["entity_pk"])
    if postgres:
        op.execute(
            f"CREATE INDEX ix_context_geo_envelope ON context_geo USING gist ({PG_ENVELOPE})"
        )
    op.create_table(
        "context_attr_instances",
        _pk(),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=512), nullable=False),
        sa.Column("entity_type", sa.String(length=512), nullable=False),
        sa.Column("attr", sa.String(length=512), nullable=False),
        sa.Column("dataset_id", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        _when("observed_at", nullable=True),
        _when("modified_at"),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("num", sa.Float(), nullable=True),
        sa.Column("txt", _indexed_text(), nullable=True),
        sa.Column("instance", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_context_attr_instances")),
    )
    op.create_index(
        "ix_context_attr_instances_entity",
        "context_attr_instances",
        ["tenant", "entity_id", "attr", "observed_at"],
    )
    op.create_index(
        "ix_context_attr_instances_type",
        "context_attr_instances",
        ["tenant", "entity_type", "attr", "observed_at"],
    )
    op.create_table(
        "context_jsonld",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        _when("created_at"),
        _when("last_used_at", nullable=True),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_context_jsonld")),
        sa.UniqueConstraint("url", name=op.f("uq_context_jsonld_url")),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_RTREE_OBJECTS:
            op.execute(statement)
    op.drop_table("context_jsonld")
    op.drop_index("ix_context_attr_instances_type", table_name="context_attr_instances")
    op.drop_index("ix_context_attr_instances_entity", table_name="context_attr_instances")
    op.drop_table("context_attr_instances")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_context_geo_envelope")
    op.drop_index("ix_context_geo_entity_pk", table_name="context_geo")
    op.drop_table("context_geo")
    op.drop_index("ix_context_attrs_txt", table_name="context_attrs")
    op.drop_index("ix_context_attrs_num", table_name="context_attrs")
    op.drop_table("context_attrs")
    op.drop_index("ix_context_entity_types_entity_pk", table_name="context_entity_types")
    op.drop_table("context_entity_types")
    op.drop_index("ix_context_entities_tenant_pk", table_name="context_entities")
    op.drop_index("ix_context_entities_tenant_entity_id", table_name="context_entities")
    op.drop_table("context_entities")
    op.drop_table("context_tenants")
