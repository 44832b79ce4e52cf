"""Benchmark of the history purge (a script, not a test): its rate, and what writers wait.

    .venv/bin/python bench/history_purge.py                  # 2,000,000 history rows
    .venv/bin/python bench/history_purge.py --rows 500000

Fills a SQLite broker database with history rows of 10,000 series (devices' attributes), the
oldest three quarters stored 40 days ago, then in one run measures on two identical copies:

- purge: `context.jobs.purge_history` with a 30-day retention (chunks of 5,000 rows, each its
  own write transaction);
- baseline: one `DELETE FROM context_history WHERE id <= <last old id>` in one transaction,
  what SQLite does with the same rows and no chunking.

While each runs, a writer thread records a reading every 10 ms through the broker
(`ContextBroker.record`: current state and history, as device ingest writes) and the bench
prints the longest wait of those writes: the chunks exist so that device ingest is not held up
for the length of the whole purge. The ratio is the purge rate over the baseline rate.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select

from pujiang.context import jobs
from pujiang.context.history import HISTORY
from pujiang.context.jsonld import DEFAULT_VOCAB
from pujiang.context.readings import Reading
from pujiang.context.service import ContextBroker
from pujiang.platform.db import Database, upgrade

SERIES = 10_000
LOAD_BATCH = 50_000
PM25 = DEFAULT_VOCAB + "pm25"
STATION = DEFAULT_VOCAB + "AirQualityObserved"


def fill(db: Database, rows: int) -> None:
    """`rows` history rows over SERIES series; the first three quarters stored 40 days ago."""
    broker = ContextBroker(db)
    writer = broker.history
    now = datetime.now(UTC)
    old = now - timedelta(days=40)
    instance = '{"type":"Property","value":1.0}'
    for start in range(0, rows, LOAD_BATCH):
        batch = []
        for i in range(start, min(rows, start + LOAD_BATCH)):
            stored = old if i < rows * 3 // 4 else now
            observed = writer.time_param(stored - timedelta(seconds=i % 3600))
            key = ("", f"urn:ngsi-ld:Device:{i % SERIES}", STATION, PM25, "", "Property")
            batch.append((*key, observed, writer.time_param(stored), False, 1.0, None, instance))
        with db.write_session() as session:
            writer.write(session, batch)
    broker.batch_upsert(
        "",
        [
            {
                "id": "urn:ngsi-ld:Device:live",
                "type": [STATION],
                PM25: [{"type": "Property", "value": 0}],
            }
        ],
    )


class Writer:
    """Records one reading every 10 ms until stopped; keeps how long each took."""

    def __init__(self, db: Database) -> None:
        self.broker = ContextBroker(db)
        self.waits: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(0.01):
            n += 1
            reading = Reading(
                "urn:ngsi-ld:Device:live", PM25, {"type": "Property", "value": n}, None
            )
            started = time.perf_counter()
            self.broker.record("", [reading])
            self.waits.append(time.perf_counter() - started)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(db: Database, work: Callable[[], int]) -> tuple[int, float, float]:
    """Rows, seconds, and the longest wait of a concurrent writer's reading (ms)."""
    with Writer(db) as writer:
        time.sleep(0.1)  # the writer is running before the work starts
        started = time.perf_counter()
        rows = work()
        elapsed = time.perf_counter() - started
    return rows, elapsed, max(writer.waits, default=0.0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="where the database files go")
    args = parser.parse_args()
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="pujiang-purge-"))
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "history.db"
    for path in workdir.glob("*.db*"):
        path.unlink()
    url = f"sqlite:///{source}"
    upgrade(url)
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}"
    )
    started = time.perf_counter()
    db = Database(url)
    fill(db, args.rows)
    db.dispose()
    with sqlite3.connect(source) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(
        f"history rows: {args.rows:,} in {SERIES:,} series, loaded in "
        f"{time.perf_counter() - started:.0f} s; 3/4 stored 40 days ago"
    )
    copy = workdir / "baseline.db"
    shutil.copyfile(source, copy)
    cutoff = jobs.cutoff(30)

    db = Database(url)
    purged, purge_s, purge_wait = measure(db, lambda: jobs.purge_history(db, cutoff).rows)
    db.dispose()

    base = Database(f"sqlite:///{copy}")

    def delete_at_once() -> int:
        with base.write_session() as session:
            old = HISTORY.c.modified_at < cutoff
            last = session.execute(select(func.max(HISTORY.c.id)).where(old)).scalar_one()
            result = session.execute(delete(HISTORY).where(HISTORY.c.id <= last))
            return int(result.rowcount)

    deleted, base_s, base_wait = measure(base, delete_at_once)
    base.dispose()
    if deleted != purged:
        raise SystemExit(f"the purge deleted {purged:,} rows, the baseline {deleted:,}")

    print()
    print(f"{'measure':<44}{'rows/s':>12}{'writer max wait (ms)':>24}")
    print(f"{'purge (chunks of 5,000)':<44}{purged / purge_s:>12,.0f}{purge_wait:>24,.1f}")
    baseline = "baseline: one DELETE, one transaction"
    print(f"{baseline:<44}{deleted / base_s:>12,.0f}{base_wait:>24,.1f}")
    print(f"{'ratio purge / baseline':<44}{(purged / purge_s) / (deleted / base_s):>12.2f}")
    print(f"rows purged: {purged:,} in {purge_s:.1f} s (baseline {base_s:.1f} s)")


if __name__ == "__main__":
    main()
