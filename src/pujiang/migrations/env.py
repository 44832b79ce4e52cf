"""Alembic environment: the URL comes from the config `pujiang db` builds (see platform/db.py)."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlalchemy import Connection, engine_from_config, pool

from pujiang.models_registry import metadata
from pujiang.platform.db import UtcDateTime

config = context.config


def render_item(kind: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Migrations must not import our column types: render UtcDateTime as what it stores.
    if kind == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # `pujiang db` passes its own connection
        _run(connection)
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as connection:
        _run(connection)


def _run(connection: Connection) -> None:
    # Batch mode lets the same migration ALTER tables on SQLite (by copy) and PostgreSQL.
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
