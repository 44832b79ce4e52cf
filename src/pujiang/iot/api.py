"""Routes of device ingest: provisioning (`/iot/services`, `/iot/devices`), device status and
counters; the southbound HTTP adapter (`http.py`) and the command routes are mounted here.

Provisioning follows the FIWARE IoT Agent API: the `fiware-service` header names the tenant
and `fiware-servicepath` the sub-service; a request sees only its tenant's groups and devices.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from pujiang.iot import commands_api, provisioning
from pujiang.iot import http as southbound
from pujiang.iot.provisioning import OnlineFilter, Tenancy
from pujiang.iot.schemas import DevicePatch, DevicesIn, ServiceGroupPatch, ServicesIn
from pujiang.platform.deps import Context, require
from pujiang.platform.roles import CONTEXT_READ, IOT_PROVISION

router = APIRouter()
router.include_router(southbound.router)
router.include_router(commands_api.router)

provision = APIRouter(prefix="/iot", tags=["iot 设备接入"])
Reader = Depends(require(CONTEXT_READ))
Writer = Depends(require(IOT_PROVISION))


def tenancy(
    fiware_service: Annotated[str | None, Header()] = None,
    fiware_servicepath: Annotated[str | None, Header()] = None,
) -> Tenancy:
    return provisioning.tenancy_of(fiware_service, fiware_servicepath)


Tenant = Annotated[Tenancy, Depends(tenancy)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]
ApiKeyQuery = Annotated[str, Query(min_length=1, max_length=64)]
ResourceQuery = Annotated[str | None, Query(max_length=128)]
WithDevices = Annotated[bool, Query(alias="device")]


def _audit(request: Request, target: str, **detail: Any) -> None:
    request.state.audit_target = target
    if detail:
        request.state.audit_detail = detail


# -- service groups -------------------------------------------------------------------------------


@provision.post("/services", status_code=201, dependencies=[Writer])
def create_services(
    body: ServicesIn, context: Context, tenant: Tenant, request: Request
) -> dict[str, Any]:
    """Provision service groups (all or none)."""
    created = provisioning.create_services(context, tenant, body.services)
    _audit(request, "iot.services", apikeys=[g["apikey"] for g in created])
    return {"count": len(created), "services": created}


@provision.get("/services", dependencies=[Reader])
def list_services(
    context: Context,
    tenant: Tenant,
    limit: Limit = 20,
    offset: Offset = 0,
    apikey: str | None = None,
    resource: ResourceQuery = None,
) -> dict[str, Any]:
    count, groups = provisioning.list_services(
        context, tenant.tenant, limit=limit, offset=offset, apikey=apikey, resource=resource
    )
    return {"count": count, "services": groups}


@provision.get("/services/{apikey}", dependencies=[Reader])
def get_service(apikey: str, context: Context, tenant: Tenant) -> dict[str, Any]:
    return provisioning.get_service(context, tenant.tenant, apikey)


def _update_service(
    request: Request,
    context: Context,
    tenant: Tenancy,
    apikey: str,
    body: ServiceGroupPatch,
    resource: str | None,
) -> dict[str, Any]:
    _audit(request, f"iot.service:{apikey}")
    return provisioning.update_service(context, tenant.tenant, apikey, body, resource)


@provision.put("/services", dependencies=[Writer])
def update_service_by_query(
    body: ServiceGroupPatch,
    context: Context,
    tenant: Tenant,
    request: Request,
    apikey: ApiKeyQuery,
    resource: ResourceQuery = None,
) -> dict[str, Any]:
    """The IoT Agent form: `PUT /iot/services?apikey=&resource=`."""
    return _update_service(request, context, tenant, apikey, body, resource)


@provision.put("/services/{apikey}", dependencies=[Writer])
def update_service(
    apikey: str, body: ServiceGroupPatch, context: Context, tenant: Tenant, request: Request
) -> dict[str, Any]:
    return _update_service(request, context, tenant, apikey, body, None)


def _delete_service(
    request: Request,
    context: Context,
    tenant: Tenancy,
    apikey: str,
    resource: str | None,
    with_devices: bool,
) -> Response:
    removed = provisioning.delete_service(
        context, tenant.tenant, apikey, resource=resource, with_devices=with_devices
    )
    _audit(request, f"iot.service:{apikey}", devices_removed=removed)
    return Response(status_code=204)


@provision.delete("/services", status_code=204, dependencies=[Writer])
def delete_service_by_query(
    context: Context,
    tenant: Tenant,
    request: Request,
    apikey: ApiKeyQuery,
    resource: ResourceQuery = None,
    device: WithDevices = False,
) -> Response:
    """The IoT Agent form: `DELETE /iot/services?apikey=&resource=[&device=true]`."""
    return _delete_service(request, context, tenant, apikey, resource, device)


@provision.delete("/services/{apikey}", status_code=204, dependencies=[Writer])
def delete_service(
    apikey: str, context: Context, tenant: Tenant, request: Request, device: WithDevices = False
) -> Response:
    return _delete_service(request, context, tenant, apikey, None, device)


# -- devices --------------------------------------------------------------------------------------


@provision.post("/devices", status_code=201, dependencies=[Writer])
def create_devices(
    body: DevicesIn, context: Context, tenant: Tenant, request: Request
) -> dict[str, Any]:
    """Provision devices (all or none)."""
    created = provisioning.create_devices(context, tenant, body.devices)
    _audit(request, "iot.devices", device_ids=[d["device_id"] for d in created])
    return {"count": len(created), "devices": created}


@provision.get("/devices", dependencies=[Reader])
def list_devices(
    context: Context,
    tenant: Tenant,
    limit: Limit = 20,
    offset: Offset = 0,
    entity_type: str | None = None,
    online: OnlineFilter | None = None,
    apikey: str | None = None,
) -> dict[str, Any]:
    """Devices with status and counters; `online=true|false|never` (never heard from)."""
    count, devices = provisioning.list_devices(
        context,
        tenant.tenant,
        limit=limit,
        offset=offset,
        entity_type=entity_type,
        online=online,
        apikey=apikey,
    )
    return {"count": count, "devices": devices}


@provision.get("/devices/{device_id}", dependencies=[Reader])
def get_device(device_id: str, context: Context, tenant: Tenant) -> dict[str, Any]:
    return provisioning.get_device(context, tenant.tenant, device_id)


@provision.put("/devices/{device_id}", dependencies=[Writer])
def update_device(
    device_id: str, body: DevicePatch, context: Context, tenant: Tenant, request: Request
) -> dict[str, Any]:
    _audit(request, f"iot.device:{tenant.tenant}/{device_id}")
    return provisioning.update_device(context, tenant.tenant, device_id, body)


@provision.delete("/devices/{device_id}", status_code=204, dependencies=[Writer])
def delete_device(device_id: str, context: Context, tenant: Tenant, request: Request) -> Response:
    _audit(request, f"iot.device:{tenant.tenant}/{device_id}")
    provisioning.delete_device(context, tenant.tenant, device_id)
    return Response(status_code=204)


@provision.get("/about", dependencies=[Reader])
def about(context: Context, tenant: Tenant) -> dict[str, Any]:
    """The tenant's fleet: groups, devices online / offline / never heard, message totals."""
    return provisioning.about(context, tenant.tenant)


router.include_router(provision)
