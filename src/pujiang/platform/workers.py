"""`pujiang serve --workers N`: one server in several processes.

Uvicorn starts the processes; each builds its own app from the same settings (passed down in
the environment, see `app.create_worker_app`). What the processes must share is set up here:

- **Metrics.** Prometheus counters and histograms are kept per process; with several workers
  they are written to files in one directory (prometheus_client's multiprocess mode, switched
  on by `PROMETHEUS_MULTIPROC_DIR`) and `/metrics` adds up every worker's, whichever worker
  answers the scrape.
- **A stable number per worker** (`claim_slot`): the lowest free slot, held by an exclusive
  `flock` for the life of the process, so a restarted worker takes the number of the one that
  died. The MQTT consumer of worker n uses client id `{ingest_client_id}-{n}`, so it resumes
  that worker's persistent session.

Everything else is already safe with several processes (docs/architecture.md "Several server
processes").
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONFIG_ENV = "PUJIANG_SERVE_CONFIG"  # the --config file of the parent, for the workers
DEFAULT_SHARED_GROUP = "pujiang"

_held: list[IO[bytes]] = []  # slot locks, open for the life of the process


def run_dir(var_dir: Path, port: int) -> Path:
    """The directory of one server (host-wide unique by its port)."""
    return var_dir / f"serve-{port}"


def prepare_metrics_dir(var_dir: Path, port: int) -> Path:
    """An empty metrics directory for a server about to start: the files of an earlier run
    would be added to this one's figures."""
    directory = run_dir(var_dir, port) / "metrics"
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    return directory


def claim_slot(var_dir: Path, port: int, workers: int) -> int:
    """The lowest worker number in [0, workers) that no live process holds; held until exit.

    Uvicorn replaces a dead worker after the old process is gone, so a free slot exists; if
    none does (a worker that has not exited yet), the next number beyond the range is used."""
    directory = run_dir(var_dir, port)
    directory.mkdir(parents=True, exist_ok=True)
    slot = 0
    while True:
        handle = (directory / f"worker-{slot}.lock").open("wb")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            slot += 1
            if slot > 4 * workers:  # pragma: no cover - many dead-but-not-exited workers
                raise RuntimeError("no free worker slot") from None
            continue
        _held.append(handle)
        return slot


def scrape_registry(own: CollectorRegistry) -> CollectorRegistry:
    """What `/metrics` shows: every worker's figures in multiprocess mode, else this app's."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return own
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry
