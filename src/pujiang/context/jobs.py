"""History retention: deleting history rows older than the city keeps them.

Every change is kept for the temporal API until an operator sets
`context_history_retention_days`. Then `pujiang serve` purges the rows stored longer ago than
that every `context_history_purge_interval` seconds, and `pujiang context purge-history` does
it once (for cron). The current state of entities is not touched: a sensor silent for
longer than the retention keeps its last values and loses only its history.

Rows go oldest first in chunks, each its own short transaction, so API writes and device
ingest take turns with a purge of millions of rows. One run at a time per database
(`Database.single_run`): several server processes and a cron job do not purge side by side.
Each run that deleted rows is recorded in the audit log.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pujiang.context.history import oldest_id, purge_chunk
from pujiang.platform import audit
from pujiang.platform.db import Database
from pujiang.platform.jobs import PeriodicJob, Work

log = logging.getLogger(__name__)

JOB_NAME = "context-history-purge"  # the lock of `Database.single_run`
CHUNK = 5000  # history rows per transaction
PAUSE = 0.005  # seconds between two chunks


@dataclass
class Purge:
    """What one purge run did."""

    before: datetime
    rows: int = 0  # deleted, or with a dry run, found
    ran: bool = True  # False: another run held the job's lock and this one did nothing
    dry_run: bool = False


def cutoff(days: int, now: datetime | None = None) -> datetime:
    """The time before which history rows are purged, keeping `days` days."""
    if days < 1:
        raise ValueError(f"retention must be at least 1 day, got {days}")
    return (now or datetime.now(UTC)) - timedelta(days=days)


def purge_history(
    db: Database,
    before: datetime,
    *,
    dry_run: bool = False,
    chunk: int = CHUNK,
    stop: threading.Event | None = None,
    actor: str = "system",
) -> Purge:
    """Delete every history row stored before `before` (with `dry_run`, count them)."""
    outcome = Purge(before=before, dry_run=dry_run)
    with db.single_run(JOB_NAME) as only_run:
        if not only_run:
            outcome.ran = False
            return outcome
        outcome.rows = _walk(db, before, dry_run=dry_run, chunk=chunk, stop=stop)
        if outcome.rows and not dry_run:
            audit.record(
                db,
                actor=actor,
                action="context.history.purge",
                target="context_history",
                detail={"before": before.isoformat(), "rows": outcome.rows},
            )
    return outcome


def _walk(
    db: Database, before: datetime, *, dry_run: bool, chunk: int, stop: threading.Event | None
) -> int:
    stop = stop or threading.Event()
    with db.session() as session:
        next_id = oldest_id(session)
    total = 0
    while next_id is not None and not stop.is_set():
        sessions = db.session() if dry_run else db.write_session()
        with sessions as session:
            step = purge_chunk(session, next_id, chunk, before, count=dry_run)
        if step is None:
            break
        rows, next_id = step
        if rows == 0:
            break  # the rest was stored later
        total += rows
        # A breath between chunks: the lock this thread just released would otherwise be taken
        # again before a waiting writer (device ingest, the API) wakes up to take it.
        stop.wait(PAUSE)
    return total


def _retention_work(db: Database, days: int) -> Work:
    def work(stop: threading.Event) -> int:
        outcome = purge_history(db, cutoff(days), stop=stop)
        return outcome.rows

    return work


@contextlib.contextmanager
def history_retention(context: Any) -> Iterator[PeriodicJob | None]:
    """Run the purge every `context_history_purge_interval` seconds for the block, when a
    retention is set; yields None when it is not (or the interval is 0: cron does it)."""
    settings = context.settings
    days = settings.context_history_retention_days
    seconds = settings.context_history_purge_interval
    if days is None or seconds <= 0:
        yield None
        return
    job = PeriodicJob(
        "context-history-purge",
        seconds,
        _retention_work(context.db, days),
        label="context: history purge",
    ).start()
    try:
        yield job
    finally:
        job.stop()
