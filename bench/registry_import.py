"""Population registry import: a million persons from CSV on SQLite.

Generates a synthetic persons CSV (valid ID numbers, names, phones, addresses, points and
community codes), then measures in this run, each on a fresh migrated SQLite file:

1. the import as `pujiang registry import` runs it (stream-parse, check every row, upsert in
   batches) - persons/s and the 60 s budget for 1,000,000 rows;
2. the raw executemany INSERT of the very same rows into the same table (the floor: what the
   database alone costs), and the ratio of the two;
3. unless --no-locate: the same file without community codes, so every residence point is
   located in the demo city (loaded first, not timed) - persons/s and the locate share.

    .venv/bin/python bench/registry_import.py [--rows 1000000] [--no-locate]
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pujiang.app import build_context
from pujiang.city.reference import districts
from pujiang.city.registries.checkers import PERSON_COLUMNS
from pujiang.city.registries.columns import Kind
from pujiang.city.registries.ingest import DEFAULT_BATCH, ImportOptions, ImportReport, import_file
from pujiang.city.registries.locate import Locator, Place, city_locator
from pujiang.city.registries.synthetic import Synth
from pujiang.city.service import load_demo_city
from pujiang.demo.seed import seed_departments
from pujiang.platform import db as dbtools
from pujiang.platform.db import bulk_load
from pujiang.platform.deps import AppContext
from pujiang.settings import Mode, Settings

BUDGET_SECONDS = 60.0


def make_files(rows: int, with_codes: Path, points_only: Path, locator: Locator | None) -> None:
    """The same persons twice: with a community code per row, and with points only. With a
    locator the codes are the city's; without one they are well-formed but invented."""
    synth = Synth(seed=20200701, locator=locator)
    names = {d.name: d.code for d in districts()}
    with (
        with_codes.open("w", encoding="utf-8", newline="") as a,
        points_only.open("w", encoding="utf-8", newline="") as b,
    ):
        first, second = csv.writer(a), csv.writer(b)
        for number, row in enumerate(synth.persons(rows)):
            if number and not row[9]:
                district = next(code for name, code in names.items() if name in row[6])
                row[9] = f"{district}{1 + number % 13:03d}{1 + number % 29:03d}"
            first.writerow(row)
            second.writerow(row[:9])


def fresh_context(directory: Path, name: str) -> AppContext:
    url = f"sqlite:///{directory / name}"
    dbtools.upgrade(url)
    settings = Settings(mode=Mode.TEST, database_url=url, secret_key=secrets.token_urlsafe(48))
    return build_context(settings)


def timed_import(
    context: AppContext, path: Path, locator: Locator | None, *, partial: bool = False
) -> tuple[float, float, ImportReport]:
    """Wall seconds, CPU seconds (what a busy machine cannot inflate) and the report."""
    started, cpu = time.perf_counter(), time.process_time()
    with context.db.session() as session, path.open("rb") as stream:
        report = import_file(
            session,
            Kind.PERSONS,
            stream,
            source=path.name,
            options=ImportOptions(partial=partial),
            locator=locator,
        )
    return time.perf_counter() - started, time.process_time() - cpu, report


def stored_rows(context: AppContext, batch: int) -> list[list[Sequence[Any]]]:
    """The imported rows as the driver received them, in batches of the import's size."""
    columns = ", ".join(PERSON_COLUMNS)
    with context.db.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT {columns} FROM registry_persons ORDER BY id").all()
    return [[tuple(r) for r in rows[i : i + batch]] for i in range(0, len(rows), batch)]


def raw_insert(context: AppContext, batches: list[list[Sequence[Any]]]) -> tuple[float, float]:
    """Plain INSERTs by the driver's executemany, with the import's connection tuning."""
    marks = ", ".join("?" * len(PERSON_COLUMNS))
    sql = f"INSERT INTO registry_persons ({', '.join(PERSON_COLUMNS)}) VALUES ({marks})"
    started, cpu = time.perf_counter(), time.process_time()
    with context.db.session() as session, bulk_load(session):
        cursor = session.connection().connection.cursor()
        for batch in batches:
            cursor.executemany(sql, batch)
        cursor.close()
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-locate", action="store_true", help="skip the locating run")
    args = parser.parse_args()
    n = args.rows
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        city: AppContext | None = None
        locator: Locator | None = None
        if not args.no_locate:
            # The demo city first (not timed), so the synthetic points lie in its communities.
            city = fresh_context(directory, "city.db")
            with city.db.session() as session:
                seed_departments(session)
            print(load_demo_city(city).summary())
            locator = city_locator(city)
        with_codes, points_only = directory / "persons.csv", directory / "persons-points.csv"
        started = time.perf_counter()
        make_files(n, with_codes, points_only, locator)
        size_mb = with_codes.stat().st_size / 1e6
        print(
            f"{n:,} synthetic persons, {size_mb:.0f} MB UTF-8 CSV, "
            f"generated in {time.perf_counter() - started:.1f} s"
        )

        context = fresh_context(directory, "import.db")
        seconds, cpu, report = timed_import(context, with_codes, locator=None)
        assert report.bad_rows == 0, report.errors[:5]
        batches = stored_rows(context, DEFAULT_BATCH)
        context.db.dispose()
        verdict = "within" if seconds * 1_000_000 / n < BUDGET_SECONDS else "OVER"
        print(
            f"import (parse, check, upsert)  {seconds:6.1f} s  {n / seconds:9,.0f} persons/s"
            f"  CPU {cpu:5.1f} s  ({verdict} the {BUDGET_SECONDS:.0f} s budget"
            " per million)"
        )

        context = fresh_context(directory, "raw.db")
        raw, raw_cpu = raw_insert(context, batches)
        context.db.dispose()
        del batches
        print(
            f"raw executemany INSERT         {raw:6.1f} s  {n / raw:9,.0f} rows/s     "
            f"CPU {raw_cpu:5.1f} s  (baseline)"
        )
        print(
            f"ratio import/raw rate          {raw / seconds:6.2f}   "
            f"(the import takes {seconds / raw:.1f}x the time of the bare inserts; "
            f"CPU ratio {raw_cpu / cpu:.2f})"
        )
        load = os.getloadavg()[0]
        if load > (os.cpu_count() or 1):
            print(
                f"note: load average {load:.1f} on {os.cpu_count()} CPUs: wall times are inflated"
            )

        if city is None or locator is None:
            return
        spent = [0.0]
        inner = locator

        def timed_locator(
            lons: Sequence[float], lats: Sequence[float]
        ) -> list[Place | None] | None:
            begun = time.perf_counter()
            try:
                return inner(lons, lats)
            finally:
                spent[0] += time.perf_counter() - begun

        try:
            located, _, report = timed_import(city, points_only, timed_locator, partial=True)
        finally:
            city.db.dispose()
        print(
            f"import locating every point    {located:6.1f} s  {n / located:9,.0f} persons/s"
            f"  (locate {spent[0]:.1f} s for {report.located:,} points, "
            f"{report.located / spent[0]:,.0f} points/s; {report.bad_rows} outside the city)"
        )


if __name__ == "__main__":
    main()
