"""MQTT notifications against the real broker on 127.0.0.1:1883: MQTT 3.1.1 and 5, QoS 0 and 1.

A paho client subscribes first, then an entity change fires the subscription. Without a
reachable broker these tests skip (fail when CI=true), saying why.
"""

from __future__ import annotations

import queue
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from pujiang.context import subscriptions
from pujiang.context.notify import MqttSender, Outgoing, SendError
from pujiang.platform.deps import AppContext
from tests.conftest import service_unavailable
from tests.context import test_subscriptions as shared
from tests.context.test_subscriptions import SUBS, changed, create, entity, publish, subscription

pytestmark = pytest.mark.mqtt

BROKER = ("127.0.0.1", 1883)

api = shared.api
auth = shared.auth
runtime = shared.runtime


@pytest.fixture
def broker() -> tuple[str, int]:
    try:
        with socket.create_connection(BROKER, timeout=1):
            pass
    except OSError as exc:
        service_unavailable("the MQTT broker at 127.0.0.1:1883", str(exc))
    return BROKER


class Listener:
    """A paho MQTT 5 client subscribed to one fresh topic, collecting what arrives."""

    def __init__(self, host: str, port: int) -> None:
        self.topic = f"pujiang-test/{uuid.uuid4().hex}"
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5
        )
        subscribed = queue.Queue[bool]()
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.on_subscribe = lambda *_args: subscribed.put(True)
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe(self.topic, qos=1)
        subscribed.get(timeout=5)

    def next(self, timeout: float = 5.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def listener(broker: tuple[str, int]) -> Iterator[Listener]:
    made = Listener(*broker)
    yield made
    made.close()


@pytest.mark.parametrize("version", ["mqtt3.1.1", "mqtt5.0"])
@pytest.mark.parametrize("qos", ["0", "1"])
def test_mqtt_notification(
    api: TestClient,
    auth: dict[str, str],
    context: AppContext,
    runtime: subscriptions.Runtime,
    listener: Listener,
    version: str,
    qos: str,
) -> None:
    uri = f"mqtt://127.0.0.1:1883/{listener.topic}"
    doc = subscription(uri)
    doc["notification"]["endpoint"]["notifierInfo"] = [
        {"key": "MQTT-Version", "value": version},
        {"key": "MQTT-QoS", "value": qos},
    ]
    doc["notification"]["endpoint"]["receiverInfo"] = [{"key": "X-Station", "value": "310101"}]
    sub_id = create(api, auth, doc, **{"NGSILD-Tenant": "shanghai"})
    publish(context, changed("update", entity(pm25=77), entity(), tenant="shanghai"))
    message = listener.next()
    assert message.qos == int(qos)
    payload: dict[str, Any] = orjson.loads(message.payload)
    body, metadata = payload["body"], payload["metadata"]
    assert body["type"] == "Notification"
    assert body["subscriptionId"] == sub_id
    assert body["data"][0]["pm25"]["value"] == 77
    assert metadata["Content-Type"] == "application/json"
    assert metadata["NGSILD-Tenant"] == "shanghai"
    assert metadata["X-Station"] == "310101"
    assert subscriptions.CORE_CONTEXT_URL in metadata["Link"]
    properties = getattr(message, "properties", None)
    user = dict(getattr(properties, "UserProperty", []) or [])
    if version == "mqtt5.0":
        assert properties.ContentType == "application/json"  # type: ignore[union-attr]
        assert user["X-Station"] == "310101"
    else:
        assert user == {}  # MQTT 3.1.1 has no properties: metadata travels in the payload

    def sent() -> bool:
        tenant = {**auth, "NGSILD-Tenant": "shanghai"}
        notification = api.get(f"{SUBS}/{sub_id}", headers=tenant).json()["notification"]
        return bool(notification.get("timesSent") == 1 and notification.get("status") == "ok")

    from tests.conftest import eventually

    assert eventually(sent)


def test_mqtt_sender_reports_an_unreachable_broker() -> None:
    sender = MqttSender(timeout=0.5)
    message = Outgoing(uri="mqtt://127.0.0.1:9/t", body={}, headers={})
    with pytest.raises(SendError, match="cannot connect"):
        sender.send_blocking(message)
    sender.close()


def test_mqtt_sender_reuses_its_connection(listener: Listener) -> None:
    sender = MqttSender(timeout=2)
    uri = f"mqtt://127.0.0.1:1883/{listener.topic}"
    try:
        for n in range(3):
            sender.send_blocking(
                Outgoing(uri=uri, body={"n": n}, headers={}, notifier_info={"MQTT-QoS": "1"})
            )
        assert len(sender._connections) == 1
        got = [orjson.loads(listener.next().payload)["body"]["n"] for _ in range(3)]
        assert got == [0, 1, 2]
    finally:
        sender.close()
