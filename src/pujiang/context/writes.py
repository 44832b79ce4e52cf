"""Building writes on the internal form, without the database: what a create, replace,
append, update, merge or delete does to an entity (`_Write`), the system times it stamps, and
the change published for it (`Change`); the results the write operations return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pujiang.context.entity_form import (
    ENTITY_KEYS,
    INSTANCE_KEYS,
    NGSI_LD_NULL,
    Entity,
    Instance,
    _copy,
    _find,
    _put,
    attributes_of,
    dataset_of,
)
from pujiang.context.errors import BadData, BrokerError


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
class BatchResult:
    success: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    errors: list[tuple[str, BrokerError]] = field(default_factory=list)
    # batch update with noOverwrite: per entity id, the attributes left as they were
    not_updated: dict[str, list[str]] = field(default_factory=dict)


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


# -- building writes ------------------------------------------------------------------------------


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
