"""The simulated city: daily patterns in Shanghai time, determinism, the runner and publishers,
and `pujiang simulate`, end to end into the broker (in-process, over HTTP and over MQTT)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from pujiang.cli import app as cli_app
from pujiang.context.demo import load_demo
from pujiang.context.errors import NotFound
from pujiang.context.ngsild import broker_of
from pujiang.iot.demo import KINDS, FleetDevice, demo_fleet, fleet_of, provision
from pujiang.iot.models import IotDevice
from pujiang.iot.service import ingestor_of
from pujiang.iot.simulate import (
    SHANGHAI,
    Delivery,
    HttpPublisher,
    InProcessPublisher,
    MqttSimPublisher,
    PublishFailed,
    Sample,
    Simulation,
    check_options,
    episode_in,
    in_background,
    rain_on,
    readings,
    server_url,
    sun_hours,
)
from pujiang.iot.worker import running
from pujiang.platform.deps import AppContext
from pujiang.settings import Settings

ENTITIES = "/ngsi-ld/v1/entities"
TEMPORAL = "/ngsi-ld/v1/temporal/entities"
SUMMER, WINTER = date(2026, 6, 21), date(2026, 12, 21)
TUESDAY = date(2026, 3, 10)


def of_kind(name: str) -> list[FleetDevice]:
    return [d for d in demo_fleet() if d.kind.name == name]


def at(day: date, hour: float) -> datetime:
    """A Shanghai wall-clock time."""
    return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI) + timedelta(hours=hour)


# -- patterns -------------------------------------------------------------------------------------


def test_sunrise_and_sunset_follow_the_seasons_in_shanghai() -> None:
    # Published times for Shanghai (UTC+8): 21 June 04:50 / 19:01, 21 December 06:50 / 16:55.
    for day, sunrise, sunset in ((SUMMER, 4 + 50 / 60, 19 + 1 / 60), (WINTER, 6 + 50 / 60, 16.92)):
        rise, set_ = sun_hours(day)
        assert abs(rise - sunrise) < 10 / 60, (day, rise)
        assert abs(set_ - sunset) < 10 / 60, (day, set_)


@pytest.mark.parametrize("day", [SUMMER, WINTER])
def test_streetlights_are_on_at_night_and_off_at_noon(day: date) -> None:
    lights = of_kind("streetlight")
    night = [readings(light, at(day, 22)) for light in lights]
    noon = [readings(light, at(day, 12)) for light in lights]
    assert all(r["p"] == "on" for r in night)
    assert all(r["p"] == "off" and r["l"] == 0 for r in noon)
    working = [r for r in night if r["s"] == "ok"]
    assert len(working) > len(lights) * 0.8
    assert all(0.5 <= r["l"] <= 1 for r in working)  # lit when on, unless the lamp is broken


def test_streetlights_switch_at_dusk_which_comes_later_in_summer() -> None:
    light = of_kind("streetlight")[0]
    assert readings(light, at(WINTER, 18))["p"] == "on"
    assert readings(light, at(SUMMER, 18))["p"] == "off"  # the sun is still up
    assert readings(light, at(SUMMER, 5.5))["p"] == "off"
    assert readings(light, at(WINTER, 5.5))["p"] == "on"


def test_traffic_peaks_morning_and_evening_and_is_low_at_night() -> None:
    for counter in of_kind("traffic"):
        night = readings(counter, at(TUESDAY, 3))
        morning = readings(counter, at(TUESDAY, 8))
        evening = readings(counter, at(TUESDAY, 18))
        noon = readings(counter, at(TUESDAY, 12.5))
        assert morning["f"] > 4 * night["f"], counter
        assert evening["f"] > 4 * night["f"], counter
        assert min(morning["f"], evening["f"]) > noon["f"]
        assert morning["v"] < night["v"]  # slower when crowded
        assert not night["c"]


def test_parking_fills_in_working_hours() -> None:
    spots = of_kind("parking")

    def taken(hour: float) -> int:
        return sum(readings(s, at(TUESDAY, hour))["s"] == "occupied" for s in spots)

    assert taken(11) > taken(3) + len(spots) * 0.3


def _rain_with(minimum_mm: float) -> Any:
    day = date(2026, 1, 1)
    while (rain := rain_on(day, 20260101)) is None or rain.intensity < minimum_mm:
        day += timedelta(days=1)
    return rain


def test_rain_raises_underpass_water_then_it_drains() -> None:
    rain = _rain_with(15)
    start = datetime.fromtimestamp(rain.start, UTC)
    end = datetime.fromtimestamp(rain.end, UTC)
    for gauge in of_kind("waterlevel")[:12]:
        before = readings(gauge, start - timedelta(minutes=10))["h"]
        peak = readings(gauge, end)["h"]
        later = readings(gauge, end + timedelta(hours=6))["h"]
        assert peak > before + 10, (gauge.device_id, before, peak)  # centimetres
        assert later < before + (peak - before) * 0.1, (gauge.device_id, peak, later)


def test_pollution_episodes_build_up_then_clear() -> None:
    window = next(w for w in range(5000, 5200) if (e := episode_in(w, 20260101)) and e.peak > 100)
    episode = episode_in(window, 20260101)
    assert episode is not None
    station = of_kind("airquality")[0]
    start = datetime.fromtimestamp(episode.start, UTC)
    peak = start + timedelta(hours=episode.build_hours)
    cleared = peak + timedelta(hours=episode.clear_hours + 6)

    def pm25(moment: datetime) -> float:
        return float(readings(station, moment)["pm25"])

    assert pm25(peak) > pm25(start) + 50
    assert pm25(peak - timedelta(hours=episode.build_hours / 2)) < pm25(peak)
    assert pm25(cleared) < pm25(peak) - 50


def test_air_readings_stay_plausible_over_a_winter_month() -> None:
    station = of_kind("airquality")[3]
    for hour in range(0, 31 * 24, 3):
        r = readings(station, at(date(2026, 1, 1), hour))
        assert 3 <= r["pm25"] <= 350, r  # µg/m³: AQI 0..~400
        assert r["pm10"] >= r["pm25"]
        assert 0 < r["co"] < 5
        assert 0 < r["so2"] < 20
        assert 0 < r["o3"] < 300
        assert 0 < r["no2"] < 100


def test_gas_pressure_swings_a_little_and_elevators_stay_in_their_building() -> None:
    for point in of_kind("gaspressure"):
        values = [readings(point, at(TUESDAY, h / 4))["p"] for h in range(96)]
        assert min(values) > 0.1
        assert max(values) < 0.32
    for lift in of_kind("elevator"):
        day = [readings(lift, at(TUESDAY, h / 6)) for h in range(144)]
        assert all(r["f"] >= 1 and r["s"] in ("ok", "fault") for r in day)
        assert len({r["f"] for r in day}) > 3  # it moves


def test_readings_are_deterministic_for_a_seed() -> None:
    moment = datetime(2026, 5, 4, 9, 30, 12, tzinfo=UTC)
    fleet = demo_fleet()
    first = [readings(d, moment, seed=7) for d in fleet]
    assert first == [readings(d, moment, seed=7) for d in fleet]
    assert first != [readings(d, moment, seed=8) for d in fleet]
    with pytest.raises(ValueError, match="time zone"):
        readings(fleet[0], datetime(2026, 5, 4, 9, 30))


VALUE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "Number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "Integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "Text": lambda v: isinstance(v, str),
    "Boolean": lambda v: isinstance(v, bool),
}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_kind_sends_what_its_mapping_declares(kind: Any) -> None:
    declared = kind.declared_types()
    with_extras = fleet_of(len(demo_fleet()) + len(KINDS))  # one extra device of each kind
    devices = [d for d in with_extras if d.kind is kind][:3] + [
        d for d in with_extras if d.kind is kind and "SIM" in d.entity_id
    ]
    for device in devices:
        for hour in range(0, 24 * 7, 5):
            sent = readings(device, at(TUESDAY, hour + 0.3))
            assert set(sent) == set(declared), device.device_id
            for object_id, value in sent.items():
                assert VALUE_CHECKS[declared[object_id]](value), (object_id, value)


# -- the runner -----------------------------------------------------------------------------------


class Recorder:
    """A destination that keeps what it is given (the real publishers are tested below)."""

    label = "recorder"

    def __init__(self) -> None:
        self.batches: list[list[Sample]] = []

    def open(self) -> None:
        pass

    def publish(self, batch: list[Sample]) -> Delivery:
        self.batches.append(batch)
        return Delivery(accepted=len(batch))

    def close(self) -> Delivery:
        return Delivery()


def test_the_rate_is_the_fleets_total_round_robin_over_devices() -> None:
    fleet = fleet_of(7)
    recorder = Recorder()
    started = time.time()
    progress = Simulation(fleet, 40, recorder, duration=1.5).run()
    samples = [s for batch in recorder.batches for s in batch]
    assert len(samples) == 60 == progress.sent == progress.accepted
    assert [s.device.device_id for s in samples[:14]] == [d.device_id for d in fleet] * 2
    moments = [s.moment.timestamp() for s in samples]
    assert moments == sorted(moments)
    assert started - 0.5 <= moments[0]
    assert moments[-1] <= time.time()
    assert abs((moments[7] - moments[0]) - 7 / 40) < 1e-3  # each device every 7/40 s
    assert all(s.measures == readings(s.device, s.moment) for s in samples)


def test_faster_time_starts_in_the_past_and_never_runs_ahead() -> None:
    recorder = Recorder()
    now = time.time()
    Simulation(fleet_of(3), 20, recorder, speed=600, duration=1.0).run()
    moments = [s.moment.timestamp() for batch in recorder.batches for s in batch]
    assert moments[0] < now - 500  # 600× for 1 s: ten simulated minutes, begun 599 s ago
    assert moments[-1] <= time.time()
    assert moments[-1] - moments[0] > 500


def test_a_stop_ends_the_run_early() -> None:
    import threading

    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    started = time.monotonic()
    Simulation(fleet_of(3), 10, Recorder()).run(stop)  # no duration: runs until stopped
    assert time.monotonic() - started < 10  # (a bound for a busy machine; unstopped, it never ends)


@pytest.mark.parametrize(
    ("devices", "rate", "duration", "speed", "message"),
    [
        (0, 1.0, None, 1.0, "--devices"),
        (5, 0.0, None, 1.0, "--rate"),
        (5, -1.0, None, 1.0, "--rate"),
        (5, float("nan"), None, 1.0, "--rate"),
        (5, 1.0, 0.0, 1.0, "--duration"),
        (5, 1.0, None, 0.0, "--speed"),
        (5, 1.0, None, 60.0, "--duration"),
    ],
)
def test_bad_options_are_named(
    devices: int, rate: float, duration: float | None, speed: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_options(devices, rate, duration, speed)


def test_server_urls_and_bad_destinations() -> None:
    assert server_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"  # noqa: S104
    assert server_url("::1", 8000) == "http://[::1]:8000"
    with pytest.raises(ValueError, match="http"):
        HttpPublisher("ftp://example.org")
    with pytest.raises(ValueError, match="mqtt://"):
        MqttSimPublisher("http://127.0.0.1:1883")
    with pytest.raises(PublishFailed, match="cannot reach"):
        HttpPublisher("http://127.0.0.1:9").open()  # the discard port: nobody listens


# -- end to end -----------------------------------------------------------------------------------


def _current(client: TestClient, headers: dict[str, str], entity_id: str) -> dict[str, Any]:
    reply = client.get(f"{ENTITIES}/{entity_id}", headers=headers)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def _history(client: TestClient, headers: dict[str, str], entity_id: str, attr: str) -> list[Any]:
    reply = client.get(f"{TEMPORAL}/{entity_id}", params={"attrs": attr}, headers=headers)
    assert reply.status_code == 200, reply.text
    instances = reply.json().get(attr, [])
    return instances if isinstance(instances, list) else [instances]


@pytest.mark.parametrize("transport", ["in-process", "http"])
def test_the_fleet_changes_entities_and_their_history(
    transport: str,
    client: TestClient,
    context: AppContext,
    login: Callable[..., dict[str, str]],
) -> None:
    reader = login("operator", "operator")
    load_demo(context)
    mixed = fleet_of(len(demo_fleet()) + 8)
    fleet = mixed[:32] + mixed[-8:]  # demo devices of every kind, and extra ones
    provision(context, fleet)
    light = next(d for d in fleet if d.kind.name == "streetlight" and "SIM" not in d.entity_id)
    gauge = next(d for d in fleet if d.kind.name == "waterlevel" and "SIM" not in d.entity_id)
    extra = next(d for d in fleet if "SIM" in d.entity_id)
    before = _current(client, reader, light.entity_id)
    assert "observedAt" not in before["illuminanceLevel"]  # as the demo loaded it

    publisher: Any = InProcessPublisher(context)
    if transport == "http":
        publisher = HttpPublisher("http://testserver", client=client)
    publisher.open()
    progress = Simulation(fleet, 40, publisher, duration=2.5).run()

    assert progress.sent == 100
    assert progress.accepted == progress.sent
    assert progress.rejected == progress.failed == 0
    now = datetime.now(UTC)
    after = _current(client, reader, light.entity_id)
    observed = datetime.fromisoformat(after["illuminanceLevel"]["observedAt"])
    assert now - timedelta(seconds=10) < observed <= now
    sent = readings(light, observed)  # what the light said at that moment
    assert after["illuminanceLevel"]["value"] == sent["l"]
    assert after["powerState"]["value"] == sent["p"]
    level = _current(client, reader, gauge.entity_id)["value"]
    sent_cm = readings(gauge, datetime.fromisoformat(level["observedAt"]))["h"]
    assert level["unitCode"] == "MTR"
    assert level["value"] == pytest.approx(sent_cm / 100)  # centimetres sent, metres kept
    assert len(_history(client, reader, light.entity_id, "illuminanceLevel")) >= 2
    created = _current(client, reader, extra.entity_id)  # made by the ingest on first message
    assert created["location"]["value"]["type"] == "Point"
    ingestor_of(context).flush()


def test_a_background_fleet_runs_while_the_block_runs(context: AppContext) -> None:
    fleet = fleet_of(10)
    provision(context, fleet)
    with in_background(Simulation(fleet, 20, InProcessPublisher(context), tick=0.2)) as progress:
        time.sleep(1.2)
    assert progress.sent >= 20
    assert progress.accepted == progress.sent
    sent = progress.sent
    time.sleep(0.5)
    assert progress.sent == sent  # stopped with the block


def test_a_background_fleet_gives_up_on_a_destination_that_never_comes() -> None:
    simulation = Simulation(fleet_of(3), 10, HttpPublisher("http://127.0.0.1:9"))
    with in_background(simulation, patience=0.3) as progress:
        time.sleep(1.0)
    assert progress.sent == 0


def test_unprovisioned_devices_are_counted_rejected(context: AppContext) -> None:
    stranger = replace(fleet_of(1)[0], device_id="streetlight-nobody")
    provision(context, fleet_of(1))
    progress = Simulation([stranger, *fleet_of(1)], 20, InProcessPublisher(context), duration=0.5)
    result = progress.run()
    assert result.rejected == 5
    assert result.accepted == 5
    assert "streetlight-nobody" in (result.last_error or "")


def test_over_mqtt_the_worker_stores_what_the_simulator_publishes(
    settings: Settings, context: AppContext
) -> None:
    from tests.iot.test_mqtt import MQTT_URL, forget_session, require_broker, wait_until

    require_broker()
    client_id = f"pujiang-test-sim-{uuid.uuid4().hex[:8]}"
    context.settings = settings.model_copy(
        update={"mqtt_url": MQTT_URL, "ingest_client_id": client_id, "ingest_batch_ms": 10}
    )
    # Kinds under API keys of this test's own: other runs on the broker never mix in.
    own = uuid.uuid4().hex[:8]
    fleet = [
        replace(d, kind=replace(d.kind, apikey=f"{d.kind.apikey}-{own}")) for d in fleet_of(16)
    ]
    provision(context, fleet)
    target = fleet[0]
    try:
        with running(context, jobs=False) as worker:
            assert worker.consumer is not None
            assert worker.consumer.wait_subscribed(10)
            publisher = MqttSimPublisher(MQTT_URL)
            publisher.open()
            progress = Simulation(fleet, 32, publisher, duration=1.5).run()
            assert progress.sent == 48
            assert progress.accepted == 48  # acknowledged by the broker

            def stored() -> bool:
                try:
                    broker_of(context).retrieve("", target.entity_id)
                except NotFound:
                    return False
                return True

            wait_until(stored, what="the entity the simulator's first reading creates")
    finally:
        forget_session(client_id)


# -- the command ----------------------------------------------------------------------------------


def _env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {
        "PUJIANG_DATABASE_URL": settings.database_url,
        "PUJIANG_MODE": "development",
        "PUJIANG_VAR_DIR": str(tmp_path / "var"),
    }


def test_simulate_command_runs_for_its_duration(
    settings: Settings, context: AppContext, tmp_path: Path
) -> None:
    runner = CliRunner()
    started = time.monotonic()
    result = runner.invoke(
        cli_app,
        ["simulate", "--direct", "--devices", "450", "--rate", "250", "--duration", "2"],
        env=_env(settings, tmp_path),
    )
    assert result.exit_code == 0, result.output
    assert 2 <= time.monotonic() - started < 30
    assert "simulating 450 devices" in result.output
    assert "newly provisioned 450" in result.output
    assert "sent 500 · 已接受 accepted 500 · 已拒绝 rejected 0" in result.output  # all devices
    created = broker_of(context).retrieve("", "urn:ngsi-ld:Streetlight:SIM-000001")
    assert created["id"] == "urn:ngsi-ld:Streetlight:SIM-000001"
    again = runner.invoke(
        cli_app,
        ["simulate", "--direct", "-n", "450", "--rate", "50", "--duration", "0.5"],
        env=_env(settings, tmp_path),
    )
    assert again.exit_code == 0, again.output
    assert "newly provisioned 0" in again.output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--devices", "0"], "--devices must be at least 1"),
        (["--rate", "-1"], "--rate must be a positive number"),
        (["--rate", "0"], "--rate must be a positive number"),
        (["--duration", "-5"], "--duration must be positive"),
        (["--speed", "60"], "--speed above 1 needs --duration"),
        (["--direct", "--mqtt", "mqtt://127.0.0.1"], "give one of --url, --mqtt, --direct"),
        (["--url", "ftp://example.org"], "must be http(s)://host:port"),
        (["--mqtt", "http://example.org"], "must start with mqtt://"),
    ],
)
def test_simulate_command_names_a_bad_option(
    options: list[str], message: str, settings: Settings, context: AppContext, tmp_path: Path
) -> None:
    result = CliRunner().invoke(cli_app, ["simulate", *options], env=_env(settings, tmp_path))
    assert result.exit_code == 2, result.output
    assert message in result.output
    with context.db.session() as session:  # refused before anything was provisioned
        assert session.scalar(select(func.count()).select_from(IotDevice)) == 0


def test_simulate_command_says_when_the_server_is_not_there(
    settings: Settings, context: AppContext, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli_app,
        ["simulate", "--url", "http://127.0.0.1:9", "--duration", "1"],
        env=_env(settings, tmp_path),
    )
    assert result.exit_code == 1, result.output
    assert "cannot reach the server at http://127.0.0.1:9" in result.output
