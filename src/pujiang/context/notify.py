"""Notification senders: HTTP(S) with httpx, MQTT(S) with paho-mqtt (3.1.1 and 5.0).

A sender takes one ready `Outgoing` notification and either returns (the endpoint accepted it)
or raises `SendError`. Nothing here knows subscriptions, retries or the outbox: that is
`subscriptions.py`. Both senders are used from the delivery worker's asyncio loop; the MQTT
client is blocking, so its calls run in worker threads.

MQTT endpoints are `mqtt://[user:password@]host[:1883]/topic` and `mqtts://...[:8883]/topic`.
`notifierInfo` chooses `MQTT-Version` (`mqtt3.1.1`, or `mqtt5.0` by default) and `MQTT-QoS`
(0 by default, 1 or 2). The message is the JSON object `{"metadata": {...}, "body": {...}}`:
`metadata` holds what HTTP would send as headers (Content-Type, Link, NGSILD-Tenant and the
`receiverInfo` pairs), `body` the notification. With MQTT 5 the same metadata is also sent as
user properties, and Content-Type as the message's content type.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger("pujiang.context.notify")

HTTP_SCHEMES = ("http", "https")
MQTT_SCHEMES = ("mqtt", "mqtts")
MQTT_VERSION_KEY = "MQTT-Version"
MQTT_QOS_KEY = "MQTT-QoS"
MQTT_VERSIONS = {"mqtt3.1.1": mqtt.MQTTv311, "mqtt5.0": mqtt.MQTTv5}
DEFAULT_MQTT_VERSION = "mqtt5.0"
_DEFAULT_PORTS = {"http": 80, "https": 443, "mqtt": 1883, "mqtts": 8883}


class SendError(Exception):
    """The endpoint did not take the notification; `detail` says why (kept as lastFailure)."""


@dataclass(frozen=True)
class Outgoing:
    """One notification, ready to go: where, what, and the metadata to send with it."""

    uri: str
    body: dict[str, Any]
    headers: dict[str, str]
    notifier_info: dict[str, str] = field(default_factory=dict)


def endpoint_key(uri: str) -> str:
    """scheme://host:port of an endpoint: the unit a dead endpoint is set aside by."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


@dataclass(frozen=True)
class MqttTarget:
    tls: bool
    host: str
    port: int
    topic: str
    username: str | None
    password: str | None


def parse_mqtt_uri(uri: str) -> MqttTarget:
    """mqtt[s]://[user:password@]host[:port]/topic; ValueError saying what is wrong."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in MQTT_SCHEMES:
        raise ValueError(f"an MQTT endpoint starts with mqtt:// or mqtts://, not {uri!r}")
    if not parts.hostname:
        raise ValueError(f"the MQTT endpoint {uri!r} names no broker host")
    topic = unquote(parts.path.lstrip("/"))
    if not topic:
        raise ValueError(f"the MQTT endpoint {uri!r} names no topic: use mqtt://host:port/topic")
    if "+" in topic or "#" in uri:
        raise ValueError(f"the MQTT topic {topic!r} may not contain the wildcards + or #")
    return MqttTarget(
        tls=scheme == "mqtts",
        host=parts.hostname,
        port=parts.port or _DEFAULT_PORTS[scheme],
        topic=topic,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def mqtt_options(notifier_info: dict[str, str]) -> tuple[str, int]:
    """(MQTT-Version, MQTT-QoS) from notifierInfo, with the spec's defaults; ValueError if bad."""
    version = notifier_info.get(MQTT_VERSION_KEY, DEFAULT_MQTT_VERSION)
    if version not in MQTT_VERSIONS:
        raise ValueError(
            f"notifierInfo {MQTT_VERSION_KEY} must be mqtt3.1.1 or mqtt5.0, not {version!r}"
        )
    qos_text = notifier_info.get(MQTT_QOS_KEY, "0")
    if qos_text not in {"0", "1", "2"}:
        raise ValueError(f"notifierInfo {MQTT_QOS_KEY} must be 0, 1 or 2, not {qos_text!r}")
    return version, int(qos_text)


# -- HTTP -----------------------------------------------------------------------------------------


class HttpSender:
    """POSTs the notification; any 2xx is success, anything else (or no answer) a SendError."""

    def __init__(self, timeout: float = 10.0, max_connections: int = 100) -> None:
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=20),
            follow_redirects=False,
        )

    async def send(self, message: Outgoing) -> None:
        try:
            reply = await self.client.post(
                message.uri, content=orjson.dumps(message.body), headers=message.headers
            )
        except httpx.HTTPError as exc:
            raise SendError(f"{type(exc).__name__}: {exc}".strip().rstrip(":")) from exc
        if not 200 <= reply.status_code < 300:
            raise SendError(f"HTTP {reply.status_code} from {message.uri}")

    async def aclose(self) -> None:
        await self.client.aclose()


# -- MQTT -----------------------------------------------------------------------------------------


class _MqttConnection:
    """One connected paho client to one broker, as one user, in one protocol version."""

    def __init__(self, target: MqttTarget, version: str, timeout: float) -> None:
        self.timeout = timeout
        self.version = version
        self.connected = threading.Event()
        self.refused: str | None = None
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"pujiang-notify-{uuid.uuid4().hex[:12]}",
            protocol=MQTT_VERSIONS[version],
            reconnect_on_failure=False,
        )
        self.client.connect_timeout = timeout
        if target.username is not None:
            self.client.username_pw_set(target.username, target.password)
        if target.tls:
            self.client.tls_set_context(ssl.create_default_context())
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.target = target

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if getattr(reason, "is_failure", False):
            self.refused = str(reason)
        else:
            self.connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
        self.connected.clear()

    def open(self) -> None:
        try:
            self.client.connect(self.target.host, self.target.port, keepalive=60)
        except (OSError, ValueError) as exc:
            raise SendError(f"cannot connect to MQTT broker {self.target.host}: {exc}") from exc
        self.client.loop_start()
        if not self.connected.wait(self.timeout):
            self.close()
            reason = self.refused or "no CONNACK in time"
            raise SendError(f"MQTT broker {self.target.host} refused the connection: {reason}")

    @property
    def alive(self) -> bool:
        return self.connected.is_set()

    def publish(self, payload: bytes, qos: int, properties: Properties | None) -> None:
        with self.lock:
            info = self.client.publish(self.target.topic, payload, qos=qos, properties=properties)
            try:
                info.wait_for_publish(self.timeout)
            except (RuntimeError, ValueError) as exc:
                raise SendError(f"MQTT publish failed: {exc}") from exc
            if not info.is_published():
                raise SendError(f"MQTT broker {self.target.host} did not acknowledge in time")

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


class MqttSender:
    """Publishes notifications, keeping one connection per (broker, user, version)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._connections: dict[tuple[Any, ...], _MqttConnection] = {}
        self._lock = threading.Lock()

    async def send(self, message: Outgoing) -> None:
        await asyncio.to_thread(self.send_blocking, message)

    def send_blocking(self, message: Outgoing) -> None:
        try:
            target = parse_mqtt_uri(message.uri)
            version, qos = mqtt_options(message.notifier_info)
        except ValueError as exc:
            raise SendError(str(exc)) from exc
        payload = orjson.dumps({"metadata": message.headers, "body": message.body})
        properties = None
        if version == "mqtt5.0":
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            content_type = message.headers.get("Content-Type")
            if content_type:
                properties.ContentType = content_type
            pairs = [(k, v) for k, v in message.headers.items() if k != "Content-Type"]
            if pairs:
                properties.UserProperty = pairs
        connection = self._connection(target, version)
        try:
            connection.publish(payload, qos, properties)
        except SendError:
            self._drop(target, version)
            raise

    def _key(self, target: MqttTarget, version: str) -> tuple[Any, ...]:
        return (target.tls, target.host, target.port, target.username, target.password, version)

    def _connection(self, target: MqttTarget, version: str) -> _MqttConnection:
        key = self._key(target, version)
        with self._lock:
            connection = self._connections.get(key)
            if connection is not None and connection.alive:
                return connection
            if connection is not None:
                self._connections.pop(key)
                connection.close()
        connection = _MqttConnection(target, version, self.timeout)
        connection.open()
        with self._lock:
            self._connections[key] = connection
        return connection

    def _drop(self, target: MqttTarget, version: str) -> None:
        with self._lock:
            connection = self._connections.pop(self._key(target, version), None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        with self._lock:
            connections = list(self._connections.values())
            self._connections.clear()
        for connection in connections:
            try:
                connection.close()
            except Exception:  # closing is best effort
                log.debug("closing an MQTT connection failed", exc_info=True)


class Senders:
    """The sender for each scheme, behind one `send`."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.http = HttpSender(timeout)
        self.mqtt = MqttSender(timeout)

    async def send(self, message: Outgoing) -> None:
        scheme = urlsplit(message.uri).scheme.lower()
        if scheme in HTTP_SCHEMES:
            await self.http.send(message)
        elif scheme in MQTT_SCHEMES:
            await self.mqtt.send(message)
        else:
            raise SendError(f"no sender for the endpoint scheme {scheme!r}")

    async def aclose(self) -> None:
        await self.http.aclose()
        await asyncio.to_thread(self.mqtt.close)
