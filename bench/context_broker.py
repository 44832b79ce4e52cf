"""Benchmark of the NGSI-LD broker core on SQLite, or PostgreSQL (a script, not a test).

    .venv/bin/python bench/context_broker.py                # 1,000,000 entities
    .venv/bin/python bench/context_broker.py --entities 100000
    .venv/bin/python bench/context_broker.py --entities 100000 \
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Loads N entities (half AirQualityObserved with pm25/no2, half Streetlight; all located in a
90 km box over Shanghai) through `ContextBroker.batch_upsert` (current state, attribute index,
spatial index and history, as the API writes them), then measures p50/p95 of:

- retrieve one entity by id;
- `near;maxDistance==500` around random points (spatial index, then the exact test);
- `type=AirQualityObserved&q=pm25>290` (the attribute index, then `evaluate`);

and the batch-upsert rate (entities/s) for new and for existing entities. The baseline measured
in the same run is raw sqlite3 `executemany` of the same entity rows (id, type, JSON doc) into a
bare table: what the disk and SQLite can do with no index and no history at all. With
`--postgres URL` (a server's maintenance database) the broker runs on a database the bench
creates there (`pujiang_bench`, dropped first and kept afterwards for inspection), and the
baseline is psycopg `executemany` into a bare table of that database.

Targets: p95 < 5 ms / < 20 ms / < 50 ms, >= 20,000 entities/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from pujiang.context.jsonld import DEFAULT_VOCAB, NGSI_LD
from pujiang.context.ngsild_geo import parse_geoquery
from pujiang.context.ngsild_q import evaluate, parse_q, sql_prefilter
from pujiang.context.queries import Query
from pujiang.context.service import ContextBroker
from pujiang.platform.db import Database, upgrade

AQO = DEFAULT_VOCAB + "AirQualityObserved"
LIGHT = DEFAULT_VOCAB + "Streetlight"
PM25 = DEFAULT_VOCAB + "pm25"
NO2 = DEFAULT_VOCAB + "no2"
POWER = DEFAULT_VOCAB + "powerState"
LOCATION = NGSI_LD + "location"
BOX = (120.95, 30.75, 121.95, 31.55)  # lon/lat box the entities are spread over
BATCH = 5000


def entity(i: int, rng: random.Random, at: str) -> dict[str, Any]:
    lon = rng.uniform(BOX[0], BOX[2])
    lat = rng.uniform(BOX[1], BOX[3])
    location = [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}]
    if i % 2 == 0:
        return {
            "id": f"urn:ngsi-ld:AirQualityObserved:{i}",
            "type": [AQO],
            PM25: [{"type": "Property", "value": round(rng.uniform(0, 300), 1), "observedAt": at}],
            NO2: [{"type": "Property", "value": round(rng.uniform(5, 80), 1), "observedAt": at}],
            LOCATION: location,
        }
    return {
        "id": f"urn:ngsi-ld:Streetlight:{i}",
        "type": [LIGHT],
        POWER: [{"type": "Property", "value": rng.choice(["on", "off"])}],
        LOCATION: location,
    }


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return p50 * 1000, p95 * 1000


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    fn()  # warm the caches once
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


def baseline(rows: list[tuple[str, str, str]], path: Path) -> float:
    """Raw sqlite3 executemany of the same entity rows into a bare table (entities/s)."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("CREATE TABLE raw (id TEXT, type TEXT, doc TEXT)")
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        with connection:
            connection.executemany("INSERT INTO raw VALUES (?, ?, ?)", rows[start : start + BATCH])
    elapsed = time.perf_counter() - started
    connection.close()
    return len(rows) / elapsed


def pg_baseline(rows: list[tuple[str, str, str]], url: str) -> float:
    """Raw psycopg executemany of the same entity rows into a bare table (entities/s)."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        connection.execute("DROP TABLE IF EXISTS raw")
        connection.execute("CREATE TABLE raw (id text, type text, doc text)")
        connection.commit()
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for start in range(0, len(rows), BATCH):
                sql = "INSERT INTO raw VALUES (%s, %s, %s)"
                cursor.executemany(sql, rows[start : start + BATCH])
                connection.commit()
        elapsed = time.perf_counter() - started
        connection.execute("DROP TABLE raw")
    return len(rows) / elapsed


def fresh_postgres(server_url: str) -> str:
    """The URL of an empty database `pujiang_bench` on the server of `server_url`."""
    from sqlalchemy import create_engine, text

    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS pujiang_bench"))
        connection.execute(text("CREATE DATABASE pujiang_bench"))
        version = connection.execute(text("SHOW server_version")).scalar()
    engine.dispose()
    print(f"PostgreSQL {version}")
    return server_url.rsplit("/", 1)[0] + "/pujiang_bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=None, help="where the database files go")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the entities already loaded in --dir (skips the load and its baseline)",
    )
    parser.add_argument(
        "--postgres", default=None, help="run on PostgreSQL: a server URL (maintenance database)"
    )
    args = parser.parse_args()
    n = args.entities
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="pujiang-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.postgres:
        url = fresh_postgres(args.postgres)
        upgrade(url)
    else:
        url = f"sqlite:///{workdir / 'broker.db'}"
        if not (args.reuse and (workdir / "broker.db").exists()):
            upgrade(url)
    db = Database(url)
    broker = ContextBroker(db)
    rng = random.Random(7)
    at = "2026-11-24T01:00:00Z"

    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}"
    )
    print(f"entities: {n:,} (half AirQualityObserved, half Streetlight), batches of {BATCH:,}")

    # -- load (batch upsert of new entities) ------------------------------------------------
    create_rate = base_rate = float("nan")
    if args.reuse and broker.count_entities() >= n:
        print(f"reusing the {broker.count_entities():,} entities in {workdir}")
    else:
        started = time.perf_counter()
        raw_rows: list[tuple[str, str, str]] = []
        for start in range(0, n, BATCH):
            batch = [entity(i, rng, at) for i in range(start, min(n, start + BATCH))]
            raw_rows += [(e["id"], e["type"][0], orjson.dumps(e).decode()) for e in batch]
            broker.batch_upsert("", batch)
        create_rate = n / (time.perf_counter() - started)
        if args.postgres:
            base_rate = pg_baseline(raw_rows, url)
        else:
            (workdir / "baseline.db").unlink(missing_ok=True)
            base_rate = baseline(raw_rows, workdir / "baseline.db")
        del raw_rows

    # -- upsert of existing entities ---------------------------------------------------------
    sample = min(n, 50_000)
    started = time.perf_counter()
    for start in range(0, sample, BATCH):
        batch = [entity(i, rng, at) for i in range(start, min(sample, start + BATCH))]
        broker.batch_upsert("", batch)
    update_rate = sample / (time.perf_counter() - started)

    # -- reads -------------------------------------------------------------------------------
    def by_id() -> None:
        i = rng.randrange(n)
        kind = "AirQualityObserved" if i % 2 == 0 else "Streetlight"
        broker.retrieve("", f"urn:ngsi-ld:{kind}:{i}")

    matched: list[int] = []

    def near() -> None:
        lon = rng.uniform(BOX[0] + 0.05, BOX[2] - 0.05)
        lat = rng.uniform(BOX[1] + 0.05, BOX[3] - 0.05)
        geo = parse_geoquery("near;maxDistance==500", "Point", f"[{lon},{lat}]", LOCATION)
        found, _ = broker.query("", Query(geo=geo, limit=20))
        matched.append(len(found))

    expr = parse_q("pm25>290").map_names(lambda name: DEFAULT_VOCAB + name)
    prefilter = sql_prefilter(expr)
    q_matched: list[int] = []

    def type_q() -> None:
        offset = rng.randrange(0, 200)
        query = Query(
            types=[frozenset({AQO})],
            q=expr,
            q_evaluate=evaluate,
            prefilter=prefilter,
            limit=20,
            offset=offset,
        )
        found, _ = broker.query("", query)
        q_matched.append(len(found))

    runs = args.runs
    id_p50, id_p95 = timed(by_id, runs)
    near_p50, near_p95 = timed(near, runs)
    q_p50, q_p95 = timed(type_q, runs)

    print("")
    print(f"{'measure':<44}{'p50':>10}{'p95':>10}{'target':>12}")
    print(f"{'retrieve by id (ms)':<44}{id_p50:>10.2f}{id_p95:>10.2f}{'< 5':>12}")
    print(
        f"{'near;maxDistance==500, limit 20 (ms)':<44}"
        f"{near_p50:>10.2f}{near_p95:>10.2f}{'< 20':>12}"
    )
    print(
        f"{'type=AirQualityObserved&q=pm25>290 (ms)':<44}{q_p50:>10.2f}{q_p95:>10.2f}{'< 50':>12}"
    )
    print(
        f"  (near found {statistics.mean(matched):.1f} entities on average; "
        f"type+q {statistics.mean(q_matched):.1f} per page)"
    )
    print("")
    print(
        f"{'batch upsert, new entities':<44}{create_rate:>14,.0f} entities/s   (target >= 20,000)"
    )
    print(f"{'batch upsert, existing entities (replace)':<44}{update_rate:>14,.0f} entities/s")
    driver = "psycopg" if args.postgres else "sqlite3"
    print(f"{f'baseline: raw {driver} executemany, same rows':<44}{base_rate:>14,.0f} rows/s")
    print(f"{'ratio broker / baseline':<44}{create_rate / base_rate:>14.2f}")
    if not args.postgres:
        size = sum(p.stat().st_size for p in workdir.glob("broker.db*"))
        print(f"database: {workdir / 'broker.db'} ({size / 1e6:,.0f} MB with WAL)")
    db.dispose()


if __name__ == "__main__":
    main()
