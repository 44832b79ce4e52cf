"""Southbound MQTT adapter: device measures in, command acknowledgements in, commands out.

Devices publish IoT Agent JSON topics: `/{apikey}/{device_id}/attrs` (an object of measures),
`/{apikey}/{device_id}/attrs/{object_id}` (one bare value) and `/{apikey}/{device_id}/cmdexe`
(a command's result). `MqttConsumer` subscribes to them with QoS 1 in a persistent session
(MQTT 5: clean_start=False and a long session expiry; MQTT 3.1.1: clean_session=False), so
nothing published while a worker is down is lost, and acknowledges a message only after the
transaction holding it committed (`manual_ack`): a crash between the two makes the broker
deliver it again, and the ingest recognises it as a duplicate (same device, attribute and
time). With `ingest_shared_group` the subscriptions are MQTT 5 shared subscriptions
(`$share/{group}/...`): each message goes to one worker of the group.

Flow control, measured against Mosquitto 2.0.11 with its defaults (`max_inflight_messages 20`,
`max_queued_messages 1000`):

- A client that does not ask otherwise gets 20 unacknowledged messages at a time (MQTT 3.1.1,
  and MQTT 5 without a Receive Maximum). As we acknowledge only after a commit, that would cap
  a transaction at 20 messages, and a burst beyond 20 in flight + 1000 queued is *dropped* by
  the broker even at QoS 1 (3,000 published at once: 1,020 arrived).
- An MQTT 5 client's Receive Maximum replaces the broker's figure: with 65535 all 3,000 arrived
  at once. So we connect with MQTT 5 and Receive Maximum 65535 (the protocol's largest); what
  a worker holds in memory is bounded by that many messages.
- For a worker that is *offline*, the broker keeps at most `max_queued_messages` QoS 1 messages
  in its session, counting those it had delivered and not yet had acknowledged; the rest are
  dropped. A session subscribed to every API key also queues every other group's traffic.
  Raise `max_queued_messages` on the broker to cover the longest outage to survive, and/or
  give workers only some groups (`pujiang ingest --apikey`).

`MqttPublisher` sends commands to devices (`/{apikey}/{device_id}/cmd`, QoS 1).
"""

from __future__ import annotations

import logging
import os
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pujiang.iot.metrics import registry_of
from pujiang.platform.deps import AppContext
from pujiang.platform.workers import MULTIPROC_ENV

log = logging.getLogger("pujiang.iot.mqtt")

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
PROTOCOLS = {"mqtt5.0": mqtt.MQTTv5, "mqtt3.1.1": mqtt.MQTTv311}
TOPIC_FILTERS = ("/+/+/attrs", "/+/+/attrs/+", "/+/+/cmdexe")
RECEIVE_MAXIMUM = 65535  # see the module docstring: the broker's default window is 20
SESSION_EXPIRY_SECONDS = 7 * 24 * 3600  # a worker down for a week still finds its messages
KEEPALIVE_SECONDS = 30
RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 30
RETRY_MIN_SECONDS = 1.0  # pause after a failed transaction, doubling up to the maximum
RETRY_MAX_SECONDS = 30.0
IDLE_POLL_SECONDS = 0.2
PUBLISH_TIMEOUT_SECONDS = 5.0


# -- addresses and topics -------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is and how to talk to it, from `PUJIANG_MQTT_URL`."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    protocol: MQTTProtocolVersion


def parse_broker_url(url: str) -> BrokerAddress:
    """mqtt[s]://[user:password@]host[:port][?protocol=mqtt3.1.1]; ValueError saying why not."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"PUJIANG_MQTT_URL 须以 mqtt:// 或 mqtts:// 开头 / "
            f"PUJIANG_MQTT_URL must start with mqtt:// or mqtts://, not {url!r}"
        )
    if not parts.hostname:
        raise ValueError(
            f"PUJIANG_MQTT_URL 缺少主机名 / PUJIANG_MQTT_URL names no broker host: {url!r}"
        )
    if parts.path.strip("/"):
        raise ValueError(
            "PUJIANG_MQTT_URL 只写代理地址，不含主题 / PUJIANG_MQTT_URL names the broker only, "
            f"not a topic: {url!r}"
        )
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise ValueError(f"PUJIANG_MQTT_URL 端口无效 / invalid port in {url!r}") from exc
    protocol_name = parse_qs(parts.query).get("protocol", ["mqtt5.0"])[-1]
    if protocol_name not in PROTOCOLS:
        raise ValueError(
            f"PUJIANG_MQTT_URL 的 protocol 须为 mqtt5.0 或 mqtt3.1.1 / "
            f"protocol must be mqtt5.0 or mqtt3.1.1, not {protocol_name!r}"
        )
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        tls=scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        protocol=PROTOCOLS[protocol_name],
    )


@dataclass(frozen=True)
class DeviceTopic:
    """A device topic taken apart: `kind` is "attrs" or "cmdexe"."""

    apikey: str
    device_id: str
    kind: str
    object_id: str | None = None


def parse_topic(topic: str) -> DeviceTopic | None:
    """The parts of `/{apikey}/{device_id}/attrs[/{object_id}]` or `.../cmdexe`; None otherwise."""
    levels = topic.split("/")
    if len(levels) not in (4, 5) or levels[0] != "" or not levels[1] or not levels[2]:
        return None
    _, apikey, device_id, kind, *rest = levels
    if kind == "attrs" and not rest:
        return DeviceTopic(apikey, device_id, "attrs")
    if kind == "attrs" and rest[0]:
        return DeviceTopic(apikey, device_id, "attrs", rest[0])
    if kind == "cmdexe" and not rest:
        return DeviceTopic(apikey, device_id, "cmdexe")
    return None


def command_topic(apikey: str, device_id: str) -> str:
    return f"/{apikey}/{device_id}/cmd"


def topic_filters(shared_group: str = "", apikeys: tuple[str, ...] = ()) -> list[str]:
    """What the consumer subscribes to: every service group's device topics, or only those of
    `apikeys`; shared by the group when one is named."""
    if any(_bad_level(key) for key in apikeys):
        raise ValueError(
            f"API 密钥不能为空或含 / + # / an API key may not be empty or contain / + or #: "
            f"{list(apikeys)!r}"
        )
    patterns = [
        pattern.replace("/+/+/", f"/{key}/+/", 1)
        for key in apikeys or ("+",)
        for pattern in TOPIC_FILTERS
    ]
    if not shared_group:
        return patterns
    if _bad_level(shared_group):
        raise ValueError(
            "共享订阅组名不能含 / + # / the shared-subscription group may not contain / + or #: "
            f"{shared_group!r}"
        )
    # `$share/{group}/` then the filter, whose own first level is empty: `$share/g//+/+/attrs`.
    return [f"$share/{shared_group}/{pattern}" for pattern in patterns]


def _bad_level(text: str) -> bool:
    return not text.strip() or any(char in text for char in "/+#")


def _client(address: BrokerAddress, client_id: str, **options: Any) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=address.protocol,
        **options,
    )
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set_context(ssl.create_default_context())
    return client


# -- the consumer ---------------------------------------------------------------------------------


@dataclass
class ConsumerStats:
    """Running totals of one consumer (read by the CLI's progress line and by tests)."""

    received: int = 0  # messages taken from the broker
    redelivered: int = 0  # of those, sent again by the broker (unacknowledged before)
    ignored: int = 0  # on a topic that is not a device topic
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    command_acks: int = 0  # /cmdexe messages that completed a command
    unknown_acks: int = 0  # /cmdexe for an unknown device or no pending command
    acknowledged: int = 0  # PUBACKs sent
    left_unacknowledged: int = 0  # handled, but the connection they came on was gone
    batches: int = 0
    failures: int = 0  # failed transactions (retried)
    connects: int = 0


class _Received(NamedTuple):
    """What a batch needs of a message, kept instead of paho's message object: a tuple of
    strings and numbers is invisible to the cyclic garbage collector, whereas the up to 65,535
    messages in flight, each an MQTTMessage with its Properties, made the worker spend a fifth
    of its time in collections."""

    generation: int  # which connection delivered it: an ack goes back on that one only
    topic: str  # "" when not UTF-8 (paho raises on reading such a topic)
    payload: bytes
    mid: int
    qos: int
    received_at: float  # wall clock (paho's own timestamp is monotonic)


class MqttConsumer:
    """Takes device messages from the broker in batches, writes each batch in one transaction
    through the `Ingestor`, then acknowledges the batch."""

    def __init__(
        self,
        context: AppContext,
        *,
        client_id: str | None = None,
        shared_group: str | None = None,
        apikeys: tuple[str, ...] = (),
    ) -> None:
        settings = context.settings
        if not settings.mqtt_url:
            raise ValueError("PUJIANG_MQTT_URL 未设置 / PUJIANG_MQTT_URL is not set")
        self.context = context
        self.address = parse_broker_url(settings.mqtt_url)
        self.client_id = client_id or settings.ingest_client_id
        self.shared_group = settings.ingest_shared_group if shared_group is None else shared_group
        self.filters = topic_filters(self.shared_group, apikeys)
        self.batch_max = settings.ingest_batch_max
        self.batch_seconds = settings.ingest_batch_ms / 1000
        self.retry_seconds = (RETRY_MIN_SECONDS, RETRY_MAX_SECONDS)  # first pause, longest
        self.stats = ConsumerStats()
        self.subscribed = threading.Event()
        self._inbox: queue.SimpleQueue[_Received] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._ack_lock = threading.Lock()
        self._generation = 0
        self._live_generation: int | None = None  # the connection acks may go to, if any
        self._thread: threading.Thread | None = None
        self.client = self._make_client()
        self._collector = _collector_of(context)
        self._collector.consumers.append(self)

    # -- connection (paho's network thread) --

    def _make_client(self) -> mqtt.Client:
        v5 = self.address.protocol == mqtt.MQTTv5
        options = {"manual_ack": True} if v5 else {"manual_ack": True, "clean_session": False}
        client = _client(self.address, self.client_id, **options)
        client.reconnect_delay_set(RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties | None:
        if self.address.protocol != mqtt.MQTTv5:
            return None
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        return properties

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning(
                "MQTT 代理拒绝连接 / the MQTT broker refused %s: %s", self.client_id, reason
            )
            return
        with self._ack_lock:
            self._generation += 1
            self._live_generation = self._generation
        self.stats.connects += 1
        log.info(
            "MQTT 已连接 / connected to %s:%d as %s (session present: %s)",
            self.address.host,
            self.address.port,
            self.client_id,
            bool(getattr(flags, "session_present", False)),
        )
        # Subscribing again on a resumed session is harmless and covers a session the
        # broker has dropped (expired, or the broker lost its persistence).
        if self.address.protocol == mqtt.MQTTv5:
            client.subscribe([(f, SubscribeOptions(qos=1)) for f in self.filters])
        else:
            client.subscribe([(f, 1) for f in self.filters])

    def _on_subscribe(self, _c: Any, _u: Any, _mid: Any, reasons: Any, _p: Any) -> None:
        refused = [str(r) for r in reasons if getattr(r, "is_failure", False)]
        if refused:
            log.error(
                "MQTT 代理拒绝订阅 / the broker refused the subscriptions %s: %s",
                self.filters,
                refused,
            )
            return
        topics = " ".join(self.filters)
        log.info("MQTT 已订阅设备主题 / %s subscribed to %s", self.client_id, topics)
        self.subscribed.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._ack_lock:
            self._live_generation = None
        self.subscribed.clear()
        if not self._stopping.is_set():
            log.warning(
                "MQTT 连接断开，将重连 / disconnected from the broker (%s); reconnecting", reason
            )

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # not acknowledged: the broker delivers it again to the next session
        self.stats.received += 1
        if message.dup:
            self.stats.redelivered += 1
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = ""
        payload = bytes(message.payload)
        self._inbox.put(
            _Received(self._generation, topic, payload, message.mid, message.qos, time.time())
        )

    # -- lifecycle --

    def start(self) -> MqttConsumer:
        """Connect (retrying with backoff until the broker answers) and start consuming."""
        if self._thread is not None:
            return self
        if self.address.protocol == mqtt.MQTTv5:
            self.client.connect_async(
                self.address.host,
                self.address.port,
                KEEPALIVE_SECONDS,
                clean_start=False,
                properties=self._connect_properties(),
            )
        else:
            self.client.connect_async(self.address.host, self.address.port, KEEPALIVE_SECONDS)
        self.client.loop_start()
        self._thread = threading.Thread(
            target=self._run, name=f"mqtt-ingest-{self.client_id}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking messages, commit and acknowledge the batch in hand, disconnect."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("MQTT 批次仍未完成 / the batch in hand is still not written")
            self._thread = None
        with self._ack_lock:
            self._live_generation = None
        self.client.disconnect()  # queued after the last PUBACKs, so those go out first
        self.client.loop_stop()

    def wait_subscribed(self, timeout: float) -> bool:
        return self.subscribed.wait(timeout)

    @property
    def backlog(self) -> int:
        return self._inbox.qsize()

    # -- batches (the consumer's own thread) --

    def _run(self) -> None:
        while not self._stopping.is_set():
            batch = self._take()
            self._collector.mirror()
            if not batch:
                continue
            try:
                self._handle(batch)
            except Exception:  # a fault of ours: keep consuming; the batch stays unacknowledged
                self.stats.failures += 1
                log.exception("MQTT 批次处理出错 / handling an MQTT batch failed")
                self._stopping.wait(self.retry_seconds[0])

    def _take(self) -> list[_Received]:
        """Up to `batch_max` messages, waiting at most `batch_ms` after the first one."""
        try:
            batch = [self._inbox.get(timeout=IDLE_POLL_SECONDS)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.batch_seconds
        while len(batch) < self.batch_max:
            try:
                batch.append(self._inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopping.is_set():
                break
            try:
                batch.append(self._inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _handle(self, batch: list[_Received]) -> None:
        from pujiang.iot.service import Message

        measures: list[Message] = []
        answers: list[tuple[DeviceTopic, bytes | bytearray]] = []  # /cmdexe
        for item in batch:
            topic = item.topic
            parsed = parse_topic(topic)
            if parsed is None:
                self.stats.ignored += 1
                log.debug("ignoring a message on %r: not a device topic", topic)
            elif parsed.kind == "cmdexe":
                answers.append((parsed, item.payload))
            else:
                measures.append(
                    Message(
                        apikey=parsed.apikey,
                        device_id=parsed.device_id,
                        payload=item.payload,
                        object_id=parsed.object_id,
                        transport="mqtt",
                        received_at=item.received_at,
                    )
                )
        if measures and not self._until_done(lambda: self._ingest(measures)):
            return
        for device, payload in answers:
            if not self._until_done(lambda d=device, p=payload: self._command_ack(d, p)):
                return
        self.stats.batches += 1
        self._acknowledge(batch)

    def _ingest(self, messages: list[Any]) -> None:
        from pujiang.iot.service import ingestor_of

        report = ingestor_of(self.context).ingest(messages)
        self.stats.stored += report.stored
        self.stats.duplicates += report.duplicates
        self.stats.rejected += report.rejected
        if report.rejected:
            reasons = self.stats.rejected_by_reason
            for outcome in report.outcomes:
                if outcome.status == "rejected":
                    key = outcome.reason or "unknown"
                    reasons[key] = reasons.get(key, 0) + 1

    def _command_ack(self, topic: DeviceTopic, payload: bytes | bytearray) -> None:
        from pujiang.iot.commands import handle_ack

        completed = handle_ack(self.context, topic.apikey, topic.device_id, payload)
        if completed:
            self.stats.command_acks += completed
        else:
            self.stats.unknown_acks += 1

    def _until_done(self, work: Any) -> bool:
        """Run `work` until it succeeds (True), pausing longer after each failure; False when
        stopping first. Nothing is acknowledged meanwhile, so nothing can be lost."""
        pause, longest = self.retry_seconds
        while True:
            try:
                work()
                return True
            except Exception:
                self.stats.failures += 1
                log.exception(
                    "写入失败，%.1f 秒后重试，消息暂不确认 / writing a batch failed; retrying in "
                    "%.1f s, its messages stay unacknowledged",
                    pause,
                    pause,
                )
            if self._stopping.wait(pause):
                return False
            pause = min(pause * 2, longest)

    def _acknowledge(self, batch: list[_Received]) -> None:
        """PUBACK each message, in arrival order, on the connection that delivered it."""
        with self._ack_lock:
            live = self._live_generation
            for item in batch:
                if item.qos == 0:
                    continue
                if item.generation != live:
                    # That connection is gone; the broker delivers the message again on the
                    # resumed session and it is recognised as a duplicate then.
                    self.stats.left_unacknowledged += 1
                    continue
                self.client.ack(item.mid, item.qos)
                self.stats.acknowledged += 1


class _ConsumerCollector(Collector):
    """The MQTT consumers' own figures on the ingest registry (the Ingestor counts outcomes)."""

    FIGURES = (
        ("redelivered", "Messages the broker sent again (not acknowledged before)"),
        ("ignored", "Messages on a topic that is not a device topic"),
        ("acknowledged", "PUBACKs sent after the commit"),
        ("left_unacknowledged", "Messages handled after their connection was lost"),
        ("failures", "Failed batch transactions (retried)"),
        ("command_acks", "Command answers that completed a command"),
        ("unknown_acks", "Command answers for no open command or an unknown device"),
        ("connects", "Connections made to the broker"),
    )

    def __init__(self) -> None:
        self.consumers: list[MqttConsumer] = []
        self._mirrors: dict[str, Gauge] = {}

    def collect(self) -> Any:
        for name, help_text, total in self._figures():
            yield CounterMetricFamily(f"pujiang_ingest_mqtt_{name}", help_text, value=total)
        yield GaugeMetricFamily(
            "pujiang_ingest_mqtt_backlog",
            "Messages received and waiting for their batch",
            value=sum(c.backlog for c in self.consumers),
        )

    def _figures(self) -> Iterator[tuple[str, str, int]]:
        for name, help_text in self.FIGURES:
            yield name, help_text, sum(getattr(c.stats, name) for c in self.consumers)

    def mirror(self) -> None:
        """With several server processes (`platform.workers`) a scrape reads every worker's
        files, not this collector: write this process's figures there (summed over workers)."""
        if not os.environ.get(MULTIPROC_ENV):
            return
        if not self._mirrors:
            for name, help_text in self.FIGURES:
                self._mirrors[name] = Gauge(
                    f"pujiang_ingest_mqtt_{name}",
                    help_text,
                    registry=None,
                    multiprocess_mode="sum",
                )
            self._mirrors["backlog"] = Gauge(
                "pujiang_ingest_mqtt_backlog",
                "Messages received and waiting for their batch",
                registry=None,
                multiprocess_mode="livesum",
            )
        for name, _help, total in self._figures():
            self._mirrors[name].set(total)
        self._mirrors["backlog"].set(sum(c.backlog for c in self.consumers))


COLLECTOR_KEY = "iot.mqtt_collector"


def _collector_of(context: AppContext) -> _ConsumerCollector:
    collector: _ConsumerCollector | None = context.extras.get(COLLECTOR_KEY)
    if collector is None:
        collector = _ConsumerCollector()
        registry_of(context).register(collector)
        context.extras[COLLECTOR_KEY] = collector
    return collector


# -- commands out ---------------------------------------------------------------------------------


class PublishError(Exception):
    """The broker did not take a command; the message says why (kept as the command's info)."""


class MqttPublisher:
    """One connection for sending commands: opened on first use, opened again when dropped."""

    def __init__(self, url: str, timeout: float = PUBLISH_TIMEOUT_SECONDS) -> None:
        self.address = parse_broker_url(url)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()

    def _open(self) -> mqtt.Client:
        client = _client(
            self.address, f"pujiang-cmd-{uuid.uuid4().hex[:12]}", reconnect_on_failure=False
        )
        client.connect_timeout = self.timeout
        client.on_connect = lambda _c, _u, _f, reason, _p: (
            None if getattr(reason, "is_failure", False) else self._connected.set()
        )
        client.on_disconnect = lambda *_args: self._connected.clear()
        try:
            client.connect(self.address.host, self.address.port, KEEPALIVE_SECONDS)
        except (OSError, ValueError) as exc:
            raise PublishError(
                f"无法连接 MQTT 代理 / cannot reach the MQTT broker "
                f"{self.address.host}:{self.address.port}: {exc}"
            ) from exc
        client.loop_start()
        if not self._connected.wait(self.timeout):
            self._close(client)
            raise PublishError(
                f"MQTT 代理未接受连接 / the MQTT broker {self.address.host} did not accept "
                "the connection in time"
            )
        return client

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish and wait for the broker's acknowledgement; PublishError when it fails."""
        with self._lock:
            if self._client is None or not self._connected.is_set():
                if self._client is not None:
                    self._close(self._client)
                    self._client = None
                self._client = self._open()
            info = self._client.publish(topic, payload, qos=qos)
            try:
                info.wait_for_publish(self.timeout)
            except (RuntimeError, ValueError) as exc:
                self._close(self._client)
                self._client = None
                raise PublishError(f"MQTT 发布失败 / MQTT publish failed: {exc}") from exc
            if not info.is_published():
                raise PublishError(
                    f"MQTT 代理未及时确认 / the broker {self.address.host} did not acknowledge "
                    "the command in time"
                )

    @staticmethod
    def _close(client: mqtt.Client) -> None:
        try:
            client.disconnect()
        finally:
            client.loop_stop()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._close(self._client)
                self._client = None


PUBLISHER_KEY = "iot.mqtt_publisher"


def publisher_of(context: AppContext) -> MqttPublisher | None:
    """The context's command publisher; None when no broker is configured."""
    url = context.settings.mqtt_url
    if not url:
        return None
    publisher: MqttPublisher | None = context.extras.get(PUBLISHER_KEY)
    if publisher is None:
        publisher = context.extras.setdefault(PUBLISHER_KEY, MqttPublisher(url))
    return publisher


def close_publisher(context: AppContext) -> None:
    publisher: MqttPublisher | None = context.extras.pop(PUBLISHER_KEY, None)
    if publisher is not None:
        publisher.close()
