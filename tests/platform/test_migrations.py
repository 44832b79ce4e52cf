"""Migrations upgrade and downgrade cleanly on both databases and match the models."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from pujiang.models_registry import metadata
from pujiang.platform import db as dbtools


def _tables(url: str) -> set[str]:
    database = dbtools.Database(url)
    try:
        return set(inspect(database.engine).get_table_names())
    finally:
        database.dispose()


def test_upgrade_downgrade_upgrade(empty_url: str) -> None:
    dbtools.upgrade(empty_url)
    assert {"principals", "audit_log", "departments"} <= _tables(empty_url)
    dbtools.downgrade(empty_url, "base")
    assert _tables(empty_url) <= {"alembic_version"}
    dbtools.upgrade(empty_url)
    database = dbtools.Database(empty_url)
    try:
        assert dbtools.migrations_current(database)
    finally:
        database.dispose()


def test_each_step_down_and_up(empty_url: str) -> None:
    dbtools.upgrade(empty_url)
    steps = 0
    while True:
        database = dbtools.Database(empty_url)
        with database.engine.connect() as conn:
            current = dbtools.current_revisions(conn)
        database.dispose()
        if not current:
            break
        dbtools.downgrade(empty_url, "-1")
        steps += 1
    assert steps >= 1
    dbtools.upgrade(empty_url)


def test_models_match_migrations(empty_url: str) -> None:
    dbtools.upgrade(empty_url)
    database = dbtools.Database(empty_url)
    try:
        with database.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, metadata)
    finally:
        database.dispose()
    assert diff == [], f"models and migrations differ; write a migration: {diff}"


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    database = dbtools.Database(url)
    try:
        with database.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    finally:
        database.dispose()
    assert make_url(url).database
