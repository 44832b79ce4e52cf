"""catalog: resources, search terms, sharing requests, exchange log, open-data applications

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "catalog_exchange_log",
        sa.Column("id", _id(), autoincrement=False, nullable=False),
        _when("occurred_at"),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=96), nullable=False),
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("resource", sa.String(length=100), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response_hash", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_exchange_log")),
    )
    op.create_table(
        "catalog_resources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("share_type", sa.String(length=16), nullable=False),
        sa.Column("share_conditions", sa.Text(), nullable=False),
        sa.Column("share_basis", sa.Text(), nullable=False),
        sa.Column("open_type", sa.String(length=16), nullable=False),
        sa.Column("open_conditions", sa.Text(), nullable=False),
        sa.Column("update_cycle", sa.String(length=8), nullable=False),
        sa.Column("released_on", sa.Date(), nullable=False),
        sa.Column("base_registry", sa.String(length=16), nullable=True),
        sa.Column("theme", sa.String(length=32), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("related_codes", sa.JSON(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("min_k", sa.SmallInteger(), nullable=False),
        sa.Column("live_view", sa.String(length=64), nullable=True),
        sa.Column("license_id", sa.String(length=32), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("rejected_rows", sa.Integer(), nullable=False),
        _when("data_updated_at", nullable=True),
        sa.Column("published_id", sa.String(length=36), nullable=True),
        _when("opened_at", nullable=True),
        sa.Column("created_by", sa.String(length=96), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_catalog_resources_department_id_departments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_resources")),
        sa.UniqueConstraint("code", name=op.f("uq_catalog_resources_code")),
        sa.UniqueConstraint("name", name=op.f("uq_catalog_resources_name")),
        sa.UniqueConstraint("published_id", name=op.f("uq_catalog_resources_published_id")),
        sa.UniqueConstraint("uid", name=op.f("uq_catalog_resources_uid")),
    )
    op.create_index("ix_catalog_resources_department_id", "catalog_resources", ["department_id"])
    op.create_index("ix_catalog_resources_open_type", "catalog_resources", ["open_type"])
    op.create_index(
        "ix_catalog_resources_search",
        "catalog_resources",
        ["id", "department_id", "theme", "format", "open_type", "released_on", "opened_at"],
    )
    op.create_table(
        "catalog_open_applications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("applicant", sa.String(length=96), nullable=False),
        sa.Column("organisation", sa.String(length=200), nullable=False),
        sa.Column("contact", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _when("created_at"),
        sa.Column("reviewed_by", sa.String(length=96), nullable=True),
        _when("reviewed_at", nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("agreement", sa.Text(), nullable=False),
        _when("agreed_at", nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("rate_per_minute", sa.Integer(), nullable=False),
        _when("expires_at", nullable=True),
        _when("revoked_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["principals.id"],
            name=op.f("fk_catalog_open_applications_account_id_principals"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["catalog_resources.id"],
            name=op.f("fk_catalog_open_applications_resource_id_catalog_resources"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_open_applications")),
        sa.UniqueConstraint("account_id", name=op.f("uq_catalog_open_applications_account_id")),
    )
    op.create_index(
        "ix_catalog_open_applications_resource_id", "catalog_open_applications", ["resource_id"]
    )
    op.create_table(
        "catalog_share_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("consumer_department_id", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=96), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _when("requested_at"),
        sa.Column("due_on", sa.Date(), nullable=False),
        _when("decided_at", nullable=True),
        sa.Column("decided_by", sa.String(length=96), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("masking", sa.JSON(), nullable=False),
        _when("expires_at", nullable=True),
        _when("revoked_at", nullable=True),
        sa.Column("revoked_by", sa.String(length=96), nullable=True),
        sa.ForeignKeyConstraint(
            ["consumer_department_id"],
            ["departments.id"],
            name=op.f("fk_catalog_share_requests_consumer_department_id_departments"),
        ),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["catalog_resources.id"],
            name=op.f("fk_catalog_share_requests_resource_id_catalog_resources"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_share_requests")),
    )
    op.create_index(
        "ix_catalog_share_requests_consumer_department_id",
        "catalog_share_requests",
        ["consumer_department_id"],
    )
    op.create_index(
        "ix_catalog_share_requests_resource_id", "catalog_share_requests", ["resource_id"]
    )
    op.create_table(
        "catalog_terms",
        sa.Column("term", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("weight", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["catalog_resources.id"],
            name=op.f("fk_catalog_terms_resource_id_catalog_resources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("term", "resource_id", name=op.f("pk_catalog_terms")),
    )
    op.create_index("ix_catalog_terms_resource_id", "catalog_terms", ["resource_id"])


def downgrade() -> None:
    # The data tables made at run time (ds_<uid> and the published copies) go with the catalog.
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT uid, published_id FROM catalog_resources")).all()
    for uid, published_id in rows:
        op.execute(f'DROP TABLE IF EXISTS "ds_{uid.replace("-", "")}"')
        if published_id:
            op.execute(f'DROP TABLE IF EXISTS "{published_id}"')
    op.execute("DELETE FROM audit_head WHERE name = 'exchange'")
    op.drop_index("ix_catalog_terms_resource_id", table_name="catalog_terms")
    op.drop_table("catalog_terms")
    op.drop_index("ix_catalog_share_requests_resource_id", table_name="catalog_share_requests")
    op.drop_index(
        "ix_catalog_share_requests_consumer_department_id", table_name="catalog_share_requests"
    )
    op.drop_table("catalog_share_requests")
    op.drop_index(
        "ix_catalog_open_applications_resource_id", table_name="catalog_open_applications"
    )
    op.drop_table("catalog_open_applications")
    op.drop_index("ix_catalog_resources_search", table_name="catalog_resources")
    op.drop_index("ix_catalog_resources_open_type", table_name="catalog_resources")
    op.drop_index("ix_catalog_resources_department_id", table_name="catalog_resources")
    op.drop_table("catalog_resources")
    op.drop_table("catalog_exchange_log")
