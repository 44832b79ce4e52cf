"""Commands to devices and their acknowledgements (IoT Agent JSON convention).

A command is a row of `iot_commands` and two attributes on the device's entity:
`<name>_status` (PENDING, DELIVERED, OK, ERROR, EXPIRED) and `<name>_info` (what was asked,
the device's answer, or why it failed). MQTT devices get `{"<name>": value}` on
`/{apikey}/{device_id}/cmd` and answer on `/{apikey}/{device_id}/cmdexe` (`handle_ack`, called
by the MQTT consumer); HTTP devices get the same JSON POSTed to their `endpoint` and answer in
the reply. A command nobody answers becomes EXPIRED (`expire_commands`, run by the worker).

Row changes are conditional on the status they leave (`UPDATE ... WHERE status IN ...`), so an
acknowledgement, an expiry and a sender in different processes never undo each other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import select, update

from pujiang.iot.mapping import DeviceProfile, PayloadError
from pujiang.iot.models import IotCommand, IotDevice
from pujiang.iot.mqtt import PublishError, command_topic, publisher_of
from pujiang.platform.db import utcnow
from pujiang.platform.deps import AppContext

log = logging.getLogger("pujiang.iot.commands")

PENDING, DELIVERED, OK, ERROR, EXPIRED = "PENDING", "DELIVERED", "OK", "ERROR", "EXPIRED"
OPEN = (PENDING, DELIVERED)  # waiting for the device
TIMEOUT_SECONDS = 120.0
HTTP_TIMEOUT_SECONDS = 5.0
INFO_MAX = 2000
_RAW = (bytes, bytearray, memoryview, str)  # JSON text as transports hand it over


class CommandError(Exception):
    """A command that cannot be sent: `status` is the HTTP status, `field` what is wrong."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Device:
    """The device a command goes to: its row key and its resolved profile."""

    pk: int
    profile: DeviceProfile


def _text(value: Any) -> str:
    """A command value or result as the text `<name>_info` shows."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text[:INFO_MAX]


def command_out(row: IotCommand, device_id: str) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat().replace("+00:00", "Z") if moment else None

    return {
        "id": row.pk,
        "device_id": device_id,
        "name": row.name,
        "value": row.payload,
        "status": row.status,
        "info": row.info,
        "requested_by": row.requested_by,
        "created_at": iso(row.created_at),
        "sent_at": iso(row.sent_at),
        "done_at": iso(row.done_at),
    }


# -- finding the device ---------------------------------------------------------------------------


def find_device(context: AppContext, tenant: str, device_id: str) -> Device:
    """The tenant's device `device_id` with its profile; CommandError 404 when there is none."""
    from pujiang.iot.service import ingestor_of

    with context.db.session() as session:
        row = session.execute(
            select(IotDevice.pk, IotDevice.apikey).where(
                IotDevice.tenant == tenant, IotDevice.device_id == device_id
            )
        ).first()
    if row is None:
        raise CommandError(
            404,
            "device_id",
            f"本租户没有设备 {device_id!r} / no device {device_id!r} in this tenant",
        )
    try:
        profile = ingestor_of(context).registry.profile(row.apikey, device_id)
    except PayloadError as exc:  # the row exists but its service group does not
        raise CommandError(404, "device_id", exc.detail) from exc
    return Device(row.pk, profile)


# -- sending --------------------------------------------------------------------------------------


def _check_sendable(context: AppContext, profile: DeviceProfile, name: str) -> None:
    if name not in profile.commands:
        known = ", ".join(profile.commands) or "（无 / none）"
        raise CommandError(
            400,
            "name",
            f"设备 {profile.device_id} 未配置命令 {name!r}（已配置：{known}）/ the command "
            f"{name!r} is not provisioned for device {profile.device_id} (provisioned: {known})",
        )
    if profile.transport == "HTTP":
        if not profile.endpoint:
            raise CommandError(
                409,
                "endpoint",
                f"HTTP 设备 {profile.device_id} 没有 endpoint，无法下发命令 / the HTTP device "
                f"{profile.device_id} has no endpoint to send commands to: set its endpoint",
            )
    elif publisher_of(context) is None:
        raise CommandError(
            409,
            "PUJIANG_MQTT_URL",
            "未配置 MQTT 代理，无法向 MQTT 设备下发命令：请设置 PUJIANG_MQTT_URL / no MQTT broker "
            "is configured to send commands to MQTT devices: set PUJIANG_MQTT_URL",
        )


def send_command(
    context: AppContext,
    tenant: str,
    device_id: str,
    name: str,
    value: Any,
    requested_by: str = "",
) -> dict[str, Any]:
    """Record a command, show it PENDING on the entity, deliver it; returns the command."""
    device = find_device(context, tenant, device_id)
    profile = device.profile
    _check_sendable(context, profile, name)
    with context.db.session() as session:
        row = IotCommand(
            tenant=profile.tenant,
            device_pk=device.pk,
            name=name,
            payload=value,
            status=PENDING,
            info=_text(value),
            requested_by=requested_by[:96],
            created_at=utcnow(),
        )
        session.add(row)
        session.flush()
        pk = row.pk
    _show(context, profile, name, PENDING, _text(value))
    if profile.transport == "HTTP":
        _deliver_http(context, profile, pk, name, value)
    else:
        _deliver_mqtt(context, profile, pk, name, value)
    with context.db.session() as session:
        found = session.get(IotCommand, pk)
        if found is None:  # the device was deleted meanwhile, its commands with it
            raise CommandError(404, "device_id", f"设备 {device_id!r} 已删除 / device deleted")
        return command_out(found, device_id)


def _deliver_mqtt(
    context: AppContext, profile: DeviceProfile, pk: int, name: str, value: Any
) -> None:
    publisher = publisher_of(context)
    assert publisher is not None  # noqa: S101 - checked by _check_sendable
    # Marked DELIVERED before publishing: a quick device may answer before the publish call
    # returns, and its OK must not be overwritten by a late DELIVERED.
    if _move(context, pk, (PENDING,), DELIVERED, None, sent=True):
        _show(context, profile, name, DELIVERED, _text(value))
    body = orjson.dumps({name: value})
    try:
        publisher.publish(command_topic(profile.apikey, profile.device_id), body, qos=1)
    except PublishError as exc:
        _finish(context, profile, pk, name, ERROR, str(exc), from_status=(DELIVERED,))


def _deliver_http(
    context: AppContext, profile: DeviceProfile, pk: int, name: str, value: Any
) -> None:
    try:
        reply = httpx.post(
            profile.endpoint or "",
            content=orjson.dumps({name: value}),
            headers={"Content-Type": "application/json"},
            timeout=HTTP_TIMEOUT_SECONDS,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        reason = f"设备无应答 / the device did not answer: {type(exc).__name__}: {exc}"
        _finish(context, profile, pk, name, ERROR, reason.strip().rstrip(":"))
        return
    if not 200 <= reply.status_code < 300:
        detail = reply.text[:200]
        reason = f"设备返回 HTTP {reply.status_code} / the device replied HTTP {reply.status_code}"
        info = f"{reason}: {detail}" if detail else reason
        _finish(context, profile, pk, name, ERROR, info, sent=True)
        return
    _finish(context, profile, pk, name, OK, _http_result(reply, name), sent=True)


def _http_result(reply: httpx.Response, name: str) -> str:
    """The device's answer: `{"<name>": result}` gives the result, anything else its text."""
    try:
        data = reply.json()
    except ValueError:
        return reply.text[:INFO_MAX]
    if isinstance(data, dict) and name in data:
        return _text(data[name])
    return _text(data)


# -- state changes --------------------------------------------------------------------------------


def _move(
    context: AppContext,
    pk: int,
    from_status: tuple[str, ...],
    to_status: str,
    info: str | None,
    *,
    sent: bool = False,
    done: bool = False,
) -> bool:
    """Change a command's status if it is still in one of `from_status`; True if it was."""
    values: dict[str, Any] = {"status": to_status}
    if info is not None:
        values["info"] = info[:INFO_MAX]
    now = utcnow()
    if sent:
        values["sent_at"] = now
    if done:
        values["done_at"] = now
    with context.db.session() as session:
        result = session.execute(
            update(IotCommand)
            .where(IotCommand.pk == pk, IotCommand.status.in_(from_status))
            .values(**values)
        )
        return bool(getattr(result, "rowcount", 0))


def _finish(
    context: AppContext,
    profile: DeviceProfile,
    pk: int,
    name: str,
    status: str,
    info: str,
    from_status: tuple[str, ...] = OPEN,
    *,
    sent: bool = False,
) -> bool:
    """End a command (OK, ERROR, EXPIRED) and show it on the entity; False if already ended."""
    if not _move(context, pk, from_status, status, info, sent=sent, done=True):
        return False
    _show(context, profile, name, status, info)
    return True


def _show(context: AppContext, profile: DeviceProfile, name: str, status: str, info: str) -> None:
    from pujiang.iot.service import ingestor_of

    ingestor_of(context).write_attributes(
        profile, {f"{name}_status": status, f"{name}_info": info[:INFO_MAX]}
    )


def show_failure(context: AppContext, profile: DeviceProfile, name: str, reason: str) -> None:
    """Show on the entity that a command could not even be sent (no row was recorded)."""
    _show(context, profile, name, ERROR, reason)


# -- acknowledgements and expiry ------------------------------------------------------------------


def handle_ack(context: AppContext, apikey: str, device_id: str, payload: Any) -> int:
    """A device's `/cmdexe` answer `{"<name>": result, ...}`: completes the newest open command
    of each name. Returns how many were completed; an answer about an unknown device or with
    no open command is logged and counted by the caller (0), never raised."""
    from pujiang.iot.service import ingestor_of

    try:
        answers = orjson.loads(payload) if isinstance(payload, _RAW) else payload
    except orjson.JSONDecodeError:
        log.info("command answer from %s/%s is not JSON; ignored", apikey, device_id)
        return 0
    if not isinstance(answers, dict) or not answers:
        log.info("command answer from %s/%s is not a JSON object; ignored", apikey, device_id)
        return 0
    try:
        profile = ingestor_of(context).registry.profile(apikey, device_id)
    except PayloadError as exc:
        log.info("command answer from an unknown device %s/%s: %s", apikey, device_id, exc.detail)
        return 0
    completed = 0
    for name, result in answers.items():
        pk = _open_command(context, profile.pk, str(name))
        if pk is None:
            log.info(
                "command answer %r from %s/%s matches no open command; ignored",
                name,
                apikey,
                device_id,
            )
            continue
        if _finish(context, profile, pk, str(name), OK, _text(result)):
            completed += 1
    return completed


def _open_command(context: AppContext, device_pk: int, name: str) -> int | None:
    with context.db.session() as session:
        pk: int | None = session.scalars(
            select(IotCommand.pk)
            .where(
                IotCommand.device_pk == device_pk,
                IotCommand.name == name,
                IotCommand.status.in_(OPEN),
            )
            .order_by(IotCommand.created_at.desc(), IotCommand.pk.desc())
            .limit(1)
        ).first()
    return pk


def expire_commands(
    context: AppContext, now: datetime | None = None, timeout_seconds: float = TIMEOUT_SECONDS
) -> int:
    """Commands still unanswered `timeout_seconds` after they were asked for become EXPIRED;
    returns how many."""
    from pujiang.iot.service import ingestor_of

    cutoff = (now or utcnow()) - timedelta(seconds=timeout_seconds)
    with context.db.session() as session:
        stale = session.execute(
            select(IotCommand.pk, IotCommand.name, IotDevice.apikey, IotDevice.device_id)
            .join(IotDevice, IotDevice.pk == IotCommand.device_pk)
            .where(IotCommand.status.in_(OPEN), IotCommand.created_at < cutoff)
            .order_by(IotCommand.pk)
        ).all()
    registry = ingestor_of(context).registry
    reason = (
        f"设备未在 {timeout_seconds:.0f} 秒内应答 / the device did not answer within "
        f"{timeout_seconds:.0f} s"
    )
    expired = 0
    for pk, name, apikey, device_id in stale:
        if not _move(context, pk, OPEN, EXPIRED, reason, done=True):
            continue  # answered meanwhile
        expired += 1
        try:
            profile = registry.profile(apikey, device_id)
        except PayloadError:
            continue  # the group is gone: nothing to show the status on
        _show(context, profile, name, EXPIRED, reason)
    return expired


def list_commands(
    context: AppContext, tenant: str, device_id: str, limit: int = 100
) -> list[dict[str, Any]]:
    """A device's commands, newest first."""
    device = find_device(context, tenant, device_id)
    with context.db.session() as session:
        rows = session.scalars(
            select(IotCommand)
            .where(IotCommand.device_pk == device.pk)
            .order_by(IotCommand.created_at.desc(), IotCommand.pk.desc())
            .limit(limit)
        ).all()
        return [command_out(row, device_id) for row in rows]
