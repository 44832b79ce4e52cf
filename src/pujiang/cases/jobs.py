"""Jobs the app runs while it serves: escalating overdue cases every so often.

`with periodic_escalation(context):` (the app lifespan) runs `escalate_overdue` in a daemon
thread every `every_seconds` until the block ends. A failing run is logged and the next one
comes on time; stopping wakes the thread at once and waits for a run in progress (it stops
between batches). Several processes may run it at once: the rows are claimed with
`FOR UPDATE SKIP LOCKED` on PostgreSQL, so a case is escalated once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from pujiang.platform.jobs import PeriodicJob

INTERVAL_KEY = "cases.escalation_seconds"  # context.extras: seconds between runs; 0 = off
DEFAULT_SECONDS = 60.0


class PeriodicEscalation(PeriodicJob):
    """A daemon thread calling `escalate_overdue` every `every_seconds`."""

    def __init__(self, context: Any, every_seconds: float) -> None:
        self.context = context
        super().__init__(
            "cases-escalation", every_seconds, self._escalate, label="cases: periodic escalation"
        )

    def _escalate(self, stop: threading.Event) -> int:
        """Escalate every overdue case, batch by batch; returns how many."""
        from pujiang.cases import escalate_overdue

        total = 0
        while not stop.is_set():
            batch = escalate_overdue(self.context)
            total += len(batch)
            if not batch:
                break
        return total


def interval(context: Any, every_seconds: float | None = None) -> float:
    """Seconds between runs: the argument, else `context.extras[INTERVAL_KEY]`, else 60 s
    (off in test mode, so a test's fake clock is escalated only when the test asks)."""
    if every_seconds is not None:
        return float(every_seconds)
    configured = context.extras.get(INTERVAL_KEY)
    if configured is not None:
        return float(configured)
    mode = getattr(getattr(context, "settings", None), "mode", None)
    return 0.0 if str(mode) == "test" else DEFAULT_SECONDS


@contextlib.contextmanager
def periodic_escalation(
    context: Any, every_seconds: float | None = None
) -> Iterator[PeriodicEscalation | None]:
    """Run the escalation job for the block; yields None when the interval is 0 (off)."""
    seconds = interval(context, every_seconds)
    if seconds <= 0:
        yield None
        return
    job = PeriodicEscalation(context, seconds).start()
    try:
        yield job
    finally:
        job.stop()
