"""Two `pujiang ingest` workers in one MQTT 5 shared-subscription group split one stream: each
stores a part, together everything, nothing twice.

Both run as subprocesses on one database (a SQLite file migrated by `pujiang db upgrade`, or
the run's PostgreSQL database), with client ids of their own and one group name.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.iot.test_kill9 import (
    History,
    IngestProcess,
    ingest_db,
    observations,
    provision_rows,
    totals,
    worker_env,
)
from tests.iot.test_mqtt import Publisher, forget_session, publisher, require_broker, unique

pytestmark = pytest.mark.mqtt

__all__ = ["ingest_db", "publisher"]  # fixtures shared with the other files

TOTAL = 2000
DEVICES = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metric(text: str, name: str) -> float:
    """The value of one sample in Prometheus text (`name` with its labels, as printed)."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in the metrics:\n{text}"
    return float(match.group(1))


@pytest.fixture
def client_ids() -> Iterator[tuple[str, str]]:
    made = (unique("pujiang-test-share-a-"), unique("pujiang-test-share-b-"))
    yield made
    for client_id in made:
        forget_session(client_id)


def test_a_shared_group_splits_the_stream_between_workers(
    ingest_db: str, tmp_path: Path, publisher: Publisher, client_ids: tuple[str, str]
) -> None:
    require_broker()
    apikey = unique("k")
    group = unique("pujiang-test-group-")
    device_ids = [f"share-{n}" for n in range(DEVICES)]
    provision_rows(ingest_db, apikey, device_ids)
    env = worker_env(ingest_db, tmp_path)
    history = History(ingest_db, device_ids)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    workers: list[IngestProcess] = []
    port = free_port()
    try:
        for client_id, log in zip(client_ids, logs, strict=True):
            args = ("--client-id", client_id, "--shared-group", group, "--apikey", apikey)
            if not workers:
                args += ("--metrics-port", str(port))
            workers.append(IngestProcess(env, log, *args))
        for worker in workers:
            worker.wait_subscribed()
        publisher.publish_many(observations(apikey, device_ids, TOTAL))
        stored = history.settle(TOTAL)
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for worker in workers:
            assert worker.stop() == 0, worker.text()
        rows = history.rows()
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
        history.close()

    assert stored == TOTAL, [w.text() for w in workers]
    assert len({(entity_id, observed) for entity_id, observed, _ in rows}) == len(rows) == TOTAL
    assert sorted(int(value) for _, _, value in rows) == list(range(TOTAL))
    parts = [totals(worker.text()) for worker in workers]
    assert all(part["stored"] > 0 for part in parts), parts  # both did their share
    assert sum(part["stored"] for part in parts) == TOTAL
    assert sum(part["received"] for part in parts) == TOTAL  # each message went to one worker
    assert f"shared group {group}" in workers[0].text()
    # The first worker served its own figures.
    name = 'pujiang_ingest_messages_total{outcome="stored",transport="mqtt"}'
    assert metric(scraped, name) == parts[0]["stored"]
    assert metric(scraped, "pujiang_ingest_mqtt_acknowledged_total") == parts[0]["received"]
