"""Create, read, update and delete service groups and devices, one tenant at a time.

Each call is one transaction of its own: the device registry's cache is invalidated only
after the change has committed, so an ingest worker never re-reads the old rows into a fresh
cache. Replies are plain dicts in the IoT Agent's shape plus each device's status and counters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pujiang.iot.models import IotDevice, IotService
from pujiang.iot.schemas import (
    AttributeMapping,
    CommandSpec,
    DeviceIn,
    DevicePatch,
    ServiceGroupIn,
    ServiceGroupPatch,
    StaticAttribute,
    check_mapping_lists,
    check_transport,
)
from pujiang.iot.service import ingestor_of
from pujiang.platform.db import lock_for_write, utcnow
from pujiang.platform.deps import AppContext
from pujiang.platform.errors import Problem
from pujiang.platform.i18n import register

DEFAULT_RESOURCE = "/iot/json"
DEFAULT_PROTOCOL = "IoTA-JSON"
DEFAULT_MISSED_INTERVALS = 3
OnlineFilter = Literal["true", "false", "never"]

register({"problem.already-exists": ("已存在", "Already exists")})

_TENANT = re.compile(r"^[a-z0-9_]{1,64}$")
_SUBSERVICE = re.compile(r"^/([A-Za-z0-9_]+(/[A-Za-z0-9_]+)*)?$")


@dataclass(frozen=True)
class Tenancy:
    """Who a provisioning request acts for: `fiware-service` and `fiware-servicepath`."""

    tenant: str = ""
    subservice: str = "/"


def tenancy_of(service: str | None, service_path: str | None) -> Tenancy:
    """The tenant and sub-service of the IoT Agent headers; 400 naming a bad one."""
    tenant = (service or "").strip().lower()
    if tenant and not _TENANT.match(tenant):
        raise _bad(
            "fiware-service",
            f"租户 {service!r} 无效：只能含字母、数字和 _，最长 64 / invalid tenant {service!r}: "
            "use letters, digits and _, at most 64",
        )
    subservice = (service_path or "").strip() or "/"
    if len(subservice) > 128 or not _SUBSERVICE.match(subservice):
        raise _bad(
            "fiware-servicepath",
            f"子服务 {service_path!r} 无效：须为 / 或 /路径（字母、数字、_）/ invalid "
            f"service path {service_path!r}: use / or /segment[/segment] of letters, digits, _",
        )
    return Tenancy(tenant, subservice)


# -- the ingestor (counters, last_seen, the registry's cache) ----------------------------------


def flush_counters(context: AppContext) -> None:
    """Write the counters and `last_seen` the ingestor holds in memory, so reads are current."""
    ingestor_of(context).flush()


def _changed(context: AppContext) -> None:
    ingestor_of(context).registry.invalidate()


# -- errors -------------------------------------------------------------------------------------


def _bad(field: str, message: str, status: int = 400) -> Problem:
    slug = {400: "bad-request", 404: "not-found", 409: "already-exists"}[status]
    return Problem(
        status, slug, f"{field}: {message}", errors=[{"field": field, "message": message}]
    )


def _no_group(apikey: str, field: str = "apikey", status: int = 404) -> Problem:
    return _bad(
        field,
        f"本租户没有 apikey 为 {apikey!r} 的服务组 / no service group with apikey {apikey!r} "
        "in this tenant",
        status,
    )


def _no_device(device_id: str) -> Problem:
    return _bad(
        "device_id",
        f"本租户没有设备 {device_id!r} / no device {device_id!r} in this tenant",
        404,
    )


def _taken(field: str, what: str) -> Problem:
    return _bad(field, f"{what} 已存在 / {what} already exists", 409)


def _repeated(field: str, what: str, first: int) -> Problem:
    return _bad(field, f"{what} 与第 {first} 项重复 / {what} repeats item {first}", 409)


def _stored(
    items: list[AttributeMapping] | list[StaticAttribute] | list[CommandSpec] | None,
) -> list[dict[str, Any]]:
    return [item.stored() for item in items or []]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


# -- service groups -------------------------------------------------------------------------------


def service_out(group: IotService) -> dict[str, Any]:
    return {
        "apikey": group.apikey,
        "resource": group.resource,
        "entity_type": group.entity_type,
        "service": group.tenant,
        "subservice": group.subservice,
        "attributes": group.attributes,
        "static_attributes": group.static_attributes,
        "commands": group.commands,
        "explicitAttrs": group.explicit_attrs,
        "expected_interval": group.expected_interval,
        "ld_context": group.ld_context,
        "description": group.description,
        "created_at": _iso(group.created_at),
        "modified_at": _iso(group.modified_at),
    }


def _group(
    session: Session,
    tenant: str,
    apikey: str,
    resource: str | None = None,
    *,
    for_update: bool = False,
) -> IotService:
    """The tenant's group of that apikey, else 404; `for_update` when the transaction's
    writes depend on what it reads (an update's list check, a delete's device count)."""
    query = select(IotService).where(IotService.tenant == tenant, IotService.apikey == apikey)
    if for_update:
        lock_for_write(session)
        query = query.with_for_update()
    group = session.scalars(query).one_or_none()
    if group is None or (resource is not None and group.resource != resource):
        raise _no_group(apikey)
    return group


def create_services(
    context: AppContext, tenancy: Tenancy, docs: list[ServiceGroupIn]
) -> list[dict[str, Any]]:
    """Add service groups, all or none; an apikey is unique across every tenant."""
    keys = [doc.apikey for doc in docs]
    for index, key in enumerate(keys):
        if keys.index(key) != index:
            raise _taken(
                f"services.{index}.apikey", f"apikey {key!r}（与第 {keys.index(key)} 项重复）"
            )
    try:
        with context.db.session() as session:
            existing = set(
                session.scalars(select(IotService.apikey).where(IotService.apikey.in_(keys)))
            )
            for index, key in enumerate(keys):
                if key in existing:
                    raise _taken(f"services.{index}.apikey", f"apikey {key!r}")
            groups = [_new_group(tenancy, doc) for doc in docs]
            session.add_all(groups)
            session.flush()
            replies = [service_out(g) for g in groups]
    except IntegrityError:
        # Another request took one of the keys between our check and our commit.
        raise _taken("services.apikey", "apikey") from None
    _changed(context)
    return replies


def _new_group(tenancy: Tenancy, doc: ServiceGroupIn) -> IotService:
    now = utcnow()
    return IotService(
        tenant=tenancy.tenant,
        subservice=tenancy.subservice,
        apikey=doc.apikey,
        resource=doc.resource or DEFAULT_RESOURCE,
        entity_type=doc.entity_type,
        ld_context=doc.ld_context,
        attributes=_stored(doc.attributes),
        static_attributes=_stored(doc.static_attributes),
        commands=_stored(doc.commands),
        explicit_attrs=bool(doc.explicit_attrs),
        expected_interval=doc.expected_interval,
        description=doc.description or "",
        created_at=now,
        modified_at=now,
    )


def list_services(
    context: AppContext,
    tenant: str,
    *,
    limit: int,
    offset: int,
    apikey: str | None = None,
    resource: str | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    query = select(IotService).where(IotService.tenant == tenant)
    if apikey is not None:
        query = query.where(IotService.apikey == apikey)
    if resource is not None:
        query = query.where(IotService.resource == resource)
    with context.db.session() as session:
        count = _count(session, query)
        rows = session.scalars(query.order_by(IotService.apikey).limit(limit).offset(offset))
        return count, [service_out(g) for g in rows]


def get_service(context: AppContext, tenant: str, apikey: str) -> dict[str, Any]:
    with context.db.session() as session:
        return service_out(_group(session, tenant, apikey))


def update_service(
    context: AppContext,
    tenant: str,
    apikey: str,
    patch: ServiceGroupPatch,
    resource: str | None = None,
) -> dict[str, Any]:
    """Change the fields given; lists are replaced whole. The apikey itself cannot change."""
    if patch.apikey is not None and patch.apikey != apikey:
        raise _bad(
            "apikey",
            "服务组的 apikey 不能修改；请新建服务组 / a group's apikey cannot change; create a "
            "new group",
        )
    given = patch.model_fields_set - {"apikey"}
    with context.db.session() as session:
        group = _group(session, tenant, apikey, resource, for_update=True)
        _patch_group(group, patch, given)
        group.modified_at = utcnow()
        reply = service_out(group)
    _changed(context)
    return reply


def _patch_group(group: IotService, patch: ServiceGroupPatch, given: set[str]) -> None:
    nullable = {"expected_interval", "ld_context"}
    for name in given:
        value = getattr(patch, name)
        if value is None and name not in nullable:
            raise _bad(name, f"{name} 不能为 null / {name} cannot be null")
        if name in {"attributes", "static_attributes", "commands"}:
            value = _stored(value)
        setattr(group, name, value)
    _check_lists(group)


def delete_service(
    context: AppContext,
    tenant: str,
    apikey: str,
    *,
    resource: str | None = None,
    with_devices: bool = False,
) -> int:
    """Remove a group; its devices too when `with_devices`, else 409 while it has any.
    Returns how many devices were removed. Their entities stay in the broker."""
    with context.db.session() as session:
        group = _group(session, tenant, apikey, resource, for_update=True)
        in_group = (IotDevice.tenant == tenant) & (IotDevice.apikey == apikey)
        devices = session.scalar(select(func.count()).select_from(IotDevice).where(in_group)) or 0
        if devices and not with_devices:
            raise Problem(
                409,
                "conflict",
                f"服务组 {apikey} 仍有 {devices} 台设备；先删除设备，或加 ?device=true 一并删除 / "
                f"the group {apikey} still has {devices} devices; delete them first or add "
                "?device=true to delete them with it",
            )
        session.execute(delete(IotDevice).where(in_group))
        session.delete(group)
    _changed(context)
    return devices


# -- devices ------------------------------------------------------------------------------------


def device_out(device: IotDevice) -> dict[str, Any]:
    return {
        "device_id": device.device_id,
        "apikey": device.apikey,
        "service": device.tenant,
        "service_path": device.subservice,
        "entity_name": device.entity_id,
        "entity_type": device.entity_type,
        "protocol": device.protocol,
        "transport": device.transport,
        "endpoint": device.endpoint,
        "attributes": device.attributes,
        "static_attributes": device.static_attributes,
        "commands": device.commands,
        "explicitAttrs": device.explicit_attrs,
        "expected_interval": device.expected_interval,
        "missed_intervals": device.missed_intervals,
        "lastSeen": _iso(device.last_seen),
        "online": device.online,
        "received": device.received,
        "stored": device.stored,
        "rejected": device.rejected,
        "duplicates": device.duplicates,
        "lastError": device.last_error,
        "lastErrorAt": _iso(device.last_error_at),
        "created_at": _iso(device.created_at),
        "modified_at": _iso(device.modified_at),
    }


def default_entity_id(entity_type: str, device_id: str) -> str:
    """The IoT Agent's default entity: `urn:ngsi-ld:{type}:{device_id}` (short type name)."""
    short = re.split(r"[/#:]", entity_type)[-1] or entity_type
    return f"urn:ngsi-ld:{short}:{device_id}"


def create_devices(
    context: AppContext, tenancy: Tenancy, docs: list[DeviceIn]
) -> list[dict[str, Any]]:
    """Add devices, all or none; a fault names the device's index and field."""
    ids = [doc.device_id for doc in docs]
    for index, device_id in enumerate(ids):
        if ids.index(device_id) != index:
            first = ids.index(device_id)
            raise _taken(
                f"devices.{index}.device_id", f"device_id {device_id!r}（同第 {first} 项）"
            )
    try:
        with context.db.session() as session:
            # The groups are read for share: a concurrent delete of one waits for these devices
            # (and then refuses, as it has devices) or goes first (and they are refused).
            lock_for_write(session)
            in_tenant = select(IotService).where(IotService.tenant == tenancy.tenant)
            groups = {g.apikey: g for g in session.scalars(in_tenant.with_for_update(read=True))}
            taken = set(
                session.scalars(
                    select(IotDevice.device_id).where(
                        IotDevice.tenant == tenancy.tenant, IotDevice.device_id.in_(ids)
                    )
                )
            )
            devices = []
            for index, doc in enumerate(docs):
                if doc.device_id in taken:
                    raise _taken(f"devices.{index}.device_id", f"device_id {doc.device_id!r}")
                group = _group_for(groups, doc, index)
                devices.append(_new_device(tenancy, group, doc))
            session.add_all(devices)
            session.flush()
            replies = [device_out(d) for d in devices]
    except IntegrityError:
        raise _taken("devices.device_id", "device_id") from None
    _changed(context)
    return replies


def _group_for(groups: dict[str, IotService], doc: DeviceIn, index: int) -> IotService:
    """The device's service group: the one it names, or the tenant's only group."""
    field = f"devices.{index}.apikey"
    if doc.apikey is not None:
        if doc.apikey not in groups:
            raise _no_group(doc.apikey, field, 400)
        return groups[doc.apikey]
    if len(groups) == 1:
        return next(iter(groups.values()))
    raise _bad(
        field,
        f"未给出 apikey，而本租户有 {len(groups)} 个服务组；请指明设备属于哪个服务组 / no apikey "
        f"given and this tenant has {len(groups)} service groups; name the device's group",
    )


def _new_device(tenancy: Tenancy, group: IotService, doc: DeviceIn) -> IotDevice:
    entity_type = doc.entity_type or group.entity_type
    now = utcnow()
    return IotDevice(
        tenant=tenancy.tenant,
        subservice=tenancy.subservice,
        device_id=doc.device_id,
        apikey=group.apikey,
        entity_id=doc.entity_name or default_entity_id(entity_type, doc.device_id),
        entity_type=entity_type,
        protocol=doc.protocol,
        transport=doc.transport or ("HTTP" if doc.endpoint else "MQTT"),
        endpoint=doc.endpoint,
        attributes=_stored(doc.attributes),
        static_attributes=_stored(doc.static_attributes),
        commands=_stored(doc.commands),
        explicit_attrs=bool(doc.explicit_attrs),
        expected_interval=doc.expected_interval,
        missed_intervals=doc.missed_intervals or DEFAULT_MISSED_INTERVALS,
        created_at=now,
        modified_at=now,
    )


def _device(
    session: Session, tenant: str, device_id: str, *, for_update: bool = False
) -> IotDevice:
    query = select(IotDevice).where(IotDevice.tenant == tenant, IotDevice.device_id == device_id)
    if for_update:
        lock_for_write(session)
        query = query.with_for_update()
    device = session.scalars(query).first()
    if device is None:
        raise _no_device(device_id)
    return device


def _online_condition(online: OnlineFilter) -> ColumnElement[bool]:
    if online == "never":
        return IotDevice.online.is_(None)
    return IotDevice.online.is_(online == "true")


def list_devices(
    context: AppContext,
    tenant: str,
    *,
    limit: int,
    offset: int,
    entity_type: str | None = None,
    online: OnlineFilter | None = None,
    apikey: str | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    flush_counters(context)
    conditions: list[ColumnElement[bool]] = [IotDevice.tenant == tenant]
    if entity_type is not None:
        conditions.append(IotDevice.entity_type == entity_type)
    if online is not None:
        conditions.append(_online_condition(online))
    if apikey is not None:
        conditions.append(IotDevice.apikey == apikey)
    query = select(IotDevice).where(and_(*conditions))
    with context.db.session() as session:
        count = _count(session, query)
        rows = session.scalars(query.order_by(IotDevice.device_id).limit(limit).offset(offset))
        return count, [device_out(d) for d in rows]


def get_device(context: AppContext, tenant: str, device_id: str) -> dict[str, Any]:
    flush_counters(context)
    with context.db.session() as session:
        return device_out(_device(session, tenant, device_id))


# Fields a device update may not change (they name the device and its group).
_FIXED = ("device_id", "apikey", "protocol")
_NULLABLE = {"endpoint", "expected_interval"}


def update_device(
    context: AppContext, tenant: str, device_id: str, patch: DevicePatch
) -> dict[str, Any]:
    """Change the fields given; lists are replaced whole; id, group and protocol stay."""
    flush_counters(context)
    with context.db.session() as session:
        device = _device(session, tenant, device_id, for_update=True)
        for name in _FIXED:
            value = getattr(patch, name)
            if value is not None and value != getattr(device, name):
                raise _bad(
                    name,
                    f"设备的 {name} 不能修改；请删除后重新创建 / a device's {name} cannot "
                    "change; delete and create it again",
                )
        _patch_device(device, patch, patch.model_fields_set - set(_FIXED))
        device.modified_at = utcnow()
        reply = device_out(device)
    _changed(context)
    return reply


def _patch_device(device: IotDevice, patch: DevicePatch, given: set[str]) -> None:
    columns = {"entity_name": "entity_id"}
    for name in given:
        value = getattr(patch, name)
        if value is None and name not in _NULLABLE:
            raise _bad(name, f"{name} 不能为 null / {name} cannot be null")
        if name in {"attributes", "static_attributes", "commands"}:
            value = _stored(value)
        setattr(device, columns.get(name, name), value)
    if "transport" in given and "endpoint" not in given and patch.transport == "MQTT":
        device.endpoint = None  # moving to MQTT: commands no longer go to the old URL
    try:
        check_transport(device.transport, device.endpoint)
    except ValueError as exc:
        raise _bad("endpoint", str(exc)) from None
    _check_lists(device)


def _check_lists(row: IotService | IotDevice) -> None:
    """After an update, the lists kept and the lists replaced must still agree."""
    try:
        check_mapping_lists(
            [AttributeMapping.model_validate(a) for a in row.attributes],
            [StaticAttribute.model_validate(s) for s in row.static_attributes],
            [CommandSpec.model_validate(c) for c in row.commands],
        )
    except ValueError as exc:
        raise _bad("attributes", str(exc)) from None


def delete_device(context: AppContext, tenant: str, device_id: str) -> None:
    """Remove a device and its commands; its entity and history stay in the broker."""
    with context.db.session() as session:
        session.delete(_device(session, tenant, device_id, for_update=True))
    _changed(context)


# -- totals -------------------------------------------------------------------------------------


def about(context: AppContext, tenant: str) -> dict[str, Any]:
    """The tenant's fleet at a glance: groups, devices by status, message totals."""
    flush_counters(context)
    in_tenant = IotDevice.tenant == tenant
    with context.db.session() as session:
        groups = session.scalar(
            select(func.count()).select_from(IotService).where(IotService.tenant == tenant)
        )
        by_status: dict[bool | None, int] = dict(
            session.execute(
                select(IotDevice.online, func.count()).where(in_tenant).group_by(IotDevice.online)
            ).all()
        )
        sums = session.execute(
            select(
                func.coalesce(func.sum(IotDevice.received), 0),
                func.coalesce(func.sum(IotDevice.stored), 0),
                func.coalesce(func.sum(IotDevice.rejected), 0),
                func.coalesce(func.sum(IotDevice.duplicates), 0),
            ).where(in_tenant)
        ).one()
    return {
        "service": tenant,
        "services": groups or 0,
        "devices": sum(by_status.values()),
        "online": by_status.get(True, 0),
        "offline": by_status.get(False, 0),
        "neverSeen": by_status.get(None, 0),
        "received": int(sums[0]),
        "stored": int(sums[1]),
        "rejected": int(sums[2]),
        "duplicates": int(sums[3]),
    }


def _count(session: Session, query: Select[Any]) -> int:
    return session.scalar(select(func.count()).select_from(query.subquery())) or 0
