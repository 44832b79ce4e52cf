"""The ingest worker: MQTT southbound consumption for `pujiang ingest` and `pujiang serve`.

A `Worker` runs the MQTT consumer (when `mqtt_url` is set) and the periodic jobs of device
ingest in daemon threads: writing the ingestor's per-device counters every 5 s, expiring
unanswered commands, and `status.periodic_liveness` (devices going offline). Stopping
it stops the consumer cleanly (the batch in hand is committed and acknowledged), then writes
the counters one last time.

In test mode the periodic jobs are off unless a test asks for them, so that a test's devices
do not go offline or get their counters written behind its back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from pujiang.iot.mqtt import ConsumerStats, MqttConsumer, close_publisher
from pujiang.iot.status import periodic_liveness
from pujiang.platform.deps import AppContext
from pujiang.settings import Mode

log = logging.getLogger("pujiang.iot.worker")

FLUSH_SECONDS = 5.0
EXPIRY_SECONDS = 10.0
TICK_SECONDS = 0.25
JOBS_KEY = "iot.jobs"  # context.extras: True/False forces the periodic jobs on or off
WORKER_KEY = "iot.worker"  # context.extras: the worker running beside the app, if any


@dataclass
class _Job:
    name: str
    every: float
    run: Callable[[], Any]
    due: float = 0.0
    failures: int = 0


def progress_line(stats: ConsumerStats, rate: float | None) -> str:
    """Totals of a consumer, with its rate since the last line (None: the final line)."""
    line = (
        f"接收 received {stats.received} · 存储 stored {stats.stored} · "
        f"拒绝 rejected {stats.rejected} · 重复 duplicates {stats.duplicates}"
    )
    if rate is None:
        return f"合计 / totals: {line} · 重发 redelivered {stats.redelivered}"
    return f"{line} · 速率 rate {rate:.0f} 条/秒 msg/s"


class Worker:
    """The MQTT consumer and the periodic jobs of one process."""

    def __init__(
        self,
        context: AppContext,
        *,
        client_id: str | None = None,
        shared_group: str | None = None,
        apikeys: tuple[str, ...] = (),
        jobs: bool | None = None,
    ) -> None:
        self.context = context
        self.consumer: MqttConsumer | None = None
        if context.settings.mqtt_url:
            self.consumer = MqttConsumer(
                context, client_id=client_id, shared_group=shared_group, apikeys=apikeys
            )
        if jobs is None:
            jobs = context.extras.get(JOBS_KEY, context.settings.mode is not Mode.TEST)
        self.jobs_enabled = bool(jobs)
        self._jobs: list[_Job] = []
        self._liveness = ExitStack()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Worker:
        if self.jobs_enabled:
            self._start_jobs()
        if self.consumer is not None:
            self.consumer.start()
            log.info(self.describe())
        return self

    def _start_jobs(self) -> None:
        from pujiang.iot.commands import expire_commands
        from pujiang.iot.service import ingestor_of

        ingestor = ingestor_of(self.context)
        self._jobs = [
            _Job("flush", FLUSH_SECONDS, ingestor.flush),
            _Job("expire-commands", EXPIRY_SECONDS, lambda: expire_commands(self.context)),
        ]
        self._liveness.enter_context(periodic_liveness(self.context))
        now = time.monotonic()
        for job in self._jobs:
            job.due = now + job.every
        self._thread = threading.Thread(target=self._loop, name="iot-jobs", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            for job in self._jobs:
                if time.monotonic() >= job.due:
                    self._run(job)
                    job.due = time.monotonic() + job.every

    @staticmethod
    def _run(job: _Job) -> None:
        try:
            job.run()
        except Exception:  # one failed run must not end the job: the next one comes on time
            job.failures += 1
            log.exception("iot: the periodic job %s failed; trying again next time", job.name)

    def describe(self) -> str:
        """One line saying what this worker does."""
        consumer = self.consumer
        if consumer is None:
            return "设备接入：未配置 MQTT / ingest: no MQTT broker configured"
        return (
            f"设备接入已启动 / ingest running: broker {consumer.address.host}:"
            f"{consumer.address.port}, client id {consumer.client_id}, "
            f"shared group {consumer.shared_group or '-'}, topics {' '.join(consumer.filters)}"
        )

    def report_until(
        self, stop: threading.Event, report: Callable[[str], Any], every: float
    ) -> None:
        """Report once subscribed, then a progress line every `every` seconds, until `stop`."""
        consumer = self.consumer
        if consumer is None:
            stop.wait()
            return
        stats = consumer.stats
        announced = False
        last_received, last_at = stats.received, time.monotonic()
        next_report = last_at + every
        while not stop.wait(TICK_SECONDS):
            if not announced and consumer.subscribed.is_set():
                report("已订阅设备主题 / subscribed to the device topics")
                announced = True
            now = time.monotonic()
            if now < next_report:
                continue
            rate = (stats.received - last_received) / (now - last_at)
            last_received, last_at, next_report = stats.received, now, now + every
            report(progress_line(stats, rate))
        report(progress_line(stats, None))

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the consumer (committing the batch in hand), the jobs, then flush counters."""
        if self.consumer is not None:
            self.consumer.stop(timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._liveness.close()
        if self.jobs_enabled or self.consumer is not None:
            self._final_flush()
        close_publisher(self.context)

    def _final_flush(self) -> None:
        from pujiang.iot.service import ingestor_of

        try:
            ingestor_of(self.context).flush()
        except Exception:
            log.exception("iot: writing the device counters at shutdown failed")


@contextmanager
def running(
    context: AppContext,
    *,
    client_id: str | None = None,
    shared_group: str | None = None,
    jobs: bool | None = None,
) -> Iterator[Worker]:
    """Run ingest beside the app while the block runs (MQTT only when `mqtt_url` is set)."""
    worker = Worker(context, client_id=client_id, shared_group=shared_group, jobs=jobs).start()
    context.extras[WORKER_KEY] = worker
    try:
        yield worker
    finally:
        context.extras.pop(WORKER_KEY, None)
        worker.stop()
