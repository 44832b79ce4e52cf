"""Commands sent through the context broker: writing a command attribute commands the device.

FIWARE users command a device by updating the command attribute of its entity (an IoT Agent
registers itself with the broker for those attributes). Pujiang does the same without a
registration: this bridge listens to the broker's change events, and when an update writes an
attribute that is a provisioned command of a device bound to that entity (e.g.
`PATCH /ngsi-ld/v1/entities/{id}/attrs/switch` with `{"value": "on"}`), it sends the value as
that command, exactly as `POST /iot/devices/{id}/commands` would. The command's progress shows
on the entity as `<name>_status` and `<name>_info`; a command that cannot be sent (no MQTT
broker, no endpoint) shows ERROR there, since the writer of the attribute gets no other answer.

Sending runs on a small thread pool, off the request (an HTTP device may take seconds). Only
`update` changes count: creating or replacing an entity never fires its commands.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy import select

from pujiang.iot import commands
from pujiang.iot.mapping import PayloadError
from pujiang.iot.models import IotDevice, IotService
from pujiang.platform.deps import AppContext

log = logging.getLogger("pujiang.iot.bridge")

CHANGED_TOPIC = "context.entity.changed"  # pujiang.context.store.TOPIC_CHANGED
EXTRA_KEY = "iot.bridge"
REQUESTED_BY = "ngsi-ld"
REFRESH_SECONDS = 5.0

Key = tuple[str, str]  # (tenant, expanded attribute name)


class CommandBridge:
    def __init__(self, context: AppContext) -> None:
        from pujiang.iot.service import ingestor_of

        self.context = context
        self.registry = ingestor_of(context).registry
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="iot-commands")
        self._names: dict[Key, str] = {}
        self._stamp: Any = None
        self._checked_at = 0.0
        self._lock = threading.Lock()
        self.pending: list[Future[None]] = []

    # -- which attributes are commands ------------------------------------------------------------

    def command_names(self) -> dict[Key, str]:
        """(tenant, attribute IRI) -> command name, for every provisioned command; re-read
        when provisioning changes (looked at every few seconds)."""
        now = time.monotonic()
        if now - self._checked_at < REFRESH_SECONDS and self._stamp is not None:
            return self._names
        with self._lock:
            stamp = self.registry.stamp()
            if stamp != self._stamp:
                self._names = self._read_names()
                self._stamp = stamp
            self._checked_at = now
        return self._names

    def _read_names(self) -> dict[Key, str]:
        names: dict[Key, str] = {}
        with self.context.db.session() as session:
            services = session.execute(
                select(
                    IotService.tenant, IotService.apikey, IotService.commands, IotService.ld_context
                )
            ).all()
            contexts = {s.apikey: s.ld_context for s in services}
            rows: list[tuple[str, str | None, Any]] = [
                (s.tenant, s.ld_context, s.commands) for s in services
            ]
            for device in session.execute(
                select(IotDevice.tenant, IotDevice.apikey, IotDevice.commands)
            ):
                if device.commands:
                    rows.append((device.tenant, contexts.get(device.apikey), device.commands))
        for tenant, ld_context, entries in rows:
            expand = self.registry.expander(ld_context)
            for entry in entries or ():
                name = str(entry.get("name") or "")
                if name:
                    names[(tenant, expand(name))] = name
        return names

    # -- the bus handler --------------------------------------------------------------------------

    def on_change(self, _topic: str, event: dict[str, Any]) -> None:
        if event.get("operation") != "update":
            return
        tenant = str(event.get("tenant") or "")
        names = self.command_names()
        if not names:
            return
        hits = [
            (iri, names[(tenant, iri)])
            for iri in event.get("attributes") or ()
            if (tenant, iri) in names
        ]
        if not hits:
            return
        entity = event.get("entity") or {}
        for iri, name in hits:
            instance = _default_instance(entity.get(iri))
            if instance is None:
                continue
            value = instance.get("value", instance.get("object"))
            future = self.pool.submit(self.send, tenant, str(event.get("id")), name, iri, value)
            with self._lock:  # changes are published from many request threads
                self.pending = [f for f in self.pending if not f.done()] + [future]

    def send(self, tenant: str, entity_id: str, name: str, iri: str, value: Any) -> None:
        """Send `name` to every device of the tenant bound to the entity that has it."""
        for apikey, device_id in self._devices_of(tenant, entity_id):
            try:
                profile = self.registry.profile(apikey, device_id)
            except PayloadError:
                continue
            if name not in profile.commands or profile.expand(name) != iri:
                continue
            if name in {m.name for m in profile.attrs.values()}:
                log.warning(
                    "device %s maps a measure to %r, also one of its commands: not sent, lest "
                    "its own readings command it",
                    device_id,
                    name,
                )
                continue
            try:
                commands.send_command(
                    self.context, tenant, device_id, name, value, requested_by=REQUESTED_BY
                )
            except commands.CommandError as exc:
                log.info("command %s to %s not sent: %s", name, device_id, exc.message)
                commands.show_failure(self.context, profile, name, exc.message)
            except Exception:  # one failed send must not stop the others
                log.exception("command %s to %s failed", name, device_id)

    def _devices_of(self, tenant: str, entity_id: str) -> list[tuple[str, str]]:
        with self.context.db.session() as session:
            rows = session.execute(
                select(IotDevice.apikey, IotDevice.device_id).where(
                    IotDevice.tenant == tenant, IotDevice.entity_id == entity_id
                )
            ).all()
        return [(r.apikey, r.device_id) for r in rows]

    def wait(self, timeout: float = 10.0) -> None:
        """Wait for the commands submitted so far to be sent (tests, shutdown)."""
        with self._lock:
            pending = list(self.pending)
        for future in pending:
            future.result(timeout=timeout)


def _default_instance(instances: Any) -> dict[str, Any] | None:
    for instance in instances or ():
        if isinstance(instance, dict) and not instance.get("datasetId"):
            return instance
    return None


def setup(context: AppContext) -> CommandBridge:
    """The context's bridge, subscribed to the broker's changes once however often called."""
    found = context.extras.get(EXTRA_KEY)
    if found is None:
        found = context.extras[EXTRA_KEY] = CommandBridge(context)
        context.bus.subscribe(CHANGED_TOPIC, found.on_change)
    return found
