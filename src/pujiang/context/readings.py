"""Device readings (`ContextBroker.record`): a reading newer than the current state becomes
it, an older one goes to the history only, a duplicate is not written; plain readings take a
hot path that writes only what they change."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.orm import Session

from pujiang.context.entity_form import (
    Entity,
    Instance,
    _copy,
    _db_time,
    _dumps,
    _find,
    _iso,
    _put,
    dataset_of,
    index_value,
    now_iso,
    parse_time,
)
from pujiang.context.store import BULK, BrokerStore, quiet_gc
from pujiang.context.writes import Change, _change, _created, _Write
from pujiang.platform.db import driver_cursor


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


_LATE_SQL = (
    "SELECT 1 FROM context_series s JOIN context_history h ON h.series_id = s.id "
    "WHERE s.tenant = {p} AND s.entity_id = {p} AND s.attr = {p} AND h.observed_at = {p} "
    "AND s.dataset_id = {p} LIMIT 1"
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


class ReadingsMixin(BrokerStore):
    """`ContextBroker.record` and its steps."""

    def record(self, tenant: str, readings: list[Reading]) -> list[str]:
        """Write device readings in one transaction; say per reading what was done.

        A reading newer than the attribute's current `observedAt` becomes the current state
        (and history); one with the same `observedAt` as a stored instance, current or in the
        history, is a duplicate and is not written; an older one is written to the history only.
        A missing entity is created from the first `seed` given for it; without one, its
        readings are `no_entity`. Change events go out after the commit, as for any update."""
        at = now_iso()
        outcomes = [STORED] * len(readings)
        with self._write_session() as session, quiet_gc(len(readings) >= BULK):
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
            observed = self._observed_param(instance.get("observedAt"))
            entity_type = existing[reading.entity_id][1].get("type") or [""]
            key = (tenant, reading.entity_id, entity_type[0], reading.attr, dataset_of(instance))
            rows.append((*key, kind, observed, at_db, False, num, txt, _dumps(instance)))
        self.history.write(session, rows, readings=True)


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
