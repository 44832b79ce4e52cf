"""The one write path of device ingest: mapping, checks, deduplication, history, counters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from pujiang.context.errors import NotFound
from pujiang.context.jsonld import DEFAULT_VOCAB, NGSI_LD, ContextProcessor
from pujiang.context.models import history_rows
from pujiang.context.ngsild import broker_of
from pujiang.iot.models import IotDevice
from pujiang.iot.service import Message, ingestor_of
from pujiang.platform.deps import AppContext

HISTORY = history_rows()  # the broker's history rows with their series' columns

TEMPERATURE = DEFAULT_VOCAB + "temperature"
HUMIDITY = DEFAULT_VOCAB + "relativeHumidity"
ENTITY = "urn:ngsi-ld:WeatherObserved:"


def at(minutes: float) -> str:
    moment = datetime(2026, 11, 20, 8, 0, tzinfo=UTC) + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def send(context: AppContext, *messages: Message) -> list[tuple[str, str | None]]:
    report = ingestor_of(context).ingest(list(messages))
    return [(o.status, o.reason) for o in report.outcomes]


def msg(device: str, payload: Any, apikey: str = "wk", **extra: Any) -> Message:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Message(apikey, device, body, **extra)


def entity(context: AppContext, device: str, tenant: str = "") -> dict[str, Any]:
    return broker_of(context).retrieve(tenant, ENTITY + device)


def history(context: AppContext, device: str, attr: str = TEMPERATURE) -> list[Any]:
    with context.db.session() as session:
        rows = session.scalars(
            select(HISTORY.c.instance)
            .where(
                HISTORY.c.entity_id == ENTITY + device,
                HISTORY.c.attr == attr,
            )
            .order_by(HISTORY.c.id)
        ).all()
    return [orjson.loads(r) for r in rows]


@pytest.fixture
def weather(provision: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return provision(
        "wk",
        "w1",
        "w2",
        static_attributes=[
            {"name": "districtCode", "type": "Text", "value": "310104"},
            {"name": "location", "type": "geo:point", "value": "31.18, 121.43"},
        ],
    )


def test_a_first_message_creates_the_entity_with_static_attributes(
    context: AppContext, weather: dict[str, Any]
) -> None:
    assert send(context, msg("w1", {"t": 21.5, "h": 40, "TimeInstant": at(0)})) == [
        ("stored", None)
    ]
    found = entity(context, "w1")
    assert found["type"] == [DEFAULT_VOCAB + "WeatherObserved"]
    temperature = found[TEMPERATURE][0]
    assert temperature["value"] == 21.5
    assert temperature["unitCode"] == "CEL"
    assert temperature["observedAt"] == at(0)
    assert found[DEFAULT_VOCAB + "districtCode"][0]["value"] == "310104"
    point = found[NGSI_LD + "location"][0]
    assert point["type"] == "GeoProperty"
    assert point["value"] == {"type": "Point", "coordinates": [121.43, 31.18]}


def test_readings_are_converted_per_mapping(context: AppContext, weather: dict[str, Any]) -> None:
    payload = {"f": 212, "n": "7", "on": "true", "s": 12, "TimeInstant": at(1)}
    assert send(context, msg("w1", payload)) == [("stored", None)]
    found = entity(context, "w1")
    assert found[DEFAULT_VOCAB + "temperatureF"][0]["value"] == pytest.approx(100.0)
    assert found[DEFAULT_VOCAB + "temperatureF"][0]["unitCode"] == "CEL"
    assert found[DEFAULT_VOCAB + "count"][0]["value"] == 7
    assert found[DEFAULT_VOCAB + "powerState"][0]["value"] is True
    assert found[ContextProcessor().core.expand("status")][0]["value"] == "12"


def test_unmapped_measures_pass_through_unless_explicit(
    context: AppContext, provision: Callable[..., dict[str, Any]]
) -> None:
    provision("open", "o1")
    provision("strict", "s1", explicit_attrs=True)
    assert send(context, msg("o1", {"noise": 55.5}, "open")) == [("stored", None)]
    assert entity(context, "o1")[DEFAULT_VOCAB + "noise"][0]["value"] == 55.5
    assert send(context, msg("s1", {"t": 3, "noise": 55.5}, "strict")) == [("stored", None)]
    assert DEFAULT_VOCAB + "noise" not in entity(context, "s1")
    assert send(context, msg("s1", {"noise": 55.5}, "strict")) == [("rejected", "empty")]


def test_each_reading_is_kept_in_history_and_the_newest_is_current(
    context: AppContext, weather: dict[str, Any]
) -> None:
    send(context, msg("w1", {"t": 1, "TimeInstant": at(0)}))
    send(
        context,
        msg("w1", {"t": 2, "TimeInstant": at(1)}),
        msg("w1", {"t": 3, "TimeInstant": at(2)}),
    )
    assert [h["value"] for h in history(context, "w1")] == [1, 2, 3]
    assert entity(context, "w1")[TEMPERATURE][0]["value"] == 3


def test_a_resent_reading_is_stored_once(context: AppContext, weather: dict[str, Any]) -> None:
    first = msg("w1", {"t": 1, "TimeInstant": at(0)})
    again = msg("w1", {"t": 1, "TimeInstant": at(0)})
    assert send(context, first, again) == [("stored", None), ("duplicate", None)]
    assert send(context, msg("w1", {"t": 1, "TimeInstant": at(0)})) == [("duplicate", None)]
    send(context, msg("w1", {"t": 2, "TimeInstant": at(5)}))
    # Re-sent after newer readings: found in the history, still a duplicate.
    assert send(context, msg("w1", {"t": 1, "TimeInstant": at(0)})) == [("duplicate", None)]
    assert [h["value"] for h in history(context, "w1")] == [1, 2]


def test_a_late_reading_goes_to_history_only(context: AppContext, weather: dict[str, Any]) -> None:
    send(context, msg("w1", {"t": 5, "TimeInstant": at(10)}))
    assert send(context, msg("w1", {"t": 4, "TimeInstant": at(5)})) == [("stored", None)]
    assert entity(context, "w1")[TEMPERATURE][0]["value"] == 5
    assert sorted(h["observedAt"] for h in history(context, "w1")) == [at(5), at(10)]


def test_one_message_may_carry_several_timestamped_groups(
    context: AppContext, weather: dict[str, Any]
) -> None:
    groups = [{"t": n, "TimeInstant": at(n)} for n in range(5)]
    assert send(context, msg("w1", groups)) == [("stored", None)]
    assert [h["value"] for h in history(context, "w1")] == [0, 1, 2, 3, 4]
    assert entity(context, "w1")[TEMPERATURE][0]["value"] == 4


def test_the_single_attribute_topic_form(context: AppContext, weather: dict[str, Any]) -> None:
    assert send(context, msg("w1", b"23.5", object_id="t")) == [("stored", None)]
    assert entity(context, "w1")[TEMPERATURE][0]["value"] == 23.5


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"t": 1', "malformed_json"),
        (b'{"t": NaN}', "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (b"42", "not_an_object"),
        (b'{"t": "warm"}', "wrong_type"),
        (b'{"t": true}', "wrong_type"),
        (b'{"n": 2.5}', "wrong_type"),
        (b'{"t": "Infinity"}', "not_finite"),
        (b'{"t": "nan"}', "not_finite"),
        (b'{"t": 1e999}', "malformed_json"),
        (b'{"loc": "91, 500"}', "wrong_type"),
        (b'{"t": 1, "TimeInstant": "2999-01-01T00:00:00Z"}', "future_time"),
        (b'{"t": 1, "TimeInstant": "yesterday"}', "bad_time"),
        (b'{"t": 1, "TimeInstant": "2026-11-20T08:00:00"}', "bad_time"),
        (b'{"t": 1, "TimeInstant": "2026-13-40T08:00:00.000Z"}', "bad_time"),
        (b'{"bad name": 1}', "unknown_attribute"),
        (b"{}", "empty"),
    ],
)
def test_bad_payloads_are_rejected_whole_with_a_reason(
    context: AppContext, weather: dict[str, Any], payload: bytes, reason: str
) -> None:
    assert send(context, msg("w1", payload)) == [("rejected", reason)]
    with pytest.raises(NotFound):
        entity(context, "w1")


def test_a_bad_message_never_stops_the_others(context: AppContext, weather: dict[str, Any]) -> None:
    outcomes = send(
        context,
        msg("w1", {"t": "x", "h": 50, "TimeInstant": at(0)}),
        msg("w2", {"t": 7, "TimeInstant": at(0)}),
        msg("nobody", {"t": 7}),
        msg("w2", {"t": 8}, apikey="no-such-key"),
    )
    assert outcomes == [
        ("rejected", "wrong_type"),
        ("stored", None),
        ("rejected", "unknown_device"),
        ("rejected", "bad_apikey"),
    ]
    assert history(context, "w1", HUMIDITY) == []
    assert entity(context, "w2")[TEMPERATURE][0]["value"] == 7


def test_oversized_messages_are_rejected(context: AppContext, weather: dict[str, Any]) -> None:
    limit = ingestor_of(context).max_message_bytes
    big = orjson.dumps({"s": "x" * limit})
    assert send(context, msg("w1", big)) == [("rejected", "too_large")]


def test_epoch_times_in_seconds_and_milliseconds(
    context: AppContext, weather: dict[str, Any]
) -> None:
    send(context, msg("w1", {"t": 1, "TimeInstant": 1_790_000_000}))
    send(context, msg("w2", {"t": 1, "TimeInstant": 1_790_000_000_000}))
    expected = "2026-09-21T14:13:20.000Z"
    assert entity(context, "w1")[TEMPERATURE][0]["observedAt"] == expected
    assert entity(context, "w2")[TEMPERATURE][0]["observedAt"] == expected


def test_a_reading_without_time_is_stamped_on_receipt(
    context: AppContext, weather: dict[str, Any]
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    send(context, msg("w1", {"t": 1}))
    stamped = entity(context, "w1")[TEMPERATURE][0]["observedAt"]
    assert datetime.fromisoformat(stamped.replace("Z", "+00:00")) >= before


def test_readings_fire_change_events_like_any_update(
    context: AppContext, weather: dict[str, Any]
) -> None:
    seen: list[dict[str, Any]] = []
    context.bus.subscribe("context.entity.changed", lambda _t, e: seen.append(e))
    send(context, msg("w1", {"t": 1, "TimeInstant": at(0)}))
    send(context, msg("w1", {"t": 2, "TimeInstant": at(1)}))
    send(context, msg("w1", {"t": 2, "TimeInstant": at(1)}))  # a duplicate: no event
    operations = [(e["operation"], e["attributes"]) for e in seen]
    created = [DEFAULT_VOCAB + "districtCode", NGSI_LD + "location"]  # the static attributes
    assert operations == [
        ("create", created),
        ("update", [TEMPERATURE]),
        ("update", [TEMPERATURE]),
    ]
    assert seen[-1]["entity"][TEMPERATURE][0]["value"] == 2
    assert seen[-1]["previous"][TEMPERATURE][0]["value"] == 1


def test_devices_of_a_tenant_write_into_that_tenant(
    context: AppContext, provision: Callable[..., dict[str, Any]]
) -> None:
    provision("tk", "t1", tenant="pudong")
    send(context, msg("t1", {"t": 1}, "tk"))
    assert entity(context, "t1", "pudong")[TEMPERATURE][0]["value"] == 1
    with pytest.raises(NotFound):
        entity(context, "t1")


def test_counters_and_last_seen_per_device(context: AppContext, weather: dict[str, Any]) -> None:
    send(
        context,
        msg("w1", {"t": 1, "TimeInstant": at(0)}),
        msg("w1", {"t": 1, "TimeInstant": at(0)}),
        msg("w1", {"t": "hot"}),
    )
    ingestor = ingestor_of(context)
    assert ingestor.flush() == 1
    send(context, msg("w1", {"t": 2, "TimeInstant": at(1)}))
    ingestor.flush()
    with context.db.session() as session:
        device = session.scalars(select(IotDevice).where(IotDevice.device_id == "w1")).one()
        assert (device.received, device.stored, device.duplicates, device.rejected) == (4, 2, 1, 1)
        assert device.last_seen is not None
        assert device.last_error is not None
        assert "temperature" in device.last_error


def test_provisioning_changes_are_seen_after_invalidate(
    context: AppContext, provision: Callable[..., dict[str, Any]]
) -> None:
    assert send(context, msg("late", {"t": 1}, "lk")) == [("rejected", "bad_apikey")]
    provision("lk", "late")
    assert send(context, msg("late", {"t": 1}, "lk")) == [("stored", None)]
