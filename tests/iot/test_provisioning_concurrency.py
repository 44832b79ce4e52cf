"""Provisioning edits that meet: what one request checks across rows still holds when another
changes those rows at the same moment (two API workers, or two threads of one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pujiang.iot import provisioning
from pujiang.iot.models import IotDevice, IotService
from pujiang.iot.provisioning import Tenancy
from pujiang.iot.schemas import DeviceIn, ServiceGroupIn, ServiceGroupPatch
from pujiang.platform.deps import AppContext
from pujiang.platform.errors import Problem
from tests.context.test_concurrent_writes import _run_together

ROUNDS = 8
TEMPERATURE = {"object_id": "t", "name": "temperature", "type": "Number"}


def _add_group(context: AppContext, apikey: str) -> None:
    doc = ServiceGroupIn.model_validate(
        {"apikey": apikey, "entity_type": "WeatherObserved", "attributes": [TEMPERATURE]}
    )
    provisioning.create_services(context, Tenancy(), [doc])


def _outcome(job: Callable[[], Any], outcomes: list[str], name: str) -> Callable[[], None]:
    """The job, recording `name` when it succeeds and its status when it is refused."""

    def run() -> None:
        try:
            job()
            outcomes.append(name)
        except Problem as exc:
            outcomes.append(str(exc.status))

    return run


def test_a_group_is_never_deleted_from_under_a_new_device(context: AppContext) -> None:
    """Deleting a group (without `?device=true`) while a device is added to it: either the
    device comes first and the delete is refused (409), or the delete comes first and the
    device is refused (400, no such group); never a device left in a deleted group."""
    for n in range(ROUNDS):
        apikey = f"race-{n}"
        _add_group(context, apikey)
        device = DeviceIn.model_validate({"device_id": f"d{n}", "apikey": apikey})
        outcomes: list[str] = []
        _run_together(
            _outcome(
                lambda k=apikey: provisioning.delete_service(context, "", k), outcomes, "deleted"
            ),
            _outcome(
                lambda d=device: provisioning.create_devices(context, Tenancy(), [d]),
                outcomes,
                "added",
            ),
        )
        assert sorted(outcomes) in (["409", "added"], ["400", "deleted"]), outcomes
        with context.db.session() as session:
            groups = session.query(IotService).filter_by(apikey=apikey).count()
            devices = session.query(IotDevice).filter_by(apikey=apikey).count()
        assert (groups, devices) == ((1, 1) if "added" in outcomes else (0, 0))


def test_two_updates_of_a_group_cannot_give_one_name_twice(context: AppContext) -> None:
    """One update adds a measure named `alpha`, another a static attribute `alpha`: each
    alone is fine, together they would give the entity one attribute from two sources. The
    second to run sees the first and is refused (400)."""
    for n in range(ROUNDS):
        apikey = f"lists-{n}"
        _add_group(context, apikey)
        measure = ServiceGroupPatch.model_validate(
            {"attributes": [TEMPERATURE, {"object_id": "a", "name": "alpha", "type": "Number"}]}
        )
        static = ServiceGroupPatch.model_validate(
            {"static_attributes": [{"name": "alpha", "type": "Text", "value": "x"}]}
        )
        outcomes: list[str] = []
        _run_together(
            _outcome(
                lambda k=apikey, p=measure: provisioning.update_service(context, "", k, p),
                outcomes,
                "measure",
            ),
            _outcome(
                lambda k=apikey, p=static: provisioning.update_service(context, "", k, p),
                outcomes,
                "static",
            ),
        )
        assert sorted(outcomes) in (["400", "measure"], ["400", "static"]), outcomes
        group = provisioning.get_service(context, "", apikey)
        names = [a["name"] for a in group["attributes"] + group["static_attributes"]]
        assert names.count("alpha") == 1, group
