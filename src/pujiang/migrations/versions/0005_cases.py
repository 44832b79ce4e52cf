"""cases: the case catalogue, cases, their history, files and the reporters' outbox

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "case_categories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("major_code", sa.String(length=2), nullable=False),
        sa.Column("major_name", sa.String(length=64), nullable=False),
        sa.Column("minor_code", sa.String(length=2), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("name_en", sa.String(length=128), nullable=False),
        sa.Column("register_standard", sa.Text(), nullable=False),
        sa.Column("close_standard", sa.Text(), nullable=False),
        sa.Column("time_limits", sa.JSON(), nullable=False),
        sa.Column("dispatch_rule", sa.JSON(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("keywords", sa.String(length=255), nullable=False),
        sa.Column("duplicate_radius_m", sa.Float(), nullable=False),
        sa.Column("duplicate_window_hours", sa.Float(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_categories")),
        sa.UniqueConstraint("code", name=op.f("uq_case_categories_code")),
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tracking_id", sa.String(length=16), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("request_type", sa.String(length=16), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("district_code", sa.String(length=6), nullable=True),
        sa.Column("street_code", sa.String(length=9), nullable=True),
        sa.Column("community_code", sa.String(length=12), nullable=True),
        sa.Column("grid_code", sa.String(length=15), nullable=True),
        sa.Column("place_name", sa.String(length=255), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("center_id", sa.Integer(), nullable=True),
        sa.Column("escalated_to_id", sa.Integer(), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("stage_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overdue", sa.Boolean(), nullable=False),
        sa.Column("overdue_count", sa.Integer(), nullable=False),
        sa.Column("handle_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("extension_pending_hours", sa.Float(), nullable=True),
        sa.Column("extension_count", sa.Integer(), nullable=False),
        sa.Column("rework_count", sa.Integer(), nullable=False),
        sa.Column("return_count", sa.Integer(), nullable=False),
        sa.Column(
            "duplicate_of_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("duplicate_candidates", sa.JSON(), nullable=False),
        sa.Column("reporter_name", sa.String(length=64), nullable=True),
        sa.Column("reporter_phone", sa.String(length=32), nullable=True),
        sa.Column("reporter_email", sa.String(length=255), nullable=True),
        sa.Column("reporter_principal", sa.String(length=96), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("external_ref", sa.String(length=128), nullable=True),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("evaluation_score", sa.Integer(), nullable=True),
        sa.Column("evaluation_note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_on_time", sa.Boolean(), nullable=True),
        sa.Column("handled_on_time", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["case_categories.id"],
            name=op.f("fk_cases_category_id_case_categories"),
        ),
        sa.ForeignKeyConstraint(
            ["center_id"], ["departments.id"], name=op.f("fk_cases_center_id_departments")
        ),
        sa.ForeignKeyConstraint(
            ["department_id"], ["departments.id"], name=op.f("fk_cases_department_id_departments")
        ),
        sa.ForeignKeyConstraint(
            ["duplicate_of_id"], ["cases.id"], name=op.f("fk_cases_duplicate_of_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["escalated_to_id"],
            ["departments.id"],
            name=op.f("fk_cases_escalated_to_id_departments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("tracking_id", name=op.f("uq_cases_tracking_id")),
    )
    op.create_index(
        "ix_cases_category_created", "cases", ["category_id", "created_at"], unique=False
    )
    op.create_index("ix_cases_center_state", "cases", ["center_id", "state", "id"], unique=False)
    op.create_index("ix_cases_created", "cases", ["created_at"], unique=False)
    op.create_index(
        "ix_cases_department_state", "cases", ["department_id", "state", "id"], unique=False
    )
    op.create_index(op.f("ix_cases_district_code"), "cases", ["district_code"], unique=False)
    op.create_index(
        "ix_cases_duplicate_of",
        "cases",
        ["duplicate_of_id"],
        unique=False,
        sqlite_where=sa.text("duplicate_of_id IS NOT NULL"),
        postgresql_where=sa.text("duplicate_of_id IS NOT NULL"),
    )
    op.create_index(
        "ix_cases_escalated_state", "cases", ["escalated_to_id", "state", "id"], unique=False
    )
    op.create_index(
        "ix_cases_external_ref",
        "cases",
        ["external_ref"],
        unique=False,
        sqlite_where=sa.text("external_ref IS NOT NULL"),
        postgresql_where=sa.text("external_ref IS NOT NULL"),
    )
    op.create_index("ix_cases_state_deadline", "cases", ["state", "stage_deadline"], unique=False)
    op.create_index(op.f("ix_cases_street_code"), "cases", ["street_code"], unique=False)
    op.create_index("ix_cases_updated", "cases", ["updated_at"], unique=False)
    op.create_table(
        "case_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=96), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=True),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_events_case_id_cases"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_events")),
    )
    op.create_index("ix_case_events_at", "case_events", ["at"], unique=False)
    op.create_index("ix_case_events_case", "case_events", ["case_id", "id"], unique=False)
    op.create_table(
        "case_files",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("thumbnail_key", sa.String(length=255), nullable=True),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("url", sa.String(length=1024), nullable=True),
        sa.Column("created_by", sa.String(length=96), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_files_case_id_cases"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_files")),
    )
    op.create_index("ix_case_files_case", "case_files", ["case_id"], unique=False)
    op.create_table(
        "case_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_outbox_case_id_cases"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_outbox")),
    )
    op.create_index("ix_case_outbox_pending", "case_outbox", ["sent_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_case_outbox_pending", table_name="case_outbox")
    op.drop_table("case_outbox")
    op.drop_index("ix_case_files_case", table_name="case_files")
    op.drop_table("case_files")
    op.drop_index("ix_case_events_case", table_name="case_events")
    op.drop_index("ix_case_events_at", table_name="case_events")
    op.drop_table("case_events")
    op.drop_index("ix_cases_updated", table_name="cases")
    op.drop_index(op.f("ix_cases_street_code"), table_name="cases")
    op.drop_index("ix_cases_state_deadline", table_name="cases")
    op.drop_index(
        "ix_cases_external_ref",
        table_name="cases",
        sqlite_where=sa.text("external_ref IS NOT NULL"),
        postgresql_where=sa.text("external_ref IS NOT NULL"),
    )
    op.drop_index("ix_cases_escalated_state", table_name="cases")
    op.drop_index(
        "ix_cases_duplicate_of",
        table_name="cases",
        sqlite_where=sa.text("duplicate_of_id IS NOT NULL"),
        postgresql_where=sa.text("duplicate_of_id IS NOT NULL"),
    )
    op.drop_index(op.f("ix_cases_district_code"), table_name="cases")
    op.drop_index("ix_cases_department_state", table_name="cases")
    op.drop_index("ix_cases_created", table_name="cases")
    op.drop_index("ix_cases_center_state", table_name="cases")
    op.drop_index("ix_cases_category_created", table_name="cases")
    op.drop_table("cases")
    op.drop_table("case_categories")
