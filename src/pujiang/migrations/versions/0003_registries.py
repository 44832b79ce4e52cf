"""registries: population, legal entities, addresses and buildings

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ordered_text(length: int) -> sa.types.TypeEngine[str]:
    # Code-point order on PostgreSQL too, so prefix range scans use the index (see models.py).
    return sa.String(length=length).with_variant(
        sa.String(length=length, collation="C"), "postgresql"
    )


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False)


def _stamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "registry_persons",
        _id(),
        sa.Column("id_number", sa.String(length=18), nullable=False),
        sa.Column("name", _ordered_text(64), nullable=False),
        sa.Column("sex", sa.String(length=1), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("household_address", sa.String(length=255), nullable=True),
        sa.Column("residence_address", sa.String(length=255), nullable=True),
        sa.Column("residence_lon", sa.Float(), nullable=True),
        sa.Column("residence_lat", sa.Float(), nullable=True),
        sa.Column("district_code", sa.String(length=6), nullable=True),
        sa.Column("community_code", sa.String(length=12), nullable=True),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_persons")),
        sa.UniqueConstraint("id_number", name=op.f("uq_registry_persons_id_number")),
    )
    for column in ("name", "district_code", "community_code"):
        op.create_index(
            op.f(f"ix_registry_persons_{column}"), "registry_persons", [column], unique=False
        )

    op.create_table(
        "registry_entities",
        _id(),
        sa.Column("credit_code", sa.String(length=18), nullable=False),
        sa.Column("name", _ordered_text(255), nullable=False),
        sa.Column("entity_type", sa.String(length=64), nullable=False),
        sa.Column("registered_address", sa.String(length=255), nullable=True),
        sa.Column("legal_representative", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("established_on", sa.Date(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("district_code", sa.String(length=6), nullable=True),
        sa.Column("community_code", sa.String(length=12), nullable=True),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_entities")),
        sa.UniqueConstraint("credit_code", name=op.f("uq_registry_entities_credit_code")),
    )
    for column in ("name", "district_code", "community_code"):
        op.create_index(
            op.f(f"ix_registry_entities_{column}"), "registry_entities", [column], unique=False
        )

    op.create_table(
        "registry_addresses",
        _id(),
        sa.Column("address", _ordered_text(255), nullable=False),
        sa.Column("building_name", sa.String(length=128), nullable=True),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("district_code", sa.String(length=6), nullable=True),
        sa.Column("community_code", sa.String(length=12), nullable=True),
        sa.Column("grid_code", sa.String(length=15), nullable=True),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_addresses")),
        sa.UniqueConstraint("address", name=op.f("uq_registry_addresses_address")),
    )
    for column in ("district_code", "community_code", "grid_code"):
        op.create_index(
            op.f(f"ix_registry_addresses_{column}"), "registry_addresses", [column], unique=False
        )


def downgrade() -> None:
    for table, columns in (
        ("registry_addresses", ("district_code", "community_code", "grid_code")),
        ("registry_entities", ("name", "district_code", "community_code")),
        ("registry_persons", ("name", "district_code", "community_code")),
    ):
        for column in columns:
            op.drop_index(op.f(f"ix_{table}_{column}"), table_name=table)
        op.drop_table(table)
