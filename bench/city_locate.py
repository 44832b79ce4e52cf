"""Locate throughput at unit-grid resolution over the whole demo city, beside two baselines.

    .venv/bin/python bench/city_locate.py [--points 1000000] [--database-url URL]

Loads the demo city (all 16 districts, ~100 m unit grids) into a temporary SQLite file, unless
`--database-url` names a database that already holds it, then locates points with
`pujiang.city.locate_many` and, on samples of the same points, with
  - a per-point loop of STRtree queries (what a simple service would do per request), and
  - a per-point scan of every unit grid polygon (no index at all).
All of it is single-threaded (numpy and GEOS do not spread these calls over cores), so a rate
is one core's rate; `--pin` also pins the process to CPU 0. Each figure is given in wall time and
in CPU time of this process: on a shared machine the CPU-time figure is the steadier one.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely

from pujiang.city import locate_many, service
from pujiang.city.levels import Level
from pujiang.city.locator import city_index
from pujiang.platform import db as dbtools
from pujiang.platform.db import Database
from pujiang.platform.deps import AppContext
from pujiang.platform.security import Passwords
from pujiang.settings import Mode, Settings

TREE_SAMPLE = 20_000
SCAN_SAMPLE = 30
TARGET = 50_000


def _context(url: str, var_dir: Path) -> AppContext:
    settings = Settings(
        mode=Mode.TEST, database_url=url, secret_key=secrets.token_urlsafe(48), var_dir=var_dir
    )
    return AppContext(settings=settings, db=Database(url), passwords=Passwords(cheap=True))


def _points(grid_bounds: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points spread over the city: a random unit grid each, a random spot in its bounding box,
    plus 10 % anywhere in the city's bounding box (some of them in the sea)."""
    rng = np.random.default_rng(seed)
    inner = count - count // 10
    bounds = grid_bounds[rng.integers(0, grid_bounds.shape[0], inner)]
    lon = rng.uniform(bounds[:, 0], bounds[:, 2])
    lat = rng.uniform(bounds[:, 1], bounds[:, 3])
    minx, miny = grid_bounds[:, 0].min(), grid_bounds[:, 1].min()
    maxx, maxy = grid_bounds[:, 2].max(), grid_bounds[:, 3].max()
    lon = np.concatenate([lon, rng.uniform(minx, maxx, count // 10)])
    lat = np.concatenate([lat, rng.uniform(miny, maxy, count // 10)])
    order = rng.permutation(count)
    return lon[order], lat[order]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--pin", action="store_true", help="Pin the process to CPU 0.")
    args = parser.parse_args()
    if args.pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})

    workdir = Path(tempfile.mkdtemp(prefix="pujiang-bench-"))
    try:
        return run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the temporary database is ~230 MB


def run(args: argparse.Namespace, workdir: Path) -> int:
    url = args.database_url or f"sqlite:///{workdir / 'city.db'}"
    dbtools.upgrade(url)
    context = _context(url, workdir / "var")
    clock = Clock()
    report = service.load_demo_city(context)
    print(report.summary())
    clock.show("demo city load (generate, validate, store)")
    if url.startswith("sqlite:///"):
        size = Path(url.removeprefix("sqlite:///")).stat().st_size
        print(f"{'database file':<48}{size / 1e6:10.1f} MB")

    clock = Clock()
    index = city_index(context.db, context.extras)
    clock.show("index build (read rows, WKB, STRtrees)")
    grids = index.tables[Level.GRID]
    print(f"{'unit grids indexed':<48}{grids.size:10,d}")
    lon, lat = _points(grids.bounds, args.points, seed=1)

    wall = cpu = float("inf")
    result = None
    for _ in range(3):  # best of three
        clock = Clock()
        result = locate_many(context, lon, lat)
        wall, cpu = min(wall, clock.wall()), min(cpu, clock.cpu())
    assert result is not None
    batch = Rate(args.points, wall, cpu)
    batch.show(f"batch locate_many, {args.points:,} points", f"{result.inside.mean():.0%} inside")

    # Baselines see every grid as a shapely polygon, in one STRtree (built outside the clock).
    shapes = grids.shapes()
    tree = shapely.STRtree(shapes)
    codes = grids.codes

    # Baseline 1: one STRtree query per point (same edge rule), on a sample.
    sample = slice(0, min(TREE_SAMPLE, args.points))
    clock = Clock()
    loop_codes = []
    for x, y in zip(lon[sample].tolist(), lat[sample].tolist(), strict=True):
        hits = tree.query(shapely.Point(x, y), predicate="intersects")
        loop_codes.append(codes[hits.min()] if hits.size else "")
    loop = Rate(len(loop_codes), clock.wall(), clock.cpu())
    assert loop_codes == result.grid_code[sample].tolist(), "per-point loop disagrees with batch"
    loop.show(f"baseline: per-point STRtree query, {len(loop_codes):,} points")

    # Baseline 2: no index - test every unit grid polygon for each point, on a small sample.
    clock = Clock()
    scan_codes = []
    for x, y in zip(lon[:SCAN_SAMPLE].tolist(), lat[:SCAN_SAMPLE].tolist(), strict=True):
        hits = np.flatnonzero(shapely.intersects_xy(shapes, x, y))
        scan_codes.append(codes[hits.min()] if hits.size else "")
    scan = Rate(SCAN_SAMPLE, clock.wall(), clock.cpu())
    assert scan_codes == result.grid_code[:SCAN_SAMPLE].tolist(), "scan disagrees with batch"
    scan.show(f"baseline: per-point scan of all grids, {SCAN_SAMPLE} points")

    print(f"{'ratio batch / per-point STRtree (CPU)':<48}{batch.per_cpu / loop.per_cpu:10.1f} x")
    print(f"{'ratio batch / per-point scan (CPU)':<48}{batch.per_cpu / scan.per_cpu:10,.0f} x")
    met = batch.per_cpu >= TARGET
    print(f"{'target 50,000 points/s on one core':<48}{'met' if met else 'MISSED':>10}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'peak memory (RSS)':<48}{peak:10.0f} MB")
    context.db.dispose()
    return 0 if met else 1


class Clock:
    def __init__(self) -> None:
        self.started = (time.perf_counter(), time.process_time())

    def wall(self) -> float:
        return time.perf_counter() - self.started[0]

    def cpu(self) -> float:
        return time.process_time() - self.started[1]

    def show(self, what: str) -> None:
        print(f"{what:<48}{self.wall():10.1f} s wall {self.cpu():8.1f} s CPU")


class Rate:
    def __init__(self, count: int, wall: float, cpu: float) -> None:
        self.count, self.wall, self.cpu = count, wall, cpu
        self.per_wall = count / wall
        self.per_cpu = count / cpu

    def show(self, what: str, note: str = "") -> None:
        print(
            f"{what:<48}{self.per_wall:12,.0f} points/s wall {self.per_cpu:12,.0f} points/s CPU"
            f"  {note}"
        )


if __name__ == "__main__":
    sys.exit(main())
