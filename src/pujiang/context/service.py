"""The broker's logic on the internal entity form (docs/context.md): no HTTP, no JSON-LD.

`ContextBroker` writes current state, the attribute index, the spatial index and history in one
transaction per operation, then publishes `context.entity.changed` for every change after the
commit. Reads narrow candidates in SQL (type, id, attribute index, spatial index) and test the
exact conditions (`q`, geometry, idPattern) in Python on the few rows left.

Hot paths use Core statements with executemany and orjson; no ORM object per entity.

Its parts live beside it: `store.py` (sessions, tenants, persisting writes), `writes.py` (what
each write does to an entity), `readings.py` (device readings), `queries.py` (reads and
discovery); `entity_form.py` and `errors.py` hold the internal form's helpers and the errors.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from pujiang.context.entity_form import (
    ENTITY_KEYS,
    INSTANCE_KEYS,
    NGSI_LD_NULL,
    Entity,
    Instance,
    _copy,
    _find,
    _put,
    dataset_of,
)
from pujiang.context.errors import AlreadyExists, BadData, NotFound
from pujiang.context.queries import QueriesMixin
from pujiang.context.readings import ReadingsMixin
from pujiang.context.writes import (
    BatchResult,
    Change,
    UpdateResult,
    _appended,
    _check_nulls,
    _created,
    _deleted,
    _drop_instance,
    _fold,
    _is_null,
    _merged,
    _preserve_created,
    _replaced,
    _updated,
    _Write,
)


class ContextBroker(ReadingsMixin, QueriesMixin):
    """Entity operations for one database; publishes changes on `bus` after commit."""

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

    def create_unless_present(
        self,
        tenant: str,
        entity_id: str,
        prepare: Callable[[Session, bool], Entity | None],
        owner: str | None = None,
    ) -> Change | None:
        """Create an entity unless it exists, in one transaction with what goes with it.

        `prepare(session, exists)` runs first, with the entity's id locked for the
        transaction: it writes its own rows in `session` (the temporal API's older instances)
        and returns the entity to create, or None. Nothing is created when the entity
        exists; the change of a create is returned."""

        def build(session: Session) -> list[_Write]:
            exists = bool(self._load(session, tenant, [entity_id]))
            entity = prepare(session, exists)
            return [] if exists or entity is None else [_created(entity, owner)]

        made = self._commit(tenant, build)
        return made[0] if made else None

    def delete_with_history(
        self, tenant: str, entity_id: str, purge: Callable[[Session], int]
    ) -> bool:
        """Delete an entity, if it exists, and with `purge(session)` its history, in one
        transaction (the temporal API's DELETE: the entity is gone from both views). The
        deletion is published as any delete is. False if there was neither an entity nor
        history (`purge` returns how many history rows it removed)."""
        purged = 0

        def build(session: Session) -> list[_Write]:
            found = self._load(session, tenant, [entity_id]).get(entity_id)
            return [] if found is None else [_deleted(*found)]

        def then(session: Session) -> None:
            nonlocal purged
            purged = purge(session)

        made = self._commit(tenant, build, then=then)
        return bool(made) or purged > 0

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
