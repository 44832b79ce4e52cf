"""The MQTT southbound adapter against the real Mosquitto on 127.0.0.1:1883.

Every test uses API keys and client ids of its own, so parallel runs on one broker never take
each other's messages (a consumer does see other runs' device topics: those are rejected as
unknown API keys, which is why the assertions read the test's own device counters). Sessions
a test opens are removed at its end (`forget_session`), or the broker would keep queueing
for them. Without a reachable broker these tests skip (fail when CI=true), saying why.
"""

from __future__ import annotations

import queue
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from pujiang.context.models import history_rows
from pujiang.iot.models import IotDevice
from pujiang.iot.mqtt import (
    MqttConsumer,
    parse_broker_url,
    parse_topic,
    topic_filters,
)
from pujiang.iot.service import ingestor_of
from pujiang.iot.worker import WORKER_KEY, Worker, running
from pujiang.platform.deps import AppContext
from pujiang.settings import Settings
from tests.conftest import service_unavailable

HISTORY = history_rows()  # the broker's history rows with their series' columns

pytestmark = pytest.mark.mqtt

BROKER = ("127.0.0.1", 1883)
MQTT_URL = "mqtt://127.0.0.1:1883"
ENTITIES = "/ngsi-ld/v1/entities"
TEMPORAL = "/ngsi-ld/v1/temporal/entities"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def require_broker() -> None:
    try:
        with socket.create_connection(BROKER, timeout=1):
            pass
    except OSError as exc:
        service_unavailable("the MQTT broker at 127.0.0.1:1883", str(exc))


def forget_session(client_id: str) -> None:
    """End a persistent session on the broker: connect clean with no expiry, disconnect."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0
    try:
        client.connect(*BROKER, clean_start=True, properties=properties)
        client.loop_start()
        time.sleep(0.2)
        client.disconnect()
        client.loop_stop()
    except OSError:
        pass


def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or check}")
        time.sleep(0.05)


class Publisher:
    """A device side: a paho MQTT 5 client publishing at QoS 1 and waiting for each PUBACK."""

    def __init__(self) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=unique("pujiang-test-dev-"),
            protocol=mqtt.MQTTv5,
        )
        self.received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client.on_message = lambda _c, _u, message: self.received.put(message)
        self.client.connect(*BROKER)
        self.client.loop_start()

    def publish(self, topic: str, payload: Any, qos: int = 1) -> None:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        self.client.publish(topic, data, qos=qos).wait_for_publish(10)

    def publish_many(self, items: list[tuple[str, bytes]]) -> None:
        infos = [self.client.publish(topic, data, qos=1) for topic, data in items]
        for info in infos:
            info.wait_for_publish(30)

    def subscribe(self, topic: str) -> None:
        done: queue.Queue[bool] = queue.Queue()
        self.client.on_subscribe = lambda *_args: done.put(True)
        self.client.subscribe(topic, qos=1)
        done.get(timeout=5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    require_broker()
    made = Publisher()
    yield made
    made.close()


@pytest.fixture
def settings(settings: Settings) -> Iterator[Settings]:
    """The app's settings with the broker set and a client id of this test's own."""
    require_broker()
    client_id = unique("pujiang-test-ingest-")
    yield settings.model_copy(
        update={
            "mqtt_url": MQTT_URL,
            "ingest_client_id": client_id,
            "ingest_batch_ms": 10,
            "ingest_max_message_bytes": 512,
        }
    )
    forget_session(client_id)


def app_consumer(client: TestClient) -> MqttConsumer:
    """The consumer the app's lifespan started (as `pujiang serve` does), once subscribed."""
    context: AppContext = client.app.state.pujiang  # type: ignore[attr-defined]
    worker: Worker = context.extras[WORKER_KEY]
    assert worker.consumer is not None
    assert worker.consumer.wait_subscribed(10), "the ingest consumer did not subscribe"
    return worker.consumer


def counters(context: AppContext, apikey: str, device_id: str) -> IotDevice:
    ingestor_of(context).flush()
    with context.db.session() as session:
        row = session.scalars(
            select(IotDevice).where(IotDevice.apikey == apikey, IotDevice.device_id == device_id)
        ).one()
        session.expunge(row)
        return row


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- pure parts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "parts"),
    [
        ("/k1/dev-1/attrs", ("k1", "dev-1", "attrs", None)),
        ("/k1/dev-1/attrs/t", ("k1", "dev-1", "attrs", "t")),
        ("/k1/dev-1/cmdexe", ("k1", "dev-1", "cmdexe", None)),
        ("/k1//attrs", None),  # no device id
        ("//dev/attrs", None),  # no API key
        ("/k1/dev/attrs/", None),  # empty object id
        ("/k1/dev/cmd", None),  # our own commands are not input
        ("k1/dev/attrs", None),  # the IoT Agent topics start with /
        ("/k1/dev/attrs/t/x", None),
        ("/k1/dev/cmdexe/x", None),
    ],
)
def test_topics(topic: str, parts: tuple[str, str, str, str | None] | None) -> None:
    parsed = parse_topic(topic)
    if parts is None:
        assert parsed is None
    else:
        assert parsed is not None
        assert (parsed.apikey, parsed.device_id, parsed.kind, parsed.object_id) == parts


def test_shared_subscriptions_prefix_every_filter() -> None:
    assert topic_filters("") == ["/+/+/attrs", "/+/+/attrs/+", "/+/+/cmdexe"]
    # The device topics start with an empty level, kept after the group's own slash.
    assert topic_filters("g1") == [
        "$share/g1//+/+/attrs",
        "$share/g1//+/+/attrs/+",
        "$share/g1//+/+/cmdexe",
    ]
    assert topic_filters("", ("k1",)) == ["/k1/+/attrs", "/k1/+/attrs/+", "/k1/+/cmdexe"]
    assert topic_filters("g1", ("k1", "k2"))[3] == "$share/g1//k2/+/attrs"
    for bad in ("a/b", "a+", "#", " "):
        with pytest.raises(ValueError, match="shared-subscription group"):
            topic_filters(bad)
        with pytest.raises(ValueError, match="API key"):
            topic_filters("", ("k1", bad))


def test_broker_urls() -> None:
    plain = parse_broker_url("mqtt://broker.city:1884")
    assert (plain.host, plain.port, plain.tls, plain.username) == ("broker.city", 1884, False, None)
    assert plain.protocol == mqtt.MQTTv5
    secure = parse_broker_url("mqtts://ingest:p%40ss@broker.city?protocol=mqtt3.1.1")
    assert (secure.port, secure.tls, secure.username, secure.password) == (
        8883,
        True,
        "ingest",
        "p@ss",
    )
    assert secure.protocol == mqtt.MQTTv311
    for bad, says in [
        ("http://broker", "mqtt://"),
        ("mqtt://", "no broker host"),
        ("mqtt://broker/some/topic", "not a topic"),
        ("mqtt://broker?protocol=mqtt4", "protocol must be"),
        ("mqtt://broker:99999", "invalid port"),
    ]:
        with pytest.raises(ValueError, match=says):
            parse_broker_url(bad)


# -- against the broker ---------------------------------------------------------------------------


def test_both_topic_forms_reach_the_entity_and_its_history(
    client: TestClient,
    context: AppContext,
    login: Callable[..., dict[str, str]],
    provision: Callable[..., dict[str, Any]],
    publisher: Publisher,
) -> None:
    apikey = unique("k")
    provision(apikey, "ws-1")
    app_consumer(client)
    reader = login("reader", "operator")
    earlier = datetime.now(UTC) - timedelta(minutes=5)
    publisher.publish(f"/{apikey}/ws-1/attrs", {"t": 21.5, "h": 40, "TimeInstant": iso(earlier)})
    publisher.publish(f"/{apikey}/ws-1/attrs/t", 22.5)  # one bare value, the time of receipt
    entity_id = "urn:ngsi-ld:WeatherObserved:ws-1"

    def current() -> Any:
        reply = client.get(f"{ENTITIES}/{entity_id}", headers=reader)
        if reply.status_code != 200:
            return None
        body = reply.json()
        return body if body.get("temperature", {}).get("value") == 22.5 else None

    entity = wait_until(current, what="the bare /attrs/t value on the entity")
    assert entity["temperature"]["unitCode"] == "CEL"
    assert entity["relativeHumidity"]["value"] == 40
    history = client.get(f"{TEMPORAL}/{entity_id}", headers=reader)
    assert history.status_code == 200, history.text
    temperatures = history.json()["temperature"]
    assert sorted(i["value"] for i in temperatures) == [21.5, 22.5]
    assert iso(earlier) in {i["observedAt"] for i in temperatures}
    device = counters(context, apikey, "ws-1")
    assert (device.received, device.stored, device.rejected) == (2, 2, 0)


def test_bad_payloads_are_counted_rejected_and_acknowledged(
    context: AppContext,
    provision: Callable[..., dict[str, Any]],
    publisher: Publisher,
) -> None:
    apikey = unique("k")
    provision(apikey, "ws-2")
    bad = [
        b"{not json",  # malformed_json
        b"[1, 2]",  # not_an_object
        orjson.dumps({"t": "warm"}),  # wrong_type
        orjson.dumps({"t": 1.0, "pad": "x" * 600}),  # too_large (limit 512 in these settings)
    ]
    with running(context, jobs=False) as worker:
        consumer = worker.consumer
        assert consumer is not None
        assert consumer.wait_subscribed(10)
        for payload in bad:
            publisher.publish(f"/{apikey}/ws-2/attrs", payload)
        publisher.publish(f"/{apikey}/nobody/attrs", {"t": 1})  # unknown_device
        publisher.publish(f"/{apikey}//attrs", {"t": 1})  # not a device topic
        publisher.publish(f"/{apikey}/ws-2/attrs", {"t": 20.0})
        wait_until(lambda: counters(context, apikey, "ws-2").stored == 1, what="the good measure")
        reasons = consumer.stats.rejected_by_reason
        assert reasons.get("unknown_device", 0) >= 1
        for reason in ("malformed_json", "not_an_object", "wrong_type", "too_large"):
            assert reasons.get(reason, 0) >= 1, reasons
        assert consumer.stats.ignored >= 1
    device = counters(context, apikey, "ws-2")
    assert (device.received, device.stored, device.rejected) == (5, 1, 4)
    assert device.last_error
    # Everything was acknowledged: the session, resumed, holds nothing of ours any more.
    assert redelivered(context.settings.ingest_client_id, apikey) == []


def redelivered(client_id: str, apikey: str, wait: float = 1.5) -> list[str]:
    """Topics of `apikey` the broker still holds for the session `client_id`."""
    got: list[str] = []
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    client.on_message = lambda _c, _u, m: got.append(m.topic)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 60
    client.connect(*BROKER, clean_start=False, properties=properties)
    client.loop_start()
    time.sleep(wait)
    client.disconnect()
    client.loop_stop()
    return [topic for topic in got if topic.startswith(f"/{apikey}/")]


def test_a_failing_database_leaves_messages_unacknowledged_until_it_recovers(
    context: AppContext,
    provision: Callable[..., dict[str, Any]],
    publisher: Publisher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    apikey = unique("k")
    provision(apikey, "ws-3")
    ingestor = ingestor_of(context)
    real_ingest = ingestor.ingest
    calls = {"failed": 0}
    outage = {"on": True}

    def flaky(messages: list[Any]) -> Any:
        if outage["on"] and any(m.apikey == apikey for m in messages):
            calls["failed"] += 1
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real_ingest(messages)

    monkeypatch.setattr(ingestor, "ingest", flaky)
    with running(context, jobs=False) as worker:
        consumer = worker.consumer
        assert consumer is not None
        assert consumer.wait_subscribed(10)
        consumer.retry_seconds = (0.05, 0.2)
        publisher.publish(f"/{apikey}/ws-3/attrs", {"t": 19.0})
        wait_until(lambda: calls["failed"] >= 3, what="retries of the failing batch")
        assert counters(context, apikey, "ws-3").stored == 0
        assert consumer.stats.failures >= 3
        outage["on"] = False
        wait_until(lambda: counters(context, apikey, "ws-3").stored == 1, what="the retry")
    assert counters(context, apikey, "ws-3").duplicates == 0
    assert redelivered(context.settings.ingest_client_id, apikey) == []


def test_messages_published_while_the_worker_is_away_arrive_when_it_returns(
    context: AppContext,
    provision: Callable[..., dict[str, Any]],
    publisher: Publisher,
) -> None:
    apikey = unique("k")
    provision(apikey, "ws-4")
    with running(context, jobs=False) as worker:  # makes the persistent session
        assert worker.consumer is not None
        assert worker.consumer.wait_subscribed(10)
    start = datetime.now(UTC) - timedelta(minutes=10)
    for i in range(50):
        moment = iso(start + timedelta(seconds=i))
        publisher.publish(f"/{apikey}/ws-4/attrs", {"t": float(i), "TimeInstant": moment})
    with running(context, jobs=False):
        wait_until(lambda: counters(context, apikey, "ws-4").stored == 50, what="the backlog")
    device = counters(context, apikey, "ws-4")
    assert (device.received, device.duplicates) == (50, 0)


def test_the_app_runs_no_consumer_without_a_broker(context: AppContext, settings: Settings) -> None:
    context.settings = settings.model_copy(update={"mqtt_url": None})
    with running(context) as worker:
        assert worker.consumer is None
        assert not worker.jobs_enabled  # test mode: jobs only when a test asks


def test_periodic_jobs_write_counters_without_being_asked(
    context: AppContext,
    provision: Callable[..., dict[str, Any]],
    publisher: Publisher,
) -> None:
    apikey = unique("k")
    provision(apikey, "ws-5")
    with running(context, jobs=True) as worker:
        assert worker.consumer is not None
        assert worker.consumer.wait_subscribed(10)
        publisher.publish(f"/{apikey}/ws-5/attrs", {"t": 18.0})

        def stored() -> bool:  # read the row without flushing: the worker's job must have
            with context.db.session() as session:
                row = session.scalars(
                    select(IotDevice.stored).where(IotDevice.apikey == apikey)
                ).one()
            return row == 1

        wait_until(stored, what="the periodic flush of device counters")


def test_a_batch_committed_but_never_acknowledged_comes_back_as_duplicates(
    context: AppContext,
    provision: Callable[..., dict[str, Any]],
    publisher: Publisher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker dying between its commit and its PUBACKs: the broker delivers the batch again
    to the resumed session, and the device + attribute + time rule keeps it out."""
    apikey = unique("k")
    provision(apikey, "ws-6")
    first = MqttConsumer(context, apikeys=(apikey,))
    monkeypatch.setattr(first, "_acknowledge", lambda _batch: None)  # dies before acking
    first.start()
    assert first.wait_subscribed(10)
    start = datetime.now(UTC) - timedelta(minutes=30)
    for i in range(20):
        moment = iso(start + timedelta(seconds=i))
        publisher.publish(f"/{apikey}/ws-6/attrs", {"t": float(i), "TimeInstant": moment})
    wait_until(lambda: counters(context, apikey, "ws-6").stored == 20, what="the first commit")
    first.stop()

    second = MqttConsumer(context, apikeys=(apikey,)).start()
    try:
        wait_until(lambda: second.stats.duplicates == 20, what="the batch delivered again")
        assert second.stats.redelivered == 20
        assert second.stats.stored == 0
    finally:
        second.stop()
    device = counters(context, apikey, "ws-6")
    assert (device.received, device.stored, device.duplicates) == (40, 20, 20)
    with context.db.session() as session:
        rows = session.scalars(
            select(HISTORY.c.num).where(HISTORY.c.entity_id == "urn:ngsi-ld:WeatherObserved:ws-6")
        ).all()
    assert sorted(rows) == [float(i) for i in range(20)]
    assert redelivered(context.settings.ingest_client_id, apikey) == []


def test_an_unreachable_broker_is_retried_and_stopping_does_not_hang(
    context: AppContext, settings: Settings
) -> None:
    context.settings = settings.model_copy(update={"mqtt_url": "mqtt://127.0.0.1:1"})
    consumer = MqttConsumer(context).start()
    try:
        assert not consumer.wait_subscribed(1.5)  # refused, retried in the background
    finally:
        started = time.monotonic()
        consumer.stop()
    assert time.monotonic() - started < 5
    assert consumer.stats.connects == 0


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        ([], {"PUJIANG_MQTT_URL": ""}, "PUJIANG_MQTT_URL"),
        ([], {"PUJIANG_MQTT_URL": "http://broker"}, "mqtt://"),
        (["--shared-group", "a/b"], {}, "shared-subscription group"),
        (["--apikey", "k+"], {}, "API key"),
    ],
)
def test_the_ingest_command_refuses_bad_settings(
    settings: Settings, args: list[str], env: dict[str, str], says: str
) -> None:
    from typer.testing import CliRunner

    from pujiang.cli import app as cli_app

    environment = {
        "PUJIANG_MODE": "development",
        "PUJIANG_DATABASE_URL": settings.database_url,
        "PUJIANG_MQTT_URL": MQTT_URL,
        "PUJIANG_VAR_DIR": str(settings.var_dir),
        **env,
    }
    result = CliRunner().invoke(cli_app, ["ingest", *args], env=environment)
    assert result.exit_code == 2, result.output
    assert says in result.output


def test_mqtt_3_1_1_works_with_a_persistent_session_too(
    context: AppContext,
    settings: Settings,
    provision: Callable[..., dict[str, Any]],
    publisher: Publisher,
) -> None:
    """For brokers without MQTT 5 (the broker's in-flight window applies then: see mqtt.py)."""
    context.settings = settings.model_copy(update={"mqtt_url": f"{MQTT_URL}?protocol=mqtt3.1.1"})
    apikey = unique("k")
    provision(apikey, "ws-7")
    with running(context, jobs=False) as worker:  # makes the session
        assert worker.consumer is not None
        assert worker.consumer.wait_subscribed(10)
    publisher.publish(f"/{apikey}/ws-7/attrs", {"t": 17.0})  # while away: kept by the broker
    with running(context, jobs=False):
        wait_until(lambda: counters(context, apikey, "ws-7").stored == 1, what="the measure")
