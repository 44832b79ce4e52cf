"""context: NGSI-LD subscriptions and the notification outbox

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "context_subscriptions",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("sub_id", sa.String(length=512), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("ld_context", sa.JSON(), nullable=True),
        sa.Column("compiled", sa.JSON(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        _when("expires_at"),
        sa.Column("throttling", sa.Float(), nullable=True),
        sa.Column("time_interval", sa.Float(), nullable=True),
        sa.Column("endpoint_uri", sa.String(length=2048), nullable=False),
        _when("last_fired_at"),
        _when("next_periodic_at"),
        sa.Column("times_sent", sa.Integer(), nullable=False),
        sa.Column("times_failed", sa.Integer(), nullable=False),
        _when("last_notification"),
        _when("last_success"),
        _when("last_failure"),
        sa.Column("created_by", sa.String(length=96), nullable=False),
        _when("created_at", nullable=False),
        _when("modified_at", nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_context_subscriptions")),
    )
    op.create_index(
        "ix_context_subscriptions_tenant_sub_id",
        "context_subscriptions",
        ["tenant", "sub_id"],
        unique=True,
    )
    op.create_table(
        "context_notification_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column(
            "subscription_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("endpoint_key", sa.String(length=512), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _when("next_attempt_at", nullable=False),
        _when("claimed_until"),
        sa.Column("dead", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        _when("created_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_pk"],
            ["context_subscriptions.pk"],
            name=op.f("fk_context_notification_outbox_subscription_pk_context_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_context_notification_outbox")),
    )
    op.create_index(
        "ix_context_notification_outbox_due",
        "context_notification_outbox",
        ["dead", "next_attempt_at"],
        unique=False,
    )
    for column in ("subscription_pk", "endpoint_key"):
        op.create_index(
            op.f(f"ix_context_notification_outbox_{column}"),
            "context_notification_outbox",
            [column],
            unique=False,
        )


def downgrade() -> None:
    for column in ("subscription_pk", "endpoint_key"):
        op.drop_index(
            op.f(f"ix_context_notification_outbox_{column}"),
            table_name="context_notification_outbox",
        )
    op.drop_index("ix_context_notification_outbox_due", table_name="context_notification_outbox")
    op.drop_table("context_notification_outbox")
    op.drop_index("ix_context_subscriptions_tenant_sub_id", table_name="context_subscriptions")
    op.drop_table("context_subscriptions")
