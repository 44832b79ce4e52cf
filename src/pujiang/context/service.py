"""The broker's logic on the internal entity form (docs/context.md): no HTTP, no JSON-LD.

`ContextBroker` writes current state, the attribute index, the spatial index and history in one
transaction per operation, then publishes `context.entity.changed` for every change after the
commit. Reads narrow candidates in SQL (type, id, attribute index, spatial index) and test the
exact conditions (`q`, geometry, idPattern) in Python on the few rows left.

Hot paths use Core statements with executemany and orjson; no ORM object per entity.
"""

from __future__ import annotations

import gc
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import orjson
import shapely
from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    column,
    delete,
    func,
    insert,
    or_,
    select,
    table,
    text,
    true,
    union_all,
)
from sqlalchemy.orm import Session

from pujiang.context import ngsild_scope
from pujiang.context.history import HistoryWriter
from pujiang.context.models import (
    PG_ENVELOPE,
    TXT_LEN,
    ContextAttr,
    ContextEntity,
    ContextEntityType,
    ContextGeo,
    ContextTenant,
)
from pujiang.platform.bus import EventBus
from pujiang.platform.db import Database, bulk_load, driver_cursor

Entity = dict[str, Any]
Instance = dict[str, Any]

TOPIC_CHANGED = "context.entity.changed"
DEFAULT_TENANT = ""
NGSI_LD_NULL = "urn:ngsi-ld:null"
LOCATION = "https://uri.etsi.org/ngsi-ld/location"
MAX_LIMIT = 1000
BULK = 1000  # batches of this many entities write with a large page cache
CHUNK = 256  # candidate rows read per round when conditions are tested in Python

# Top-level members of the internal form that are not attributes.
ENTITY_KEYS = frozenset({"id", "type", "scope", "createdAt", "modifiedAt", "deletedAt", "@context"})
# Members of an attribute instance that are not sub-attributes.
INSTANCE_KEYS = frozenset(
    {
        "type",
        "value",
        "object",
        "objectType",
        "languageMap",
        "valueList",
        "objectList",
        "json",
        "vocab",
        "datasetId",
        "observedAt",
        "unitCode",
        "createdAt",
        "modifiedAt",
        "deletedAt",
        "instanceId",
        "lang",
    }
)
_SYSTEM_TIMES = ("createdAt", "modifiedAt")


# -- errors the adapter maps to ProblemDetails --------------------------------------------------


class BrokerError(Exception):
    """An error a client caused; `kind` names the NGSI-LD error type."""

    kind = "BadRequestData"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class BadData(BrokerError, ValueError):
    kind = "BadRequestData"


class InvalidRequest(BrokerError):
    kind = "InvalidRequest"


class NotFound(BrokerError):
    kind = "ResourceNotFound"


class AlreadyExists(BrokerError):
    kind = "AlreadyExists"


class NotSupported(BrokerError):
    kind = "OperationNotSupported"


class TooManyResults(BrokerError):
    kind = "TooManyResults"


class NonexistentTenant(BrokerError):
    kind = "NonexistentTenant"


# -- the query-language and geo interfaces (ngsild_q.py / ngsild_geo.py) ------------------------


class GeoQueryLike(Protocol):
    geoproperty: str

    def matches(self, geojson: dict[str, Any]) -> bool: ...

    def bbox(self) -> tuple[float, float, float, float] | None: ...


Prefilter = Sequence[Any]  # ngsild_q.Prefilter: attribute, op, values, kind


@dataclass
class Query:
    """An entity query on expanded names. `types` is a disjunction of conjunctions."""

    types: list[frozenset[str]] | None = None
    ids: list[str] | None = None
    id_pattern: str | None = None
    attrs: list[str] | None = None
    q: Any = None
    q_evaluate: Callable[[Any, Entity], bool] | None = None
    prefilter: Prefilter | None = None
    geo: GeoQueryLike | None = None
    scope: ngsild_scope.ScopeExpr | None = None
    limit: int = 20
    offset: int = 0
    count: bool = False


@dataclass
class Change:
    """One entity's change, published on the bus after commit (docs/context.md)."""

    tenant: str
    id: str
    types: list[str]
    operation: str
    attributes: list[str]
    entity: Entity | None
    previous: Entity | None
    at: str

    def event(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "id": self.id,
            "type": self.types,
            "operation": self.operation,
            "attributes": self.attributes,
            "entity": self.entity,
            "previous": self.previous,
            "at": self.at,
        }


@dataclass
class UpdateResult:
    updated: list[str] = field(default_factory=list)
    not_updated: list[tuple[str, str]] = field(default_factory=list)  # (attribute, reason)


@dataclass
class Reading:
    """One attribute reading for `ContextBroker.record` (device ingest): an instance in the
    internal form, normally with `observedAt`, for one attribute of one entity."""

    entity_id: str
    attr: str  # expanded name
    instance: Instance
    seed: Entity | None = None  # the entity to create first when it does not exist


# What `record` did with each reading.
STORED, DUPLICATE, HISTORY_ONLY, NO_ENTITY = "stored", "duplicate", "history", "no_entity"


@dataclass
class BatchResult:
    success: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    errors: list[tuple[str, BrokerError]] = field(default_factory=list)
    # batch update with noOverwrite: per entity id, the attributes left as they were
    not_updated: dict[str, list[str]] = field(default_factory=dict)


# -- small helpers ------------------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def attributes_of(entity: Entity) -> Iterator[tuple[str, list[Instance]]]:
    for name, instances in entity.items():
        if name not in ENTITY_KEYS:
            yield name, instances


def dataset_of(instance: Instance) -> str:
    return str(instance.get("datasetId") or "")


def index_value(instance: Instance) -> tuple[float | None, str | None]:
    """The (num, txt) pair of an instance for the attribute index and history.

    Only single scalars are indexed (ngsild_q.Prefilter's rule): a Property's number or string,
    a Relationship's one object, a VocabProperty's one vocab. Booleans, arrays, objects and the
    other attribute types get (None, None) and are decided by `evaluate` alone.
    """
    kind = instance.get("type")
    if kind == "Relationship":
        obj = instance.get("object")
        return None, obj[:TXT_LEN] if isinstance(obj, str) else None
    if kind == "VocabProperty":
        vocab = instance.get("vocab")
        return None, vocab[:TXT_LEN] if isinstance(vocab, str) else None
    if kind != "Property":
        return None, None
    value = instance.get("value")
    if isinstance(value, bool):
        return None, None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None, None
        return (number if math.isfinite(number) else None), None
    if isinstance(value, str):
        return None, value[:TXT_LEN]
    return None, None


def geo_bounds(geometry: Any) -> tuple[float, float, float, float] | None:
    if not isinstance(geometry, dict):
        return None
    coordinates = geometry.get("coordinates")
    if geometry.get("type") == "Point" and isinstance(coordinates, list) and len(coordinates) >= 2:
        x, y = coordinates[0], coordinates[1]
        if isinstance(x, int | float) and isinstance(y, int | float):
            return float(x), float(y), float(x), float(y)
    try:
        bounds = shapely.geometry.shape(geometry).bounds
    except Exception:
        return None
    if any(math.isnan(b) for b in bounds):
        return None
    return bounds[0], bounds[1], bounds[2], bounds[3]


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _db_time(iso: str) -> datetime:
    parsed = parse_time(iso)
    if parsed is None:
        raise ValueError(f"not an ISO time: {iso!r}")
    return parsed


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


_LATE_SQL = (
    "SELECT 1 FROM context_series s JOIN context_history h ON h.series_id = s.id "
    "WHERE s.tenant = {p} AND s.entity_id = {p} AND s.attr = {p} AND h.observed_at = {p} "
    "AND s.dataset_id = {p} LIMIT 1"
)
_LOAD_SQL = (
    "SELECT pk, entity_id, doc FROM context_entities WHERE tenant = {p} AND entity_id IN ({ids})"
)
_SET_NUM = (
    "UPDATE context_attrs SET num = {p} WHERE entity_pk = {p} AND attr = {p} AND dataset_id = ''"
)
_SET_TXT = (
    "UPDATE context_attrs SET txt = {p} WHERE entity_pk = {p} AND attr = {p} AND dataset_id = ''"
)


class _IndexChanges:
    """Attribute-index writes of readings, each as narrow as the change allows.

    A reading usually changes only the number (or only the text) of a row that exists: an
    UPDATE of that one column touches one secondary index instead of both, and an unchanged
    value writes nothing. A new attribute or a changed kind is a full upsert."""

    def __init__(self) -> None:
        self.upserts: list[tuple[Any, ...]] = []
        self.nums: list[tuple[Any, ...]] = []
        self.txts: list[tuple[Any, ...]] = []

    def add(
        self,
        tenant: str,
        pk: int | None,
        name: str,
        new: Instance,
        old: Instance | None,
        value: tuple[float | None, str | None],
    ) -> None:
        """`value`: `index_value(new)`, which the caller has at hand."""
        kind = new.get("type", "Property")
        num, txt = value
        if old is not None and old.get("type", "Property") == kind:
            old_num, old_txt = index_value(old)
            if txt == old_txt:
                if num != old_num:
                    self.nums.append((num, pk, name))
                return
            if num == old_num:
                self.txts.append((txt, pk, name))
                return
        self.upserts.append((pk, name, "", tenant, kind, num, txt))


@dataclass
class _Write:
    """One entity's write: the state before and after, what changed, how to say it."""

    previous: Entity | None
    entity: Entity | None
    operation: str
    touched: list[tuple[str, str]]  # (attr, datasetId) written
    removed: list[tuple[str, str, Instance]]  # (attr, datasetId, old instance) deleted
    pk: int | None = None
    owner: str | None = None
    # `touched` is every instance of `entity` in document order (a new entity, `_created`):
    # lets `_stamp` and `_write_rows` walk the document instead of looking instances up.
    all_touched: bool = False
    # History rows to write instead of one per `touched` instance (`record`: several readings
    # of one attribute in a batch, and readings older than the current state).
    history: list[tuple[str, str, Instance]] | None = None
    # Set by `_persist`: an update that keeps the entity's types rewrites only the index rows
    # of what it touched or removed, not all of the entity's.
    partial: bool = False

    @property
    def current(self) -> Entity:
        """The entity after the write, or before it when the write deletes it."""
        entity = self.entity if self.entity is not None else self.previous
        if entity is None:
            raise RuntimeError("a write with neither a previous nor a new entity")
        return entity


class ContextBroker:
    """Entity operations for one database; publishes changes on `bus` after commit."""

    def __init__(self, db: Database, bus: EventBus | None = None) -> None:
        self.db = db
        self.bus = bus
        self.postgres = db.engine.dialect.name == "postgresql"
        self.history = HistoryWriter(self.postgres)
        self._tenants: set[str] = {DEFAULT_TENANT}
        self._lock = threading.Lock()
        self._spatial_ready = False

    # -- infrastructure ------------------------------------------------------------------------

    def _session(self) -> Any:
        if not self._spatial_ready:
            with self.db.engine.begin() as connection:
                ensure_spatial_index(connection)
            self._spatial_ready = True
        return self.db.session()

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

    def _ensure_tenant(self, session: Session, tenant: str) -> None:
        if tenant in self._tenants:
            return
        exists = session.execute(select(_TEN.c.name).where(_TEN.c.name == tenant)).first()
        if not exists:
            session.execute(insert(_TEN).values(name=tenant, created_at=datetime.now(UTC)))
        with self._lock:
            self._tenants.add(tenant)

    # -- reading rows --------------------------------------------------------------------------

    def _load(
        self, session: Session, tenant: str, ids: Sequence[str]
    ) -> dict[str, tuple[int, Entity]]:
        found: dict[str, tuple[int, Entity]] = {}
        unique = list(dict.fromkeys(ids))
        # The driver's cursor: SQLAlchemy's statement building and row handling cost more
        # than SQLite's lookups for a batch of device readings.
        p = "%s" if self.postgres else "?"
        with driver_cursor(session) as cursor:
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
        self._ensure_tenant(session, tenant)
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
        self, tenant: str, build: Callable[[Session], list[_Write]], *, changes: bool = True
    ) -> list[Change]:
        """Build and persist the writes in one transaction, then publish. With `changes` false
        (batch callers that ignore the result) the list is only built for the bus."""
        at = now_iso()
        with self._session() as session, quiet_gc(not changes):
            writes = build(session)
            if len(writes) >= BULK:
                # Large batches: a page cache big enough for the index B-trees they touch.
                with bulk_load(session):
                    made = self._persist(session, tenant, writes, at, changes=changes)
            else:
                made = self._persist(session, tenant, writes, at, changes=changes) if writes else []
        self._publish(made)
        return made

    # -- single-entity writes ------------------------------------------------------------------

    def create(self, tenant: str, entity: Entity, owner: str | None = None) -> Change:
        def build(session: Session) -> list[_Write]:
            if self._load(session, tenant, [entity["id"]]):
                raise AlreadyExists(
                    f"实体 {entity['id']} 已存在 / entity {entity['id']} already exists",
                    id=entity["id"],
                )
            return [_created(entity, owner)]

        return self._commit(tenant, build)[0]

    def replace(self, tenant: str, entity: Entity) -> Change:
        def build(session: Session) -> list[_Write]:
            pk, previous = self._load_one(session, tenant, entity["id"])
            return [_replaced(pk, previous, entity)]

        return self._commit(tenant, build)[0]

    def delete(self, tenant: str, entity_id: str) -> Change:
        def build(session: Session) -> list[_Write]:
            pk, previous = self._load_one(session, tenant, entity_id)
            return [_deleted(pk, previous)]

        return self._commit(tenant, build)[0]

    def append_attrs(
        self, tenant: str, entity_id: str, fragment: Entity, *, no_overwrite: bool = False
    ) -> UpdateResult:
        result = UpdateResult()

        def build(session: Session) -> list[_Write]:
            pk, previous = self._load_one(session, tenant, entity_id)
            write = _appended(pk, previous, fragment, no_overwrite, result)
            return [write] if write.touched or write.entity != previous else []

        self._commit(tenant, build)
        return result

    def update_attrs(self, tenant: str, entity_id: str, fragment: Entity) -> UpdateResult:
        result = UpdateResult()

        def build(session: Session) -> list[_Write]:
            pk, previous = self._load_one(session, tenant, entity_id)
            write = _updated(pk, previous, fragment, result)
            return [write] if write.touched or write.removed or write.entity != previous else []

        self._commit(tenant, build)
        return result

    def patch_attr(self, tenant: str, entity_id: str, name: str, instance: Instance) -> None:
        """Partial update of one attribute instance (the one with the instance's datasetId).

        Clause 5.5.8: a member whose value is the NGSI-LD Null is deleted (a sub-attribute, or
        `unitCode`, say); the NGSI-LD Null as the instance's own value (`value`, `object`,
        `languageMap` {"@none": null}, ...) deletes the instance, recorded in the history as
        a deletion like DELETE .../attrs/{attr}?datasetId=."""
        _check_nulls(name, instance, partial=True)

        def build(session: Session) -> list[_Write]:
            pk, previous = self._load_one(session, tenant, entity_id)
            dataset = dataset_of(instance)
            current = _find(previous.get(name, ()), dataset)
            if current is None:
                raise NotFound(
                    f"实体 {entity_id} 没有属性 {name}（datasetId={dataset or '默认'}）/ "
                    f"attribute {name} (datasetId {dataset or 'default'}) not found",
                    id=entity_id,
                    attribute=name,
                )
            if "type" in instance and instance["type"] != current.get("type"):
                raise BadData(
                    f"不能把属性 {name} 的类型从 {current.get('type')} 改为 {instance['type']} / "
                    f"cannot change the type of {name} from {current.get('type')} "
                    f"to {instance['type']}"
                )
            entity = _copy(previous)
            if _is_null(instance):
                _drop_instance(entity, name, dataset)
                gone = [(name, dataset, current)]
                return [_Write(previous, entity, "delete_attrs", [], gone, pk)]
            merged = dict(current)
            for key, value in instance.items():
                if key not in ("type", "datasetId") and (
                    value == NGSI_LD_NULL
                    or (key not in INSTANCE_KEYS and isinstance(value, dict) and _is_null(value))
                ):
                    merged.pop(key, None)
                else:
                    merged[key] = value
            entity[name] = _put(entity.get(name, []), merged)
            return [_Write(previous, entity, "update", [(name, dataset)], [], pk)]

        self._commit(tenant, build)

    def replace_attr(
        self, tenant: str, entity_id: str, name: str, instances: list[Instance]
    ) -> None:
        """PUT .../attrs/{attr} (clause 5.6.19): each given instance replaces the instance with
        its datasetId (none: the default instance), which must exist (else ResourceNotFound);
        the attribute's other instances stay."""

        def build(session: Session) -> list[_Write]:
            pk, previous = self._load_one(session, tenant, entity_id)
            if name not in previous or name in ENTITY_KEYS:
                raise NotFound(
                    f"实体 {entity_id} 没有属性 {name} / attribute {name} not found",
                    id=entity_id,
                    attribute=name,
                )
            entity = _copy(previous)
            current = list(previous.get(name, []))
            for instance in _preserve_created(current, instances):
                if _find(current, dataset_of(instance)) is None:
                    dataset = dataset_of(instance)
                    raise NotFound(
                        f"属性 {name} 没有 datasetId 为 {dataset or '默认'} 的实例 / attribute "
                        f"{name} has no instance with datasetId {dataset or '(default)'}",
                        id=entity_id,
                        attribute=name,
                    )
                current = _put(current, instance)
            entity[name] = current
            touched = [(name, dataset_of(i)) for i in instances]
            return [_Write(previous, entity, "update", touched, [], pk)]

        self._commit(tenant, build)

    def delete_attr(
        self,
        tenant: str,
        entity_id: str,
        name: str,
        *,
        dataset_id: str | None = None,
        delete_all: bool = False,
    ) -> None:
        def build(session: Session) -> list[_Write]:
            pk, previous = self._load_one(session, tenant, entity_id)
            if name == "scope" and previous.get("scope"):
                # DELETE .../attrs/scope removes the entity's scope (clauses 4.18, 5.6.5).
                entity = _copy(previous)
                del entity["scope"]
                return [_Write(previous, entity, "update", [], [], pk)]
            instances = previous.get(name)
            if not instances or name in ENTITY_KEYS:
                raise NotFound(
                    f"实体 {entity_id} 没有属性 {name} / attribute {name} not found",
                    id=entity_id,
                    attribute=name,
                )
            if delete_all:
                gone = list(instances)
            else:
                wanted = dataset_id or ""
                gone = [i for i in instances if dataset_of(i) == wanted]
                if not gone:
                    raise NotFound(
                        f"属性 {name} 没有 datasetId 为 {wanted or '默认'} 的实例 / attribute "
                        f"{name} has no instance with datasetId {wanted or '(default)'}",
                        id=entity_id,
                        attribute=name,
                    )
            entity = _copy(previous)
            left = [i for i in instances if not any(i is g for g in gone)]
            if left:
                entity[name] = left
            else:
                del entity[name]
            removed = [(name, dataset_of(i), i) for i in gone]
            return [_Write(previous, entity, "delete_attrs", [], removed, pk)]

        self._commit(tenant, build)

    def merge(self, tenant: str, entity_id: str, fragment: Entity) -> None:
        """Merge-patch: instances merge member by member; a value of urn:ngsi-ld:null deletes."""

        def build(session: Session) -> list[_Write]:
            pk, previous = self._load_one(session, tenant, entity_id)
            return [_merged(pk, previous, fragment)]

        self._commit(tenant, build)

    # -- batch writes --------------------------------------------------------------------------

    def batch_create(
        self, tenant: str, entities: list[Entity], owner: str | None = None
    ) -> BatchResult:
        result = BatchResult()

        def build(session: Session) -> list[_Write]:
            existing = self._load(session, tenant, [e["id"] for e in entities])
            writes: list[_Write] = []
            seen: set[str] = set()
            for entity in entities:
                eid = entity["id"]
                if eid in existing or eid in seen:
                    result.errors.append(
                        (eid, AlreadyExists(f"实体 {eid} 已存在 / entity {eid} already exists"))
                    )
                    continue
                seen.add(eid)
                writes.append(_created(entity, owner))
                result.success.append(eid)
            return writes

        self._commit(tenant, build, changes=False)
        result.created = list(result.success)
        return result

    def batch_upsert(
        self, tenant: str, entities: list[Entity], *, replace: bool = True, owner: str | None = None
    ) -> BatchResult:
        """Create what is new; replace (or, with replace=False, update) what exists."""
        result = BatchResult()

        def build(session: Session) -> list[_Write]:
            existing = self._load(session, tenant, [e["id"] for e in entities])
            pending: dict[str, _Write] = {}
            order: list[str] = []
            for entity in entities:
                eid = entity["id"]
                write = pending.get(eid)
                # The same id twice in one batch: the second applies to the first's result.
                base = (write.pk or 0, write.current) if write is not None else existing.get(eid)
                if base is None:
                    new = _created(entity, owner)
                elif replace:
                    new = _replaced(base[0], base[1], entity)
                else:
                    new = _appended(base[0], base[1], entity, False, UpdateResult())
                if write is not None:
                    new.previous, new.pk = write.previous, write.pk
                    new.operation = write.operation if write.pk is None else new.operation
                    new.touched = list(dict.fromkeys(write.touched + new.touched))
                    new.removed = write.removed + new.removed
                else:
                    order.append(eid)
                pending[eid] = new
                result.success.append(eid)
            for eid in order:
                if eid not in existing:
                    result.created.append(eid)
            return [pending[eid] for eid in order]

        self._commit(tenant, build, changes=False)
        result.success = list(dict.fromkeys(result.success))
        return result

    def batch_update(
        self, tenant: str, entities: list[Entity], *, no_overwrite: bool = False
    ) -> BatchResult:
        kept: dict[str, list[str]] = {}

        def step(pk: int, previous: Entity, fragment: Entity) -> _Write:
            outcome = UpdateResult()
            write = _appended(pk, previous, fragment, no_overwrite, outcome)
            for name, _reason in outcome.not_updated:
                names = kept.setdefault(fragment["id"], [])
                if name not in names:
                    names.append(name)
            return write

        result = self._batch_steps(tenant, entities, step)
        result.not_updated = kept
        return result

    def batch_merge(self, tenant: str, fragments: list[Entity]) -> BatchResult:
        """Merge-patch each fragment into its entity (clause 5.6.20, each as `merge`), all in
        one transaction with one write per entity. An id given twice is merged in order; the
        history keeps the instances of every step (clause 5.5.11.5)."""
        return self._batch_steps(tenant, fragments, _merged)

    def _batch_steps(
        self,
        tenant: str,
        fragments: list[Entity],
        step: Callable[[int, Entity, Entity], _Write],
    ) -> BatchResult:
        """Apply `step` to each fragment's existing entity, in order, in one transaction: one
        write per entity (an id given twice folds both steps into it); missing ids are errors."""
        result = BatchResult()

        def build(session: Session) -> list[_Write]:
            existing = self._load(session, tenant, [f["id"] for f in fragments])
            writes: dict[str, _Write] = {}
            for fragment in fragments:
                eid = fragment["id"]
                base = existing.get(eid)
                if base is None:
                    result.errors.append(
                        (eid, NotFound(f"实体 {eid} 不存在 / entity {eid} not found", id=eid))
                    )
                    continue
                write = step(base[0], base[1], fragment)
                existing[eid] = (base[0], write.current)
                earlier = writes.get(eid)
                if earlier is not None:
                    _fold(earlier, write)
                writes[eid] = write
                result.success.append(eid)
            return list(writes.values())

        self._commit(tenant, build, changes=False)
        result.success = list(dict.fromkeys(result.success))
        return result

    def batch_delete(self, tenant: str, ids: list[str]) -> BatchResult:
        result = BatchResult()

        def build(session: Session) -> list[_Write]:
            existing = self._load(session, tenant, ids)
            writes: list[_Write] = []
            for eid in dict.fromkeys(ids):
                base = existing.get(eid)
                if base is None:
                    result.errors.append(
                        (eid, NotFound(f"实体 {eid} 不存在 / entity {eid} not found"))
                    )
                    continue
                writes.append(_deleted(base[0], base[1]))
                result.success.append(eid)
            return writes

        self._commit(tenant, build, changes=False)
        return result

    def record(self, tenant: str, readings: list[Reading]) -> list[str]:
        """Write device readings in one transaction; say per reading what was done.

        A reading newer than the attribute's current `observedAt` becomes the current state
        (and history); one with the same `observedAt` as a stored instance, current or in the
        history, is a duplicate and is not written; an older one is written to the history only.
        A missing entity is created from the first `seed` given for it; without one, its
        readings are `no_entity`. Change events go out after the commit, as for any update."""
        at = now_iso()
        outcomes = [STORED] * len(readings)
        with self._session() as session, quiet_gc(len(readings) >= BULK):
            existing = self._load(session, tenant, [r.entity_id for r in readings])
            made = self._create_seeds(session, tenant, readings, existing, outcomes, at)
            writes, late = self._apply_readings(readings, existing, outcomes, at)
            self._sort_late(session, tenant, readings, late, outcomes)
            lean: list[_Write] = []
            other: list[_Write] = []
            for w in writes:
                (lean if _plain_readings(w) else other).append(w)
            if lean:
                made += self._persist_readings(session, tenant, lean, at)
            if other:
                made += self._persist(session, tenant, other, at)
            self._write_history_only(session, tenant, readings, existing, outcomes, at)
        self._publish(made)
        return outcomes

    def _persist_readings(
        self, session: Session, tenant: str, writes: list[_Write], at: str
    ) -> list[Change]:
        """The hot path of `record`: plain readings (no GeoProperty, no datasetId) on existing
        entities. Writes exactly what `_persist` would for these updates (document, index rows
        of the touched attributes, one history row per reading) with no generic bookkeeping:
        the instances were stamped by `_apply_readings`, the types do not change."""
        at_db = self._time_param(_db_time(at))
        docs: list[tuple[Any, ...]] = []
        index = _IndexChanges()
        history: list[tuple[Any, ...]] = []
        observed = self._observed_param
        for w in writes:
            entity, previous, pk = w.entity or {}, w.previous or {}, w.pk
            entity["modifiedAt"] = at
            entity_id = entity["id"]
            entity_type = entity["type"][0] if entity["type"] else ""
            docs.append((_dumps(entity), at_db, pk))
            values: dict[int, tuple[float | None, str | None]] = {}
            for name, _dataset, instance in w.history or ():
                num, txt = values[id(instance)] = index_value(instance)
                kind, moment = instance.get("type", "Property"), instance.get("observedAt")
                key = (tenant, entity_id, entity_type, name, "", kind)
                history.append((*key, observed(moment), at_db, False, num, txt, _dumps(instance)))
            for name in dict.fromkeys(t[0] for t in w.touched):
                current = entity[name][0]
                value = values.get(id(current)) or index_value(current)
                index.add(tenant, pk, name, current, _find(previous.get(name, ()), ""), value)
        self._executemany(
            session,
            "UPDATE context_entities SET doc = {p}, modified_at = {p} WHERE pk = {p}",
            docs,
        )
        self._write_partial(session, index.upserts, [], [])
        self._executemany(session, _SET_NUM, index.nums)
        self._executemany(session, _SET_TXT, index.txts)
        self.history.write(session, history, readings=True)
        if self.bus is None:
            return []
        return [_change(tenant, w, at) for w in writes]

    def _observed_param(self, value: Any) -> Any:
        """An observedAt text as the driver stores it; canonical texts without parsing."""
        if not isinstance(value, str):
            return None
        if not self.postgres and _CANONICAL_TIME.fullmatch(value):
            return f"{value[:10]} {value[11:23]}000"
        return self._time_param(parse_time(value))

    def _create_seeds(
        self,
        session: Session,
        tenant: str,
        readings: list[Reading],
        existing: dict[str, tuple[int, Entity]],
        outcomes: list[str],
        at: str,
    ) -> list[Change]:
        seeds: dict[str, Entity] = {}
        for i, reading in enumerate(readings):
            eid = reading.entity_id
            if eid in existing or eid in seeds:
                continue
            if reading.seed is None:
                outcomes[i] = NO_ENTITY
                continue
            seeds[eid] = reading.seed
        if not seeds:
            return []
        writes = [_created(seed, None) for seed in seeds.values()]
        made = self._persist(session, tenant, writes, at)
        for write in writes:
            entity = write.current
            existing[entity["id"]] = (write.pk or 0, entity)
        return made

    def _apply_readings(
        self,
        readings: list[Reading],
        existing: dict[str, tuple[int, Entity]],
        outcomes: list[str],
        at: str,
    ) -> tuple[list[_Write], list[int]]:
        """The updates of the readings newer than the current state, in one write per entity;
        and the readings older than it (`late`), which may be duplicates of history rows."""
        writes: dict[str, _Write] = {}
        seen: set[tuple[str, str, str, Any]] = set()
        late: list[int] = []
        for i, reading in enumerate(readings):
            if outcomes[i] == NO_ENTITY:
                continue
            eid, name, instance = reading.entity_id, reading.attr, reading.instance
            dataset = dataset_of(instance)
            observed = _time_key(instance.get("observedAt"))
            key = (eid, name, dataset, observed)
            if observed is not None and key in seen:
                outcomes[i] = DUPLICATE
                continue
            seen.add(key)
            write = writes.get(eid)
            if write is None:
                pk, previous = existing[eid]
                write = _Write(previous, _copy(previous), "update", [], [], pk, history=[])
                writes[eid] = write
            entity = write.entity or {}
            current = _find(entity.get(name, ()), dataset)
            current_time = _time_key(current.get("observedAt")) if current else None
            if observed is not None and current_time is not None:
                if observed == current_time:
                    outcomes[i] = DUPLICATE
                    continue
                if observed < current_time:
                    late.append(i)
                    continue
            created = current.get("createdAt") if current is not None else None
            instance = {**instance, "createdAt": created or at, "modifiedAt": at}
            old = entity.get(name)
            if dataset == "" and (not old or (len(old) == 1 and old[0] is current)):
                entity[name] = [instance]  # the usual case: one default instance
            else:
                entity[name] = _put(old or [], instance)
            write.touched.append((name, dataset))
            cast(list[tuple[str, str, Instance]], write.history).append((name, dataset, instance))
        return [w for w in writes.values() if w.touched], late

    def _sort_late(
        self,
        session: Session,
        tenant: str,
        readings: list[Reading],
        late: list[int],
        outcomes: list[str],
    ) -> None:
        """Late readings: a duplicate when the history holds that attribute at that time.

        One indexed point lookup each, on the driver's cursor: through SQLAlchemy a lookup cost
        thirty times what SQLite spends on it, and a row-value IN over many readings is not
        served by the index."""
        if not late:
            return
        sql = _LATE_SQL.format(p="%s" if self.postgres else "?")
        with driver_cursor(session) as cursor:
            for i in late:
                reading = readings[i]
                observed = self._observed_param(reading.instance.get("observedAt"))
                key = (
                    tenant,
                    reading.entity_id,
                    reading.attr,
                    observed,
                    dataset_of(reading.instance),
                )
                cursor.execute(sql, key)
                outcomes[i] = DUPLICATE if cursor.fetchone() else HISTORY_ONLY

    def _write_history_only(
        self,
        session: Session,
        tenant: str,
        readings: list[Reading],
        existing: dict[str, tuple[int, Entity]],
        outcomes: list[str],
        at: str,
    ) -> None:
        rows: list[tuple[Any, ...]] = []
        at_db = self._time_param(_db_time(at))
        for i, reading in enumerate(readings):
            if outcomes[i] != HISTORY_ONLY:
                continue
            instance = {**reading.instance, "createdAt": at, "modifiedAt": at}
            kind = instance.get("type", "Property")
            num, txt = index_value(instance)
            observed = self._time_param(parse_time(instance.get("observedAt")))
            entity_type = existing[reading.entity_id][1].get("type") or [""]
            key = (tenant, reading.entity_id, entity_type[0], reading.attr, dataset_of(instance))
            rows.append((*key, kind, observed, at_db, False, num, txt, _dumps(instance)))
        self.history.write(session, rows, readings=True)

    # -- reads ---------------------------------------------------------------------------------

    def retrieve(self, tenant: str, entity_id: str) -> Entity:
        self.require_tenant(tenant)
        with self.db.session() as session:
            row = session.execute(
                select(_E.c.doc).where(_E.c.tenant == tenant, _E.c.entity_id == entity_id)
            ).first()
        if row is None:
            raise NotFound(f"实体 {entity_id} 不存在 / entity {entity_id} not found", id=entity_id)
        entity: Entity = orjson.loads(row[0])
        return entity

    def query(self, tenant: str, query: Query) -> tuple[list[Entity], int | None]:
        """Matching entities in insertion order, one page; the total when `count` is set."""
        self.require_tenant(tenant)
        if query.limit > MAX_LIMIT:
            raise TooManyResults(
                f"limit 不能超过 {MAX_LIMIT} / limit must not exceed {MAX_LIMIT}",
                maximum=MAX_LIMIT,
            )
        conditions = self._conditions(tenant, query)
        exact_in_sql = (
            query.q is None
            and query.geo is None
            and query.id_pattern is None
            and query.scope is None
        )
        with self._session() as session:
            if exact_in_sql:
                return self._page_sql(session, conditions, query)
            return self._page_filtered(session, conditions, query)

    def _page_sql(
        self, session: Session, conditions: list[ColumnElement[bool]], query: Query
    ) -> tuple[list[Entity], int | None]:
        total = None
        if query.count:
            total = session.execute(
                select(func.count()).select_from(_E).where(*conditions)
            ).scalar()
        entities: list[Entity] = []
        if query.limit > 0:
            rows = session.execute(
                select(_E.c.doc)
                .where(*conditions)
                .order_by(_E.c.pk)
                .limit(query.limit)
                .offset(query.offset)
            )
            entities = [orjson.loads(doc) for (doc,) in rows]
        return entities, (int(total) if total is not None else None)

    def _page_filtered(
        self, session: Session, conditions: list[ColumnElement[bool]], query: Query
    ) -> tuple[list[Entity], int | None]:
        pattern = re.compile(query.id_pattern) if query.id_pattern else None
        matched = 0
        page: list[Entity] = []
        last = 0
        while True:
            rows = session.execute(
                select(_E.c.pk, _E.c.doc)
                .where(*conditions, _E.c.pk > last)
                .order_by(_E.c.pk)
                .limit(CHUNK)
            ).all()
            for pk, doc in rows:
                last = pk
                entity: Entity = orjson.loads(doc)
                if pattern is not None and not pattern.fullmatch(entity["id"]):
                    continue
                if query.geo is not None and not geo_matches(entity, query.geo):
                    continue
                if query.scope is not None and not ngsild_scope.matches_entity(query.scope, entity):
                    continue
                if (
                    query.q is not None
                    and query.q_evaluate is not None
                    and not query.q_evaluate(query.q, entity)
                ):
                    continue
                if query.offset <= matched < query.offset + query.limit:
                    page.append(entity)
                matched += 1
                if not query.count and matched >= query.offset + query.limit:
                    return page, None
            if len(rows) < CHUNK:
                break
        return page, (matched if query.count else None)

    def _conditions(self, tenant: str, query: Query) -> list[ColumnElement[bool]]:
        """SQL narrowing a query. Selective conditions (attribute index, spatial index) are
        `pk IN (...)` lists that drive the scan; types are correlated EXISTS probes, so a
        type-only query walks entities in pk order and stops at the page's end."""
        drivers: list[ColumnElement[bool]] = []
        probes: list[ColumnElement[bool]] = []
        if query.types:
            alternatives = []
            for conjunction in query.types:
                alternatives.append(
                    and_(
                        *[
                            select(_T.c.entity_pk)
                            .where(_T.c.tenant == tenant, _T.c.type == t, _T.c.entity_pk == _E.c.pk)
                            .exists()
                            for t in sorted(conjunction)
                        ]
                    )
                )
            probes.append(or_(*alternatives) if len(alternatives) > 1 else alternatives[0])
        by_id = select(_E.c.pk).where(_E.c.tenant == tenant)
        if query.ids:
            drivers.append(_E.c.pk.in_(by_id.where(_E.c.entity_id.in_(query.ids))))
        if query.id_pattern:
            prefix = _literal_prefix(query.id_pattern)
            if prefix:
                drivers.append(
                    _E.c.pk.in_(
                        by_id.where(
                            _E.c.entity_id >= prefix, _E.c.entity_id < prefix + "\U0010ffff"
                        )
                    )
                )
        if query.attrs:
            drivers.append(
                _E.c.pk.in_(
                    select(_A.c.entity_pk).where(_A.c.tenant == tenant, _A.c.attr.in_(query.attrs))
                )
            )
        for condition in query.prefilter or ():
            attr = getattr(condition, "attribute", None)
            clause = _prefilter_clause(condition)
            if clause is None or not isinstance(attr, str):
                continue
            matching = select(_A.c.entity_pk).where(
                _A.c.tenant == tenant, _A.c.attr == attr, clause
            )
            # Rows no index value decides (arrays, objects...) stay candidates for `evaluate`.
            # Only the compared column is tested for NULL, so both halves of the UNION are range
            # scans of one index (a superset: rows of the other scalar kind come along).
            column = _A.c.num if getattr(condition, "kind", "") == "number" else _A.c.txt
            undecided = select(_A.c.entity_pk).where(
                _A.c.tenant == tenant, _A.c.attr == attr, column.is_(None)
            )
            drivers.append(_E.c.pk.in_(union_all(matching, undecided)))
        if query.geo is not None:
            drivers.append(_E.c.pk.in_(self.geo_candidates(tenant, query.geo)))
        if query.scope is not None:
            probes.append(scope_clause(query.scope))
        # Every driver is already limited to the tenant; naming the tenant again would make
        # SQLite walk the (tenant, entity_id) index over the whole tenant instead.
        tenant_clause = [] if drivers else [_E.c.tenant == tenant]
        return tenant_clause + drivers + probes

    def geo_candidates(self, tenant: str, geo: GeoQueryLike) -> Any:
        """`SELECT entity_pk` of the entities whose `geoproperty` bbox meets the query's box
        (every located entity when the box cannot narrow): the candidates `geo.matches` tests."""
        box = geo.bbox()
        base = select(_G.c.entity_pk).where(_G.c.tenant == tenant, _G.c.attr == geo.geoproperty)
        if box is None:
            return base  # cannot be narrowed (disjoint, minDistance): every located entity
        minx, miny, maxx, maxy = box
        params = {"qminx": minx, "qminy": miny, "qmaxx": maxx, "qmaxy": maxy}
        if self.postgres:
            overlap = text(
                f"{PG_ENVELOPE} OPERATOR(postgis.&&) "
                "postgis.st_makeenvelope(:qminx, :qminy, :qmaxx, :qmaxy, 4326)"
            ).bindparams(**params)
            return base.where(overlap)
        rtree = text(
            "context_geo.id IN (SELECT id FROM context_geo_rtree WHERE minx <= :qmaxx "
            "AND maxx >= :qminx AND miny <= :qmaxy AND maxy >= :qminy)"
        ).bindparams(**params)
        return base.where(rtree)

    # -- discovery -----------------------------------------------------------------------------

    def entity_types(self, tenant: str) -> list[str]:
        self.require_tenant(tenant)
        with self.db.session() as session:
            rows = session.scalars(
                select(_T.c.type).where(_T.c.tenant == tenant).distinct().order_by(_T.c.type)
            )
            return list(rows)

    def type_details(self, tenant: str, type_name: str | None = None) -> list[dict[str, Any]]:
        """Per type: entity count and its attributes with their kinds."""
        self.require_tenant(tenant)
        with self.db.session() as session:
            counts_q = select(_T.c.type, func.count()).where(_T.c.tenant == tenant)
            if type_name is not None:
                counts_q = counts_q.where(_T.c.type == type_name)
            counts: dict[str, int] = dict(session.execute(counts_q.group_by(_T.c.type)).all())
            attrs_q = (
                select(_T.c.type, _A.c.attr, _A.c.kind)
                .join(_A, _A.c.entity_pk == _T.c.entity_pk)
                .where(_T.c.tenant == tenant)
                .distinct()
            )
            if type_name is not None:
                attrs_q = attrs_q.where(_T.c.type == type_name)
            details: dict[str, dict[str, set[str]]] = {t: {} for t in counts}
            for t, attr, kind in session.execute(attrs_q):
                details.setdefault(t, {}).setdefault(attr, set()).add(kind)
        return [
            {
                "type": t,
                "count": int(counts[t]),
                "attributes": {a: sorted(k) for a, k in sorted(details.get(t, {}).items())},
            }
            for t in sorted(counts)
        ]

    def attribute_details(self, tenant: str, attr: str | None = None) -> list[dict[str, Any]]:
        """Per attribute: how many instances, their kinds and the entity types holding it."""
        self.require_tenant(tenant)
        with self.db.session() as session:
            q = select(_A.c.attr, _A.c.kind, func.count()).where(_A.c.tenant == tenant)
            if attr is not None:
                q = q.where(_A.c.attr == attr)
            found: dict[str, dict[str, Any]] = {}
            for name, kind, n in session.execute(q.group_by(_A.c.attr, _A.c.kind)):
                item = found.setdefault(
                    name, {"attr": name, "count": 0, "kinds": set(), "types": set()}
                )
                item["count"] += int(n)
                item["kinds"].add(kind)
            tq = (
                select(_A.c.attr, _T.c.type)
                .join(_T, _T.c.entity_pk == _A.c.entity_pk)
                .where(_A.c.tenant == tenant)
                .distinct()
            )
            if attr is not None:
                tq = tq.where(_A.c.attr == attr)
            for name, t in session.execute(tq):
                if name in found:
                    found[name]["types"].add(t)
        return [
            {**v, "kinds": sorted(v["kinds"]), "types": sorted(v["types"])}
            for _, v in sorted(found.items())
        ]

    def count_entities(self, tenant: str = DEFAULT_TENANT) -> int:
        with self.db.session() as session:
            return int(
                session.execute(
                    select(func.count()).select_from(_E).where(_E.c.tenant == tenant)
                ).scalar()
                or 0
            )


# -- building writes ------------------------------------------------------------------------------


_CANONICAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _time_key(value: Any) -> str | None:
    """An observedAt as canonical UTC text (which sorts as time), or None if it is not one.
    Device readings arrive canonical; anything else is parsed."""
    if not isinstance(value, str):
        return None
    if _CANONICAL_TIME.fullmatch(value):
        return value
    parsed = parse_time(value)
    return None if parsed is None else _iso(parsed)


def _plain_readings(write: _Write) -> bool:
    """Readings `_persist_readings` can write: default instances, no GeoProperty, before or
    after, and the attribute holding that one instance."""
    entity, previous = write.entity or {}, write.previous or {}
    for name, dataset in write.touched:
        if dataset or len(entity.get(name, ())) != 1:
            return False
        if entity[name][0].get("type") == "GeoProperty":
            return False
        old = previous.get(name)
        if old and (len(old) != 1 or old[0].get("type") == "GeoProperty"):
            return False
    return True


def _copy(entity: Entity) -> Entity:
    return {k: (list(v) if isinstance(v, list) else v) for k, v in entity.items()}


def _find(instances: Iterable[Instance], dataset: str) -> Instance | None:
    for instance in instances:
        if dataset_of(instance) == dataset:
            return instance
    return None


def _put(instances: list[Instance], instance: Instance) -> list[Instance]:
    dataset = dataset_of(instance)
    out = [i for i in instances if dataset_of(i) != dataset]
    out.append(instance)
    return out


def _all_touched(entity: Entity) -> list[tuple[str, str]]:
    touched = []
    for name, instances in entity.items():
        if name not in ENTITY_KEYS:
            for instance in instances:
                touched.append((name, instance.get("datasetId") or ""))
    return touched


def _created(entity: Entity, owner: str | None) -> _Write:
    return _Write(
        None, _copy(entity), "create", _all_touched(entity), [], None, owner, all_touched=True
    )


def _deleted(pk: int, previous: Entity) -> _Write:
    removed = [
        (name, dataset_of(i), i) for name, instances in attributes_of(previous) for i in instances
    ]
    return _Write(previous, None, "delete", [], removed, pk)


def _missing(
    old: list[Instance], new: list[Instance], name: str
) -> list[tuple[str, str, Instance]]:
    kept = {dataset_of(i) for i in new}
    return [(name, dataset_of(i), i) for i in old if dataset_of(i) not in kept]


def _preserve_created(old: list[Instance], new: list[Instance]) -> list[Instance]:
    created = {dataset_of(i): i.get("createdAt") for i in old}
    out = []
    for instance in new:
        stamp = created.get(dataset_of(instance))
        out.append({**instance, "createdAt": stamp} if stamp else dict(instance))
    return out


def _replaced(pk: int, previous: Entity, entity: Entity) -> _Write:
    new = _copy(entity)
    new["createdAt"] = previous.get("createdAt")
    removed: list[tuple[str, str, Instance]] = []
    for name, instances in attributes_of(previous):
        removed += _missing(instances, new.get(name, []), name)
        if name in new:
            new[name] = _preserve_created(instances, new[name])
    return _Write(previous, new, "replace", _all_touched(new), removed, pk)


def _union_types(previous: Entity, fragment: Entity) -> list[str]:
    types = list(previous.get("type", []))
    for t in fragment.get("type") or []:
        if t not in types:
            types.append(t)
    return types


def _appended(
    pk: int, previous: Entity, fragment: Entity, no_overwrite: bool, result: UpdateResult
) -> _Write:
    entity = _copy(previous)
    entity["type"] = _union_types(previous, fragment)
    if fragment.get("scope"):
        # Clause 5.6.3: the scope is replaced, or with noOverwrite the new scopes are added.
        scopes = list(previous.get("scope") or []) if no_overwrite else []
        entity["scope"] = scopes + [s for s in fragment["scope"] if s not in scopes]
    touched: list[tuple[str, str]] = []
    for name, instances in attributes_of(fragment):
        written = False
        for instance in instances:
            dataset = dataset_of(instance)
            old = _find(entity.get(name, ()), dataset)
            if old is not None and no_overwrite:
                result.not_updated.append((name, "属性已存在 / attribute exists (noOverwrite)"))
                continue
            if old is not None and old.get("createdAt"):
                instance = {**instance, "createdAt": old["createdAt"]}
            entity[name] = _put(entity.get(name, []), instance)
            touched.append((name, dataset))
            written = True
        if written:
            result.updated.append(name)
    return _Write(previous, entity, "update", touched, [], pk)


def _updated(pk: int, previous: Entity, fragment: Entity, result: UpdateResult) -> _Write:
    """PATCH .../attrs (clause 5.6.2): each instance replaces the one with its datasetId; one
    whose value is the NGSI-LD Null deletes it (the attribute goes with its last instance).
    The fragment's types are added to the entity's; its scope replaces the entity's scope, which
    is reported as not updated when the entity has none."""
    entity = _copy(previous)
    entity["type"] = _union_types(previous, fragment)
    if fragment.get("scope"):
        if previous.get("scope"):
            if fragment["scope"] == [NGSI_LD_NULL]:  # the NGSI-LD Null deletes it (5.6.2)
                del entity["scope"]
            else:
                entity["scope"] = list(fragment["scope"])
            result.updated.append("scope")
        else:
            result.not_updated.append(("scope", "实体没有 scope / the entity has no scope"))
    touched: list[tuple[str, str]] = []
    removed: list[tuple[str, str, Instance]] = []
    for name, instances in attributes_of(fragment):
        for instance in instances:
            _check_nulls(name, instance)
            dataset = dataset_of(instance)
            old = _find(entity.get(name, ()), dataset)
            if old is None:
                result.not_updated.append(
                    (name, "实体没有此属性实例 / no such attribute instance on the entity")
                )
                continue
            if _is_null(instance):
                _drop_instance(entity, name, dataset)
                removed.append((name, dataset, old))
            else:
                if old.get("createdAt"):
                    instance = {**instance, "createdAt": old["createdAt"]}
                entity[name] = _put(entity.get(name, []), instance)
                touched.append((name, dataset))
            if name not in result.updated:
                result.updated.append(name)
    return _Write(previous, entity, "update", touched, removed, pk)


# The NGSI-LD Null of each value member (clause 4.5.0): the URI, or for arrays an array holding
# only it, or for a languageMap {"@none": the URI}.
_NULL_MEMBERS = (
    ("value", NGSI_LD_NULL),
    ("object", NGSI_LD_NULL),
    ("json", NGSI_LD_NULL),
    ("vocab", NGSI_LD_NULL),
    ("languageMap", NGSI_LD_NULL),
    ("languageMap", {"@none": NGSI_LD_NULL}),
    ("valueList", [NGSI_LD_NULL]),
    ("objectList", [NGSI_LD_NULL]),
    ("vocab", [NGSI_LD_NULL]),
)


def _is_null(instance: Instance) -> bool:
    """Whether an instance's value is the NGSI-LD Null (it deletes the instance)."""
    return any(member in instance and instance[member] == null for member, null in _NULL_MEMBERS)


def _check_nulls(name: str, instance: Instance, *, partial: bool = False) -> None:
    """Nulls an update may not carry: a datasetId cannot be deleted (clause 5.5.8), and a JSON
    null is no value in JSON-LD (the NGSI-LD Null "urn:ngsi-ld:null" deletes)."""
    if instance.get("datasetId") == NGSI_LD_NULL:
        raise BadData(
            f"属性 {name} 的 datasetId 不能设为 urn:ngsi-ld:null（datasetId 不能删除）/ the "
            f"datasetId of {name} cannot be deleted by setting it to urn:ngsi-ld:null"
        )
    nulls = ", ".join(sorted(k for k, v in instance.items() if v is None)) if partial else ""
    if nulls:
        raise BadData(
            f"属性 {name} 的 {nulls} 不能为 JSON null，删除请用 urn:ngsi-ld:null / {nulls} of "
            f"{name} cannot be JSON null; send urn:ngsi-ld:null to delete"
        )


def _drop_instance(entity: Entity, name: str, dataset: str) -> None:
    """Remove the instance of `name` with this datasetId; the attribute goes with its last."""
    left = [i for i in entity.get(name, ()) if dataset_of(i) != dataset]
    if left:
        entity[name] = left
    else:
        entity.pop(name, None)


def _merge_member(old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict) and "type" not in new:
        merged = dict(old)
        for key, value in new.items():
            if value == NGSI_LD_NULL:
                merged.pop(key, None)
            else:
                merged[key] = _merge_member(old.get(key), value)
        return merged
    return new


def _merged(pk: int, previous: Entity, fragment: Entity) -> _Write:
    entity = _copy(previous)
    entity["type"] = _union_types(previous, fragment)
    if "scope" in fragment:
        # Clause 5.6.17.4: a merge overwrites, so the fragment's scope becomes the entity's;
        # the NGSI-LD Null deletes it.
        if fragment["scope"] == [NGSI_LD_NULL]:
            entity.pop("scope", None)
        else:
            entity["scope"] = list(fragment["scope"])
    touched: list[tuple[str, str]] = []
    removed: list[tuple[str, str, Instance]] = []
    for name, instances in attributes_of(fragment):
        for instance in instances:
            dataset = dataset_of(instance)
            old = _find(entity.get(name, ()), dataset)
            if _is_null(instance):
                if old is not None:
                    left = [i for i in entity[name] if dataset_of(i) != dataset]
                    if left:
                        entity[name] = left
                    else:
                        del entity[name]
                    removed.append((name, dataset, old))
                continue
            if old is None:
                entity[name] = _put(entity.get(name, []), instance)
            else:
                merged = dict(old)
                for key, value in instance.items():
                    if (
                        key in INSTANCE_KEYS
                        and key in ("value", "json")
                        and instance.get("type", old.get("type")) in ("Property", "JsonProperty")
                    ):
                        merged[key] = _merge_member(old.get(key), value)
                    elif value == NGSI_LD_NULL or (
                        isinstance(value, list)
                        and value == [{"type": "Property", "value": NGSI_LD_NULL}]
                    ):
                        merged.pop(key, None)
                    else:
                        merged[key] = value
                entity[name] = _put(entity.get(name, []), merged)
            touched.append((name, dataset))
    return _Write(previous, entity, "update", touched, removed, pk)


def _fold(earlier: _Write, later: _Write) -> None:
    """Make `later` (a write computed on `earlier`'s result, the same entity twice in one batch)
    the only write: from the state before both, with the instances of both steps as history
    and both steps' deletions."""
    entity = earlier.entity or {}
    steps: list[tuple[str, str, Instance]] = list(earlier.history or ())
    if earlier.history is None:
        for name, dataset in earlier.touched:
            instance = _find(entity.get(name, ()), dataset)
            if instance is not None:
                steps.append((name, dataset, _unstamped(instance)))
    current = later.entity or {}
    for name, dataset in later.touched:
        instance = _find(current.get(name, ()), dataset)
        if instance is not None:
            steps.append((name, dataset, _unstamped(instance)))
    later.previous = earlier.previous
    later.history = steps
    later.touched = list(dict.fromkeys(earlier.touched + later.touched))
    later.removed = earlier.removed + later.removed


def _unstamped(instance: Instance) -> Instance:
    """An instance as history will record it: `_write_rows` stamps `modifiedAt` (and a new
    instance's `createdAt`) with the write's time."""
    return {k: v for k, v in instance.items() if k != "modifiedAt"}


def _stamp(write: _Write, at: str) -> None:
    """System times: createdAt kept from before, modifiedAt now on what this write touched."""
    entity = write.entity
    if entity is None:
        return
    entity["createdAt"] = (write.previous or {}).get("createdAt") or entity.get("createdAt") or at
    entity["modifiedAt"] = at
    if write.all_touched:
        for name, instances in entity.items():
            if name not in ENTITY_KEYS:
                entity[name] = [
                    {**i, "createdAt": i.get("createdAt") or at, "modifiedAt": at}
                    for i in instances
                ]
        return
    touched = set(write.touched)
    for name in {t[0] for t in touched}:
        instances = entity.get(name)
        if not instances or name in ENTITY_KEYS:
            continue
        entity[name] = [
            {**i, "createdAt": i.get("createdAt") or at, "modifiedAt": at}
            if (name, i.get("datasetId") or "") in touched
            else i
            for i in instances
        ]


def _change(tenant: str, write: _Write, at: str) -> Change:
    current = write.current
    names = list(dict.fromkeys([t[0] for t in write.touched] + [r[0] for r in write.removed]))
    return Change(
        tenant=tenant,
        id=current["id"],
        types=list(current.get("type", [])),
        operation=write.operation,
        attributes=names,
        entity=write.entity,
        previous=write.previous,
        at=at,
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def geo_matches(entity: Entity, geo: GeoQueryLike) -> bool:
    """Whether any instance of the entity's `geo.geoproperty` satisfies the geo-query."""
    for instance in entity.get(geo.geoproperty, ()):
        value = instance.get("value")
        if isinstance(value, dict) and geo.matches(value):
            return True
    return False


def scope_clause(expr: ngsild_scope.ScopeExpr) -> ColumnElement[bool]:
    """SQL on `context_entities.doc` that every entity `expr` selects satisfies: a superset, the
    exact test is `ngsild_scope.matches_entity`. Documents are orjson text, so a scoped entity
    holds `"scope":[` and each of its scopes appears as `"/level/...` (scope levels hold no
    character JSON escapes); `ngsild_scope.prefilter` says which literal prefixes must appear."""

    def build(condition: ngsild_scope.ScopeFilter) -> ColumnElement[bool]:
        if isinstance(condition, str):
            if condition == "/":
                return true()
            return _E.c.doc.contains('"' + condition, autoescape=True)
        parts = [build(c) for c in condition[1]]
        return and_(*parts) if condition[0] == "and" else or_(*parts)

    return and_(
        _E.c.doc.contains('"scope":[', autoescape=True), build(ngsild_scope.prefilter(expr))
    )


_REGEX_META = set(".^$*+?{}[]\\|()")


def _literal_prefix(pattern: str) -> str:
    """The literal text every match of an idPattern must start with ('' if none)."""
    if "|" in pattern:
        return ""  # alternatives: no common prefix worth computing
    body = pattern.removeprefix("^")
    prefix: list[str] = []
    for i, ch in enumerate(body):
        if ch in _REGEX_META:
            break
        if i + 1 < len(body) and body[i + 1] in "*?{":
            break  # this character may be repeated zero times
        prefix.append(ch)
    return "".join(prefix)


def _prefilter_clause(condition: Any) -> ColumnElement[bool] | None:
    """SQL over `context_attrs` for one ngsild_q.Prefilter: the rows whose value satisfies it
    (the caller adds the rows holding no single scalar, which only `evaluate` can decide)."""
    op = getattr(condition, "op", None)
    values = tuple(getattr(condition, "values", ()))
    kind = getattr(condition, "kind", None)
    if not values or kind not in ("number", "string"):
        return None
    if kind == "number":
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return None
        column = _A.c.num
        nums = [float(v) for v in values]
        clause = _compare(column, op, nums, nums)
    else:
        if not all(isinstance(v, str) for v in values):
            return None
        column = _A.c.txt
        # A stored string is cut to TXT_LEN: compare with cut operands where the cut could
        # change the outcome, so every possible match stays a candidate.
        cut = [str(v)[:TXT_LEN] for v in values]
        clause = _compare(column, op, cut, [str(v) for v in values])
    return cast("ColumnElement[bool] | None", clause)


def _compare(column: Any, op: Any, cut: list[Any], full: list[Any]) -> Any:
    """`cut` are the operands as stored (strings cut to TXT_LEN), `full` as given."""
    strings = isinstance(cut[0], str)
    if op == "==":
        return column.in_(cut) if len(cut) > 1 else column == cut[0]
    if op == ">":
        return column >= cut[0] if strings else column > cut[0]
    if op == ">=":
        return column >= cut[0]
    if op == "<":
        return column < full[0]
    if op == "<=":
        return column <= full[0]
    if op == "between" and len(cut) == 2:
        return and_(column >= cut[0], column <= full[1])
    return None
