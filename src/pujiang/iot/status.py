"""Device liveness: offline after `missed_intervals` × `expected_interval` without a message.

The ingest path only records when a device was last heard from (`last_seen`); the `online`
flag is changed here alone, so each change is seen once and announced once on the bus:
`iot.device.offline` when a device falls silent, `iot.device.online` when it is heard again
(or for the first time). The ingest path writes `offline_after` (last_seen + missed_intervals ×
the device's or its group's `expected_interval`) with `last_seen`; a device with no interval
never goes offline. A check is two set-based conditional updates, so its cost does not grow
with the devices that did not change, and of several workers checking at once only the one
whose update took effect publishes the event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, update
from sqlalchemy.orm import Session

from pujiang.iot.models import IotDevice
from pujiang.iot.provisioning import flush_counters
from pujiang.platform.db import utcnow
from pujiang.platform.deps import AppContext

log = logging.getLogger("pujiang.iot.status")

OFFLINE_TOPIC = "iot.device.offline"
ONLINE_TOPIC = "iot.device.online"
STOP_WAIT_SECONDS = 10.0


_RETURNED = (
    IotDevice.tenant,
    IotDevice.device_id,
    IotDevice.entity_id,
    IotDevice.entity_type,
    IotDevice.last_seen,
)


def _flip(session: Session, alive: bool, now: datetime) -> list[Any]:
    """Set `online` on every device whose last message says it changed; return those rows.

    One conditional UPDATE each way: a row flips only from the other state, so of several
    checkers running at once exactly one sees (and announces) each change."""
    if alive:
        condition = and_(
            or_(IotDevice.online.is_(None), IotDevice.online.is_(False)),
            IotDevice.last_seen.is_not(None),
            or_(IotDevice.offline_after.is_(None), IotDevice.offline_after >= now),
        )
    else:
        condition = and_(IotDevice.online.is_(True), IotDevice.offline_after < now)
    statement = update(IotDevice).where(condition).values(online=alive).returning(*_RETURNED)
    return list(session.execute(statement.execution_options(synchronize_session=False)))


def _event(row: Any, now: datetime) -> dict[str, Any]:
    return {
        "tenant": row.tenant,
        "device_id": row.device_id,
        "entity_id": row.entity_id,
        "entity_type": row.entity_type,
        "last_seen": _iso(row.last_seen),
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
    with context.db.write_session() as session:
        for alive, topic in ((False, OFFLINE_TOPIC), (True, ONLINE_TOPIC)):
            for row in sorted(_flip(session, alive, moment), key=lambda r: r.device_id):
                changes.append((row.device_id, alive))
                events.append((topic, _event(row, moment)))
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
