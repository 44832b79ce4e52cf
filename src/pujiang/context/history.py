"""Writes the broker's history: narrow rows in series (`context_series`, `context_history`).

A history row names its series by id; the series holds the strings every row of one attribute
instance shares (tenant, entity, type, attribute, datasetId, attribute type). Series rows are
never deleted (the history rows of a series may be), so a known id stays valid; ids are
remembered in a bounded cache once the transaction that read them commits (a rollback could
take a new series away).

Only readings (devices: the same series again and again) fill the cache; other writes (mostly
new entities, whose series are new) look their few ids up once. Looking ids up in Python and
inserting rows by id is three times cheaper in SQLite than an INSERT ... SELECT that finds the
series per row.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, delete, event, func, select
from sqlalchemy.orm import Session

from pujiang.context.models import ContextHistory, ContextSeries
from pujiang.platform.db import driver_cursor

# (tenant, entity_id, entity_type, attr, dataset_id, kind)
SeriesKey = tuple[str, str, str, str, str, str]
# A history row as writers build it: a series key, then the columns of `ROW_COLUMNS`.
ROW_COLUMNS = ("observed_at", "modified_at", "deleted", "num", "txt", "instance")
KEY_COLUMNS = ("tenant", "entity_id", "entity_type", "attr", "dataset_id", "kind")

SERIES = cast(Table, ContextSeries.__table__)
HISTORY = cast(Table, ContextHistory.__table__)

_CHUNK = 500  # entity ids per lookup
_PENDING = "pujiang_series_read"  # session.info: ids read by this transaction, cached on commit
_HOOKED = "pujiang_series_hooked"  # session.info: the commit and rollback hooks are registered
_INSERT_SERIES = (
    "INSERT INTO context_series (tenant, entity_id, entity_type, attr, dataset_id, kind) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT DO NOTHING"
)
_INSERT_ROWS = (
    "INSERT INTO context_history (series_id, observed_at, modified_at, deleted, num, txt, "
    "instance) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})"
)
_SELECT_SERIES = (
    "SELECT id, tenant, entity_id, entity_type, attr, dataset_id, kind FROM context_series "
    "WHERE tenant = {p} AND entity_id IN ({ids})"
)
# PostgreSQL: the ids as one array joined to the table. With `IN (...)` on a table without
# statistics yet (a city's first bulk load) the planner used the key index for the tenant alone
# and tested every row against the whole list: half the time of a batch upsert.
_SELECT_SERIES_PG = (
    "SELECT s.id, s.tenant, s.entity_id, s.entity_type, s.attr, s.dataset_id, s.kind "
    "FROM unnest(%s::text[]) AS wanted(entity_id) JOIN context_series s "
    "ON s.tenant = %s AND s.entity_id = wanted.entity_id"
)


class HistoryWriter:
    """History rows into their series, for one database (shared by a broker's threads)."""

    def __init__(self, postgres: bool, cache_limit: int = 500_000) -> None:
        p = "%s" if postgres else "?"
        self.postgres = postgres
        self.placeholder = p
        self.cache_limit = cache_limit
        self._cache: dict[SeriesKey, int] = {}
        self._lock = threading.Lock()

    def write(
        self, session: Session, rows: Sequence[tuple[Any, ...]], *, readings: bool = False
    ) -> None:
        """Insert rows of (*series key, *ROW_COLUMNS values), times in the driver's format,
        in the order given. `readings`: the series will be written again soon (devices), so
        remember their ids."""
        if not rows:
            return
        cache = self._cache
        keys = [cast(SeriesKey, row[:6]) for row in rows]
        ids = [cache.get(key) for key in keys]
        if None in ids:
            read = self._create(session, {k for k, i in zip(keys, ids, strict=True) if i is None})
            if readings:
                self._remember_on_commit(session, read)
            ids = [read[k] if i is None else i for k, i in zip(keys, ids, strict=True)]
        params = [(series_id, *row[6:]) for series_id, row in zip(ids, rows, strict=True)]
        self._execute(session, _INSERT_ROWS, params)

    def write_values(self, session: Session, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows given as column dicts (times as aware datetimes), in the order given."""
        time = self.time_param
        self.write(
            session,
            [
                (
                    *(row[c] for c in KEY_COLUMNS),
                    time(row["observed_at"]),
                    time(row["modified_at"]),
                    *(row[c] for c in ROW_COLUMNS[2:]),
                )
                for row in rows
            ],
        )

    def time_param(self, moment: datetime | None) -> Any:
        """A UTC time as the driver stores it (SQLAlchemy's SQLite text format on SQLite)."""
        if moment is None or self.postgres:
            return moment
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def series_ids(self, session: Session, keys: Iterable[SeriesKey]) -> dict[SeriesKey, int]:
        """The id of each series, creating the missing ones."""
        cache = self._cache
        found: dict[SeriesKey, int] = {}
        missing: list[SeriesKey] = []
        for key in keys:
            known = cache.get(key)
            if known is None:
                missing.append(key)
            else:
                found[key] = known
        if missing:
            read = self._create(session, missing)
            self._remember_on_commit(session, read)
            found.update(read)
        return found

    def _create(self, session: Session, keys: Iterable[SeriesKey]) -> dict[SeriesKey, int]:
        """The ids of these series, inserting the ones that do not exist yet.

        In sorted order: two PostgreSQL transactions inserting the same new series (two ingest
        workers hearing a new device) then wait for each other in one order, never deadlock."""
        keys = sorted(keys)
        self._execute(session, _INSERT_SERIES, keys)
        return self._select(session, keys)

    def _select(self, session: Session, keys: list[SeriesKey]) -> dict[SeriesKey, int]:
        wanted = set(keys)
        by_tenant: dict[str, set[str]] = {}
        for key in keys:
            by_tenant.setdefault(key[0], set()).add(key[1])
        stored: dict[SeriesKey, int] = {}
        with driver_cursor(session) as cursor:
            for tenant, entity_ids in by_tenant.items():
                ordered = sorted(entity_ids)
                for start in range(0, len(ordered), _CHUNK):
                    chunk = ordered[start : start + _CHUNK]
                    if self.postgres:
                        cursor.execute(_SELECT_SERIES_PG, (chunk, tenant))
                    else:
                        marks = ", ".join([self.placeholder] * len(chunk))
                        cursor.execute(
                            _SELECT_SERIES.format(p=self.placeholder, ids=marks), (tenant, *chunk)
                        )
                    for row in cursor.fetchall():
                        key = cast(SeriesKey, tuple(row[1:]))
                        if key in wanted:
                            stored[key] = row[0]
        return stored

    def _remember_on_commit(self, session: Session, read: dict[SeriesKey, int]) -> None:
        if not session.info.get(_HOOKED):
            event.listen(session, "after_commit", self._after_commit)
            event.listen(session, "after_rollback", self._after_rollback)
            session.info[_HOOKED] = True
        session.info.setdefault(_PENDING, {}).update(read)

    def _after_commit(self, session: Session) -> None:
        read: dict[SeriesKey, int] = session.info.pop(_PENDING, None) or {}
        with self._lock:
            if len(self._cache) + len(read) > self.cache_limit:
                self._cache.clear()  # a bound, not an LRU: refilled by one lookup per batch
            self._cache.update(read)

    @staticmethod
    def _after_rollback(session: Session) -> None:
        session.info.pop(_PENDING, None)

    def _execute(self, session: Session, sql: str, params: list[tuple[Any, ...]]) -> None:
        if params:
            session.connection().exec_driver_sql(sql.format(p=self.placeholder), params)


def key_of(row: dict[str, Any]) -> SeriesKey:
    return cast(SeriesKey, tuple(row[c] for c in KEY_COLUMNS))


def series_of(
    tenant: str, entity_id: str, attr: str | None = None, dataset_id: str | None = None
) -> Any:
    """The ids of an entity's series (or of one attribute's, or of one of its datasetIds), as
    a subquery for deletes."""
    where = [SERIES.c.tenant == tenant, SERIES.c.entity_id == entity_id]
    if attr is not None:
        where.append(SERIES.c.attr == attr)
    if dataset_id is not None:
        where.append(SERIES.c.dataset_id == dataset_id)
    return select(SERIES.c.id).where(*where)


def delete_rows(session: Session, series: Any) -> int:
    """Delete the history rows of the series selected; the number deleted."""
    result = session.execute(delete(HISTORY).where(HISTORY.c.series_id.in_(series)))
    return int(getattr(result, "rowcount", 0) or 0)


def purge_chunk(
    session: Session, first_id: int, chunk: int, before: datetime, *, count: bool
) -> tuple[int, int] | None:
    """Delete (or with `count`, count) the history rows stored before `before` among the
    `chunk` rows from id `first_id` on.

    Returns (rows deleted or counted, the id after the chunk), or None when no row is left.
    Ids grow with `modified_at`, the time a row was stored (never changed afterwards: a
    replaced instance keeps it), so a caller walks them from the oldest up and stops at the
    first chunk with nothing to purge. Only concurrent PostgreSQL writers interleave ids and
    times, by the length of a transaction: a row that close to the cutoff waits for the next
    run."""
    ids = HISTORY.c.id
    last = session.execute(
        select(ids).where(ids >= first_id).order_by(ids).offset(chunk - 1).limit(1)
    ).scalar()
    if last is None:
        last = session.execute(select(func.max(ids)).where(ids >= first_id)).scalar()
        if last is None:
            return None
    where = (ids >= first_id, ids <= last, HISTORY.c.modified_at < before)
    if count:
        found = session.execute(select(func.count()).select_from(HISTORY).where(*where))
        return int(found.scalar_one()), last + 1
    result = session.execute(delete(HISTORY).where(*where))
    return int(getattr(result, "rowcount", 0) or 0), last + 1


def oldest_id(session: Session) -> int | None:
    """The smallest history id, where a purge starts."""
    return session.execute(select(func.min(HISTORY.c.id))).scalar()
