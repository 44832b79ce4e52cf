"""Benchmark of device ingest on SQLite (a script, not a test).

    .venv/bin/python bench/ingest.py                          # 100,000 devices and entities
    .venv/bin/python bench/ingest.py --devices 20000 --observations 100000
    .venv/bin/python bench/ingest.py --mqtt                   # also MQTT (a private Mosquitto)
    .venv/bin/python bench/ingest.py --soak 600               # 10 minutes: loss and memory

Provisions N devices (one service group, IoT Agent JSON mappings) bound to N existing
WeatherObserved entities, then sends observations (each: one device, its own timestamp, two
measures: temperature and relative humidity) and measures, in one run:

- **raw**: the same rows written straight into the same store with sqlite3 `executemany`
  (per observation: the entity document rewritten, the number of two attribute-index rows
  updated, two history rows inserted into their series), with the same connection settings as
  the app: what SQLite itself does with these rows, no Python around them;
- **in-process**: `bulk_ingest` called directly (parse, map, check, dedupe, write);
- **HTTP bulk**: `POST /iot/bulk` (NDJSON, 5,000 observations a request) to a `pujiang serve`
  subprocess, end to end;
- **MQTT** (with `--mqtt`: a Mosquitto of the bench's own, configured as docs/iot.md asks;
  `--mqtt-url` for another): `pujiang ingest` subprocess consuming QoS 1 messages published to
  the broker, batched (20 observations of one device per message, IoT Agent JSON multi-measure)
  and single (one observation per message);

each as observations/s and as a ratio to the raw rate. Every run checks afterwards that the
history holds exactly the readings sent (no loss, no duplicates).

Targets (issue 5): HTTP bulk >= 50,000 observations/s and >= 50% of raw; MQTT >= 20,000
observations/s batched and >= 5,000 messages/s single; no loss and flat memory over 10 minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from pujiang.context.jsonld import DEFAULT_VOCAB, NGSI_LD
from pujiang.context.service import ContextBroker
from pujiang.platform.db import Database, sqlite_pragmas, upgrade

ENTITY_TYPE = DEFAULT_VOCAB + "WeatherObserved"
TEMPERATURE = DEFAULT_VOCAB + "temperature"
HUMIDITY = DEFAULT_VOCAB + "relativeHumidity"
LOCATION = NGSI_LD + "location"
APIKEY = "bench"
MAPPING = [
    {"object_id": "t", "name": "temperature", "type": "Number", "unitCode": "CEL"},
    {"object_id": "h", "name": "relativeHumidity", "type": "Number"},
]
BULK_ITEMS = 5000
OPEN_PUBLISHES = 20_000
START = datetime(2026, 1, 1, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, load {load:.1f}"
    )


# -- set-up ----------------------------------------------------------------------------------------


def entity(i: int, rng: random.Random) -> dict[str, Any]:
    at = iso(START)
    point = {"type": "Point", "coordinates": [rng.uniform(121.0, 121.9), rng.uniform(30.8, 31.5)]}
    return {
        "id": f"urn:ngsi-ld:WeatherObserved:b{i}",
        "type": [ENTITY_TYPE],
        TEMPERATURE: [{"type": "Property", "value": 15.0, "unitCode": "CEL", "observedAt": at}],
        HUMIDITY: [{"type": "Property", "value": 60, "observedAt": at}],
        LOCATION: [{"type": "GeoProperty", "value": point}],
        DEFAULT_VOCAB + "districtCode": [{"type": "Property", "value": "310101"}],
    }


def set_up(url: str, path: Path, devices: int) -> None:
    upgrade(url)
    db = Database(url)
    broker = ContextBroker(db)
    rng = random.Random(5)
    for start in range(0, devices, 5000):
        broker.batch_upsert("", [entity(i, rng) for i in range(start, min(devices, start + 5000))])
    db.dispose()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO iot_services (tenant, subservice, apikey, resource, entity_type, "
            "attributes, static_attributes, commands, explicit_attrs, description, created_at, "
            "modified_at) VALUES ('', '/', ?, '/iot/json', 'WeatherObserved', ?, '[]', '[]', 0, "
            "'', ?, ?)",
            (APIKEY, orjson.dumps(MAPPING).decode(), now, now),
        )
        conn.executemany(
            "INSERT INTO iot_devices (tenant, subservice, device_id, apikey, entity_id, "
            "entity_type, protocol, transport, attributes, static_attributes, commands, "
            "explicit_attrs, missed_intervals, received, stored, rejected, duplicates, "
            "created_at, modified_at) VALUES ('', '/', ?, ?, ?, 'WeatherObserved', 'IoTA-JSON', "
            "'MQTT', '[]', '[]', '[]', 0, 3, 0, 0, 0, 0, ?, ?)",
            [
                (f"b{i}", APIKEY, f"urn:ngsi-ld:WeatherObserved:b{i}", now, now)
                for i in range(devices)
            ],
        )


class Stream:
    """Observations in time order: every device reports once per simulated step."""

    def __init__(self, devices: int, seed: int = 7) -> None:
        self.devices = devices
        self.rng = random.Random(seed)
        self.sent = 0

    def next(self, n: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            k = self.sent
            self.sent += 1
            device = k % self.devices
            moment = START + timedelta(seconds=1 + k // self.devices)
            out.append(
                {
                    "i": f"b{device}",
                    "t": iso(moment),
                    "m": {"t": round(self.rng.uniform(-5, 38), 1), "h": self.rng.randint(20, 99)},
                }
            )
        return out


def history_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM context_history").fetchone()[0])


# -- raw baseline ----------------------------------------------------------------------------------


def raw_rate(path: Path, observations: list[dict[str, Any]]) -> float:
    """The same rows as ingest writes, with sqlite3 executemany in one transaction a batch."""
    conn = sqlite3.connect(path, isolation_level=None)
    sqlite_pragmas(conn)
    pks = dict(conn.execute("SELECT entity_id, pk FROM context_entities"))
    series = {
        (entity_id, attr): series_id
        for series_id, entity_id, attr in conn.execute(
            "SELECT id, entity_id, attr FROM context_series WHERE dataset_id = ''"
        )
    }
    doc = conn.execute("SELECT doc FROM context_entities LIMIT 1").fetchone()[0]
    at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    batches = []  # the rows are built before the clock starts: only SQLite is timed
    for start in range(0, len(observations), BULK_ITEMS):
        docs, attrs, history = [], [], []
        for o in observations[start : start + BULK_ITEMS]:
            eid = f"urn:ngsi-ld:WeatherObserved:{o['i']}"
            pk = pks[eid]
            docs.append((doc, at, pk))
            for attr, value in ((TEMPERATURE, o["m"]["t"]), (HUMIDITY, o["m"]["h"])):
                instance = orjson.dumps({"type": "Property", "value": value, "observedAt": o["t"]})
                attrs.append((value, pk, attr))
                row = (series[eid, attr], o["t"], at, 0, value, None)
                history.append((*row, instance.decode()))
        batches.append((docs, attrs, history))
    started = time.perf_counter()
    for docs, attrs, history in batches:
        conn.execute("BEGIN")
        conn.executemany("UPDATE context_entities SET doc = ?, modified_at = ? WHERE pk = ?", docs)
        conn.executemany(
            "UPDATE context_attrs SET num = ? WHERE entity_pk = ? AND attr = ? AND dataset_id = ''",
            attrs,
        )
        conn.executemany(
            "INSERT INTO context_history (series_id, observed_at, modified_at, deleted, num, "
            "txt, instance) VALUES (?, ?, ?, ?, ?, ?, ?)",
            history,
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(observations) / elapsed


# -- in-process and HTTP ---------------------------------------------------------------------------


def in_process_rate(
    url: str, warm: list[dict[str, Any]], observations: list[dict[str, Any]]
) -> float:
    from pujiang.iot.http import bulk_ingest
    from pujiang.platform.deps import AppContext
    from pujiang.platform.security import Passwords
    from pujiang.settings import Settings

    settings = Settings(database_url=url, mode="test")
    context = AppContext(settings=settings, db=Database(url), passwords=Passwords(cheap=True))
    for start in range(0, len(warm), BULK_ITEMS):
        bulk_ingest(context, warm[start : start + BULK_ITEMS], APIKEY)
    started = time.perf_counter()
    for start in range(0, len(observations), BULK_ITEMS):
        reply = bulk_ingest(context, observations[start : start + BULK_ITEMS], APIKEY)
        assert reply["rejected"] == 0, reply["errors"][:3]
    elapsed = time.perf_counter() - started
    context.db.dispose()
    return len(observations) / elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def subprocess_env(url: str, var: Path, mqtt_url: str | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "PUJIANG_DATABASE_URL": url,
        "PUJIANG_MODE": "development",
        "PUJIANG_VAR_DIR": str(var),
        "PUJIANG_LOG_LEVEL": "WARNING",
    }
    env.pop("PUJIANG_MQTT_URL", None)
    if mqtt_url:
        env["PUJIANG_MQTT_URL"] = mqtt_url
    return env


def server(url: str, var: Path, *options: str) -> tuple[subprocess.Popen[bytes], str]:
    """`pujiang serve` on a free port, with these further options, once it answers."""
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "pujiang", "serve", "--port", str(port), *options],
        env=subprocess_env(url, var),
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


def ndjson(observations: list[dict[str, Any]]) -> list[bytes]:
    return [
        b"\n".join(orjson.dumps(o) for o in observations[start : start + BULK_ITEMS])
        for start in range(0, len(observations), BULK_ITEMS)
    ]


def post_all(client: httpx.Client, bodies: list[bytes]) -> None:
    headers = {"content-type": "application/x-ndjson"}
    for body in bodies:
        reply = client.post(f"/iot/bulk?k={APIKEY}", content=body, headers=headers)
        reply.raise_for_status()
        assert reply.json()["rejected"] == 0, reply.text[:300]


def http_rate(
    url: str, var: Path, warm: list[dict[str, Any]], timed: list[dict[str, Any]]
) -> float:
    """Observations/s of the timed part, after `warm` filled the server's device cache."""
    process, base = server(url, var)
    try:
        with httpx.Client(base_url=base, timeout=300) as client:
            post_all(client, ndjson(warm))
            bodies = ndjson(timed)
            started = time.perf_counter()
            post_all(client, bodies)
            elapsed = time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    return len(timed) / elapsed


# -- MQTT ------------------------------------------------------------------------------------------


def mqtt_messages(observations: list[dict[str, Any]], per_message: int) -> list[tuple[str, bytes]]:
    """(topic, payload) pairs as a fleet publishes them: every device in time order, the
    devices interleaved. `per_message` consecutive observations of one device go in one
    message (IoT Agent JSON multi-measure array), or one bare object when it is 1."""
    by_device: dict[str, list[dict[str, Any]]] = {}
    for o in observations:
        by_device.setdefault(o["i"], []).append({**o["m"], "TimeInstant": o["t"]})
    rounds: list[list[tuple[str, bytes]]] = []
    for device, groups in by_device.items():
        topic = f"/{APIKEY}/{device}/attrs"
        for n, start in enumerate(range(0, len(groups), per_message)):
            chunk = groups[start : start + per_message]
            payload = orjson.dumps(chunk if per_message > 1 else chunk[0])
            if n == len(rounds):
                rounds.append([])
            rounds[n].append((topic, payload))
    return [message for messages in rounds for message in messages]


def end_session(host: str, port: int, client_id: str) -> None:
    """Drop the worker's persistent session, so the broker keeps nothing for it."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.connect(host, port)
    client.disconnect()


BROKER_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
log_dest none
# What docs/iot.md asks of a city's broker: no cap on a session's queue or in-flight window.
max_queued_messages 0
max_inflight_messages 0
"""


def private_broker(var: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Mosquitto of the bench's own, configured as docs/iot.md says a city's should be."""
    port = free_port()
    conf = var / "mosquitto.conf"
    conf.write_text(BROKER_CONF.format(port=port))
    process = subprocess.Popen(["mosquitto", "-c", str(conf)])  # noqa: S603, S607 - the broker
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, f"mqtt://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("mosquitto did not start")


def mqtt_rate(
    url: str, path: Path, var: Path, broker: str, messages: list[tuple[str, bytes]], readings: int
) -> tuple[float, float]:
    """(messages/s, seconds) from the first publish until the history holds every reading."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    host, _, port = broker.split("://", 1)[1].partition(":")
    client_id = f"bench-ingest-{os.getpid()}-{time.time_ns()}"
    worker = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "pujiang", "ingest", "--client-id", client_id, "--apikey", APIKEY],
        env=subprocess_env(url, var, broker),
    )
    before = history_rows(path)
    try:
        time.sleep(3)  # connected and subscribed
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id + "-pub")
        publisher.max_inflight_messages_set(1000)
        # paho keys unacknowledged publishes by their 16-bit packet id: more than 65,535 of
        # them at once overwrite each other, so the publisher keeps at most this many open.
        window = threading.BoundedSemaphore(OPEN_PUBLISHES)
        publisher.on_publish = lambda *_: window.release()
        publisher.connect(host, int(port or 1883))
        publisher.loop_start()
        started = time.perf_counter()
        for topic, payload in messages:
            window.acquire()
            publisher.publish(topic, payload, qos=1)
        progress, progress_at = 0, time.perf_counter()
        while (done := history_rows(path) - before) < readings:
            if worker.poll() is not None:
                raise SystemExit("the ingest worker stopped")
            if done > progress:
                progress, progress_at = done, time.perf_counter()
            elif time.perf_counter() - progress_at > 30:
                print(f"  no progress for 30 s at {done:,} of {readings:,} readings")
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        publisher.loop_stop()
        publisher.disconnect()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        end_session(host, int(port or 1883), client_id)
    return len(messages) / elapsed, elapsed


# -- the run ---------------------------------------------------------------------------------------


def mqtt_runs(args: Any, base: Path, fresh: Any, raw: float, broker: str) -> None:
    """Batched: 20 observations of one device a message (a tenth of the devices reporting 20
    times each); single: one observation a message (every device, twice)."""
    for per_message, label in ((20, "batched, 20 observations a message"), (1, "single")):
        devices = args.devices // 10 if per_message > 1 else args.devices
        stream = Stream(devices, seed=11)
        stream.next(devices)  # the warm-up's times: these come after them
        observations = stream.next(args.observations)
        url, path = fresh(f"mqtt{per_message}")
        messages = mqtt_messages(observations, per_message)
        before = history_rows(path)
        rate, seconds = mqtt_rate(url, path, base, broker, messages, 2 * len(observations))
        time.sleep(1)  # anything written after the count was reached is counted too
        check(path, before, 2 * len(observations))
        print(
            f"MQTT {label}: {rate:,.0f} messages/s, {len(observations) / seconds:,.0f} "
            f"observations/s, {len(observations) / seconds / raw:.2f} of raw"
        )


def check(path: Path, before: int, expected: int) -> None:
    got = history_rows(path) - before
    status = "ok, no loss, no duplicates" if got == expected else "MISMATCH"
    print(f"  history rows written: {got:,} of {expected:,} expected: {status}")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def soak(url: str, path: Path, var: Path, stream: Stream, seconds: int) -> None:
    """A steady HTTP stream for `seconds`: rate per minute, server memory, and loss."""
    process, base = server(url, var)
    before, sent = history_rows(path), 0
    try:
        with httpx.Client(base_url=base, timeout=300) as client:
            started = last = time.perf_counter()
            window = 0
            while time.perf_counter() - started < seconds:
                batch = stream.next(BULK_ITEMS)
                post_all(client, ndjson(batch))
                sent += len(batch)
                window += len(batch)
                now = time.perf_counter()
                if now - last >= 60:
                    print(
                        f"  {now - started:5.0f} s: {window / (now - last):,.0f} observations/s, "
                        f"server RSS {rss_mib(process.pid):,.0f} MiB"
                    )
                    last, window = now, 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    check(path, before, 2 * sent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--observations", type=int, default=200_000)
    parser.add_argument(
        "--mqtt", action="store_true", help="measure MQTT too, on a Mosquitto of the bench's own"
    )
    parser.add_argument("--mqtt-url", default=None, help="measure MQTT on this broker instead")
    parser.add_argument("--soak", type=int, default=0, help="seconds of a steady HTTP run")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        template = base / "template.db"
        started = time.perf_counter()
        set_up(f"sqlite:///{template}", template, args.devices)
        took = time.perf_counter() - started
        print(f"set-up: {args.devices:,} entities and devices in {took:.1f} s")

        def fresh(name: str) -> tuple[str, Path]:
            path = base / f"{name}.db"
            with sqlite3.connect(template) as src, sqlite3.connect(path) as dst:
                src.backup(dst)
            return f"sqlite:///{path}", path

        stream = Stream(args.devices)
        warm = stream.next(args.devices)  # one observation per device: fills device caches
        observations = stream.next(args.observations)

        _, raw_path = fresh("raw")
        raw = raw_rate(raw_path, observations)
        print(f"raw executemany of the same rows: {raw:,.0f} observations/s (baseline)")

        url, path = fresh("inprocess")
        before = history_rows(path)
        rate = in_process_rate(url, warm, observations)
        check(path, before, 2 * (len(warm) + len(observations)))
        print(f"in-process bulk_ingest: {rate:,.0f} observations/s, {rate / raw:.2f} of raw")

        url, path = fresh("http")
        before = history_rows(path)
        rate = http_rate(url, base, warm, observations)
        check(path, before, 2 * (len(warm) + len(observations)))
        print(
            f"HTTP bulk (NDJSON, {BULK_ITEMS:,} a request): {rate:,.0f} observations/s, "
            f"{rate / raw:.2f} of raw  (target >= 50,000/s and >= 0.50)"
        )

        if args.mqtt or args.mqtt_url:
            broker, url_of_broker = None, args.mqtt_url
            if not url_of_broker:
                broker, url_of_broker = private_broker(base)
            try:
                mqtt_runs(args, base, fresh, raw, url_of_broker)
            finally:
                if broker is not None:
                    broker.terminate()
                    broker.wait(timeout=30)
        if args.soak:
            url, path = fresh("soak")
            print(f"soak: {args.soak} s of HTTP bulk")
            soak(url, path, base, stream, args.soak)


if __name__ == "__main__":
    main()
