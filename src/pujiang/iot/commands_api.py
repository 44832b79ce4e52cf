"""Routes of device commands: send a command, list a device's commands.

The tenant is the `fiware-service` header, as for provisioning (docs/iot.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from pujiang.iot import commands
from pujiang.iot.provisioning import tenancy_of
from pujiang.platform.deps import Context, require
from pujiang.platform.errors import Problem
from pujiang.platform.roles import CONTEXT_READ, CONTEXT_WRITE
from pujiang.platform.security import CurrentPrincipal

router = APIRouter(prefix="/iot", tags=["iot"])

_SLUGS = {400: "bad-request", 404: "not-found", 409: "conflict"}


class CommandIn(BaseModel):
    """`{"name": "switch", "value": "on"}`: the value is any JSON, sent to the device as is."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    value: Any = ""


def tenant(fiware_service: Annotated[str | None, Header()] = None) -> str:
    return tenancy_of(fiware_service, None).tenant


Tenant = Annotated[str, Depends(tenant)]


def _problem(error: commands.CommandError) -> Problem:
    detail = f"{error.field}: {error.message}"
    slug = _SLUGS.get(error.status, "bad-request")
    return Problem(
        error.status, slug, detail, errors=[{"field": error.field, "message": error.message}]
    )


@router.post("/devices/{device_id}/commands", status_code=201)
def send_command(
    device_id: str,
    body: CommandIn,
    context: Context,
    tenant: Tenant,
    request: Request,
    principal: Annotated[CurrentPrincipal, Depends(require(CONTEXT_WRITE))],
) -> dict[str, Any]:
    """Send a provisioned command; MQTT devices answer later on `/cmdexe`, HTTP devices at once.

    The reply is the command with its status: DELIVERED (MQTT: handed to the broker), OK
    (the HTTP device answered), ERROR (with the reason in `info`)."""
    request.state.audit_target = f"iot.device:{tenant}/{device_id}"
    request.state.audit_detail = {"command": body.name}
    try:
        return commands.send_command(
            context, tenant, device_id, body.name, body.value, principal.username
        )
    except commands.CommandError as exc:
        raise _problem(exc) from None


@router.get("/devices/{device_id}/commands", dependencies=[Depends(require(CONTEXT_READ))])
def list_commands(
    device_id: str,
    context: Context,
    tenant: Tenant,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The device's commands, newest first."""
    try:
        found = commands.list_commands(context, tenant, device_id, limit)
    except commands.CommandError as exc:
        raise _problem(exc) from None
    return {"count": len(found), "commands": found}
