"""Device liveness: offline after `missed_intervals` × `expected_interval` without a message.

The ingest path only records when a device was last heard from (`last_seen`); the `online`
flag is changed here alone, so each change is seen once and announced once on the bus:
`iot.device.offline` when a device falls silent, `iot.device.online` when it is heard again
(or for the first time). A device's `expected_interval` falls back to its group's; a device
with neither never goes offline. Several workers may check at once: each flip is a
conditional update, and only the worker whose update took effect publishes the event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from pujiang.iot.models import IotDevice, IotService
from pujiang.iot.provisioning import flush_counters
from pujiang.platform.db import utcnow
from pujiang.platform.deps import AppContext

log = logging.getLogger("pujiang.iot.status")

OFFLINE_TOPIC = "iot.device.offline"
ONLINE_TOPIC = "iot.device.online"
STOP_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class _Seen:
    """What a check needs of one device."""

    pk: int
    tenant: str
    device_id: str
    entity_id: str
    entity_type: str
    online: bool | None
    last_seen: datetime
    interval: int | None
    missed_intervals: int

    def alive_at(self, now: datetime) -> bool:
        if self.interval is None:
            return True  # nothing expected of it: heard once, online until removed
        return now - self.last_seen <= timedelta(seconds=self.interval * self.missed_intervals)


def _candidates(session: Session) -> list[_Seen]:
    """Devices heard from that could change: not yet online, or online with an interval."""
    interval = func.coalesce(IotDevice.expected_interval, IotService.expected_interval)
    rows = session.execute(
        select(
            IotDevice.pk,
            IotDevice.tenant,
            IotDevice.device_id,
            IotDevice.entity_id,
            IotDevice.entity_type,
            IotDevice.online,
            IotDevice.last_seen,
            interval,
            IotDevice.missed_intervals,
        )
        .outerjoin(IotService, IotService.apikey == IotDevice.apikey)
        .where(
            IotDevice.last_seen.is_not(None),
            or_(IotDevice.online.is_not(True), interval.is_not(None)),
        )
    )
    return [
        _Seen(pk, tenant, device_id, entity_id, entity_type, online, seen, every, missed)
        for pk, tenant, device_id, entity_id, entity_type, online, seen, every, missed in rows
        if seen is not None  # the query's condition; narrows the type
    ]


def _flip(session: Session, device: _Seen, alive: bool) -> bool:
    """Set `online`, unless another checker did, or a newer message arrived, since we read."""
    result = session.execute(
        update(IotDevice)
        .where(
            IotDevice.pk == device.pk,
            IotDevice.last_seen == device.last_seen,
            or_(IotDevice.online.is_(None), IotDevice.online.is_not(alive)),
        )
        .values(online=alive)
    )
    return bool(getattr(result, "rowcount", 0))


def _event(device: _Seen, now: datetime) -> dict[str, Any]:
    return {
        "tenant": device.tenant,
        "device_id": device.device_id,
        "entity_id": device.entity_id,
        "entity_type": device.entity_type,
        "last_seen": _iso(device.last_seen),
        "at": _iso(now),
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def check_liveness(context: AppContext, now: datetime | None = None) -> list[tuple[str, bool]]:
    """Mark devices online or offline as their last message says; announce each change once.

    Returns the changes made by this call, as (device_id, online)."""
    moment = now or utcnow()
    if moment.tzinfo is None:
        raise ValueError("check_liveness needs an aware UTC datetime")
    flush_counters(context)
    events: list[tuple[str, dict[str, Any]]] = []
    changes: list[tuple[str, bool]] = []
    with context.db.session() as session:
        for device in _candidates(session):
            alive = device.alive_at(moment)
            if device.online is alive or not _flip(session, device, alive):
                continue
            changes.append((device.device_id, alive))
            events.append((ONLINE_TOPIC if alive else OFFLINE_TOPIC, _event(device, moment)))
    # Published after commit, as the bus requires.
    for topic, payload in events:
        context.bus.publish(topic, payload)
    return changes


@contextmanager
def periodic_liveness(context: AppContext, seconds: float | None = None) -> Iterator[None]:
    """Run `check_liveness` every `settings.iot_liveness_seconds` in a daemon thread while the
    block runs; a failed check is logged and the next one runs as planned."""
    period = seconds or float(context.settings.iot_liveness_seconds)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(period):
            try:
                check_liveness(context)
            except Exception:
                log.exception("device liveness check failed")

    thread = threading.Thread(target=loop, name="pujiang-iot-liveness", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(STOP_WAIT_SECONDS)
