"""Jobs the app runs while it serves: a daemon thread calling one function every so often.

`PeriodicJob(name, every_seconds, work)` calls `work(stop)` every `every_seconds` until it is
stopped. A failing run is logged and the next one comes on time; stopping wakes the thread at
once and waits for a run in progress, which should look at `stop` between its batches and
return early when it is set. Domain modules wrap it (`cases.jobs`, `context.jobs`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Self

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 10.0

# What a job does on each run: it gets the stop event and returns how many items it handled.
Work = Callable[[threading.Event], int]


class PeriodicJob:
    """A daemon thread named `name`, calling `work` every `every_seconds`."""

    def __init__(self, name: str, every_seconds: float, work: Work, *, label: str) -> None:
        self.name = name
        self.label = label  # in log lines: "<label> failed", "<label>: 12 done"
        self.every_seconds = every_seconds
        self.work = work
        self.runs = 0  # completed runs (for tests and diagnostics)
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        return self.work(self._stop)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_seconds):
            try:
                count = self.run_once()
            except Exception:  # never let one bad run end the job or the app
                self.failures += 1
                log.exception("%s failed; trying again next time", self.label)
            else:
                if count:
                    log.info("%s: %d done", self.label, count)
            self.runs += 1

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s still running after %.0f s", self.label, timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
