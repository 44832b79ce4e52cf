"""Cases at the scale of a busy city: a year of reports on SQLite, then three timed paths.

Prints, for a database of N simulated cases (default 3.6 million, a year of a busy city;
generated with executemany, which takes a while — `--cases 200000` for a quick run):
- the case list filtered by department and state (GET /api/cases): p50/p95 in ms;
- one month's indicators for all departments (GET /api/cases/indicators): seconds;
- creating a case through Open311 (POST /open311/v2/requests.json): p50/p95 in ms;
and the machine it ran on. Targets: list p95 < 50 ms, month < 2 s, Open311 p95 < 30 ms.

    .venv/bin/python bench/cases.py [--cases N] [--db PATH] [--samples 300]

With --db the database is kept, and reused if it already holds the cases.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import secrets
import sqlite3
import statistics
import tempfile
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from pujiang.app import build_context, create_app
from pujiang.cases.demo import build_world
from pujiang.cases.models import Case
from pujiang.cases.simulate import simulate
from pujiang.demo.seed import seed_departments
from pujiang.platform import db as dbtools
from pujiang.platform import identity
from pujiang.platform.deps import AppContext
from pujiang.platform.workcal import SHANGHAI
from pujiang.settings import Mode, Settings

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

END = datetime(2025, 12, 31, tzinfo=SHANGHAI)
START = END - timedelta(days=365)
CHUNK = 20_000


def machine() -> str:
    memory = ""
    try:
        with open("/proc/meminfo") as info:
            kb = int(info.readline().split()[1])
        memory = f", {kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs{memory}; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}"
    )


def fill(context: AppContext, count: int) -> float:
    """Generate and insert `count` cases over a year; returns seconds taken."""
    started = time.perf_counter()
    with context.db.session() as session:
        world = build_world(session)
    rng = random.Random(2025)
    flow = simulate(rng, world, START, END, count, now=END, events=False)
    batch = []
    done = 0
    with context.db.engine.begin() as conn:
        for number, (row, _) in enumerate(flow):
            row["tracking_id"] = f"PJB{number:012d}"  # unique without a random draw
            batch.append(row)
            if len(batch) == CHUNK:
                conn.execute(insert(Case), batch)
                done += len(batch)
                batch.clear()
                if done % 200_000 == 0:
                    rate = done / (time.perf_counter() - started)
                    print(f"  {done:>9,} cases ({rate:,.0f}/s)", flush=True)
        if batch:
            conn.execute(insert(Case), batch)
    with context.db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=3_600_000)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "cases.db"
        url = f"sqlite:///{path}"
        dbtools.upgrade(url)
        settings = Settings(
            mode=Mode.TEST,
            database_url=url,
            secret_key=secrets.token_urlsafe(48),
            var_dir=Path(tmp) / "var",
            log_level="WARNING",
        )
        context = build_context(settings)
        with context.db.session() as session:
            seed_departments(session)
            have = session.scalar(select(func.count()).select_from(Case)) or 0
        if have < args.cases:
            print(f"generating {args.cases - have:,} cases on SQLite ({path}) ...", flush=True)
            seconds = fill(context, args.cases - have)
            print(f"  generated in {seconds:,.0f} s")
        with context.db.session() as session:
            total = session.scalar(select(func.count()).select_from(Case)) or 0
            for name, roles, department in (
                ("bench.admin", ["admin"], "DSJ"),
                ("bench.handler", ["handler"], "310115-CGZF"),
            ):
                if not session.scalars(select(identity.Principal.id).where(
                    identity.Principal.username == name)).first():  # fmt: skip
                    identity.create_user(session, context, username=name,
                                         password="bench-password-1", roles=roles,
                                         department_code=department)  # fmt: skip
            app_account = identity.create_service_account(
                session, name=f"bench-app-{secrets.token_hex(3)}", roles=["citizen"]
            )
            _, api_key = identity.issue_api_key(session, app_account)
        rng = random.Random(7)
        with TestClient(create_app(settings, context)) as client:

            def headers(user: str) -> dict[str, str]:
                reply = client.post(
                    "/api/auth/token", data={"username": user, "password": "bench-password-1"}
                )
                return {"Authorization": f"Bearer {reply.json()['access_token']}"}

            admin, handler = headers("bench.admin"), headers("bench.handler")
            departments = ["310115-CGZF", "310101-CGZF", "310104-CGZF", "SW", "JT", "310112-CYZX"]
            states = ["dispatched", "handling", "closed", "evaluated", "reported"]
            timings: dict[str, list[float]] = {"admin": [], "handler": []}
            for i in range(args.samples):
                who = "handler" if i % 2 else "admin"
                params = {"state": rng.choice(states), "limit": 50}
                if who == "admin":
                    params["department"] = rng.choice(departments)
                started = time.perf_counter()
                reply = client.get(
                    "/api/cases", params=params, headers=handler if who == "handler" else admin
                )
                timings[who].append((time.perf_counter() - started) * 1000)
                assert reply.status_code == 200, reply.text
            month: list[float] = []
            for m in (3, 6, 9):
                start = datetime(2025, m, 1, tzinfo=SHANGHAI)
                started = time.perf_counter()
                reply = client.get(
                    "/api/cases/indicators",
                    params={
                        "start": start.isoformat(),
                        "end": (start + timedelta(days=31)).isoformat(),
                        "by": "department",
                    },
                    headers=admin,
                )
                month.append(time.perf_counter() - started)
                assert reply.status_code == 200, reply.text
                rows = len(reply.json()["rows"])
            posts: list[float] = []
            codes = ["E0501", "E0101", "E0102", "E0201", "E0502"]
            for _ in range(args.samples):
                form = {
                    "api_key": api_key,
                    "service_code": rng.choice(codes),
                    "lat": f"{31.23 + rng.gauss(0, 0.03):.6f}",
                    "long": f"{121.47 + rng.gauss(0, 0.03):.6f}",
                    "description": "路边有人设摊",
                    "phone": "13800138000",
                }
                started = time.perf_counter()
                reply = client.post("/open311/v2/requests.json", data=form)
                posts.append((time.perf_counter() - started) * 1000)
                assert reply.status_code == 200, reply.text
        context.db.dispose()
    print(f"machine: {machine()}")
    print(f"database: SQLite, {total:,} cases (a year: {START:%Y-%m-%d} .. {END:%Y-%m-%d})")
    for who, values in timings.items():
        scope = "admin, ?department=&state=" if who == "admin" else "a handler's own department"
        print(
            f"GET /api/cases ({scope}): p50 {percentile(values, 0.5):6.1f} ms   "
            f"p95 {percentile(values, 0.95):6.1f} ms   (target p95 < 50 ms)"
        )
    print(
        f"GET /api/cases/indicators one month by department ({rows} rows): "
        f"{statistics.mean(month):.2f} s mean, {max(month):.2f} s max   (target < 2 s)"
    )
    print(
        f"POST /open311/v2/requests.json: p50 {percentile(posts, 0.5):6.1f} ms   "
        f"p95 {percentile(posts, 0.95):6.1f} ms   (target p95 < 30 ms)"
    )


if __name__ == "__main__":
    main()
