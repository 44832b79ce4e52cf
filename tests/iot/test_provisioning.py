"""Provisioning API: service groups and devices in the IoT Agent shape, per tenant.

Runs against the whole app (real database, real ingestor): a device provisioned here is fed
through `Ingestor.ingest` to show that counters, status and mapping changes reach the client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pujiang.iot.service import Message, ingestor_of
from pujiang.iot.units import converter, supported_pairs
from pujiang.platform.deps import AppContext

Headers = dict[str, str]


@pytest.fixture
def writer(login: Callable[..., Headers]) -> Headers:
    """A data steward: holds iot.provision."""
    return login("steward", "data_steward")


@pytest.fixture
def reader(login: Callable[..., Headers]) -> Headers:
    """An operator: context.read, no iot.provision."""
    return login("operator", "operator")


def in_tenant(headers: Headers, tenant: str, path: str | None = None) -> Headers:
    extra = {"fiware-service": tenant}
    if path is not None:
        extra["fiware-servicepath"] = path
    return {**headers, **extra}


def group(apikey: str = "ak-air", **extra: Any) -> dict[str, Any]:
    return {
        "apikey": apikey,
        "entity_type": "AirQualityObserved",
        "attributes": [
            {"object_id": "t", "name": "temperature", "type": "Number", "unitCode": "CEL"},
            {"object_id": "p", "name": "pm25", "type": "Number"},
        ],
        "static_attributes": [{"name": "district", "type": "Text", "value": "黄浦区"}],
        "commands": [{"name": "reset", "type": "command"}],
        **extra,
    }


def add_groups(client: TestClient, headers: Headers, *groups: dict[str, Any]) -> Any:
    reply = client.post("/iot/services", json={"services": list(groups)}, headers=headers)
    assert reply.status_code == 201, reply.text
    return reply.json()


def add_devices(client: TestClient, headers: Headers, *devices: dict[str, Any]) -> Any:
    reply = client.post("/iot/devices", json={"devices": list(devices)}, headers=headers)
    assert reply.status_code == 201, reply.text
    return reply.json()


def fault(reply: Any, status: int, field: str) -> dict[str, Any]:
    """A problem+json reply naming `field` among its faults."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = reply.json()
    fields = [e["field"] for e in body.get("errors", [])]
    assert field in fields, body
    return body


# -- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "value", "expected"),
    [
        ("FAH", "CEL", 212.0, 100.0),
        ("CEL", "FAH", -40.0, -40.0),
        ("KEL", "CEL", 273.15, 0.0),
        ("CEL", "KEL", 25.0, 298.15),
        ("CMT", "MTR", 250.0, 2.5),
        ("MMT", "CMT", 15.0, 1.5),
        ("KMH", "MTS", 36.0, 10.0),
        ("MTS", "KMH", 10.0, 36.0),
        ("HPA", "KPA", 1013.0, 101.3),
        ("BAR", "PAL", 1.0, 100000.0),
        ("MPA", "KPA", 0.4, 400.0),
        ("CEL", "CEL", 21.5, 21.5),
    ],
)
def test_unit_conversions(source: str, target: str, value: float, expected: float) -> None:
    assert converter(source, target)(value) == pytest.approx(expected)


@pytest.mark.parametrize(("source", "target"), [("CEL", "MTR"), ("KMH", "HPA"), ("XYZ", "CEL")])
def test_unknown_unit_pair_is_refused(source: str, target: str) -> None:
    with pytest.raises(ValueError, match=f"{source}"):
        converter(source, target)
    assert (source, target) not in supported_pairs()


# -- service groups ---------------------------------------------------------------------------


def test_create_list_and_read_a_service_group(client: TestClient, writer: Headers) -> None:
    created = add_groups(client, writer, group(description="空气站", expected_interval=600))
    assert created["count"] == 1
    one = created["services"][0]
    assert one["apikey"] == "ak-air"
    assert one["resource"] == "/iot/json"  # the IoT Agent default
    assert one["service"] == ""
    assert one["subservice"] == "/"
    assert one["attributes"][0] == {
        "object_id": "t",
        "name": "temperature",
        "type": "Number",
        "unitCode": "CEL",
    }
    assert one["commands"] == [{"name": "reset", "type": "command"}]
    assert one["expected_interval"] == 600
    assert one["explicitAttrs"] is False

    listed = client.get("/iot/services", headers=writer).json()
    assert listed["count"] == 1
    assert listed["services"][0]["apikey"] == "ak-air"
    read = client.get("/iot/services/ak-air", headers=writer).json()
    assert read["description"] == "空气站"


def test_fiware_fields_and_aliases_are_understood(client: TestClient, writer: Headers) -> None:
    doc = group(
        "ak-fiware",
        cbroker="http://orion:1026",  # meaningless here: accepted and ignored
        explicitAttrs=True,
        **{"@context": "https://example.org/ctx.jsonld"},
    )
    doc["attributes"] = [
        {
            "name": "temperature",  # object_id defaults to the name
            "type": "Number",
            "metadata": {"unitCode": {"type": "Text", "value": "CEL"}},
        }
    ]
    one = add_groups(client, writer, doc)["services"][0]
    assert one["explicitAttrs"] is True
    assert one["ld_context"] == "https://example.org/ctx.jsonld"
    attribute = one["attributes"][0]
    assert attribute["object_id"] == "temperature"
    assert attribute["unitCode"] == "CEL"


def test_service_groups_page(client: TestClient, writer: Headers) -> None:
    add_groups(client, writer, *[group(f"ak-{n}") for n in range(5)])
    page = client.get("/iot/services?limit=2&offset=1", headers=writer).json()
    assert page["count"] == 5
    assert [g["apikey"] for g in page["services"]] == ["ak-1", "ak-2"]
    assert client.get("/iot/services?limit=0", headers=writer).status_code == 422


@pytest.mark.parametrize("apikey", ["has space", "slash/key", "", "x" * 65, "键"])
def test_bad_apikey_is_refused(client: TestClient, writer: Headers, apikey: str) -> None:
    reply = client.post("/iot/services", json={"services": [group(apikey)]}, headers=writer)
    fault(reply, 422, "services.0.apikey")


def test_duplicate_apikey_is_refused(client: TestClient, writer: Headers) -> None:
    add_groups(client, writer, group("ak-1"))
    again = client.post("/iot/services", json={"services": [group("ak-1")]}, headers=writer)
    body = fault(again, 409, "services.0.apikey")
    assert body["type"] == "/problems/already-exists"
    # Twice in one request, and in another tenant (API keys are global: devices send no tenant).
    twice = client.post(
        "/iot/services", json={"services": [group("ak-2"), group("ak-2")]}, headers=writer
    )
    fault(twice, 409, "services.1.apikey")
    other = client.post(
        "/iot/services", json={"services": [group("ak-1")]}, headers=in_tenant(writer, "other")
    )
    fault(other, 409, "services.0.apikey")
    assert client.get("/iot/services", headers=writer).json()["count"] == 1


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ([{"object_id": "t", "name": "temperature", "type": "Celsius"}], "attributes.0.type"),
        ([{"object_id": "t", "name": "id", "type": "Number"}], "attributes.0.name"),
        ([{"object_id": "t", "name": "@context", "type": "Number"}], "attributes.0.name"),
        ([{"object_id": "t", "name": "air temp", "type": "Number"}], "attributes.0.name"),
        ([{"object_id": "a/b", "name": "x", "type": "Number"}], "attributes.0.object_id"),
        ([{"object_id": "t", "name": "x", "type": "Number", "unitCode": "degC"}], "attributes.0"),
        ([{"object_id": "t", "name": "x", "type": "Number", "extra": 1}], "attributes.0.extra"),
    ],
)
def test_bad_attribute_mapping_is_refused(
    client: TestClient, writer: Headers, attributes: list[dict[str, Any]], field: str
) -> None:
    reply = client.post(
        "/iot/services", json={"services": [group(attributes=attributes)]}, headers=writer
    )
    assert reply.status_code == 422, reply.text
    fields = [e["field"] for e in reply.json()["errors"]]
    assert any(f.startswith(f"services.0.{field}") for f in fields), fields


def test_duplicate_object_id_and_names_are_refused(client: TestClient, writer: Headers) -> None:
    twice = [
        {"object_id": "t", "name": "temperature", "type": "Number"},
        {"object_id": "t", "name": "temp2", "type": "Number"},
    ]
    reply = client.post(
        "/iot/services", json={"services": [group(attributes=twice)]}, headers=writer
    )
    assert reply.status_code == 422
    assert "object_id 't'" in reply.json()["detail"]
    clash = group(commands=[{"name": "pm25"}])  # pm25 is also a mapped attribute
    reply = client.post("/iot/services", json={"services": [clash]}, headers=writer)
    assert reply.status_code == 422
    assert "pm25" in reply.json()["detail"]


def test_unit_conversion_mapping(client: TestClient, writer: Headers) -> None:
    ok = group(
        attributes=[
            {
                "object_id": "f",
                "name": "t",
                "type": "Number",
                "sourceUnit": "FAH",
                "unitCode": "CEL",
            }
        ]
    )
    assert add_groups(client, writer, ok)["services"][0]["attributes"][0]["sourceUnit"] == "FAH"
    for attribute in (
        {"object_id": "f", "name": "t", "type": "Number", "sourceUnit": "FAH", "unitCode": "HPA"},
        {"object_id": "f", "name": "t", "type": "Number", "sourceUnit": "FAH"},  # no unitCode
        {"object_id": "f", "name": "t", "type": "Text", "sourceUnit": "FAH", "unitCode": "CEL"},
    ):
        bad = group("ak-bad", attributes=[attribute])
        reply = client.post("/iot/services", json={"services": [bad]}, headers=writer)
        assert reply.status_code == 422, (attribute, reply.text)
        assert reply.json()["errors"][0]["field"] == "services.0.attributes.0"


@pytest.mark.parametrize(
    ("static", "ok"),
    [
        ({"name": "floors", "type": "Integer", "value": 3}, True),
        ({"name": "floors", "type": "Integer", "value": 3.5}, False),
        ({"name": "where", "type": "geo:point", "value": "31.23, 121.47"}, True),
        ({"name": "where", "type": "geo:point", "value": "north"}, False),
        (
            {
                "name": "location",
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [121.4, 31.2]},
            },
            True,
        ),
        ({"name": "location", "type": "geo:json", "value": [121.4, 31.2]}, False),
        ({"name": "refStreet", "type": "Relationship", "value": "urn:ngsi-ld:Street:1"}, True),
        ({"name": "refStreet", "type": "Relationship", "value": "street one"}, False),
        ({"name": "since", "type": "DateTime", "value": "2026-01-01T00:00:00Z"}, True),
        ({"name": "since", "type": "DateTime", "value": "2026-01-01"}, False),
        ({"name": "lit", "type": "Boolean", "value": "yes"}, False),
    ],
)
def test_static_attribute_values_match_their_type(
    client: TestClient, writer: Headers, static: dict[str, Any], ok: bool
) -> None:
    doc = group(static_attributes=[static])
    reply = client.post("/iot/services", json={"services": [doc]}, headers=writer)
    if ok:
        assert reply.status_code == 201, reply.text
    else:
        assert reply.status_code == 422, reply.text
        assert reply.json()["errors"][0]["field"] == "services.0.static_attributes.0"


def test_update_a_service_group(client: TestClient, writer: Headers) -> None:
    add_groups(client, writer, group(expected_interval=60))
    reply = client.put(
        "/iot/services/ak-air",
        json={
            "description": "新描述",
            "attributes": [{"object_id": "h", "name": "humidity", "type": "Number"}],
        },
        headers=writer,
    )
    assert reply.status_code == 200, reply.text
    changed = reply.json()
    assert changed["description"] == "新描述"
    assert [a["name"] for a in changed["attributes"]] == ["humidity"]  # replaced whole
    assert changed["expected_interval"] == 60
    assert changed["commands"]
    # The IoT Agent form, clearing a nullable field.
    reply = client.put(
        "/iot/services?apikey=ak-air&resource=/iot/json",
        json={"expected_interval": None},
        headers=writer,
    )
    assert reply.status_code == 200
    assert reply.json()["expected_interval"] is None


def test_bad_service_group_updates(client: TestClient, writer: Headers) -> None:
    add_groups(client, writer, group())
    fault(
        client.put("/iot/services/ak-air", json={"apikey": "ak-new"}, headers=writer), 400, "apikey"
    )
    fault(
        client.put("/iot/services/ak-air", json={"entity_type": None}, headers=writer),
        400,
        "entity_type",
    )
    reply = client.put(
        "/iot/services/ak-air", json={"commands": [{"name": "temperature"}]}, headers=writer
    )
    fault(reply, 400, "attributes")  # a command named like a kept attribute
    reply = client.put(
        "/iot/services/ak-air", json={"attributes": [{"name": "x", "type": "Nope"}]}, headers=writer
    )
    assert reply.status_code == 422
    fault(
        client.put("/iot/services/nope", json={"description": "x"}, headers=writer), 404, "apikey"
    )
    wrong_resource = client.put(
        "/iot/services?apikey=ak-air&resource=/iot/other", json={}, headers=writer
    )
    fault(wrong_resource, 404, "apikey")
    assert client.put("/iot/services", json={}, headers=writer).status_code == 422  # no apikey


def test_delete_a_service_group(client: TestClient, writer: Headers) -> None:
    add_groups(client, writer, group(), group("ak-empty"))
    add_devices(client, writer, {"device_id": "d1", "apikey": "ak-air"})
    assert client.delete("/iot/services/ak-empty", headers=writer).status_code == 204
    refused = client.delete("/iot/services?apikey=ak-air&resource=/iot/json", headers=writer)
    assert refused.status_code == 409
    assert "device=true" in refused.json()["detail"]
    assert client.get("/iot/devices/d1", headers=writer).status_code == 200
    gone = client.delete(
        "/iot/services?apikey=ak-air&resource=/iot/json&device=true", headers=writer
    )
    assert gone.status_code == 204
    assert client.get("/iot/services", headers=writer).json()["count"] == 0
    assert client.get("/iot/devices/d1", headers=writer).status_code == 404
    assert client.delete("/iot/services/ak-air", headers=writer).status_code == 404


# -- devices ----------------------------------------------------------------------------------


def test_create_and_read_a_device_with_defaults(client: TestClient, writer: Headers) -> None:
    add_groups(client, writer, group())
    created = add_devices(client, writer, {"device_id": "aq-001"})  # the tenant's only group
    device = created["devices"][0]
    assert device["apikey"] == "ak-air"
    assert device["entity_name"] == "urn:ngsi-ld:AirQualityObserved:aq-001"
    assert device["entity_type"] == "AirQualityObserved"
    assert device["protocol"] == "IoTA-JSON"
    assert device["transport"] == "MQTT"
    assert device["missed_intervals"] == 3
    assert device["endpoint"] is None
    assert device["online"] is None
    assert device["lastSeen"] is None
    assert [device[k] for k in ("received", "stored", "rejected", "duplicates")] == [0, 0, 0, 0]
    assert device["lastError"] is None
    assert device["lastErrorAt"] is None
    read = client.get("/iot/devices/aq-001", headers=writer).json()
    assert read["device_id"] == "aq-001"
    assert read["service_path"] == "/"


def test_device_with_its_own_entity_and_http_endpoint(client: TestClient, writer: Headers) -> None:
    add_groups(client, writer, group())
    device = add_devices(
        client,
        writer,
        {
            "device_id": "pump:7",
            "apikey": "ak-air",
            "entity_name": "urn:ngsi-ld:Pump:7",
            "entity_type": "Pump",
            "endpoint": "https://pump7.example.org/cmd",
            "expected_interval": 30,
            "missed_intervals": 5,
            "attributes": [{"object_id": "r", "name": "rpm", "type": "Integer"}],
        },
    )["devices"][0]
    assert device["transport"] == "HTTP"  # an endpoint means commands are pushed over HTTP
    assert device["entity_name"] == "urn:ngsi-ld:Pump:7"
    assert device["entity_type"] == "Pump"
    assert device["expected_interval"] == 30
    assert device["missed_intervals"] == 5
    assert client.get("/iot/devices/pump:7", headers=writer).status_code == 200


@pytest.mark.parametrize("device_id", ["a/b", "a#b", "a+b", "a b", "", "x" * 129])
def test_bad_device_id_is_refused(client: TestClient, writer: Headers, device_id: str) -> None:
    add_groups(client, writer, group())
    reply = client.post(
        "/iot/devices", json={"devices": [{"device_id": device_id}]}, headers=writer
    )
    fault(reply, 422, "devices.0.device_id")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"endpoint": "ftp://pump.example.org/cmd"}, "devices.0.endpoint"),
        ({"endpoint": "javascript:alert(1)"}, "devices.0.endpoint"),
        ({"transport": "COAP"}, "devices.0.transport"),
        ({"protocol": "IoTA-UL"}, "devices.0.protocol"),
        ({"entity_name": "not a uri"}, "devices.0.entity_name"),
        ({"missed_intervals": 0}, "devices.0.missed_intervals"),
        ({"expected_interval": -5}, "devices.0.expected_interval"),
        ({"lazy": [{"name": "x"}]}, "devices.0.lazy"),
    ],
)
def test_bad_device_fields_are_refused(
    client: TestClient, writer: Headers, extra: dict[str, Any], field: str
) -> None:
    add_groups(client, writer, group())
    reply = client.post(
        "/iot/devices", json={"devices": [{"device_id": "d", **extra}]}, headers=writer
    )
    fault(reply, 422, field)


def test_mqtt_device_takes_no_endpoint(client: TestClient, writer: Headers) -> None:
    add_groups(client, writer, group())
    doc = {"device_id": "d", "transport": "mqtt", "endpoint": "http://x.example.org/"}
    reply = client.post("/iot/devices", json={"devices": [doc]}, headers=writer)
    assert reply.status_code == 422
    assert "MQTT" in reply.json()["detail"]


def test_device_needs_a_group_of_its_tenant(client: TestClient, writer: Headers) -> None:
    no_group = client.post("/iot/devices", json={"devices": [{"device_id": "d"}]}, headers=writer)
    fault(no_group, 400, "devices.0.apikey")
    add_groups(client, writer, group("ak-1"), group("ak-2"))
    ambiguous = client.post("/iot/devices", json={"devices": [{"device_id": "d"}]}, headers=writer)
    body = fault(ambiguous, 400, "devices.0.apikey")
    assert "2" in body["detail"]
    add_groups(client, in_tenant(writer, "north"), group("ak-north"))
    other_tenants = client.post(
        "/iot/devices", json={"devices": [{"device_id": "d", "apikey": "ak-north"}]}, headers=writer
    )
    fault(other_tenants, 400, "devices.0.apikey")


def test_devices_are_created_all_or_none(client: TestClient, writer: Headers) -> None:
    add_groups(client, writer, group())
    docs = [{"device_id": "d1"}, {"device_id": "d2", "apikey": "ak-unknown"}, {"device_id": "d3"}]
    reply = client.post("/iot/devices", json={"devices": docs}, headers=writer)
    body = fault(reply, 400, "devices.1.apikey")
    assert "ak-unknown" in body["detail"]
    assert client.get("/iot/devices", headers=writer).json()["count"] == 0
    reply = client.post(
        "/iot/devices",
        json={"devices": [{"device_id": "d1"}, {"device_id": "d/2"}]},
        headers=writer,
    )
    fault(reply, 422, "devices.1.device_id")
    assert client.get("/iot/devices", headers=writer).json()["count"] == 0


def test_duplicate_device_ids_are_refused(client: TestClient, writer: Headers) -> None:
    add_groups(client, writer, group(), group("ak-2"))
    add_devices(client, writer, {"device_id": "d1", "apikey": "ak-air"})
    again = client.post(
        "/iot/devices", json={"devices": [{"device_id": "d1", "apikey": "ak-2"}]}, headers=writer
    )
    fault(again, 409, "devices.0.device_id")
    twice = client.post(
        "/iot/devices",
        json={
            "devices": [
                {"device_id": "d9", "apikey": "ak-2"},
                {"device_id": "d9", "apikey": "ak-2"},
            ]
        },
        headers=writer,
    )
    fault(twice, 409, "devices.1.device_id")
    # The same id in another tenant is another device.
    north = in_tenant(writer, "north")
    add_groups(client, north, group("ak-north"))
    add_devices(client, north, {"device_id": "d1"})


def test_list_devices_with_filters_and_pages(
    client: TestClient, writer: Headers, context: AppContext
) -> None:
    add_groups(client, writer, group())
    add_devices(
        client,
        writer,
        *[{"device_id": f"aq-{n}"} for n in range(4)],
        {"device_id": "pump-1", "entity_type": "Pump"},
    )
    everything = client.get("/iot/devices", headers=writer).json()
    assert everything["count"] == 5
    pumps = client.get("/iot/devices?entity_type=Pump", headers=writer).json()
    assert [d["device_id"] for d in pumps["devices"]] == ["pump-1"]
    page = client.get("/iot/devices?limit=2&offset=2", headers=writer).json()
    assert page["count"] == 5
    assert [d["device_id"] for d in page["devices"]] == ["aq-2", "aq-3"]
    ingestor_of(context).ingest([Message("ak-air", "aq-1", b'{"t": 21}')])
    from pujiang.iot.status import check_liveness

    check_liveness(context)
    online = client.get("/iot/devices?online=true", headers=writer).json()
    assert [d["device_id"] for d in online["devices"]] == ["aq-1"]
    assert client.get("/iot/devices?online=false", headers=writer).json()["count"] == 0
    assert client.get("/iot/devices?online=never", headers=writer).json()["count"] == 4
    assert client.get("/iot/devices?online=maybe", headers=writer).status_code == 422
    assert client.get("/iot/devices?limit=5000", headers=writer).status_code == 422


def test_update_a_device(client: TestClient, writer: Headers) -> None:
    add_groups(client, writer, group())
    add_devices(client, writer, {"device_id": "d1", "endpoint": "http://d1.example.org/cmd"})
    reply = client.put(
        "/iot/devices/d1",
        json={
            "expected_interval": 120,
            "attributes": [{"object_id": "x", "name": "extra", "type": "Text"}],
        },
        headers=writer,
    )
    assert reply.status_code == 200, reply.text
    device = reply.json()
    assert device["expected_interval"] == 120
    assert device["attributes"][0]["name"] == "extra"
    assert device["endpoint"] == "http://d1.example.org/cmd"  # untouched
    moved = client.put("/iot/devices/d1", json={"transport": "MQTT"}, headers=writer).json()
    assert moved["transport"] == "MQTT"
    assert moved["endpoint"] is None
    same_id = client.put(
        "/iot/devices/d1", json={"device_id": "d1", "apikey": "ak-air"}, headers=writer
    )
    assert same_id.status_code == 200  # unchanged identity is fine (whole documents PUT back)


def test_bad_device_updates(client: TestClient, writer: Headers) -> None:
    add_groups(client, writer, group())
    add_devices(client, writer, {"device_id": "d1"})
    fault(client.put("/iot/devices/d1", json={"device_id": "d2"}, headers=writer), 400, "device_id")
    fault(client.put("/iot/devices/d1", json={"apikey": "other"}, headers=writer), 400, "apikey")
    fault(
        client.put("/iot/devices/d1", json={"missed_intervals": None}, headers=writer),
        400,
        "missed_intervals",
    )
    mqtt_endpoint = client.put(
        "/iot/devices/d1", json={"endpoint": "http://x.example.org"}, headers=writer
    )
    fault(mqtt_endpoint, 400, "endpoint")
    bad_scheme = client.put(
        "/iot/devices/d1", json={"endpoint": "file:///etc/passwd"}, headers=writer
    )
    fault(bad_scheme, 422, "endpoint")
    fault(client.put("/iot/devices/nope", json={}, headers=writer), 404, "device_id")


def test_delete_a_device(client: TestClient, writer: Headers) -> None:
    add_groups(client, writer, group())
    add_devices(client, writer, {"device_id": "d1"})
    assert client.delete("/iot/devices/d1", headers=writer).status_code == 204
    assert client.get("/iot/devices/d1", headers=writer).status_code == 404
    assert client.delete("/iot/devices/d1", headers=writer).status_code == 404


# -- tenancy and permissions ------------------------------------------------------------------


def test_tenants_are_isolated(client: TestClient, writer: Headers) -> None:
    north = in_tenant(writer, "North_1", "/parks")  # lower-cased like the IoT Agent does
    add_groups(client, north, group("ak-north"))
    add_devices(client, north, {"device_id": "n1"})
    assert client.get("/iot/services", headers=writer).json()["count"] == 0
    assert client.get("/iot/devices", headers=writer).json()["count"] == 0
    assert client.get("/iot/devices/n1", headers=writer).status_code == 404
    assert client.get("/iot/services/ak-north", headers=writer).status_code == 404
    assert client.delete("/iot/devices/n1", headers=writer).status_code == 404
    assert client.put("/iot/services/ak-north", json={}, headers=writer).status_code == 404
    same = in_tenant(writer, "north_1")
    device = client.get("/iot/devices/n1", headers=same).json()
    assert device["service"] == "north_1"
    assert device["service_path"] == "/parks"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("fiware-service", "bad-tenant"),
        ("fiware-service", "x" * 65),
        ("fiware-servicepath", "parks"),
    ],
)
def test_bad_tenancy_headers(client: TestClient, writer: Headers, header: str, value: str) -> None:
    reply = client.get("/iot/devices", headers={**writer, header: value})
    fault(reply, 400, header)


def test_permissions(client: TestClient, writer: Headers, reader: Headers) -> None:
    add_groups(client, writer, group())
    add_devices(client, writer, {"device_id": "d1"})
    assert client.get("/iot/devices", headers=reader).status_code == 200
    assert client.get("/iot/services", headers=reader).status_code == 200
    assert client.get("/iot/about", headers=reader).status_code == 200
    refused = [
        client.post("/iot/services", json={"services": [group("ak-2")]}, headers=reader),
        client.put("/iot/services/ak-air", json={}, headers=reader),
        client.delete("/iot/services/ak-air", headers=reader),
        client.post("/iot/devices", json={"devices": [{"device_id": "d2"}]}, headers=reader),
        client.put("/iot/devices/d1", json={}, headers=reader),
        client.delete("/iot/devices/d1", headers=reader),
    ]
    for reply in refused:
        assert reply.status_code == 403, reply.text
        assert "iot.provision" in reply.json()["detail"]
    assert client.get("/iot/devices").status_code == 401
    assert client.get("/iot/devices/d1", headers=writer).status_code == 200


# -- with the ingestor ------------------------------------------------------------------------


def test_counters_and_last_seen_follow_ingest(
    client: TestClient, writer: Headers, context: AppContext
) -> None:
    add_groups(client, writer, group())
    add_devices(client, writer, {"device_id": "aq-1"})
    ingestor = ingestor_of(context)
    ingestor.ingest(
        [
            Message("ak-air", "aq-1", b'{"t": 21.5, "TimeInstant": "2026-01-01T00:00:00Z"}'),
            Message("ak-air", "aq-1", b'{"t": 21.5, "TimeInstant": "2026-01-01T00:00:00Z"}'),
            Message("ak-air", "aq-1", b"not json"),
        ]
    )
    device = client.get("/iot/devices/aq-1", headers=writer).json()  # flushes first
    assert (device["received"], device["stored"], device["duplicates"], device["rejected"]) == (
        3,
        1,
        1,
        1,
    )
    assert device["lastSeen"] is not None
    assert device["lastError"]
    assert device["lastErrorAt"] is not None
    about = client.get("/iot/about", headers=writer).json()
    assert about == {
        "service": "",
        "services": 1,
        "devices": 1,
        "online": 0,
        "offline": 0,
        "neverSeen": 1,  # heard, but liveness has not run yet
        "received": 3,
        "stored": 1,
        "rejected": 1,
        "duplicates": 1,
    }


def entity(client: TestClient, headers: Headers, entity_id: str) -> dict[str, Any]:
    reply = client.get(f"/ngsi-ld/v1/entities/{entity_id}", headers=headers)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def test_mapping_changes_reach_the_ingestor(
    client: TestClient, writer: Headers, context: AppContext
) -> None:
    doc = group(
        attributes=[
            {
                "object_id": "f",
                "name": "temperature",
                "type": "Number",
                "sourceUnit": "FAH",
                "unitCode": "CEL",
            }
        ]
    )
    add_groups(client, writer, doc)
    add_devices(client, writer, {"device_id": "aq-1"})
    ingestor = ingestor_of(context)
    report = ingestor.ingest([Message("ak-air", "aq-1", b'{"f": 212}')])
    assert report.stored == 1, report.outcomes
    stored = entity(client, writer, "urn:ngsi-ld:AirQualityObserved:aq-1")
    assert stored["temperature"]["value"] == pytest.approx(100.0)
    assert stored["temperature"]["unitCode"] == "CEL"
    assert stored["district"]["value"] == "黄浦区"
    # Re-map the measure; the registry's cache must not keep the old mapping.
    reply = client.put(
        "/iot/services/ak-air",
        json={"attributes": [{"object_id": "f", "name": "heat", "type": "Number"}]},
        headers=writer,
    )
    assert reply.status_code == 200
    assert ingestor.ingest([Message("ak-air", "aq-1", b'{"f": 50}')]).stored == 1
    assert entity(client, writer, "urn:ngsi-ld:AirQualityObserved:aq-1")["heat"]["value"] == 50
    # A deleted device is refused at once.
    client.delete("/iot/devices/aq-1", headers=writer)
    refused = ingestor.ingest([Message("ak-air", "aq-1", b'{"f": 51}')])
    assert refused.outcomes[0].reason == "unknown_device"
