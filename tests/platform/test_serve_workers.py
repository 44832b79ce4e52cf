"""`pujiang serve --workers 2`: one server in two processes behaves as one.

Each test starts the real command as a subprocess on the test's database (a copy of the
migrated SQLite file, or the run's PostgreSQL database) and talks to it over fresh
connections, so requests land on either worker:

- `/metrics` adds up both workers' figures, whichever worker answers the scrape;
- a notification is sent once, although both workers run a delivery worker;
- a stored @context deleted through one worker is no longer used by the other;
- with MQTT, the workers share the device topics (client ids of their own, one shared group):
  every message is counted and stored once.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from pujiang.iot.models import IotDevice
from pujiang.platform.db import Database
from tests.conftest import TEST_PASSWORD, eventually
from tests.context.test_subscriptions import Receiver
from tests.iot.test_kill9 import History, provision_rows, worker_env
from tests.iot.test_mqtt import Publisher, forget_session, iso, publisher, require_broker, unique

__all__ = ["publisher"]  # the fixture

READY_SECONDS = 60.0
LD = "application/ld+json"
JSONLD_REL = "http://www.w3.org/ns/json-ld#context"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`pujiang serve --workers 2` in a subprocess, its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.var = Path(env["PUJIANG_VAR_DIR"])
        with log.open("a") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own command
                [
                    sys.executable,
                    "-m",
                    "pujiang",
                    "serve",
                    "--workers",
                    "2",
                    "--port",
                    str(self.port),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        """One request on a connection of its own: the kernel hands it to either worker."""
        return httpx.request(method, self.base + path, timeout=30, **options)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"pujiang serve exited early:\n{self.text()}")
            try:
                if self.request("GET", "/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pytest.fail(f"pujiang serve did not start:\n{self.text()}")

    def children(self) -> list[int]:
        """The processes uvicorn's supervisor started (its workers, and perhaps the resource
        tracker of multiprocessing)."""
        pids = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            pids += [int(pid) for pid in (task / "children").read_text().split()]
        return pids

    def metrics_files(self) -> set[int]:
        """The pids that wrote request counters (each worker writes its own file)."""
        directory = self.var / f"serve-{self.port}" / "metrics"
        return {
            int(m.group(1))
            for f in directory.glob("counter_*.db")
            if (m := re.match(r"counter_(\d+)\.db", f.name))
        }

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                pytest.fail(f"pujiang serve did not stop on SIGTERM:\n{self.text()}")
        return int(self.process.returncode)


@pytest.fixture
def serve(database_url: str, tmp_path: Path) -> Iterator[Server]:
    env = {**worker_env(database_url, tmp_path), "PUJIANG_LOG_LEVEL": "INFO"}
    env.pop("PUJIANG_MQTT_URL")
    server = Server(env, tmp_path / "serve.log")
    try:
        server.wait_ready()
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


@pytest.fixture
def steward(serve: Server, make_user: Callable[..., str]) -> dict[str, str]:
    """A data steward signed in through the server."""
    name = make_user(unique("steward-"), "data_steward")
    reply = serve.request(
        "POST", "/api/auth/token", data={"username": name, "password": TEST_PASSWORD}
    )
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def requests_counted(text: str, route: str) -> float:
    """pujiang_http_requests_total of one route, summed over methods and statuses."""
    pattern = rf'^pujiang_http_requests_total\{{[^}}]*route="{re.escape(route)}"[^}}]*\}} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


def test_worker_numbers_are_the_lowest_free_ones(tmp_path: Path) -> None:
    """A number is held while its process lives (here: while its lock is held)."""
    from pujiang.platform.workers import claim_slot

    assert [claim_slot(tmp_path, 8000, 2) for _ in range(3)] == [0, 1, 2]
    assert claim_slot(tmp_path, 8001, 2) == 0  # another server, numbers of its own


def test_metrics_add_up_both_workers(serve: Server) -> None:
    assert len(serve.children()) >= 2, serve.text()
    # Until both workers have served a request (each writes a counter file of its own).
    assert eventually(
        lambda: (
            serve.request("GET", "/readyz").status_code == 200 and len(serve.metrics_files()) >= 2
        ),
        30,
    ), f"only {serve.metrics_files()} served:\n{serve.text()}"
    before = requests_counted(serve.request("GET", "/metrics").text, "/readyz")
    for _ in range(20):
        assert serve.request("GET", "/readyz").status_code == 200

    def every_scrape_counts_all() -> bool:
        scrapes = [serve.request("GET", "/metrics").text for _ in range(6)]
        return all(requests_counted(text, "/readyz") == before + 20 for text in scrapes)

    # A worker's own figures are only part of the total: each worker has served /readyz.
    assert eventually(every_scrape_counts_all, 10)
    assert serve.stop() == 0, serve.text()


def test_a_notification_is_sent_once(serve: Server, steward: dict[str, str]) -> None:
    headers = steward
    receiver = Receiver()
    try:
        entity = {
            "id": "urn:ngsi-ld:Sensor:w1",
            "type": "Sensor",
            "level": {"type": "Property", "value": 0},
        }
        reply = serve.request("POST", "/ngsi-ld/v1/entities", json=entity, headers=headers)
        assert reply.status_code == 201, reply.text
        subscription = {
            "type": "Subscription",
            "entities": [{"type": "Sensor"}],
            "watchedAttributes": ["level"],
            "notification": {"endpoint": {"uri": receiver.url}, "format": "keyValues"},
        }
        reply = serve.request(
            "POST", "/ngsi-ld/v1/subscriptions", json=subscription, headers=headers
        )
        assert reply.status_code == 201, reply.text
        for value in range(1, 11):
            patch = {"level": {"type": "Property", "value": value}}
            path = "/ngsi-ld/v1/entities/urn:ngsi-ld:Sensor:w1/attrs"
            assert serve.request("PATCH", path, json=patch, headers=headers).status_code == 204
        got = receiver.wait(10, 30) + receiver.quiet(3)
    finally:
        receiver.close()
    values = sorted(item["level"] for received in got for item in received.body["data"])
    assert values == list(range(1, 11)), values  # each change once, none twice


def test_a_deleted_context_is_no_longer_used_by_any_worker(
    serve: Server, steward: dict[str, str]
) -> None:
    headers = steward
    body = {"@context": {"Gauge": "https://example.org/city#WaterGauge"}}
    reply = serve.request("POST", "/ngsi-ld/v1/jsonldContexts", json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    location = reply.headers["Location"]
    link = f'<{serve.base}{location}>; rel="{JSONLD_REL}"; type="{LD}"'
    query = {**headers, "Link": link}

    def gauges() -> int:
        return serve.request("GET", "/ngsi-ld/v1/entities?type=Gauge", headers=query).status_code

    assert [gauges() for _ in range(20)] == [200] * 20  # both workers cache the active context
    reply = serve.request("DELETE", location, headers=headers)
    assert reply.status_code == 204, reply.text

    def refused_everywhere() -> bool:
        return 200 not in {gauges() for _ in range(12)}

    assert eventually(refused_everywhere, 15)


TOTAL = 600
DEVICES = 3


@pytest.fixture
def client_base() -> Iterator[str]:
    base = unique("pujiang-test-serve-")
    yield base
    for slot in (0, 1):
        forget_session(f"{base}-{slot}")


def test_workers_share_the_device_topics(
    database_url: str, tmp_path: Path, publisher: Publisher, client_base: str
) -> None:
    require_broker()
    apikey = unique("k")
    device_ids = [f"serve-{n}" for n in range(DEVICES)]
    provision_rows(database_url, apikey, device_ids)
    env = {
        **worker_env(database_url, tmp_path),
        "PUJIANG_LOG_LEVEL": "INFO",
        "PUJIANG_INGEST_CLIENT_ID": client_base,
    }
    server = Server(env, tmp_path / "serve.log")
    history = History(database_url, device_ids)
    try:
        server.wait_ready()
        assert eventually(lambda: server.text().count("subscribed to $share/pujiang/") >= 2, 30)
        start = datetime.now(UTC) - timedelta(hours=1)
        publisher.publish_many(
            [
                (
                    f"/{apikey}/{device_ids[i % DEVICES]}/attrs",
                    orjson.dumps({"t": float(i), "TimeInstant": iso(start + timedelta(seconds=i))}),
                )
                for i in range(TOTAL)
            ]
        )
        stored = history.settle(TOTAL)
        stored_metric = 'pujiang_ingest_messages_total{outcome="stored",transport="mqtt"}'

        def counted_once() -> bool:
            text = server.request("GET", "/metrics").text
            return (
                _sample(text, stored_metric) == TOTAL
                and _sample(text, "pujiang_ingest_mqtt_acknowledged") == TOTAL
            )

        assert eventually(counted_once, 10), server.request("GET", "/metrics").text
        assert server.stop() == 0, server.text()
    finally:
        if server.process.poll() is None:
            server.process.kill()
        history.close()
    assert stored == TOTAL, server.text()
    log = server.text()
    assert f"client id {client_base}-0, shared group pujiang" in log, log
    assert f"client id {client_base}-1, shared group pujiang" in log, log
    database = Database(database_url)
    try:
        with database.session() as session:
            received = session.scalars(
                select(IotDevice.received).where(IotDevice.device_id.in_(device_ids))
            ).all()
    finally:
        database.dispose()
    assert sum(received) == TOTAL  # each message reached one worker


def _sample(text: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None
