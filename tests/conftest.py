"""Each test gets a fresh app on a fresh, migrated database.

SQLite (default): the schema is migrated once into a template file, copied for every test.
PostgreSQL (PUJIANG_TEST_DATABASE_URL=postgresql+psycopg://...): a database of this run's own
is created on that server, migrated once, and emptied before every test. When CI=true an
unreachable PostgreSQL fails the run instead of skipping it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pujiang.app import build_context, create_app
from pujiang.demo.seed import seed_departments
from pujiang.models_registry import metadata
from pujiang.platform import db as dbtools
from pujiang.platform import identity
from pujiang.platform.audit import GENESIS_HASH, HEAD_NAME
from pujiang.platform.deps import AppContext
from pujiang.platform.models import AuditHead
from pujiang.settings import Mode, Settings

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("PUJIANG_TEST_DATABASE_URL", "")
TEST_PASSWORD = "correct-horse-battery"


def eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Whether `check()` comes true within `seconds` (polled; for background threads)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def service_unavailable(what: str, why: str) -> None:
    """Fail in CI, skip elsewhere, always saying which service and why."""
    message = f"{what} is not reachable ({why})"
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(message)


def _admin_url(url: str) -> str:
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


def create_pg_database(base_url: str, name: str) -> str:
    engine = create_engine(_admin_url(base_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(base_url: str, name: str) -> None:
    engine = create_engine(_admin_url(base_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_base_url() -> str | None:
    if not PG_URL:
        return None
    probe = create_engine(PG_URL)
    try:
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        message = f"PostgreSQL at PUJIANG_TEST_DATABASE_URL is not reachable: {exc}"
        pytest.exit(message, returncode=3)
    finally:
        probe.dispose()
    return PG_URL


@pytest.fixture(scope="session")
def migrated_url(
    pg_base_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database migrated to head once per run: a template file (SQLite) or a PG database."""
    if pg_base_url:
        name = f"pujiang_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        url = create_pg_database(pg_base_url, name)
        dbtools.upgrade(url)
        yield url
        drop_pg_database(pg_base_url, name)
        return
    template = tmp_path_factory.mktemp("template") / "template.db"
    url = f"sqlite:///{template}"
    dbtools.upgrade(url)
    yield url


@pytest.fixture
def empty_url(pg_base_url: str | None, tmp_path: Path) -> Iterator[str]:
    """A database of its own with no tables (for migration tests): a new PostgreSQL database
    or a new SQLite file."""
    if pg_base_url:
        name = f"pujiang_mig_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        yield create_pg_database(pg_base_url, name)
        drop_pg_database(pg_base_url, name)
    else:
        yield f"sqlite:///{tmp_path / 'empty.db'}"


def _empty_pg(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            conn.execute(
                AuditHead.__table__.insert().values(
                    id=1, name=HEAD_NAME, last_id=0, last_hash=GENESIS_HASH, note=""
                )
            )
    finally:
        engine.dispose()


@pytest.fixture
def database_url(migrated_url: str, tmp_path: Path) -> str:
    """A fresh migrated database for one test."""
    if migrated_url.startswith("sqlite"):
        copy = tmp_path / "pujiang.db"
        shutil.copyfile(make_url(migrated_url).database or "", copy)
        return f"sqlite:///{copy}"
    _empty_pg(migrated_url)
    return migrated_url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        mode=Mode.TEST,
        database_url=database_url,
        secret_key=secrets.token_urlsafe(48),
        var_dir=tmp_path / "var",
        log_json=False,
    )


@pytest.fixture
def context(settings: Settings) -> Iterator[AppContext]:
    context = build_context(settings)
    with context.db.session() as session:
        seed_departments(session)
    yield context
    context.db.dispose()


@pytest.fixture
def client(settings: Settings, context: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(settings, context), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def make_user(context: AppContext) -> Callable[..., str]:
    """Create a user with roles in a department; returns its username (password TEST_PASSWORD)."""

    def make(username: str, *roles: str, department: str | None = None) -> str:
        with context.db.session() as session:
            identity.create_user(
                session,
                context,
                username=username,
                password=TEST_PASSWORD,
                display_name=f"测试{username}",
                department_code=department,
                roles=list(roles),
            )
        return username

    return make


@pytest.fixture
def login(client: TestClient, make_user: Callable[..., str]) -> Callable[..., dict[str, str]]:
    """Create a user and sign in; returns the Authorization header to send."""

    def sign_in(username: str, *roles: str, department: str | None = None) -> dict[str, str]:
        make_user(username, *roles, department=department)
        reply = client.post(
            "/api/auth/token", data={"username": username, "password": TEST_PASSWORD}
        )
        assert reply.status_code == 200, reply.text
        return {"Authorization": f"Bearer {reply.json()['access_token']}"}

    return sign_in
