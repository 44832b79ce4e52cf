"""Commands to devices: over MQTT (a paho client plays the device and answers on /cmdexe) and
over HTTP push (a small HTTP server in a thread plays the device), their status on the entity,
expiry, and every way a request can be wrong.

The app runs its MQTT consumer as `pujiang serve` does (settings from tests/iot/test_mqtt.py:
the real broker on 127.0.0.1:1883, a client id of the test's own).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from pujiang.app import build_context, create_app
from pujiang.iot.commands import expire_commands, handle_ack
from pujiang.platform.db import utcnow
from pujiang.platform.deps import AppContext
from pujiang.settings import Settings
from tests.iot.test_mqtt import (
    Publisher,
    app_consumer,
    publisher,
    settings,
    unique,
    wait_until,
)

pytestmark = pytest.mark.mqtt

__all__ = ["publisher", "settings"]  # fixtures shared with test_mqtt.py

Headers = dict[str, str]
ENTITIES = "/ngsi-ld/v1/entities"


@pytest.fixture
def steward(login: Callable[..., Headers]) -> Headers:
    """Holds iot.provision and context.write."""
    return login("steward", "data_steward")


@pytest.fixture
def operator(login: Callable[..., Headers]) -> Headers:
    """context.read only."""
    return login("operator", "operator")


class DeviceServer:
    """An HTTP device: records each command POSTed to it and answers as told."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.status = 200
        self.body: bytes = b""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                command = orjson.loads(self.rfile.read(length))
                server.received.append(command)
                body = server.body or orjson.dumps(
                    {name: ["done", value] for name, value in command.items()}
                )
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/commands"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_device() -> Iterator[DeviceServer]:
    server = DeviceServer()
    yield server
    server.close()


def provision(
    client: TestClient, headers: Headers, apikey: str, *devices: dict[str, Any], tenant: str = ""
) -> None:
    scope = {**headers, "fiware-service": tenant} if tenant else headers
    group = {
        "apikey": apikey,
        "entity_type": "Streetlight",
        "attributes": [{"object_id": "l", "name": "luminosity", "type": "Number"}],
        "commands": [{"name": "switch", "type": "command"}],
    }
    reply = client.post("/iot/services", json={"services": [group]}, headers=scope)
    assert reply.status_code == 201, reply.text
    docs = [{"apikey": apikey, **device} for device in devices]
    reply = client.post("/iot/devices", json={"devices": docs}, headers=scope)
    assert reply.status_code == 201, reply.text


def send(client: TestClient, headers: Headers, device_id: str, body: Any, tenant: str = "") -> Any:
    scope = {**headers, "fiware-service": tenant} if tenant else headers
    return client.post(f"/iot/devices/{device_id}/commands", json=body, headers=scope)


def listed(client: TestClient, headers: Headers, device_id: str) -> list[dict[str, Any]]:
    reply = client.get(f"/iot/devices/{device_id}/commands", headers=headers)
    assert reply.status_code == 200, reply.text
    commands: list[dict[str, Any]] = reply.json()["commands"]
    return commands


def entity(client: TestClient, headers: Headers, device_id: str) -> dict[str, Any]:
    reply = client.get(f"{ENTITIES}/urn:ngsi-ld:Streetlight:{device_id}", headers=headers)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def shown(body: dict[str, Any], name: str) -> tuple[Any, Any]:
    return body[f"{name}_status"]["value"], body[f"{name}_info"]["value"]


def fault(reply: Any, status: int, field: str) -> str:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    body = reply.json()
    assert field in [e["field"] for e in body.get("errors", [])], body
    detail: str = body["detail"]
    return detail


# -- MQTT -----------------------------------------------------------------------------------------


def test_a_command_round_trip_over_mqtt(
    client: TestClient, steward: Headers, operator: Headers, publisher: Publisher
) -> None:
    apikey = unique("k")
    provision(client, steward, apikey, {"device_id": "lamp-1"})
    consumer = app_consumer(client)
    publisher.subscribe(f"/{apikey}/lamp-1/cmd")
    device = publisher  # the paho client plays the lamp

    reply = send(client, steward, "lamp-1", {"name": "switch", "value": "on"})
    assert reply.status_code == 201, reply.text
    sent = reply.json()
    assert (sent["name"], sent["value"], sent["status"]) == ("switch", "on", "DELIVERED")
    assert sent["requested_by"] == "steward"
    assert sent["sent_at"]

    command = device.received.get(timeout=5)
    assert command.topic == f"/{apikey}/lamp-1/cmd"
    assert command.qos == 1
    assert orjson.loads(command.payload) == {"switch": "on"}
    assert shown(entity(client, operator, "lamp-1"), "switch")[0] == "DELIVERED"

    device.publish(f"/{apikey}/lamp-1/cmdexe", {"switch": "lamp is on"})
    done = wait_until(
        lambda: [c for c in listed(client, operator, "lamp-1") if c["status"] == "OK"],
        what="the device's answer",
    )
    assert done[0]["info"] == "lamp is on"
    assert done[0]["done_at"]
    assert shown(entity(client, operator, "lamp-1"), "switch") == ("OK", "lamp is on")
    assert consumer.stats.command_acks == 1


def test_answers_nobody_asked_for_are_counted_not_fatal(
    client: TestClient, steward: Headers, operator: Headers, publisher: Publisher
) -> None:
    apikey = unique("k")
    provision(client, steward, apikey, {"device_id": "lamp-2"})
    consumer = app_consumer(client)
    before = consumer.stats.unknown_acks
    publisher.publish(f"/{apikey}/lamp-2/cmdexe", {"switch": "on"})  # no open command
    publisher.publish(f"/{apikey}/ghost/cmdexe", {"switch": "on"})  # no such device
    publisher.publish(f"/{apikey}/lamp-2/cmdexe", b"{not json")
    publisher.publish(f"/{apikey}/lamp-2/cmdexe", b"[]")
    wait_until(lambda: consumer.stats.unknown_acks >= before + 4, what="four ignored answers")
    # The consumer lives on: a real exchange still completes.
    publisher.subscribe(f"/{apikey}/lamp-2/cmd")
    assert send(client, steward, "lamp-2", {"name": "switch", "value": 1}).status_code == 201
    publisher.received.get(timeout=5)
    publisher.publish(f"/{apikey}/lamp-2/cmdexe", {"switch": {"level": 1}})
    done = wait_until(
        lambda: [c for c in listed(client, operator, "lamp-2") if c["status"] == "OK"],
        what="the answer",
    )
    assert done[0]["info"] == '{"level":1}'


def test_an_answer_completes_the_newest_open_command_of_its_name(
    client: TestClient, context: AppContext, steward: Headers, operator: Headers
) -> None:
    apikey = unique("k")
    provision(client, steward, apikey, {"device_id": "lamp-3"})
    app_consumer(client)
    for value in ("on", "off"):
        assert (
            send(client, steward, "lamp-3", {"name": "switch", "value": value}).status_code == 201
        )
    assert handle_ack(context, apikey, "lamp-3", b'{"switch": "is off"}') == 1
    by_value = {c["value"]: c for c in listed(client, operator, "lamp-3")}
    assert (by_value["off"]["status"], by_value["off"]["info"]) == ("OK", "is off")
    assert by_value["on"]["status"] == "DELIVERED"
    assert handle_ack(context, apikey, "lamp-3", {"reboot": 1}) == 0  # not a command of it


def test_unanswered_commands_expire(
    client: TestClient, context: AppContext, steward: Headers, operator: Headers
) -> None:
    apikey = unique("k")
    provision(client, steward, apikey, {"device_id": "lamp-4"})
    app_consumer(client)
    assert send(client, steward, "lamp-4", {"name": "switch", "value": "on"}).status_code == 201
    assert expire_commands(context, utcnow() + timedelta(seconds=60)) == 0
    assert expire_commands(context, utcnow() + timedelta(seconds=121)) == 1
    [command] = listed(client, operator, "lamp-4")
    assert command["status"] == "EXPIRED"
    assert "120" in command["info"]
    assert shown(entity(client, operator, "lamp-4"), "switch")[0] == "EXPIRED"
    assert handle_ack(context, apikey, "lamp-4", {"switch": "too late"}) == 0
    assert expire_commands(context, utcnow() + timedelta(seconds=121)) == 0


# -- HTTP push ------------------------------------------------------------------------------------


def test_a_command_round_trip_over_http(
    client: TestClient, steward: Headers, operator: Headers, http_device: DeviceServer
) -> None:
    apikey = unique("k")
    device = {"device_id": "pump-1", "transport": "HTTP", "endpoint": http_device.url}
    provision(client, steward, apikey, device, tenant="water")
    reply = send(client, steward, "pump-1", {"name": "switch", "value": {"speed": 3}}, "water")
    assert reply.status_code == 201, reply.text
    command = reply.json()
    assert http_device.received == [{"switch": {"speed": 3}}]
    assert (command["status"], command["info"]) == ("OK", '["done",{"speed":3}]')
    scoped = {**operator, "NGSILD-Tenant": "water"}
    assert shown(entity(client, scoped, "pump-1"), "switch") == ("OK", command["info"])


def test_an_http_device_failing_or_silent_gives_error(
    client: TestClient, steward: Headers, operator: Headers, http_device: DeviceServer
) -> None:
    apikey = unique("k")
    http_device.status, http_device.body = 503, b"pump busy"
    provision(
        client,
        steward,
        apikey,
        {"device_id": "pump-2", "transport": "HTTP", "endpoint": http_device.url},
        {"device_id": "pump-3", "transport": "HTTP", "endpoint": "http://127.0.0.1:9/nothing"},
    )
    failed = send(client, steward, "pump-2", {"name": "switch", "value": "on"}).json()
    assert failed["status"] == "ERROR"
    assert "HTTP 503" in failed["info"]
    assert "pump busy" in failed["info"]
    assert shown(entity(client, operator, "pump-2"), "switch") == ("ERROR", failed["info"])
    silent = send(client, steward, "pump-3", {"name": "switch", "value": "on"}).json()
    assert silent["status"] == "ERROR"
    assert "did not answer" in silent["info"]


def test_an_http_device_answering_plain_text(
    client: TestClient, steward: Headers, http_device: DeviceServer
) -> None:
    apikey = unique("k")
    http_device.body = b"switched"
    provision(
        client,
        steward,
        apikey,
        {"device_id": "pump-4", "transport": "HTTP", "endpoint": http_device.url},
    )
    command = send(client, steward, "pump-4", {"name": "switch"}).json()
    assert http_device.received == [{"switch": ""}]  # no value: the IoT Agent's empty one
    assert (command["status"], command["info"]) == ("OK", "switched")


# -- bad requests ---------------------------------------------------------------------------------


def test_bad_command_requests(client: TestClient, steward: Headers, operator: Headers) -> None:
    apikey = unique("k")
    provision(
        client,
        steward,
        apikey,
        {"device_id": "lamp-5"},
        {"device_id": "pump-5", "transport": "HTTP"},
    )
    detail = fault(send(client, steward, "lamp-5", {"name": "reboot"}), 400, "name")
    assert "reboot" in detail
    assert "switch" in detail
    assert "ghost" in fault(send(client, steward, "ghost", {"name": "switch"}), 404, "device_id")
    # Another tenant does not see the device.
    fault(send(client, steward, "lamp-5", {"name": "switch"}, tenant="other"), 404, "device_id")
    fault(send(client, steward, "pump-5", {"name": "switch"}), 409, "endpoint")
    fault(
        send(client, steward, "lamp-5", {"name": "switch"}, tenant="Bad Tenant!"),
        400,
        "fiware-service",
    )
    for body in ({}, {"name": ""}, {"name": "switch", "extra": 1}, ["switch"]):
        assert send(client, steward, "lamp-5", body).status_code == 422
    assert send(client, operator, "lamp-5", {"name": "switch"}).status_code == 403
    assert client.post("/iot/devices/lamp-5/commands", json={"name": "switch"}).status_code == 401
    fault(client.get("/iot/devices/ghost/commands", headers=operator), 404, "device_id")
    assert client.get("/iot/devices/lamp-5/commands?limit=0", headers=operator).status_code == 422
    assert listed(client, operator, "lamp-5") == []  # nothing was recorded by the bad requests


def test_an_mqtt_command_without_a_broker_names_the_setting(
    client: TestClient, settings: Settings, context: AppContext, steward: Headers
) -> None:
    apikey = unique("k")
    provision(client, steward, apikey, {"device_id": "lamp-6"})
    plain = build_context(settings.model_copy(update={"mqtt_url": None}))
    try:
        with TestClient(create_app(plain.settings, plain)) as other:
            detail = fault(
                send(other, steward, "lamp-6", {"name": "switch"}), 409, "PUJIANG_MQTT_URL"
            )
    finally:
        plain.db.dispose()
    assert "PUJIANG_MQTT_URL" in detail
