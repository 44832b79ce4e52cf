"""Shared set-up of the device-ingest tests: a service group and devices written as rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pujiang.iot.models import IotDevice, IotService
from pujiang.iot.service import ingestor_of
from pujiang.platform.deps import AppContext

WEATHER_ATTRS = [
    {"object_id": "t", "name": "temperature", "type": "Number", "unitCode": "CEL"},
    {"object_id": "h", "name": "relativeHumidity", "type": "Number"},
    {"object_id": "n", "name": "count", "type": "Integer"},
    {"object_id": "on", "name": "powerState", "type": "Boolean"},
    {"object_id": "s", "name": "status", "type": "Text"},
    {"object_id": "loc", "name": "location", "type": "geo:point"},
    {
        "object_id": "f",
        "name": "temperatureF",
        "type": "Number",
        "sourceUnit": "FAH",
        "unitCode": "CEL",
    },
]


@pytest.fixture
def provision(context: AppContext) -> Callable[..., dict[str, Any]]:
    """provision(apikey, *device_ids, **group fields) -> {"apikey", "devices"}: rows written
    directly (the provisioning API has tests of its own), registry invalidated."""

    def make(apikey: str, *device_ids: str, tenant: str = "", **group: Any) -> dict[str, Any]:
        with context.db.session() as session:
            session.add(
                IotService(
                    tenant=tenant,
                    apikey=apikey,
                    entity_type=group.pop("entity_type", "WeatherObserved"),
                    attributes=group.pop("attributes", WEATHER_ATTRS),
                    static_attributes=group.pop("static_attributes", []),
                    commands=group.pop("commands", []),
                    **group,
                )
            )
            for device_id in device_ids:
                session.add(
                    IotDevice(
                        tenant=tenant,
                        apikey=apikey,
                        device_id=device_id,
                        entity_id=f"urn:ngsi-ld:WeatherObserved:{device_id}",
                        entity_type="WeatherObserved",
                    )
                )
        ingestor_of(context).registry.invalidate()
        return {"apikey": apikey, "devices": list(device_ids)}

    return make
