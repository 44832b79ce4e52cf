"""iot: service groups, devices and commands of device ingest

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "iot_devices",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("subservice", sa.String(length=128), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("apikey", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=512), nullable=False),
        sa.Column("entity_type", sa.String(length=256), nullable=False),
        sa.Column("protocol", sa.String(length=32), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("endpoint", sa.String(length=2048), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("static_attributes", sa.JSON(), nullable=False),
        sa.Column("commands", sa.JSON(), nullable=False),
        sa.Column("explicit_attrs", sa.Boolean(), nullable=False),
        sa.Column("expected_interval", sa.Integer(), nullable=True),
        sa.Column("missed_intervals", sa.Integer(), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("offline_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("online", sa.Boolean(), nullable=True),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("stored", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("duplicates", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_iot_devices")),
    )
    with op.batch_alter_table("iot_devices", schema=None) as batch_op:
        batch_op.create_index("ix_iot_devices_apikey_device", ["apikey", "device_id"], unique=True)
        batch_op.create_index("ix_iot_devices_liveness", ["online", "offline_after"], unique=False)
        batch_op.create_index("ix_iot_devices_tenant_device", ["tenant", "device_id"], unique=True)

    op.create_table(
        "iot_services",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("subservice", sa.String(length=128), nullable=False),
        sa.Column("apikey", sa.String(length=64), nullable=False),
        sa.Column("resource", sa.String(length=128), nullable=False),
        sa.Column("entity_type", sa.String(length=256), nullable=False),
        sa.Column("ld_context", sa.String(length=2048), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("static_attributes", sa.JSON(), nullable=False),
        sa.Column("commands", sa.JSON(), nullable=False),
        sa.Column("explicit_attrs", sa.Boolean(), nullable=False),
        sa.Column("expected_interval", sa.Integer(), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_iot_services")),
    )
    with op.batch_alter_table("iot_services", schema=None) as batch_op:
        batch_op.create_index("ix_iot_services_apikey", ["apikey"], unique=True)

    op.create_table(
        "iot_commands",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column(
            "device_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("info", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=96), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_pk"],
            ["iot_devices.pk"],
            name=op.f("fk_iot_commands_device_pk_iot_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_iot_commands")),
    )
    with op.batch_alter_table("iot_commands", schema=None) as batch_op:
        batch_op.create_index(
            "ix_iot_commands_device_status", ["device_pk", "status"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("iot_commands", schema=None) as batch_op:
        batch_op.drop_index("ix_iot_commands_device_status")

    op.drop_table("iot_commands")
    with op.batch_alter_table("iot_services", schema=None) as batch_op:
        batch_op.drop_index("ix_iot_services_apikey")

    op.drop_table("iot_services")
    with op.batch_alter_table("iot_devices", schema=None) as batch_op:
        batch_op.drop_index("ix_iot_devices_tenant_device")
        batch_op.drop_index("ix_iot_devices_liveness")
        batch_op.drop_index("ix_iot_devices_apikey_device")

    op.drop_table("iot_devices")
