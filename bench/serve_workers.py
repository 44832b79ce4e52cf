"""Benchmark of `pujiang serve --workers N` (a script, not a test).

    .venv/bin/python bench/serve_workers.py                       # SQLite file of its own
    .venv/bin/python bench/serve_workers.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench

Provisions N devices (one service group, IoT Agent JSON mappings, WeatherObserved entities
created by a first observation each), then, for each worker count, starts `pujiang serve
--workers W` and posts bulk uploads (NDJSON, 5,000 observations of two measures a request)
from several clients at once, as gateways do. Prints observations/s per worker count and its
ratio to one worker, measured in the same run (the baseline), and checks afterwards that the
history holds exactly the readings sent. The PostgreSQL database must exist; the bench
migrates it and provisions devices under an API key of its own, so it can be reused.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import signal
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
from sqlalchemy import func, insert, select

from pujiang.context.models import history_rows
from pujiang.iot.models import IotDevice, IotService
from pujiang.platform.db import Database

sys.path.insert(0, str(Path(__file__).parent))
from ingest import server, subprocess_env

BULK_ITEMS = 5000
MAPPING = [
    {"object_id": "t", "name": "temperature", "type": "Number", "unitCode": "CEL"},
    {"object_id": "h", "name": "relativeHumidity", "type": "Number"},
]
HISTORY = history_rows()


def machine(url: str) -> str:
    load = os.getloadavg()[0]
    store = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{store}, load {load:.1f}"
    )


def provision(url: str, var: Path, apikey: str, devices: int) -> list[str]:
    subprocess.run(
        [sys.executable, "-m", "pujiang", "db", "upgrade"], env=subprocess_env(url, var), check=True
    )
    ids = [f"{apikey}-{n}" for n in range(devices)]
    db = Database(url)
    try:
        with db.session() as session:
            session.add(
                IotService(apikey=apikey, entity_type="WeatherObserved", attributes=MAPPING)
            )
        with db.session() as session:
            session.execute(
                insert(IotDevice),
                [
                    {
                        "tenant": "",
                        "apikey": apikey,
                        "device_id": device_id,
                        "entity_id": f"urn:ngsi-ld:WeatherObserved:{device_id}",
                        "entity_type": "WeatherObserved",
                    }
                    for device_id in ids
                ],
            )
    finally:
        db.dispose()
    return ids


def bodies(ids: list[str], rounds: int, start: datetime) -> list[bytes]:
    """`rounds` observations of every device, each device in time order, as NDJSON bodies."""
    lines = []
    for r in range(rounds):
        moment = (start + timedelta(seconds=r)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        for n, device_id in enumerate(ids):
            measures = {"t": round(-5 + (n * 7 + r) % 430 / 10, 1), "h": 20 + (n + r) % 80}
            lines.append(orjson.dumps({"i": device_id, "t": moment, "m": measures}))
    return [b"\n".join(lines[i : i + BULK_ITEMS]) for i in range(0, len(lines), BULK_ITEMS)]


def post_all(base: str, apikey: str, parts: list[bytes], clients: int) -> float:
    """Post the bodies from `clients` threads at once; returns the seconds it took."""
    headers = {"content-type": "application/x-ndjson"}
    errors: list[str] = []

    def client(mine: list[bytes]) -> None:
        with httpx.Client(base_url=base, timeout=600) as http:
            for body in mine:
                reply = http.post(f"/iot/bulk?k={apikey}", content=body, headers=headers)
                if reply.status_code != 200 or reply.json()["rejected"]:
                    errors.append(reply.text[:300])

    threads = [threading.Thread(target=client, args=(parts[c::clients],)) for c in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return elapsed


def history_count(url: str, ids: list[str]) -> int:
    db = Database(url)
    try:
        with db.session() as session:
            query = select(func.count()).select_from(HISTORY)
            query = query.where(
                HISTORY.c.entity_id.like(
                    f"urn:ngsi-ld:WeatherObserved:{ids[0].rsplit('-', 1)[0]}-%"
                )
            )
            return int(session.execute(query).scalar_one())
    finally:
        db.dispose()


def run(
    args: Any, url: str, var: Path, ids: list[str], apikey: str, workers: int, start_at: datetime
) -> float:
    warm = bodies(ids, 1, start_at)
    timed = bodies(ids, args.rounds, start_at + timedelta(seconds=1))
    before = history_count(url, ids)
    process, base = server(url, var, "--workers", str(workers))
    try:
        post_all(base, apikey, warm, args.clients)  # entities exist, device caches are filled
        elapsed = post_all(base, apikey, timed, args.clients)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    sent = len(ids) * (1 + args.rounds)
    stored = history_count(url, ids) - before
    verdict = "ok" if stored == 2 * sent else f"MISMATCH, {2 * sent:,} expected"
    print(f"  history rows written: {stored:,} ({verdict})")
    return float(len(ids) * args.rounds / elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None, help="default: a SQLite file of its own")
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=10, help="observations per device, timed")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--workers", default="1,2", help="worker counts to measure, the first is the baseline"
    )
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        url = args.database_url or f"sqlite:///{var / 'bench.db'}"
        print(f"machine: {machine(url)}")
        apikey = "bw" + secrets.token_hex(4)
        ids = provision(url, var, apikey, args.devices)
        start_at = datetime.now(UTC) - timedelta(days=1)
        rates: list[float] = []
        for n, workers in enumerate(counts):
            # Each run reports later than the last, so every reading is new.
            rate = run(args, url, var, ids, apikey, workers, start_at + timedelta(hours=n))
            rates.append(rate)
            ratio = rate / rates[0]
            print(
                f"--workers {workers}: {rate:,.0f} observations/s from {args.clients} clients, "
                f"{ratio:.2f} of --workers {counts[0]}"
            )


if __name__ == "__main__":
    main()
