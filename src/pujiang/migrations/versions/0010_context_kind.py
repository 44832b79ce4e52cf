"""context: room for the @context kind ImplicitlyCreated (17 characters) in context_jsonld

Revision ID: 0010
Revises: 0009

Stored @contexts were Hosted or Cached; ImplicitlyCreated entries (clause 5.13, made for
subscriptions written with an @context that is not one URL) need a wider `kind`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("context_jsonld") as batch:
        batch.alter_column(
            "kind", existing_type=sa.String(length=16), type_=sa.String(length=24), nullable=False
        )


def downgrade() -> None:
    op.execute("DELETE FROM context_jsonld WHERE kind = 'ImplicitlyCreated'")
    with op.batch_alter_table("context_jsonld") as batch:
        batch.alter_column(
            "kind", existing_type=sa.String(length=24), type_=sa.String(length=16), nullable=False
        )
