"""city: administrative units, responsibility grids, change counter

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "city_units",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=15), nullable=False),
        sa.Column("parent_code", sa.String(length=15), nullable=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("name_en", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("geometry", sa.LargeBinary(), nullable=False),
        sa.Column("min_lon", sa.Float(), nullable=False),
        sa.Column("min_lat", sa.Float(), nullable=False),
        sa.Column("max_lon", sa.Float(), nullable=False),
        sa.Column("max_lat", sa.Float(), nullable=False),
        sa.Column("area_m2", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_city_units")),
        sa.UniqueConstraint("code", name=op.f("uq_city_units_code")),
    )
    with op.batch_alter_table("city_units", schema=None) as batch_op:
        batch_op.create_index(
            "ix_city_units_level_parent_code", ["level", "parent_code", "code"], unique=False
        )

    op.create_table(
        "city_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_city_state")),
    )

    op.create_table(
        "city_rgrids",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_city_rgrids_department_id_departments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_city_rgrids")),
        sa.UniqueConstraint("code", name=op.f("uq_city_rgrids_code")),
    )
    with op.batch_alter_table("city_rgrids", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_city_rgrids_department_id"), ["department_id"], unique=False
        )

    op.create_table(
        "city_rgrid_units",
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("rgrid_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rgrid_id"],
            ["city_rgrids.id"],
            name=op.f("fk_city_rgrid_units_rgrid_id_city_rgrids"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"],
            ["city_units.id"],
            name=op.f("fk_city_rgrid_units_unit_id_city_units"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("unit_id", name=op.f("pk_city_rgrid_units")),
    )
    with op.batch_alter_table("city_rgrid_units", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_city_rgrid_units_rgrid_id"),
            ["rgrid_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("city_rgrid_units", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_city_rgrid_units_rgrid_id"))
    op.drop_table("city_rgrid_units")
    with op.batch_alter_table("city_rgrids", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_city_rgrids_department_id"))
    op.drop_table("city_rgrids")
    op.drop_table("city_state")
    with op.batch_alter_table("city_units", schema=None) as batch_op:
        batch_op.drop_index("ix_city_units_level_parent_code")
    op.drop_table("city_units")
