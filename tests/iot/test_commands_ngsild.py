"""Commands sent by writing the command attribute of a device's entity through NGSI-LD, as
FIWARE users do (the IoT Agent registers for command attributes; Pujiang listens directly)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from pujiang.iot.bridge import EXTRA_KEY, CommandBridge
from pujiang.iot.service import Message, ingestor_of
from pujiang.platform.deps import AppContext
from tests.iot.test_commands import (
    DeviceServer,
    Headers,
    entity,
    http_device,
    listed,
    operator,
    provision,
    shown,
    steward,
)
from tests.iot.test_mqtt import Publisher, app_consumer, publisher, settings, unique, wait_until

pytestmark = pytest.mark.mqtt

# Fixtures shared with test_mqtt.py and test_commands.py.
__all__ = ["http_device", "operator", "publisher", "settings", "steward"]

ENTITIES = "/ngsi-ld/v1/entities"


def bridge(client: TestClient) -> CommandBridge:
    context: AppContext = client.app.state.pujiang  # type: ignore[attr-defined]
    found: CommandBridge = context.extras[EXTRA_KEY]
    return found


def report(client: TestClient, apikey: str, device_id: str, measures: dict[str, Any]) -> None:
    """The device reports once: its entity exists from then on."""
    context: AppContext = client.app.state.pujiang  # type: ignore[attr-defined]
    outcome = ingestor_of(context).ingest([Message(apikey, device_id, orjson.dumps(measures))])
    assert outcome.outcomes[0].status == "stored"


def write(
    client: TestClient, headers: Headers, device_id: str, attrs: dict[str, Any], patch: str = ""
) -> Any:
    url = f"{ENTITIES}/urn:ngsi-ld:Streetlight:{device_id}/attrs{patch}"
    reply = (client.patch if patch else client.post)(url, json=attrs, headers=headers)
    assert reply.status_code == 204, reply.text
    bridge(client).wait()
    return reply


def test_writing_the_command_attribute_sends_the_command_over_mqtt(
    client: TestClient, steward: Headers, operator: Headers, publisher: Publisher
) -> None:
    apikey = unique("k")
    provision(client, steward, apikey, {"device_id": "lamp-1"})
    app_consumer(client)
    publisher.subscribe(f"/{apikey}/lamp-1/cmd")
    report(client, apikey, "lamp-1", {"l": 30})

    write(client, steward, "lamp-1", {"switch": {"type": "Property", "value": "on"}})
    command = publisher.received.get(timeout=5)
    assert command.topic == f"/{apikey}/lamp-1/cmd"
    assert orjson.loads(command.payload) == {"switch": "on"}
    [sent] = listed(client, operator, "lamp-1")
    assert (sent["value"], sent["status"], sent["requested_by"]) == ("on", "DELIVERED", "ngsi-ld")
    assert shown(entity(client, operator, "lamp-1"), "switch")[0] == "DELIVERED"

    publisher.publish(f"/{apikey}/lamp-1/cmdexe", {"switch": "lamp is on"})
    wait_until(
        lambda: shown(entity(client, operator, "lamp-1"), "switch") == ("OK", "lamp is on"),
        what="the answer on the entity",
    )
    # Once the attribute exists, a partial update of it sends again.
    write(client, steward, "lamp-1", {"type": "Property", "value": "off"}, patch="/switch")
    assert orjson.loads(publisher.received.get(timeout=5).payload) == {"switch": "off"}
    assert [c["value"] for c in listed(client, operator, "lamp-1")] == ["off", "on"]


def test_an_http_device_of_a_tenant_gets_the_command(
    client: TestClient, steward: Headers, operator: Headers, http_device: DeviceServer
) -> None:
    apikey = unique("k")
    device = {"device_id": "pump-1", "transport": "HTTP", "endpoint": http_device.url}
    provision(client, steward, apikey, device, tenant="water")
    report(client, apikey, "pump-1", {"l": 1})
    water = {**steward, "NGSILD-Tenant": "water"}
    write(client, water, "pump-1", {"switch": {"type": "Property", "value": {"speed": 2}}})
    assert http_device.received == [{"switch": {"speed": 2}}]
    scoped = {**operator, "NGSILD-Tenant": "water"}
    assert shown(entity(client, scoped, "pump-1"), "switch") == ("OK", '["done",{"speed":2}]')
    # The same entity id in another tenant is another entity: nothing is sent for it.
    other = {**steward, "NGSILD-Tenant": "other"}
    body = {"id": "urn:ngsi-ld:Streetlight:pump-1", "type": "Streetlight"}
    assert client.post(ENTITIES, json=body, headers=other).status_code == 201
    write(client, other, "pump-1", {"switch": {"type": "Property", "value": "on"}})
    assert len(http_device.received) == 1


def test_a_command_that_cannot_be_sent_shows_error_on_the_entity(
    client: TestClient, steward: Headers, operator: Headers
) -> None:
    apikey = unique("k")
    provision(client, steward, apikey, {"device_id": "pump-2", "transport": "HTTP"})
    report(client, apikey, "pump-2", {"l": 1})
    write(client, steward, "pump-2", {"switch": {"type": "Property", "value": "on"}})
    status, info = shown(entity(client, operator, "pump-2"), "switch")
    assert status == "ERROR"
    assert "endpoint" in info
    assert listed(client, operator, "pump-2") == []


def test_only_updates_of_command_attributes_of_bound_entities_send(
    client: TestClient, steward: Headers, operator: Headers, http_device: DeviceServer
) -> None:
    apikey = unique("k")
    device = {"device_id": "pump-3", "transport": "HTTP", "endpoint": http_device.url}
    provision(client, steward, apikey, device)
    # Creating the entity with the attribute, or replacing it, commands nothing.
    created = {
        "id": "urn:ngsi-ld:Streetlight:pump-3",
        "type": "Streetlight",
        "switch": {"type": "Property", "value": "on"},
    }
    assert client.post(ENTITIES, json=created, headers=steward).status_code == 201
    reply = client.put(f"{ENTITIES}/{created['id']}", json=created, headers=steward)
    assert reply.status_code == 204, reply.text
    # Other attributes, and readings from the device itself, command nothing either.
    write(client, steward, "pump-3", {"luminosity": {"type": "Property", "value": 5}})
    report(client, apikey, "pump-3", {"l": 7})
    # An entity no device is bound to: its "switch" is just an attribute.
    unbound = {"id": "urn:ngsi-ld:Streetlight:free", "type": "Streetlight"}
    assert client.post(ENTITIES, json=unbound, headers=steward).status_code == 201
    write(client, steward, "free", {"switch": {"type": "Property", "value": "on"}})
    bridge(client).wait()
    assert http_device.received == []
    assert listed(client, operator, "pump-3") == []
    # A merge-patch of the command attribute is an update: it sends.
    reply = client.patch(
        f"{ENTITIES}/{created['id']}",
        json={"switch": {"type": "Property", "value": "off"}},
        headers=steward,
    )
    assert reply.status_code == 204, reply.text
    bridge(client).wait()
    assert http_device.received == [{"switch": "off"}]
