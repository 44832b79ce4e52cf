"""`pujiang ingest` killed with SIGKILL in the middle of a stream loses nothing and stores
nothing twice.

The worker runs as a subprocess on a database migrated by `pujiang db upgrade` (a SQLite file;
the run's PostgreSQL database when PUJIANG_TEST_DATABASE_URL is set). Observations, each with
its own time, are published at QoS 1 while it runs; it is killed mid-stream, more are published
while it is down, it is started again with the same client id (its persistent session), and
the rest follow. The broker delivers again what the dead worker had not acknowledged; what it
had committed but not yet acknowledged comes back as duplicates and is recognised by the
device + attribute + time rule. At the end every observation is in the history exactly once.

Mosquitto keeps at most `max_queued_messages` (1000 by default) QoS 1 messages for an offline
session, counting the ones delivered but not yet acknowledged: the publisher is paced so the
dead worker's unacknowledged messages plus those published while it is down stay below that.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine, func, select

from pujiang.context.models import history_rows
from pujiang.iot.models import IotDevice, IotService
from pujiang.platform.db import Database
from tests.iot.test_mqtt import (
    MQTT_URL,
    Publisher,
    forget_session,
    iso,
    publisher,
    require_broker,
    unique,
)

HISTORY = history_rows()  # the broker's history rows with their series' columns

pytestmark = pytest.mark.mqtt

__all__ = ["publisher"]  # the fixture, shared with test_mqtt.py

DEVICES = 3
TOTAL = 3000
DOWN_COUNT = 400  # published while the worker is dead
KILL_AFTER_STORED = 400
READY_SECONDS = 60.0
SETTLE_SECONDS = 120.0
QUIET_SECONDS = 2.0


class IngestProcess:
    """One `pujiang ingest` subprocess, its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        with log.open("a") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own command
                [sys.executable, "-m", "pujiang", "ingest", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_subscribed(self, times: int = 1) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while self.text().count("subscribed to the device topics") < times:
            if self.process.poll() is not None:
                pytest.fail(f"pujiang ingest exited early:\n{self.text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"pujiang ingest did not subscribe in time:\n{self.text()}")
            time.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                pytest.fail(f"pujiang ingest did not stop on SIGTERM:\n{self.text()}")
        return int(self.process.returncode)


def worker_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PUJIANG_MODE": "test",
        "PUJIANG_SECRET_KEY": secrets.token_urlsafe(48),
        "PUJIANG_DATABASE_URL": database_url,
        "PUJIANG_MQTT_URL": MQTT_URL,
        "PUJIANG_VAR_DIR": str(tmp_path / "var"),
        "PUJIANG_LOG_JSON": "false",
        "PUJIANG_LOG_LEVEL": "WARNING",
        # Batches of up to 0.2 s: against a steady stream the worker always holds a batch
        # received and not yet acknowledged, whenever it is killed.
        "PUJIANG_INGEST_BATCH_MAX": "1000",
        "PUJIANG_INGEST_BATCH_MS": "200",
    }


@pytest.fixture
def ingest_db(database_url: str, tmp_path: Path) -> str:
    """A database migrated by `pujiang db upgrade`: a fresh SQLite file, or the run's PG."""
    url = (
        f"sqlite:///{tmp_path / 'ingest.db'}" if database_url.startswith("sqlite") else database_url
    )
    upgrade = subprocess.run(
        [sys.executable, "-m", "pujiang", "db", "upgrade"],
        env=worker_env(url, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    return url


def provision_rows(url: str, apikey: str, device_ids: list[str]) -> None:
    """A service group and its devices written straight into the worker's database."""
    database = Database(url)
    try:
        with database.session() as session:
            session.add(
                IotService(
                    apikey=apikey,
                    entity_type="WeatherObserved",
                    attributes=[
                        {"object_id": "t", "name": "temperature", "type": "Number"},
                    ],
                )
            )
            for device_id in device_ids:
                session.add(
                    IotDevice(
                        apikey=apikey,
                        device_id=device_id,
                        entity_id=f"urn:ngsi-ld:WeatherObserved:{device_id}",
                        entity_type="WeatherObserved",
                    )
                )
    finally:
        database.dispose()


def observations(apikey: str, device_ids: list[str], total: int) -> list[tuple[str, bytes]]:
    """`total` measures spread over the devices, each at a time of its own, value = index."""
    start = datetime.now(UTC) - timedelta(hours=2)
    items = []
    for i in range(total):
        device_id = device_ids[i % len(device_ids)]
        moment = iso(start + timedelta(milliseconds=10 * i))
        payload = orjson.dumps({"t": float(i), "TimeInstant": moment})
        items.append((f"/{apikey}/{device_id}/attrs", payload))
    return items


class History:
    """Reads what the worker stored, straight from the history table."""

    def __init__(self, url: str, device_ids: list[str]) -> None:
        self.engine = create_engine(url)
        self.entities = [f"urn:ngsi-ld:WeatherObserved:{d}" for d in device_ids]

    def _where(self, query: Any) -> Any:
        table = HISTORY.c
        return query.where(table.entity_id.in_(self.entities), table.attr.like("%temperature"))

    def count(self) -> int:
        with self.engine.connect() as conn:
            query = select(func.count()).select_from(HISTORY)
            return int(conn.execute(self._where(query)).scalar_one())

    def rows(self) -> list[tuple[str, Any, float]]:
        table = HISTORY.c
        with self.engine.connect() as conn:
            query = select(table.entity_id, table.observed_at, table.num)
            return [tuple(row) for row in conn.execute(self._where(query))]

    def settle(self, expected: int) -> int:
        """Wait until `expected` rows are there and nothing changes for a while."""
        deadline = time.monotonic() + SETTLE_SECONDS
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = self.count()
            if now != last:
                last, since = now, time.monotonic()
            elif now >= expected and time.monotonic() - since >= QUIET_SECONDS:
                return now
            time.sleep(0.1)
        return last

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def client_id() -> Iterator[str]:
    made = unique("pujiang-test-kill9-")
    yield made
    forget_session(made)


class SteadyPublisher(threading.Thread):
    """Publishes a steady stream (small chunks, a short pause between them) until told to stop,
    so the worker always has a batch in hand, received and not yet acknowledged."""

    CHUNK = 20
    PAUSE = 0.01

    def __init__(self, device: Publisher, items: list[tuple[str, bytes]]) -> None:
        super().__init__(daemon=True)
        self.device = device
        self.items = items
        self.sent = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while self.sent < len(self.items) and not self.halt.is_set():
            chunk = self.items[self.sent : self.sent + self.CHUNK]
            self.device.publish_many(chunk)
            self.sent += len(chunk)
            time.sleep(self.PAUSE)


def totals(log: str) -> dict[str, int]:
    """The figures of the last `totals` line a worker printed on stopping."""
    line = [entry for entry in log.splitlines() if "totals" in entry][-1]
    return {name: int(n) for name, n in re.findall(r"([a-z]+) (\d+)", line)}


def test_a_killed_worker_loses_nothing_and_stores_nothing_twice(
    ingest_db: str, tmp_path: Path, publisher: Publisher, client_id: str
) -> None:
    require_broker()
    apikey = unique("k")
    device_ids = [f"kill9-{n}" for n in range(DEVICES)]
    provision_rows(ingest_db, apikey, device_ids)
    items = observations(apikey, device_ids, TOTAL)
    history = History(ingest_db, device_ids)
    env = worker_env(ingest_db, tmp_path)
    log = tmp_path / "ingest.log"
    workers: list[IngestProcess] = []
    try:
        # Only this test's API key: other runs' traffic on the broker must not fill the
        # session's offline queue while the worker is dead.
        args = ("--client-id", client_id, "--apikey", apikey)
        first = IngestProcess(env, log, *args)
        workers.append(first)
        first.wait_subscribed()
        stream = SteadyPublisher(publisher, items[: TOTAL - DOWN_COUNT])
        stream.start()
        deadline = time.monotonic() + SETTLE_SECONDS
        while history.count() < KILL_AFTER_STORED:
            assert time.monotonic() < deadline, first.text()
            assert stream.is_alive(), "the stream ended before the kill: raise TOTAL"
            time.sleep(0.01)
        # A batch was just committed; 50 ms on, the next 0.2 s batch is filling: killed now,
        # the worker dies holding messages it received and never acknowledged.
        time.sleep(0.05)
        first.kill()
        stream.halt.set()
        stream.join(30)
        stored_before_restart = history.count()

        # While it is down: these wait in its session on the broker.
        rest = items[stream.sent :]
        publisher.publish_many(rest[:DOWN_COUNT])

        second = IngestProcess(env, log, *args)
        workers.append(second)
        second.wait_subscribed(times=2)
        publisher.publish_many(rest[DOWN_COUNT:])
        stored = history.settle(TOTAL)
        assert second.stop() == 0, second.text()
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
        rows = history.rows()
        history.close()

    assert stored == TOTAL, f"{stored} of {TOTAL} stored\n{log.read_text()}"
    keys = {(entity_id, observed) for entity_id, observed, _ in rows}
    assert len(keys) == len(rows) == TOTAL  # no observation twice
    assert sorted(int(value) for _, _, value in rows) == list(range(TOTAL))  # none lost
    # The restarted worker got again what the dead one held unacknowledged, and stopped
    # cleanly on SIGTERM, printing its totals.
    second_totals = totals(log.read_text())
    assert second_totals["redelivered"] > 0, log.read_text()
    assert second_totals["stored"] == TOTAL - stored_before_restart
