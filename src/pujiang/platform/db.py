"""Engine, sessions and migrations. SQLite and PostgreSQL differences live here and nowhere else.

`Database(url)` is built by `create_app` or the CLI; nothing connects at import time.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Integer,
    MetaData,
    TypeDecorator,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# Stable constraint names, so Alembic migrations can drop/alter them on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


# Page cache of each SQLite connection, in KiB (negative: KiB, as SQLite counts it). The
# default 2 MiB holds little of the index B-trees of a city's entities and history: updates
# with random keys then re-read pages from the OS on every batch.
SQLITE_CACHE_KIB = 64 * 1024
# WAL pages before an automatic checkpoint (default 1,000, 4 MiB). Batches of readings touch
# the same hot pages again and again; a longer WAL copies each back to the database once.
SQLITE_CHECKPOINT_PAGES = 10_000


def sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: Any = None) -> None:
    """The settings of every SQLite connection (benchmarks apply them to their baselines)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # WAL with NORMAL sync is durable against process crashes; only power loss may drop the
    # last transactions. FULL would double the cost of every commit.
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Statement journals (a copy of each page a statement changes inside a larger transaction)
    # in memory: on disk they were a temporary file in /var/tmp written page by page, several
    # hundred thousand writes per million entities loaded.
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
    cursor.close()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", sqlite_pragmas)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


_TRY_JOB_LOCK = text("SELECT pg_try_advisory_lock(hashtextextended(:job, 0))")
_JOB_UNLOCK = text("SELECT pg_advisory_unlock(hashtextextended(:job, 0))")


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer: this process's write sessions queue here, in order, rather
        # than in SQLite's busy handler (which polls with sleeps and gives up after its
        # timeout, so a burst of concurrent requests could fail with "database is locked").
        self._writer = threading.Lock()
        self._writing = threading.local()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A session for a read-modify-write, which no other writer can interleave with.

        On SQLite its transaction takes the database's one write lock at its start (`BEGIN
        IMMEDIATE`): the driver otherwise begins a transaction only at the first
        INSERT/UPDATE, so what the session read before could already have been overwritten by
        another thread or process. This process's write sessions take turns on a lock of
        their own first; another process's writer is waited for up to the busy timeout.

        On PostgreSQL this is a plain session: callers lock what they will change (`FOR
        UPDATE`, or advisory locks for keys that may not exist yet)."""
        if not self.is_sqlite:
            with self.session() as session:
                yield session
            return
        if getattr(self._writing, "active", False):
            raise RuntimeError("a write session inside another would wait for itself")
        with self._writer:
            self._writing.active = True
            try:
                with self.sessions() as session, session.begin():
                    lock_for_write(session)
                    yield session
            finally:
                self._writing.active = False

    @contextmanager
    def single_run(self, job: str) -> Iterator[bool]:
        """Whether this is the only run of `job` against this database (True) or another
        run holds it (False), for as long as the block lasts: a batch job started by cron
        while its previous run still works (slow SMTP, say) must not do the same work twice.

        PostgreSQL: a session-level advisory lock on a connection kept for the block, so it
        holds across machines. SQLite: an exclusive `flock` on a file beside the database,
        which every process using that file sees; released by the kernel if the process dies."""
        if self.is_sqlite:
            database = make_url(self.url).database
            if not database or database == ":memory:":
                yield True
                return
            with open(f"{database}.{job}.lock", "a+b") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield False
                    return
                try:
                    yield True
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
            return
        key = {"job": f"pujiang.job.{job}"}
        with self.engine.connect() as connection:
            mine = bool(connection.execute(_TRY_JOB_LOCK, key).scalar_one())
            connection.commit()
            try:
                yield mine
            finally:
                if mine:
                    connection.execute(_JOB_UNLOCK, key)
                    connection.commit()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()


def lock_for_write(session: Session) -> None:
    """Call before a read that a write of this transaction will depend on, where PostgreSQL
    reads `FOR UPDATE`: SQLite has no row locks and its driver begins a transaction only at
    the first INSERT/UPDATE, so this takes the database's write lock now (`BEGIN IMMEDIATE`)
    unless the transaction holds it already. No-op on PostgreSQL."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    if not connection.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def driver_cursor(session: Session) -> Iterator[Any]:
    """A DB-API cursor on the session's connection (and transaction), closed afterwards.

    For hot loops of small statements: through SQLAlchemy, building a statement and its rows
    costs several times what SQLite spends answering it. Parameters use the driver's own
    placeholder (`?` on SQLite, `%s` on PostgreSQL) and values reach it as given."""
    cursor = session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    finally:
        cursor.close()


def bulk_insert(
    session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """Insert many rows in the session's transaction: COPY on PostgreSQL, executemany on SQLite.

    Values reach the driver as given (no SQLAlchemy type processing), so pass plain str, int,
    float, bytes and None. Several times faster than an ORM or Core executemany for 10^5+ rows.
    """
    connection = session.connection()
    quote = connection.dialect.identifier_preparer.quote
    names = ", ".join(quote(column) for column in columns)
    if connection.dialect.name == "postgresql":
        count = 0
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor, cursor.copy(f"COPY {quote(table)} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        return count
    batch = list(rows)
    marks = ", ".join("?" for _ in columns)
    if batch:
        # Identifiers are quoted by the dialect; the values are bound, never formatted in.
        sql = f"INSERT INTO {quote(table)} ({names}) VALUES ({marks})"  # noqa: S608
        connection.exec_driver_sql(sql, batch)
    return len(batch)


@contextmanager
def bulk_load(session: Session, cache_mib: int = 256) -> Iterator[None]:
    """Tune the session's connection for writing many rows, and undo it afterwards.

    SQLite: a page cache of `cache_mib` for this connection, so the index B-trees of a table
    of millions of rows stay in memory; with the default 2 MiB cache, inserts with random keys
    run at half the rate. PostgreSQL: nothing to do.
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        yield
        return
    previous = int(connection.exec_driver_sql("PRAGMA cache_size").scalar_one())
    connection.exec_driver_sql(f"PRAGMA cache_size = {-1024 * int(cache_mib)}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size = {previous}")


# -- migrations -----------------------------------------------------------------------------------


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's config uses %-interpolation; escape so URL-encoded passwords survive.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _migrate(url: str, step: Callable[[Config], None]) -> None:
    # Our engine, so SQLite gets its directory and pragmas exactly as the app does.
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            step(config)
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    _migrate(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str, revision: str = "-1") -> None:
    _migrate(url, lambda config: command.downgrade(config, revision))


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def current_revisions(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


def migrations_current(database: Database) -> bool:
    with database.engine.connect() as conn:
        return current_revisions(conn) == head_revisions()


# -- portable column types ------------------------------------------------------------------------


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite otherwise returns naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; Pujiang stores aware UTC datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# 64-bit keys on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
