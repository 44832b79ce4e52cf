"""context: narrow history rows in series (context_series, context_history)

Revision ID: 0009
Revises: 0008

The history kept five strings per row (tenant, entity id, entity type, attribute IRI,
datasetId) and two indexes over them. They now live once per series in `context_series`;
a history row names its series by id and is indexed by (series_id, observed_at). Rows keep
their ids, which the temporal API shows as instance ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = ("tenant", "entity_id", "entity_type", "attr", "dataset_id", "kind")
ROW = ("observed_at", "modified_at", "deleted", "num", "txt", "instance")
SAME_SERIES = " AND ".join(f"s.{c} = h.{c}" for c in KEY)


def _pk() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False)


def _strings() -> list[sa.Column[str]]:
    return [
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=512), nullable=False),
        sa.Column("entity_type", sa.String(length=512), nullable=False),
        sa.Column("attr", sa.String(length=512), nullable=False),
        sa.Column("dataset_id", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
    ]


def _values() -> list[sa.Column[object]]:
    text = sa.String(length=256).with_variant(sa.String(length=256, collation="C"), "postgresql")
    return [
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("num", sa.Float(), nullable=True),
        sa.Column("txt", text, nullable=True),
        sa.Column("instance", sa.Text(), nullable=False),
    ]


def _restart_ids(table: str) -> None:
    """PostgreSQL: the id sequence continues after the ids copied in."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 - our own names
            f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
        )


def upgrade() -> None:
    op.create_table(
        "context_series",
        _pk(),
        *_strings(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_context_series")),
    )
    op.create_index(
        "ix_context_series_key",
        "context_series",
        ["tenant", "entity_id", "attr", "dataset_id", "entity_type", "kind"],
        unique=True,
    )
    op.create_table(
        "context_history",
        _pk(),
        sa.Column("series_id", sa.BigInteger(), nullable=False),
        *_values(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_context_history")),
    )
    keys, rows = ", ".join(KEY), ", ".join(ROW)
    op.execute(
        f"INSERT INTO context_series ({keys}) SELECT {keys} FROM context_attr_instances "  # noqa: S608 - our own names
        f"GROUP BY {keys} ORDER BY min(id)"
    )
    op.execute(
        f"INSERT INTO context_history (id, series_id, {rows}) "  # noqa: S608 - our own names
        f"SELECT h.id, s.id, {', '.join('h.' + c for c in ROW)} "
        f"FROM context_attr_instances h JOIN context_series s ON {SAME_SERIES} ORDER BY h.id"
    )
    _restart_ids("context_history")
    op.create_index("ix_context_history_series", "context_history", ["series_id", "observed_at"])
    op.drop_index("ix_context_attr_instances_type", table_name="context_attr_instances")
    op.drop_index("ix_context_attr_instances_entity", table_name="context_attr_instances")
    op.drop_table("context_attr_instances")


def downgrade() -> None:
    op.create_table(
        "context_attr_instances",
        _pk(),
        *_strings(),
        *_values(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_context_attr_instances")),
    )
    keys, rows = ", ".join(KEY), ", ".join(ROW)
    op.execute(
        f"INSERT INTO context_attr_instances (id, {keys}, {rows}) "  # noqa: S608 - our own names
        f"SELECT h.id, {', '.join('s.' + c for c in KEY)}, {', '.join('h.' + c for c in ROW)} "
        "FROM context_history h JOIN context_series s ON s.id = h.series_id ORDER BY h.id"
    )
    _restart_ids("context_attr_instances")
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
    op.drop_index("ix_context_history_series", table_name="context_history")
    op.drop_table("context_history")
    op.drop_index("ix_context_series_key", table_name="context_series")
    op.drop_table("context_series")
