"""The broker's tables: sessions and tenants, loading entities, and persisting writes
(current state, attribute index, spatial index and history of a batch in one pass).
`ContextBroker` (`service.py`) and its parts build on `BrokerStore`."""

from __future__ import annotations

import gc
import logging
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    column,
    delete,
    event,
    func,
    select,
    table,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from pujiang.context.entity_form import (
    DEFAULT_TENANT,
    ENTITY_KEYS,
    NGSI_LD_NULL,
    Entity,
    Instance,
    _db_time,
    _dumps,
    _find,
    geo_bounds,
    index_value,
    now_iso,
    parse_time,
)
from pujiang.context.errors import NonexistentTenant, NotFound
from pujiang.context.history import HistoryWriter
from pujiang.context.models import (
    ContextAttr,
    ContextEntity,
    ContextEntityType,
    ContextGeo,
    ContextTenant,
)
from pujiang.context.writes import Change, _change, _stamp, _Write
from pujiang.platform.bus import EventBus
from pujiang.platform.db import Database, UtcDateTime, bulk_load, driver_cursor

log = logging.getLogger(__name__)

TOPIC_CHANGED = "context.entity.changed"
BULK = 1000  # batches of this many entities write with a large page cache


# SQLite: the R*Tree over `context_geo` is kept by the service itself (`_persist` inserts and
# deletes its rows with set-based statements beside the `context_geo` rows): per-row triggers
# cost more than the rest of the spatial index write. Databases made before this change have
# the triggers; `ensure_spatial_index` drops them.
_SQLITE_RTREE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS context_geo_rtree USING rtree(id, minx, maxx, miny, maxy)"
)
_SQLITE_RTREE_TRIGGERS = ("context_geo_rtree_insert", "context_geo_rtree_delete")
_RTREE = table("context_geo_rtree", column("id"))


def ensure_spatial_index(connection: Connection) -> None:
    """SQLite: create the R*Tree over `context_geo` (and fill it) if it is missing, and drop
    the per-row triggers older versions kept it with (the service now writes it directly)."""
    if connection.dialect.name != "sqlite":
        return
    for trigger in _SQLITE_RTREE_TRIGGERS:
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
    exists = connection.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE name = 'context_geo_rtree'"
    ).first()
    if exists:
        return
    connection.exec_driver_sql(_SQLITE_RTREE)
    connection.exec_driver_sql(
        "INSERT INTO context_geo_rtree SELECT id, minx, maxx, miny, maxy FROM context_geo"
    )


@contextmanager
def quiet_gc(batch: bool) -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch builds its rows.

    A batch allocates several small containers per instance that live until the commit; the
    collector would walk them (and everything else alive) again and again for nothing: a
    quarter of a large batch's time. Reference counting still frees memory meanwhile. The
    collector is only resumed if this call paused it."""
    if not batch or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# -- the broker ---------------------------------------------------------------------------------

_E = cast(Table, ContextEntity.__table__)
_T = cast(Table, ContextEntityType.__table__)
_A = cast(Table, ContextAttr.__table__)
_G = cast(Table, ContextGeo.__table__)
_TEN = cast(Table, ContextTenant.__table__)

_ADD_TENANT = text(
    "INSERT INTO context_tenants (name, created_at) VALUES (:name, :at) ON CONFLICT DO NOTHING"
).bindparams(bindparam("at", type_=UtcDateTime()))
_LOAD_SQL = (
    "SELECT pk, entity_id, doc FROM context_entities WHERE tenant = {p} AND entity_id IN ({ids})"
)
# On PostgreSQL a write first takes a transaction lock on each of its entity ids, existing or
# not (row locks cannot hold an id that is about to be created), in one order (the ids sorted;
# unnest yields them in array order), so that two batches sharing entities wait for each other
# instead of deadlocking or both inserting one new id.
# Broker writes on PostgreSQL lock the ids they read and write back (advisory locks, until the
# commit). Locks take slots of one table shared by the whole server, max_locks_per_transaction
# × max_connections (6,400 by default): a lock per id ran out of it with one batch of 8,000 ids
# or four gateway uploads of 5,000 at once ("out of shared memory"). So a write of up to
# `FINE_LIMIT` ids locks each id under a shared lock of its bucket, and a larger one locks the
# buckets of its ids (at most `LOCK_BUCKETS`) outright. Both kinds meet on the buckets; every
# write takes its buckets, then its ids, in ascending order, so writers cannot deadlock.
FINE_LIMIT = 256
LOCK_BUCKETS = 1024
_BUCKET_CLASS, _ID_CLASS = 0x504A0001, 0x504A0002  # two-key locks: their own key space
_LOCK_SQL = "SELECT count({function}(%s, k)) FROM unnest(%s::int[]) AS k"
_LOCK_BUCKETS_SHARED = _LOCK_SQL.format(function="pg_advisory_xact_lock_shared")
_LOCK_EXCLUSIVE = _LOCK_SQL.format(function="pg_advisory_xact_lock")


def _lock_ids(cursor: Any, tenant: str, ids: list[str]) -> None:
    """Lock a write's entity ids on PostgreSQL (see `FINE_LIMIT`)."""
    hashes = {zlib.crc32(f"{tenant}\x1f{entity_id}".encode()) for entity_id in ids}
    buckets = sorted({h % LOCK_BUCKETS for h in hashes})
    if len(ids) > FINE_LIMIT:
        cursor.execute(_LOCK_EXCLUSIVE, (_BUCKET_CLASS, buckets))
        return
    cursor.execute(_LOCK_BUCKETS_SHARED, (_BUCKET_CLASS, buckets))
    keys = sorted(h - (1 << 32) if h >= 1 << 31 else h for h in hashes)  # as int4
    cursor.execute(_LOCK_EXCLUSIVE, (_ID_CLASS, keys))


# PostgreSQL plans from table statistics, which fresh tables lack until autovacuum's next round
# (a minute or more later): right after a bulk load, a type+q query on 10,000 entities ran a
# nested loop over every attribute row (3.4 s; 12 ms once analyzed).
_ANALYZED = (
    "context_entities",
    "context_entity_types",
    "context_attrs",
    "context_geo",
    "context_series",
    "context_history",
)


class _AnalyzeSchedule:
    """When bulk writes call for `ANALYZE`: once the entities written since the last one reach
    the number written before it (and at least `BULK`), so a load of n entities analyzes
    about log2(n / BULK) times; autovacuum keeps the statistics up to date after that."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._before = 0
        self._since = 0

    def due(self, written: int) -> bool:
        with self._lock:
            self._since += written
            if self._since < max(BULK, self._before):
                return False
            self._before += self._since
            self._since = 0
            return True


class BrokerStore:
    """One database's broker tables: sessions, tenants, loading and persisting writes; the
    base of `ContextBroker`, whose operations live in `service.py`, `readings.py` and
    `queries.py`."""

    def __init__(self, db: Database, bus: EventBus | None = None) -> None:
        self.db = db
        self.bus = bus
        self.postgres = db.engine.dialect.name == "postgresql"
        self.history = HistoryWriter(self.postgres)
        self._tenants: set[str] = {DEFAULT_TENANT}
        self._lock = threading.Lock()
        self._spatial_ready = False
        self._analyze = _AnalyzeSchedule()

    # -- infrastructure ------------------------------------------------------------------------

    def _session(self) -> Any:
        self._ensure_spatial()
        return self.db.session()

    def _write_session(self) -> Any:
        """The session of a write: entities are read, changed and written back, so no other
        writer may commit in between (see `Database.write_session`; on PostgreSQL `_load`
        locks the entity ids)."""
        self._ensure_spatial()
        return self.db.write_session()

    def _ensure_spatial(self) -> None:
        if not self._spatial_ready:
            with self.db.engine.begin() as connection:
                ensure_spatial_index(connection)
            self._spatial_ready = True

    def session(self) -> Any:
        """A session on the broker's tables for other readers (the temporal engine): the
        spatial index exists by then, as the broker's own sessions ensure."""
        return self._session()

    def _publish(self, changes: Iterable[Change]) -> None:
        if self.bus is None:
            return
        for change in changes:
            self.bus.publish(TOPIC_CHANGED, change.event())

    def tenant_exists(self, tenant: str) -> bool:
        if tenant in self._tenants:
            return True
        with self.db.session() as session:
            found = session.execute(select(_TEN.c.name).where(_TEN.c.name == tenant)).first()
        if found:
            with self._lock:
                self._tenants.add(tenant)
        return bool(found)

    def require_tenant(self, tenant: str) -> None:
        if not self.tenant_exists(tenant):
            raise NonexistentTenant(f"租户 {tenant} 不存在 / tenant {tenant!r} does not exist")

    def tenants(self) -> list[str]:
        with self.db.session() as session:
            names = session.scalars(select(_TEN.c.name).order_by(_TEN.c.name)).all()
        return [DEFAULT_TENANT, *[n for n in names if n != DEFAULT_TENANT]]

    def ensure_tenant(self, session: Session, tenant: str) -> None:
        """Create the tenant in this transaction unless it exists (clause 4.14: on first
        write). It is remembered once the transaction commits, not before: a write rolled
        back must not leave a tenant known here that the database lacks."""
        if tenant in self._tenants:
            return
        # Two first writes of a tenant may meet on PostgreSQL: the second one's insert
        # waits for the first and then does nothing.
        session.execute(_ADD_TENANT, {"name": tenant, "at": datetime.now(UTC)})
        event.listen(session, "after_commit", lambda _: self._remember_tenant(tenant), once=True)

    def _remember_tenant(self, tenant: str) -> None:
        with self._lock:
            self._tenants.add(tenant)

    # -- reading rows --------------------------------------------------------------------------

    def _load(
        self, session: Session, tenant: str, ids: Sequence[str]
    ) -> dict[str, tuple[int, Entity]]:
        """The entities of a write (pk and document), their ids locked for it on PostgreSQL;
        on SQLite the write session holds the database's write lock already."""
        found: dict[str, tuple[int, Entity]] = {}
        unique = list(dict.fromkeys(ids))
        # The driver's cursor: SQLAlchemy's statement building and row handling cost more
        # than SQLite's lookups for a batch of device readings.
        p = "%s" if self.postgres else "?"
        with driver_cursor(session) as cursor:
            if self.postgres:
                _lock_ids(cursor, tenant, unique)
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ", ".join([p] * len(chunk))
                cursor.execute(_LOAD_SQL.format(p=p, ids=marks), (tenant, *chunk))
                for pk, entity_id, doc in cursor.fetchall():
                    found[entity_id] = (pk, orjson.loads(doc))
        return found

    def _load_one(self, session: Session, tenant: str, entity_id: str) -> tuple[int, Entity]:
        found = self._load(session, tenant, [entity_id]).get(entity_id)
        if found is None:
            self.require_tenant(tenant)
            raise NotFound(f"实体 {entity_id} 不存在 / entity {entity_id} not found", id=entity_id)
        return found

    # -- persistence ---------------------------------------------------------------------------

    def _persist(
        self,
        session: Session,
        tenant: str,
        writes: list[_Write],
        at: str,
        *,
        changes: bool = True,
    ) -> list[Change]:
        """Write current state, index rows and history for these writes; return the changes
        (none built when `changes` is false and no bus is listening)."""
        at_db = self._time_param(_db_time(at))
        self.ensure_tenant(session, tenant)
        for write in writes:
            if write.entity is not None:
                _stamp(write, at)
            write.partial = (
                write.operation == "update"
                and write.pk is not None
                and write.entity is not None
                and write.previous is not None
                and write.entity.get("type") == write.previous.get("type")
            )
        stale = [w.pk for w in writes if w.pk is not None and not w.partial]
        for start in range(0, len(stale), 500):
            chunk = stale[start : start + 500]
            if not self.postgres:
                # The R*Tree rows go with their context_geo rows (no triggers, see above).
                session.execute(
                    delete(_RTREE).where(
                        _RTREE.c.id.in_(select(_G.c.id).where(_G.c.entity_pk.in_(chunk)))
                    )
                )
            for table_ in (_T, _A, _G):
                session.execute(delete(table_).where(table_.c.entity_pk.in_(chunk)))
        gone = [w.pk for w in writes if w.pk is not None and w.entity is None]
        for start in range(0, len(gone), 500):
            session.execute(delete(_E).where(_E.c.pk.in_(gone[start : start + 500])))
        changed = [(w.entity, w.pk) for w in writes if w.pk is not None and w.entity is not None]
        if changed:
            self._executemany(
                session,
                "UPDATE context_entities SET types = {p}, doc = {p}, modified_at = {p} "
                "WHERE pk = {p}",
                [(_dumps(e["type"]), _dumps(e), at_db, pk) for e, pk in changed],
            )
        created = [w for w in writes if w.pk is None and w.entity is not None]
        if created:
            self._insert(
                session,
                "context_entities",
                ("tenant", "entity_id", "types", "owner", "doc", "created_at", "modified_at"),
                [
                    (tenant, e["id"], _dumps(e["type"]), w.owner, _dumps(e), at_db, at_db)
                    for w in created
                    if (e := w.current)
                ],
            )
            ids = [w.current["id"] for w in created]
            pks: dict[str, int] = {}
            for start in range(0, len(ids), 500):
                rows = session.execute(
                    select(_E.c.entity_id, _E.c.pk).where(
                        _E.c.tenant == tenant, _E.c.entity_id.in_(ids[start : start + 500])
                    )
                )
                pks.update((row[0], row[1]) for row in rows)
            for w in created:
                w.pk = pks[w.current["id"]]
        self._write_rows(session, tenant, writes, at_db, at)
        if not changes and self.bus is None:
            return []
        return [_change(tenant, w, at) for w in writes]

    # Hot inserts go straight to the driver's executemany: no per-row statement compilation or
    # type processing. The only dialect differences are the placeholder and time parameters.

    def _executemany(self, session: Session, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            session.connection().exec_driver_sql(
                sql.format(p="%s" if self.postgres else "?"),
                rows,
            )

    def _insert(
        self, session: Session, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
    ) -> None:
        placeholders = ", ".join(["{p}"] * len(columns))
        self._executemany(
            session,
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})",  # noqa: S608 - our own table and column names
            rows,
        )

    def _time_param(self, moment: datetime | None) -> Any:
        return self.history.time_param(moment)

    def _write_rows(
        self, session: Session, tenant: str, writes: list[_Write], at_db: Any, at: str
    ) -> None:
        """Index rows (types, attribute index, spatial index) of the entities written and one
        history row per instance written or deleted, in one pass over the writes.

        History rows come per write in `touched` order, then the deletions. A created entity's
        `touched` is all its instances in document order (`_Write.all_touched`), so they are
        read straight off the document instead of being looked up one by one."""
        types: list[tuple[Any, ...]] = []
        attrs: list[tuple[Any, ...]] = []
        geos: list[tuple[Any, ...]] = []
        history: list[tuple[Any, ...]] = []
        # Partial updates: index rows upserted or deleted one (attr, datasetId) at a time.
        upserts: list[tuple[Any, ...]] = []
        unindexed: list[tuple[Any, ...]] = []
        regeo: list[tuple[Any, ...]] = []
        observed_param: dict[str, Any] = {}  # observedAt text -> driver parameter, per batch

        def observed(value: Any) -> Any:
            if not value or not isinstance(value, str):
                return None  # parse_time reads strings only
            if value not in observed_param:
                observed_param[value] = self._time_param(parse_time(value))
            return observed_param[value]

        for w in writes:
            entity, pk = w.entity, w.pk
            current = w.current
            entity_id = current["id"]
            entity_type = current["type"][0] if current["type"] else ""
            fast = w.all_touched and entity is not None
            # (num, txt) per (attr, datasetId) of this entity, reused by the history rows.
            values: dict[tuple[str, str], tuple[float | None, str | None]] = {}
            if w.partial and entity is not None:
                self._partial_rows(w, tenant, upserts, unindexed, regeo, geos)
            elif entity is not None and pk is not None:
                for t in entity["type"]:
                    types.append((tenant, t, pk))
                for name, instances in entity.items():
                    if name in ENTITY_KEYS:
                        continue
                    first: set[str] | None = set() if len(instances) > 1 else None
                    for instance in instances:
                        dataset = instance.get("datasetId") or ""
                        num, txt = index_value(instance)
                        kind = instance.get("type", "Property")
                        attrs.append((pk, name, dataset, tenant, kind, num, txt))
                        if kind == "GeoProperty":
                            bounds = geo_bounds(instance.get("value"))
                            if bounds is not None:
                                geos.append((tenant, pk, name, dataset, *bounds))
                        if not fast:
                            values.setdefault((name, dataset), (num, txt))
                            continue
                        if first is not None:
                            # Two instances with one datasetId: history records the first
                            # twice, as the lookup by (attr, datasetId) always did.
                            if dataset in first:
                                instance = _find(instances, dataset) or instance
                                kind = instance.get("type", "Property")
                                num, txt = index_value(instance)
                            first.add(dataset)
                        history.append(
                            (
                                tenant,
                                entity_id,
                                entity_type,
                                name,
                                dataset,
                                kind,
                                observed(instance.get("observedAt")),
                                at_db,
                                False,
                                num,
                                txt,
                                _dumps(instance),
                            )
                        )
            if entity is not None and not fast:
                pairs = w.history if w.history is not None else w.touched
                for pair in pairs:
                    name, dataset = pair[0], pair[1]
                    if len(pair) > 2:
                        # An instance given with the write (`record`, or a batch step).
                        instance = pair[2]
                        if "modifiedAt" not in instance:
                            instance = {
                                **instance,
                                "createdAt": instance.get("createdAt") or at,
                                "modifiedAt": at,
                            }
                        num, txt = index_value(instance)
                    else:
                        found = _find(entity.get(name, ()), dataset)
                        if found is None:
                            continue
                        instance = found
                        num_txt = values.get((name, dataset))
                        num, txt = num_txt if num_txt is not None else index_value(instance)
                    history.append(
                        (
                            tenant,
                            entity_id,
                            entity_type,
                            name,
                            dataset,
                            instance.get("type", "Property"),
                            observed(instance.get("observedAt")),
                            at_db,
                            False,
                            num,
                            txt,
                            _dumps(instance),
                        )
                    )
            for name, dataset, old in w.removed:
                kind = old.get("type", "Property")
                marker: Instance = {"type": kind, "value": NGSI_LD_NULL, "deletedAt": at}
                if dataset:
                    marker["datasetId"] = dataset
                history.append(
                    (
                        tenant,
                        entity_id,
                        entity_type,
                        name,
                        dataset,
                        kind,
                        None,
                        at_db,
                        True,
                        None,
                        None,
                        _dumps(marker),
                    )
                )
        self._write_partial(session, upserts, unindexed, regeo)
        self._insert(session, "context_entity_types", ("tenant", "type", "entity_pk"), types)
        self._insert(
            session,
            "context_attrs",
            ("entity_pk", "attr", "dataset_id", "tenant", "kind", "num", "txt"),
            attrs,
        )
        self._write_geo(session, geos)
        self.history.write(session, history)

    @staticmethod
    def _partial_rows(
        w: _Write,
        tenant: str,
        upserts: list[tuple[Any, ...]],
        unindexed: list[tuple[Any, ...]],
        regeo: list[tuple[Any, ...]],
        geos: list[tuple[Any, ...]],
    ) -> None:
        """Index rows of a partial update: the touched instances' rows upserted, the removed
        ones' deleted, and the bbox rows of any GeoProperty among them replaced."""
        entity, previous, pk = w.entity or {}, w.previous or {}, w.pk
        for name, dataset in dict.fromkeys(w.touched):
            instance = _find(entity.get(name, ()), dataset)
            if instance is None:
                continue
            kind = instance.get("type", "Property")
            num, txt = index_value(instance)
            upserts.append((pk, name, dataset, tenant, kind, num, txt))
            old = _find(previous.get(name, ()), dataset)
            if kind == "GeoProperty" or (old is not None and old.get("type") == "GeoProperty"):
                regeo.append((pk, name, dataset))
                bounds = geo_bounds(instance.get("value")) if kind == "GeoProperty" else None
                if bounds is not None:
                    geos.append((tenant, pk, name, dataset, *bounds))
        for name, dataset, old in w.removed:
            if _find(entity.get(name, ()), dataset) is not None:
                continue  # removed, then written again by the same operation
            unindexed.append((pk, name, dataset))
            if old.get("type") == "GeoProperty":
                regeo.append((pk, name, dataset))

    def _write_partial(
        self,
        session: Session,
        upserts: list[tuple[Any, ...]],
        unindexed: list[tuple[Any, ...]],
        regeo: list[tuple[Any, ...]],
    ) -> None:
        where = "entity_pk = {p} AND attr = {p} AND dataset_id = {p}"
        if regeo:
            if not self.postgres:
                self._executemany(
                    session,
                    f"DELETE FROM context_geo_rtree WHERE id IN "  # noqa: S608 - fixed text
                    f"(SELECT id FROM context_geo WHERE {where})",
                    regeo,
                )
            self._executemany(session, f"DELETE FROM context_geo WHERE {where}", regeo)  # noqa: S608
        if unindexed:
            self._executemany(session, f"DELETE FROM context_attrs WHERE {where}", unindexed)  # noqa: S608
        if upserts:
            self._executemany(
                session,
                "INSERT INTO context_attrs (entity_pk, attr, dataset_id, tenant, kind, num, txt) "
                "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}) "
                "ON CONFLICT (entity_pk, attr, dataset_id) DO UPDATE SET "
                "kind = excluded.kind, num = excluded.num, txt = excluded.txt",
                upserts,
            )

    def _write_geo(self, session: Session, geos: list[tuple[Any, ...]]) -> None:
        """The bbox rows, and on SQLite their R*Tree rows in one INSERT ... SELECT of the rows
        just added (ids above the largest before: the transaction holds the write lock)."""
        if not geos:
            return
        before = 0
        if not self.postgres:
            before = session.execute(select(func.coalesce(func.max(_G.c.id), 0))).scalar_one()
        self._insert(
            session,
            "context_geo",
            ("tenant", "entity_pk", "attr", "dataset_id", "minx", "miny", "maxx", "maxy"),
            geos,
        )
        if not self.postgres:
            session.connection().exec_driver_sql(
                "INSERT INTO context_geo_rtree SELECT id, minx, maxx, miny, maxy "
                "FROM context_geo WHERE id > ?",
                (before,),
            )

    def _commit(
        self,
        tenant: str,
        build: Callable[[Session], list[_Write]],
        *,
        changes: bool = True,
        then: Callable[[Session], None] | None = None,
    ) -> list[Change]:
        """Build and persist the writes in one transaction, then publish. With `changes` false
        (batch callers that ignore the result) the list is only built for the bus. `then`
        writes more in the same transaction after the writes are persisted."""
        with self._write_session() as session, quiet_gc(not changes):
            writes = build(session)
            at = now_iso()  # after build: later than any row `build` wrote itself
            if len(writes) >= BULK:
                # Large batches: a page cache big enough for the index B-trees they touch.
                with bulk_load(session):
                    made = self._persist(session, tenant, writes, at, changes=changes)
            else:
                made = self._persist(session, tenant, writes, at, changes=changes) if writes else []
            if then is not None:
                then(session)
        self._publish(made)
        if self.postgres and len(writes) >= BULK and self._analyze.due(len(writes)):
            self._analyze_tables()
        return made

    def _analyze_tables(self) -> None:
        """Refresh the planner's statistics; the write has committed, so a failure here is
        logged, not raised (autovacuum will analyze later)."""
        try:
            with self.db.engine.begin() as connection:
                connection.exec_driver_sql(f"ANALYZE {', '.join(_ANALYZED)}")
        except SQLAlchemyError:
            log.warning("ANALYZE after a bulk write failed", exc_info=True)
