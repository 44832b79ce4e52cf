"""Simulated devices of the demo city: daily patterns in Shanghai time, and publishers.

`readings(device, moment, seed)` is pure: the same device, moment and seed always give the same
measures, so patterns are testable and a run can be replayed. City-wide weather (rain events,
pollution episodes) is drawn per day or per window from the seed, so every device sees the same
weather; each device adds its own character (capacity, sensitivity, base pressure) from a hash
of its id.

A `Simulation` sends the readings of a fleet at a total rate (messages per second across the
fleet, round-robin over the devices) through a publisher: MQTT (QoS 1, `/{apikey}/{id}/attrs`),
HTTP (`POST /iot/bulk`, NDJSON) or in-process (`Ingestor.ingest`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from pujiang.context.demo import DEMO_SEED
from pujiang.iot.demo import FleetDevice
from pujiang.iot.mapping import TIME_KEY, canonical_time
from pujiang.iot.mqtt import parse_broker_url
from pujiang.iot.service import REJECTED, Message, Outcome, ingestor_of
from pujiang.platform.deps import AppContext

log = logging.getLogger("pujiang.iot")

DEFAULT_SEED = DEMO_SEED  # the demo entities' seed
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
LATITUDE = 31.23  # People's Square
LONGITUDE = 121.47
HOUR = 3600.0
DAY = 86_400.0


# -- deterministic noise --------------------------------------------------------------------------


def unit(seed: int, *parts: object) -> float:
    """A number in [0, 1) fixed by the seed and the parts (stable across runs and machines)."""
    key = "|".join([str(seed), *map(str, parts)]).encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _between(low: float, high: float, seed: int, *parts: object) -> float:
    return low + (high - low) * unit(seed, *parts)


def _bump(x: float, centre: float, width: float) -> float:
    """A bell of height 1 at `centre`."""
    return math.exp(-0.5 * ((x - centre) / width) ** 2)


def _local(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("moment must carry a time zone / 时间须带时区")
    return moment.astimezone(SHANGHAI)


def _hours(local: datetime) -> float:
    return local.hour + local.minute / 60 + local.second / 3600


def _workday(local: datetime) -> bool:
    return local.weekday() < 5


# -- the sun --------------------------------------------------------------------------------------


def sun_hours(day: date) -> tuple[float, float]:
    """Sunrise and sunset in Shanghai local hours (a standard solar approximation, ±5 min)."""
    n = day.timetuple().tm_yday
    declination = math.radians(23.44) * math.sin(2 * math.pi * (284 + n) / 365)
    b = 2 * math.pi * (n - 81) / 364
    equation_of_time = 9.87 * math.sin(2 * b) - 7.53 * math.cos(b) - 1.5 * math.sin(b)  # minutes
    noon = 12 - (LONGITUDE - 120) / 15 - equation_of_time / 60
    lat = math.radians(LATITUDE)
    # -0.833°: refraction and the sun's radius, so "sunrise" is the first edge of the disc.
    cos_w = (math.sin(math.radians(-0.833)) - math.sin(lat) * math.sin(declination)) / (
        math.cos(lat) * math.cos(declination)
    )
    half_day = math.degrees(math.acos(max(-1.0, min(1.0, cos_w)))) / 15
    return noon - half_day, noon + half_day


# -- city-wide weather ----------------------------------------------------------------------------

# Chance of a rain event on a day, by month (the plum rains of June are the wettest).
RAIN_CHANCE = (0.25, 0.3, 0.35, 0.35, 0.4, 0.55, 0.45, 0.4, 0.35, 0.25, 0.25, 0.2)
# Chance of a pollution episode in a four-day window, by month (winter inversions).
HAZE_CHANCE = (0.7, 0.6, 0.45, 0.35, 0.3, 0.2, 0.15, 0.15, 0.25, 0.4, 0.55, 0.7)
HAZE_WINDOW_DAYS = 4


@dataclass(frozen=True)
class Rain:
    start: float  # epoch seconds
    hours: float
    intensity: float  # mm/h

    @property
    def end(self) -> float:
        return self.start + self.hours * HOUR


@dataclass(frozen=True)
class Episode:
    """A pollution episode: PM2.5 builds up over hours, then a front clears it."""

    start: float  # epoch seconds
    build_hours: float
    clear_hours: float
    peak: float  # µg/m³ added at the peak

    def added(self, t: float) -> float:
        dt = (t - self.start) / HOUR
        if dt <= 0 or dt >= self.build_hours + self.clear_hours:
            return 0.0
        if dt <= self.build_hours:
            return self.peak * math.pow(dt / self.build_hours, 1.5)
        return (
            self.peak * 0.5 * (1 + math.cos(math.pi * (dt - self.build_hours) / self.clear_hours))
        )


def _local_midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI).timestamp()


def rain_on(day: date, seed: int) -> Rain | None:
    """The day's rain event (Shanghai date), if it rains."""
    if unit(seed, "rain", day) >= RAIN_CHANCE[day.month - 1]:
        return None
    start = _local_midnight(day) + _between(0, 24, seed, "rain-start", day) * HOUR
    hours = _between(1, 5, seed, "rain-hours", day)
    intensity = 4 + 46 * unit(seed, "rain-mm", day) ** 2  # mostly light, sometimes a downpour
    return Rain(start, hours, intensity)


def rains_near(t: float, seed: int) -> list[Rain]:
    """Rain events that can still matter at `t` (this day and the two before)."""
    today = datetime.fromtimestamp(t, SHANGHAI).date()
    days = (today - timedelta(days=back) for back in range(3))
    return [rain for rain in (rain_on(d, seed) for d in days) if rain and rain.start <= t]


def raining(t: float, seed: int) -> float:
    """Rain intensity (mm/h) at `t`; 0 when dry."""
    return sum(r.intensity for r in rains_near(t, seed) if r.start <= t < r.end)


def episode_in(window: int, seed: int) -> Episode | None:
    """The pollution episode of a four-day window (numbered from the epoch), if any."""
    first = date(1970, 1, 1) + timedelta(days=window * HAZE_WINDOW_DAYS)
    if unit(seed, "haze", window) >= HAZE_CHANCE[first.month - 1]:
        return None
    start = _local_midnight(first) + _between(0, 3 * 24, seed, "haze-start", window) * HOUR
    return Episode(
        start=start,
        build_hours=_between(12, 36, seed, "haze-build", window),
        clear_hours=_between(3, 10, seed, "haze-clear", window),
        peak=_between(50, 190, seed, "haze-peak", window),
    )


def haze(t: float, seed: int) -> float:
    """PM2.5 (µg/m³) that pollution episodes add at `t`, city-wide."""
    window = int(t // (HAZE_WINDOW_DAYS * DAY))
    episodes = (episode_in(w, seed) for w in (window - 1, window))
    return sum(e.added(t) for e in episodes if e is not None)


# -- daily shapes ---------------------------------------------------------------------------------


def traffic_shape(local: datetime) -> float:
    """Road use from about 0.06 (small hours) to 1.0 (the peaks), Shanghai time."""
    h = _hours(local)
    day = 0.45 / (1 + math.exp(-(h - 6.5) * 2)) / (1 + math.exp((h - 22.5) * 1.5))
    if _workday(local):
        peaks = 0.5 * _bump(h, 8.0, 0.8) + 0.45 * _bump(h, 17.8, 1.0)
    else:
        peaks = 0.2 * _bump(h, 14.5, 3.0)
    return 0.06 + day + peaks


def parking_demand(local: datetime) -> float:
    """Chance an on-street spot is taken: full in working hours, emptier at night."""
    h = _hours(local)
    if _workday(local):
        work = 1 / (1 + math.exp(-(h - 8.3) * 3)) / (1 + math.exp((h - 18.0) * 2))
        return 0.25 + 0.6 * work + 0.2 * _bump(h, 20.0, 1.5)
    return 0.35 + 0.35 * _bump(h, 15.0, 4.0)


def gas_demand(local: datetime) -> float:
    """Cooking and heating demand, peaks at breakfast, lunch and dinner (0–1)."""
    h = _hours(local)
    return min(1.0, 0.6 * _bump(h, 7.2, 0.9) + 0.5 * _bump(h, 11.6, 0.8) + _bump(h, 18.0, 1.1))


# -- per kind -------------------------------------------------------------------------------------

Readings = dict[str, Any]
NOISE_BUCKET = 10.0  # seconds: noise holds still within a bucket, so nearby readings agree


def _noise(seed: int, device: FleetDevice, what: str, t: float) -> float:
    """Noise in [-1, 1) for this device and measure, changing every NOISE_BUCKET seconds."""
    return 2 * unit(seed, device.device_id, what, int(t // NOISE_BUCKET)) - 1


def streetlight(device: FleetDevice, local: datetime, t: float, seed: int) -> Readings:
    sunrise, sunset = sun_hours(local.date())
    h = _hours(local)
    photocell = _between(-0.1, 0.1, seed, device.device_id, "photocell")  # ±6 min
    on = h >= sunset + 0.2 + photocell or h < sunrise - 0.2 + photocell
    week = int(t // (7 * DAY))
    defective = unit(seed, device.device_id, "defect", week) < 0.03
    # Full light in the evening, dimmed after midnight to save energy.
    level = 1.0 if h >= 12 or h < 0.5 else 0.6
    illuminance = 0.0 if not on or defective else level + 0.02 * _noise(seed, device, "l", t)
    return {
        "p": "on" if on else "off",
        "l": round(max(0.0, min(1.0, illuminance)), 2),
        "s": "defectiveLamp" if defective else "ok",
    }


def water_level_cm(device: FleetDevice, t: float, seed: int) -> float:
    """Water over an underpass: rises while it rains, drains when the pumps catch up."""
    sensitivity = _between(0.6, 1.4, seed, device.device_id, "sensitivity")
    drain_hours = _between(0.6, 1.6, seed, device.device_id, "drain")
    level = 0.0
    for rain in rains_near(t, seed):
        rise = 1.2 * sensitivity * rain.intensity  # cm at saturation
        if t < rain.end:
            level += rise * (1 - math.exp(-(t - rain.start) / (0.6 * HOUR)))
        else:
            at_end = rise * (1 - math.exp(-rain.hours / 0.6))
            level += at_end * math.exp(-(t - rain.end) / (drain_hours * HOUR))
    return min(120.0, level)


def water_level(device: FleetDevice, local: datetime, t: float, seed: int) -> Readings:
    residual = _between(0.5, 2.5, seed, device.device_id, "residual")  # a puddle that never goes
    noise = 0.3 * _noise(seed, device, "h", t)
    return {"h": round(max(0.0, residual + water_level_cm(device, t, seed) + noise), 1)}


def gas_pressure(device: FleetDevice, local: datetime, t: float, seed: int) -> Readings:
    base = _between(0.22, 0.30, seed, device.device_id, "base")  # MPa, medium-pressure network
    value = base - 0.02 * gas_demand(local) + 0.002 * _noise(seed, device, "p", t)
    # Rare dips: a valve or a leak, 15–45 minutes, once in a while.
    day = local.date()
    if unit(seed, device.device_id, "dip", day) < 0.05:
        start = _local_midnight(day) + _between(0, 24, seed, device.device_id, "dip-at", day) * HOUR
        minutes = _between(15, 45, seed, device.device_id, "dip-minutes", day)
        depth = _between(0.06, 0.12, seed, device.device_id, "dip-depth", day)
        into = (t - start) / (minutes * 60)
        if 0 <= into < 1:
            value -= depth * math.sin(math.pi * into)
    return {"p": round(value, 3)}


def elevator(device: FleetDevice, local: datetime, t: float, seed: int) -> Readings:
    floors = 6 + int(28 * unit(seed, device.device_id, "floors"))
    day = local.date()
    fault_at = (
        _local_midnight(day) + _between(0, 24, seed, device.device_id, "fault-at", day) * HOUR
    )
    fault_hours = _between(0.5, 2, seed, device.device_id, "fault-hours", day)
    faulty = unit(seed, device.device_id, "fault", day) < 0.03
    in_fault = faulty and fault_at <= t < fault_at + fault_hours * HOUR
    # A trip every 20 s in busy hours; the car rests on the ground floor at night.
    trip = int((fault_at if in_fault else t) // 20)
    busy = 0.15 + 0.85 * min(1.0, traffic_shape(local) * 1.2)
    if unit(seed, device.device_id, "idle", trip) > busy:
        floor = 1
    else:
        floor = 1 + int(floors * unit(seed, device.device_id, "floor", trip))
    return {"f": floor, "s": "fault" if in_fault else "ok"}


def parking(device: FleetDevice, local: datetime, t: float, seed: int) -> Readings:
    # A car stays 45 minutes on average; spots change at their own times, not all at once.
    offset = _between(0, 2700, seed, device.device_id, "offset")
    stay = int((t + offset) // 2700)
    taken = unit(seed, device.device_id, "stay", stay) < parking_demand(local)
    return {"s": "occupied" if taken else "free"}


def traffic(device: FleetDevice, local: datetime, t: float, seed: int) -> Readings:
    capacity = _between(1200, 2400, seed, device.device_id, "capacity")  # vehicles per hour
    free_speed = _between(45, 70, seed, device.device_id, "free-speed")
    shape = traffic_shape(local) * (1 + 0.08 * _noise(seed, device, "f", t))
    if raining(t, seed):
        shape *= 1.1  # rain: more cars, slower
    occupancy = min(0.97, shape * 0.82)
    speed = free_speed * (1 - 0.8 * occupancy**2)
    return {
        "f": round(capacity * min(shape, 1.05)),
        "v": round(speed, 1),
        "o": round(occupancy, 2),
        "c": occupancy > 0.7,
    }


def air_quality(device: FleetDevice, local: datetime, t: float, seed: int) -> Readings:
    h = _hours(local)
    base = _between(15, 35, seed, device.device_id, "base")
    exposure = _between(0.8, 1.2, seed, device.device_id, "exposure")
    # Night and morning inversions hold particles near the ground; rain washes them out.
    diurnal = 1 + 0.25 * math.cos(2 * math.pi * (h - 7) / 24)
    washout = 0.55 if raining(t, seed) else 1.0
    noise = 1 + 0.06 * _noise(seed, device, "pm", t)
    pm25 = (base * diurnal + haze(t, seed) * exposure) * washout * noise
    sunny = max(0.0, math.sin(math.pi * (h - 8) / 10)) if 8 <= h <= 18 else 0.0
    summer = 0.6 + 0.4 * math.sin(2 * math.pi * (local.timetuple().tm_yday - 100) / 365)
    road = traffic_shape(local)
    return {
        "pm25": round(pm25, 1),
        "pm10": round(pm25 * 1.45 + 12 + 4 * _noise(seed, device, "pm10", t), 1),
        "no2": round(12 + 45 * road * exposure + 3 * _noise(seed, device, "no2", t), 1),
        "o3": round(max(5.0, 25 + 140 * sunny * summer * washout - 0.2 * pm25), 1),
        "so2": round(
            _between(4, 9, seed, device.device_id, "so2") + _noise(seed, device, "so2", t), 1
        ),
        "co": round(0.35 + 0.006 * pm25 + 0.2 * road, 2),
    }


def water_quality(device: FleetDevice, local: datetime, t: float, seed: int) -> Readings:
    h = _hours(local)
    season = math.sin(2 * math.pi * (local.timetuple().tm_yday - 115) / 365)
    temperature = 18 + 10 * season + 0.8 * math.sin(2 * math.pi * (h - 9) / 24)
    saturation = 14.6 - 0.39 * temperature + 0.007 * temperature**2  # mg/L at one atmosphere
    daylight = math.sin(2 * math.pi * (h - 8) / 24)  # algae: more oxygen, higher pH by day
    runoff = sum(
        r.intensity * math.exp(-(t - r.end) / (6 * HOUR)) if t >= r.end else r.intensity
        for r in rains_near(t, seed)
    )
    return {
        "t": round(temperature + 0.1 * _noise(seed, device, "t", t), 1),
        "ph": round(7.4 + 0.2 * daylight + 0.03 * _noise(seed, device, "ph", t), 2),
        "o2": round(saturation * (0.75 + 0.1 * daylight), 2),
        "tu": round(12 + 1.5 * runoff + 2 * _noise(seed, device, "tu", t), 1),
    }


PATTERNS: dict[str, Callable[[FleetDevice, datetime, float, int], Readings]] = {
    "streetlight": streetlight,
    "waterlevel": water_level,
    "gaspressure": gas_pressure,
    "elevator": elevator,
    "parking": parking,
    "traffic": traffic,
    "airquality": air_quality,
    "waterquality": water_quality,
}


def readings(device: FleetDevice, moment: datetime, seed: int = DEFAULT_SEED) -> Readings:
    """What `device` reports at `moment` (aware datetime), keyed by its measures' object_ids."""
    return PATTERNS[device.kind.name](device, _local(moment), moment.timestamp(), seed)


# -- publishing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One message to send: a device's readings at a moment."""

    device: FleetDevice
    moment: datetime
    measures: Readings

    @property
    def time_instant(self) -> str:
        return canonical_time(self.moment)

    def payload(self) -> dict[str, Any]:
        """The IoT Agent JSON body: the measures and their time."""
        return {**self.measures, TIME_KEY: self.time_instant}


@dataclass(frozen=True)
class Delivery:
    """What a publisher learned of one batch."""

    accepted: int = 0  # stored or duplicate (HTTP, in-process); acknowledged by the broker (MQTT)
    rejected: int = 0  # refused by the platform, e.g. an unknown device
    failed: int = 0  # not delivered at all: connection lost, server error
    error: str | None = None  # the last failure or rejection, for the progress line


class PublishFailed(Exception):
    """The publisher cannot reach its destination; the message says where and why."""


class Publisher(Protocol):
    label: str

    def open(self) -> None:
        """Check the destination is there; PublishFailed saying why not."""

    def publish(self, batch: list[Sample]) -> Delivery:
        """Send the batch; what the destination said of it (MQTT: what it said so far)."""
        ...

    def close(self) -> Delivery:
        """Finish (wait for what is still due) and say what was learnt since the last batch."""
        ...


def _first_error(outcomes: list[Outcome]) -> str | None:
    return next((o.detail or o.reason for o in outcomes if o.status == REJECTED), None)


class InProcessPublisher:
    """Hands batches straight to the app's ingestor (tests, and runs without a server)."""

    label = "in-process"

    def __init__(self, context: AppContext) -> None:
        self.context = context

    def open(self) -> None:
        ingestor_of(self.context)

    def publish(self, batch: list[Sample]) -> Delivery:
        messages = [
            Message(s.device.apikey, s.device.device_id, s.payload(), transport="bulk")
            for s in batch
        ]
        try:
            report = ingestor_of(self.context).ingest(messages)
        except Exception as exc:  # the database failed: nothing of the batch was written
            return Delivery(failed=len(batch), error=f"{type(exc).__name__}: {exc}")
        return Delivery(
            accepted=report.stored + report.duplicates,
            rejected=report.rejected,
            error=_first_error(report.outcomes),
        )

    def close(self) -> Delivery:
        ingestor_of(self.context).flush()
        return Delivery()


class HttpPublisher:
    """POSTs each batch to a server's bulk endpoint as NDJSON (`{"k","i","t","m"}` per line)."""

    label = "HTTP"

    def __init__(
        self, base_url: str, timeout: float = 30.0, client: httpx.Client | None = None
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"服务地址须为 http(s)://主机:端口 / the server URL must be http(s)://host:port, "
                f"not {base_url!r}"
            )
        self.base_url = base_url.rstrip("/")
        # A given client (a test's app client) is used as it is, and left open.
        self.client = client or httpx.Client(base_url=self.base_url, timeout=timeout)
        self._owns_client = client is None

    def open(self) -> None:
        try:
            self.client.get("/healthz")
        except httpx.HTTPError as exc:
            raise PublishFailed(
                f"无法连接服务 {self.base_url} / cannot reach the server at {self.base_url}: {exc}"
            ) from exc

    def publish(self, batch: list[Sample]) -> Delivery:
        body = b"".join(
            orjson.dumps(
                {
                    "k": s.device.apikey,
                    "i": s.device.device_id,
                    "t": s.time_instant,
                    "m": s.measures,
                }
            )
            + b"\n"
            for s in batch
        )
        try:
            reply = self.client.post(
                "/iot/bulk", content=body, headers={"Content-Type": "application/x-ndjson"}
            )
        except httpx.HTTPError as exc:
            return Delivery(failed=len(batch), error=f"{type(exc).__name__}: {exc}")
        if reply.status_code >= 500:
            return Delivery(failed=len(batch), error=f"HTTP {reply.status_code}")
        try:
            answer = reply.json()
        except ValueError:
            answer = {}
        if reply.status_code >= 400:  # the whole batch refused: say why once
            detail = answer.get("detail") if isinstance(answer, dict) else None
            return Delivery(rejected=len(batch), error=f"HTTP {reply.status_code}: {detail}")
        return _bulk_delivery(answer, len(batch))

    def close(self) -> Delivery:
        if self._owns_client:
            self.client.close()
        return Delivery()


def _bulk_delivery(answer: Any, size: int) -> Delivery:
    """The counts of a bulk reply: `stored`, `duplicates`, `rejected` and `errors` by position."""
    try:
        errors = answer.get("errors") or [{}]
        return Delivery(
            accepted=int(answer["stored"]) + int(answer["duplicates"]),
            rejected=int(answer["rejected"]),
            error=errors[0].get("detail"),
        )
    except (AttributeError, KeyError, TypeError, ValueError, IndexError):
        return Delivery(failed=size, error=f"unexpected bulk reply: {str(answer)[:200]}")


class MqttSimPublisher:
    """Publishes each reading with QoS 1 to `/{apikey}/{device_id}/attrs`.

    MQTT says nothing of what the platform made of a message: `accepted` counts the broker's
    acknowledgements (PUBACK); rejections show in the platform's device counters."""

    label = "MQTT"
    MAX_PENDING = 20_000  # unacknowledged messages held before publishing waits

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.address = parse_broker_url(url)
        self.timeout = timeout
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"pujiang-simulate-{uuid.uuid4().hex[:12]}",
            protocol=self.address.protocol,
        )
        if self.address.username is not None:
            self.client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            self.client.tls_set_context(ssl.create_default_context())
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self._connected = threading.Event()
        self._refused: str | None = None
        self._lock = threading.Condition()
        self._pending = 0
        self._acked = 0
        self._refused_count = 0
        self._reported = (0, 0)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._refused = str(reason)
        else:
            self._connected.set()

    def _on_publish(self, _c: Any, _u: Any, _mid: int, reason: Any, _p: Any) -> None:
        with self._lock:
            self._pending -= 1
            if getattr(reason, "is_failure", False):
                self._refused_count += 1
            else:
                self._acked += 1
            self._lock.notify_all()

    def open(self) -> None:
        where = f"{self.address.host}:{self.address.port}"
        try:
            self.client.connect(self.address.host, self.address.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise PublishFailed(
                f"无法连接 MQTT 代理 {where} / cannot reach the MQTT broker {where}: {exc}"
            ) from exc
        self.client.loop_start()
        if not self._connected.wait(self.timeout):
            self.client.loop_stop()
            reason = self._refused or "no CONNACK in time"
            raise PublishFailed(
                f"MQTT 代理 {where} 未接受连接 / the MQTT broker {where} refused: {reason}"
            )

    def _news(self) -> Delivery:
        with self._lock:
            acked, refused = self._acked, self._refused_count
        before_acked, before_refused = self._reported
        self._reported = (acked, refused)
        return Delivery(accepted=acked - before_acked, rejected=refused - before_refused)

    def publish(self, batch: list[Sample]) -> Delivery:
        with self._lock:
            if not self._lock.wait_for(lambda: self._pending < self.MAX_PENDING, self.timeout):
                return Delivery(failed=len(batch), error="MQTT broker not acknowledging")
            self._pending += len(batch)
        failed = 0
        for sample in batch:
            topic = f"/{sample.device.apikey}/{sample.device.device_id}/attrs"
            info = self.client.publish(topic, orjson.dumps(sample.payload()), qos=1)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                failed += 1
        if failed:
            with self._lock:
                self._pending -= failed
        news = self._news()
        return Delivery(news.accepted, news.rejected, failed)

    def close(self) -> Delivery:
        """Wait (a while) for the acknowledgements still due, then disconnect."""
        with self._lock:
            self._lock.wait_for(lambda: self._pending <= 0, self.timeout)
        self.client.disconnect()
        self.client.loop_stop()
        return self._news()


# -- running a fleet ------------------------------------------------------------------------------

MAX_BATCH = 500  # messages per publish call (one bulk request, one ingest transaction)


@dataclass
class Progress:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    elapsed: float = 0.0
    last_error: str | None = None

    def add(self, delivery: Delivery, sent: int = 0) -> None:
        self.sent += sent
        self.accepted += delivery.accepted
        self.rejected += delivery.rejected
        self.failed += delivery.failed
        self.last_error = delivery.error or self.last_error

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        text = (
            f"已发送 sent {self.sent} · 已接受 accepted {self.accepted} · "
            f"已拒绝 rejected {self.rejected} · 速率 rate {self.rate:.1f}/s"
        )
        if self.failed:
            text += f" · 未送达 failed {self.failed}"
        return text


class Simulation:
    """A fleet sending `rate` messages per second in total, round-robin over its devices.

    Each device reports every `len(devices) / rate` seconds. With `speed` above 1 simulated time
    runs faster (60: a day in 24 minutes); it then starts `duration × (speed − 1)` seconds in the
    past, so that it never runs ahead of the real clock (the platform refuses future readings).
    """

    def __init__(
        self,
        devices: list[FleetDevice],
        rate: float,
        publisher: Publisher,
        *,
        seed: int = DEFAULT_SEED,
        speed: float = 1.0,
        duration: float | None = None,
        tick: float = 0.1,
    ) -> None:
        check_options(len(devices), rate, duration, speed)
        self.devices = devices
        self.rate = rate
        self.publisher = publisher
        self.seed = seed
        self.speed = speed
        self.duration = duration
        self.tick = tick
        self.progress = Progress()

    def sample(self, number: int, start: float) -> Sample:
        """Message `number` of a run that started at `start` (epoch seconds)."""
        device = self.devices[number % len(self.devices)]
        head_start = (self.speed - 1) * (self.duration or 0.0)
        # Whole milliseconds: the moment is exactly the TimeInstant sent.
        simulated = round(start - head_start + number / self.rate * self.speed, 3)
        moment = datetime.fromtimestamp(simulated, UTC)
        return Sample(device, moment, readings(device, moment, self.seed))

    def _total(self) -> int | None:
        return None if self.duration is None else math.ceil(self.duration * self.rate)

    def run(
        self,
        stop: threading.Event | None = None,
        report: Callable[[Progress], None] | None = None,
        every: float = 1.0,
    ) -> Progress:
        """Send until `duration` ends or `stop` is set; `report` gets the progress every
        `every` seconds and once at the end."""
        stop = stop or threading.Event()
        total = self._total()
        progress = self.progress
        start, clock = time.time(), time.monotonic()
        next_report = every
        sent = 0
        while not stop.is_set():
            progress.elapsed = time.monotonic() - clock
            due = math.floor(progress.elapsed * self.rate) + 1
            if total is not None:
                due = min(due, total)
            if due > sent:
                count = min(due - sent, MAX_BATCH)
                batch = [self.sample(n, start) for n in range(sent, sent + count)]
                progress.add(self.publisher.publish(batch), count)
                sent += count
            elif self.duration is not None and progress.elapsed >= self.duration:
                break
            else:
                wait = max(self.tick, (sent / self.rate) - progress.elapsed)
                stop.wait(min(wait, every))
            if report is not None and progress.elapsed >= next_report:
                report(progress)
                next_report = progress.elapsed + every
        progress.add(self.publisher.close())
        progress.elapsed = time.monotonic() - clock
        if report is not None:
            report(progress)
        return progress


def check_options(devices: int, rate: float, duration: float | None, speed: float) -> None:
    """ValueError naming the first bad option of a simulation."""
    if devices < 1:
        raise ValueError("--devices 必须至少为 1 / --devices must be at least 1")
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(
            f"--rate 必须为正数（每秒消息总数）/ --rate must be a positive number of messages "
            f"per second across the fleet, not {rate}"
        )
    if duration is not None and (not math.isfinite(duration) or duration <= 0):
        raise ValueError(
            f"--duration 必须为正的秒数 / --duration must be positive seconds, not {duration}"
        )
    if not math.isfinite(speed) or speed <= 0:
        raise ValueError(f"--speed 必须为正数 / --speed must be positive, not {speed}")
    if speed > 1 and duration is None:
        raise ValueError(
            "--speed 大于 1 时须给出 --duration（模拟时钟提前起步，才不会超过真实时间）/ "
            "--speed above 1 needs --duration: the simulated clock starts early enough never "
            "to run ahead of the real one"
        )


def publisher_for(
    context: AppContext, url: str | None = None, mqtt_url: str | None = None, direct: bool = False
) -> Publisher:
    """In-process when `direct`, else MQTT to `mqtt_url`, else HTTP to `url` (default: the
    server of the context's settings); ValueError naming a bad URL."""
    if direct:
        return InProcessPublisher(context)
    if mqtt_url is not None:
        return MqttSimPublisher(mqtt_url)
    settings = context.settings
    return HttpPublisher(url or server_url(settings.host, settings.port))


def server_url(host: str, port: int) -> str:
    """The URL to reach a server listening on `host` (a wildcard address means this machine)."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding to it
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _open_then_run(simulation: Simulation, stop: threading.Event, patience: float) -> None:
    """Open the publisher, retrying while the destination starts up, then run."""
    deadline = time.monotonic() + patience
    while not stop.is_set():
        try:
            simulation.publisher.open()
            break
        except PublishFailed as exc:
            if time.monotonic() > deadline:
                log.warning("simulated devices not started: %s", exc)
                return
            stop.wait(0.5)
    if stop.is_set():
        return
    log.info(
        "simulated devices: %d sending %.1f messages/s over %s",
        len(simulation.devices),
        simulation.rate,
        simulation.publisher.label,
    )
    simulation.run(stop)


@contextmanager
def in_background(simulation: Simulation, patience: float = 120.0) -> Iterator[Progress]:
    """Run the simulation in a daemon thread while the block runs, stopping it after; the
    publisher is opened in the thread, retried for up to `patience` seconds (a server that is
    still starting)."""
    stop = threading.Event()
    thread = threading.Thread(
        target=_open_then_run,
        args=(simulation, stop, patience),
        name="pujiang-simulate",
        daemon=True,
    )
    thread.start()
    try:
        yield simulation.progress
    finally:
        stop.set()
        thread.join(timeout=30)
