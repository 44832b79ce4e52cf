"""The one write path of device ingest: messages -> checked readings -> `ContextBroker.record`.

`Ingestor.ingest` takes a batch of device messages from any transport (MQTT, HTTP, bulk),
resolves each device, parses and converts its measures (`mapping.py`), and writes every
accepted reading in one transaction per tenant through the broker, which keeps current state,
history and subscriptions exactly as for an NGSI-LD update. A bad message is refused whole,
with its reason counted for its device; it never stops the others. When `ingest` returns, what
it reports stored is committed: transports acknowledge only then.

Per-device counters and `last_seen` are kept in memory and written by `flush()` (the worker
calls it every 5 s; readers of device status call it first), so that the hot path does not
update a device row per message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from pujiang.context.readings import DUPLICATE, NO_ENTITY, Reading
from pujiang.context.service import ContextBroker
from pujiang.context.store import quiet_gc
from pujiang.iot.mapping import (
    TIME_KEY,
    DeviceProfile,
    PayloadError,
    canonical_time,
    convert,
    measure_time,
)
from pujiang.iot.metrics import IngestMetrics, registry_of
from pujiang.iot.registry import DeviceRegistry
from pujiang.platform.db import Database
from pujiang.platform.deps import AppContext

log = logging.getLogger("pujiang.iot")

EXTRA_KEY = "iot.ingestor"
STORED, DUPLICATE_MESSAGE, REJECTED = "stored", "duplicate", "rejected"
DEFAULT_MAX_MESSAGE_BYTES = 65_536


@dataclass
class Message:
    """One device message as a transport received it."""

    apikey: str
    device_id: str
    payload: Any  # bytes/str of JSON, or an already-parsed value
    object_id: str | None = None  # `/attrs/{object_id}`: the payload is one bare value
    observed_at: Any = None  # a bulk item's "t"; else the payload's TimeInstant; else receipt
    transport: str = "http"  # "mqtt" | "http" | "bulk"
    received_at: float = field(default_factory=time.time)


@dataclass
class Outcome:
    status: str  # stored | duplicate | rejected
    reason: str | None = None
    detail: str | None = None


@dataclass
class IngestReport:
    outcomes: list[Outcome]

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def stored(self) -> int:
        return self.count(STORED)

    @property
    def duplicates(self) -> int:
        return self.count(DUPLICATE_MESSAGE)

    @property
    def rejected(self) -> int:
        return self.count(REJECTED)


@dataclass
class DeviceCounters:
    received: int = 0
    stored: int = 0
    rejected: int = 0
    duplicates: int = 0
    last_seen: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    silent_after: timedelta | None = None  # missed_intervals × expected_interval

    @property
    def offline_after(self) -> datetime | None:
        if self.last_seen is None or self.silent_after is None:
            return None
        return self.last_seen + self.silent_after


def _too_large(size: int, limit: int) -> PayloadError:
    return PayloadError(
        "too_large",
        f"消息 {size} 字节，超过上限 {limit} 字节 / the message is {size} bytes, over the "
        f"{limit}-byte limit",
    )


def parse_payload(message: Message, limit: int) -> Any:
    payload = message.payload
    if isinstance(payload, bytes | bytearray | memoryview | str):
        size = len(payload)
        if size > limit:
            raise _too_large(size, limit)
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(
                "malformed_json", f"消息不是合法的 JSON：{exc} / the message is not valid JSON"
            ) from exc
    return payload


MAX_GROUPS = 1000  # measure groups in one array message
GC_PAUSE_FROM = 100  # messages in a batch
LOG_EVERY = 60.0  # seconds between log lines about one device's refused messages
LOG_KEYS = 10_000  # devices remembered for that


def _group_time(message: Message, measures: dict[str, Any], now: datetime) -> str:
    moment = message.observed_at if message.observed_at is not None else measures.get(TIME_KEY)
    if moment is None:
        return canonical_time(datetime.fromtimestamp(message.received_at, UTC))
    return measure_time(moment, now)


def measures_of(message: Message, now: datetime, limit: int) -> list[tuple[dict[str, Any], str]]:
    """The message's measure groups (object_id -> value) with their times (canonical UTC).

    A message is one object of measures, or (IoT Agent JSON multi-measure) an array of such
    objects, each with its own `TimeInstant`: a device sending several readings at once."""
    value = parse_payload(message, limit)
    if message.object_id is not None:
        groups: list[Any] = [{message.object_id: value}]
    elif isinstance(value, dict):
        groups = [value]
    elif isinstance(value, list) and value and len(value) <= MAX_GROUPS:
        groups = value
    else:
        raise PayloadError(
            "not_an_object",
            '消息须为 JSON 对象（如 {"t": 21.5}）或对象数组 / the message must be a JSON object '
            'such as {"t": 21.5}, or an array of such objects',
        )
    out = []
    for group in groups:
        if not isinstance(group, dict):
            raise PayloadError(
                "not_an_object", "数组中的每一项须为 JSON 对象 / each array item must be an object"
            )
        out.append((group, _group_time(message, group, now)))
    return out


class Ingestor:
    def __init__(
        self,
        db: Database,
        broker: ContextBroker,
        registry: DeviceRegistry,
        metrics: IngestMetrics,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.db = db
        self.broker = broker
        self.registry = registry
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes
        self._counters: dict[int, DeviceCounters] = defaultdict(DeviceCounters)
        self._counters_lock = threading.Lock()
        self._logged: dict[tuple[str, str, str], float] = {}

    # -- the write path ---------------------------------------------------------------------------

    def ingest(self, messages: list[Message]) -> IngestReport:
        # A batch allocates several objects per reading that live until its commit: the
        # collector would walk them and every cached device profile again and again.
        with quiet_gc(len(messages) >= GC_PAUSE_FROM):
            return self._ingest(messages)

    def _ingest(self, messages: list[Message]) -> IngestReport:
        started = time.perf_counter()
        now = datetime.now(UTC)
        outcomes: list[Outcome | None] = [None] * len(messages)
        profiles = self.registry.profiles({(m.apikey, m.device_id) for m in messages})
        readings: dict[str, list[Reading]] = defaultdict(list)
        owners: dict[str, list[int]] = defaultdict(list)  # per reading, its message
        device_of: list[DeviceProfile | None] = [None] * len(messages)
        seeds: dict[int, dict[str, Any]] = {}
        for i, message in enumerate(messages):
            profile = profiles[(message.apikey, message.device_id)]
            try:
                if isinstance(profile, PayloadError):
                    raise profile
                device_of[i] = profile
                pairs = [
                    pair
                    for measures, observed in measures_of(message, now, self.max_message_bytes)
                    for pair in convert(profile, measures, observed)
                ]
            except PayloadError as exc:
                outcomes[i] = Outcome(REJECTED, exc.reason, exc.detail)
                continue
            seed = seeds.get(profile.pk)
            if seed is None:
                seed = seeds[profile.pk] = profile.seed_entity()
            tenant_readings, tenant_owners = readings[profile.tenant], owners[profile.tenant]
            for iri, instance in pairs:
                tenant_readings.append(Reading(profile.entity_id, iri, instance, seed))
                tenant_owners.append(i)
        for tenant, batch in readings.items():
            self._settle(self.broker.record(tenant, batch), owners[tenant], outcomes)
        report = IngestReport([o or Outcome(STORED) for o in outcomes])
        self._count(messages, device_of, report, now)
        self.metrics.batch.observe(time.perf_counter() - started)
        return report

    @staticmethod
    def _settle(results: list[str], owners: list[int], outcomes: list[Outcome | None]) -> None:
        """A message is stored if any of its readings was written, duplicate if none was."""
        written: set[int] = set()
        seen: set[int] = set()
        for result, i in zip(results, owners, strict=True):
            seen.add(i)
            if result not in (DUPLICATE, NO_ENTITY):
                written.add(i)
        for i in seen:
            outcomes[i] = Outcome(STORED) if i in written else Outcome(DUPLICATE_MESSAGE)

    def write_attributes(self, profile: DeviceProfile, values: dict[str, Any]) -> None:
        """Plain Property values on the device's entity (command status and info)."""
        readings = [
            Reading(
                profile.entity_id,
                profile.expand(name),
                {"type": "Property", "value": value},
                profile.seed_entity(),
            )
            for name, value in values.items()
        ]
        self.broker.record(profile.tenant, readings)

    # -- counters ---------------------------------------------------------------------------------

    def _count(
        self,
        messages: list[Message],
        devices: list[DeviceProfile | None],
        report: IngestReport,
        now: datetime,
    ) -> None:
        done = time.time()
        metrics = self.metrics
        by_outcome: dict[tuple[str, str], int] = defaultdict(int)
        with self._counters_lock:
            for message, device, outcome in zip(messages, devices, report.outcomes, strict=True):
                by_outcome[(message.transport, outcome.status)] += 1
                if outcome.status == REJECTED:
                    metrics.rejections.labels(outcome.reason or "unknown").inc()
                    self._log_rejection(message, outcome)
                else:
                    metrics.lag.observe(max(0.0, done - message.received_at))
                if device is None:
                    continue
                counters = self._counters[device.pk]
                counters.received += 1
                counters.last_seen = now
                counters.silent_after = device.silent_after
                if outcome.status == STORED:
                    counters.stored += 1
                elif outcome.status == DUPLICATE_MESSAGE:
                    counters.duplicates += 1
                else:
                    counters.rejected += 1
                    counters.last_error = (outcome.detail or outcome.reason or "")[:500]
                    counters.last_error_at = now
        for (transport, status), n in by_outcome.items():
            metrics.received.labels(transport).inc(n)
            metrics.messages.labels(transport, status).inc(n)

    def _log_rejection(self, message: Message, outcome: Outcome) -> None:
        """Log a refused message, at most once a minute per device and reason: a device
        stuck sending garbage (or another system's traffic on a shared broker) must not
        flood the log. Every refusal is counted all the same."""
        key = (message.apikey, message.device_id, outcome.reason or "")
        now = time.monotonic()
        if now - self._logged.get(key, -LOG_EVERY) < LOG_EVERY:
            return
        if len(self._logged) > LOG_KEYS:
            self._logged.clear()
        self._logged[key] = now
        log.info(
            "rejected message from %s/%s (%s): %s",
            message.apikey,
            message.device_id,
            outcome.reason,
            outcome.detail,
        )

    def flush(self) -> int:
        """Add the counters kept since the last flush to the device rows; returns how many."""
        with self._counters_lock:
            pending, self._counters = self._counters, defaultdict(DeviceCounters)
        if not pending:
            return 0
        postgres = self.db.engine.dialect.name == "postgresql"
        at = _driver_time_of(postgres)
        rows = [
            (
                c.received,
                c.stored,
                c.rejected,
                c.duplicates,
                *(at(c.last_seen),) * 2,
                c.last_error,
                at(c.last_error_at),
                at(c.last_seen),
                at(c.offline_after),
                pk,
            )
            for pk, c in pending.items()
        ]
        try:
            with self.db.write_session() as session:
                sql = _FLUSH_SQL.format(p="%s" if postgres else "?")
                session.connection().exec_driver_sql(sql, rows)
        except Exception:
            with self._counters_lock:  # keep them for the next flush
                for pk, c in pending.items():
                    _add(self._counters[pk], c)
            raise
        return len(rows)


def _add(into: DeviceCounters, more: DeviceCounters) -> None:
    into.received += more.received
    into.stored += more.stored
    into.rejected += more.rejected
    into.duplicates += more.duplicates
    seen = [d for d in (into.last_seen, more.last_seen) if d is not None]
    into.last_seen = max(seen) if seen else None
    into.silent_after = more.silent_after or into.silent_after
    if more.last_error:
        into.last_error, into.last_error_at = more.last_error, more.last_error_at


# Straight to the driver: at 100,000 devices SQLAlchemy's per-row parameter processing was
# half the cost of a flush, and the flush shares the database's one writer with ingest.
# The newest `last_seen` wins: with several server processes a device's messages reach either,
# and a process may flush an older one after another flushed a newer one.
_FLUSH_SQL = (
    "UPDATE iot_devices SET received = received + {p}, stored = stored + {p}, "
    "rejected = rejected + {p}, duplicates = duplicates + {p}, "
    "last_seen = CASE WHEN last_seen IS NULL OR last_seen < {p} THEN {p} ELSE last_seen END, "
    "last_error = coalesce({p}, last_error), last_error_at = coalesce({p}, last_error_at), "
    "offline_after = CASE WHEN last_seen IS NULL OR last_seen < {p} THEN {p} "
    "ELSE offline_after END WHERE pk = {p}"
)


def _driver_time_of(postgres: bool) -> Callable[[datetime | None], Any]:
    """UTC times as the driver takes them: aware datetimes, or SQLAlchemy's SQLite text."""
    if postgres:
        return lambda moment: moment

    texts: dict[datetime, str] = {}  # one flush: most devices share a batch's time

    def text(moment: datetime | None) -> str | None:
        if moment is None:
            return None
        found = texts.get(moment)
        if found is None:
            found = texts[moment] = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return found

    return text


# -- one per application ------------------------------------------------------------------------

_create_lock = threading.Lock()


def ingestor_of(context: AppContext) -> Ingestor:
    found = context.extras.get(EXTRA_KEY)
    if found is not None:
        return found  # type: ignore[no-any-return]
    with _create_lock:
        found = context.extras.get(EXTRA_KEY)
        if found is None:
            found = _build(context)
            context.extras[EXTRA_KEY] = found
    return found


def _build(context: AppContext) -> Ingestor:
    from pujiang.context.ngsild import broker_of, processor_of

    processor = processor_of(context)

    def expander(url: str | None) -> Any:
        if not url:
            return processor.core.expand
        try:
            return processor.active(url).expand
        except Exception:  # an unavailable @context: the names stay in the default vocabulary
            log.warning("service group @context %s is not available; using the core", url)
            return processor.core.expand

    return Ingestor(
        context.db,
        broker_of(context),
        DeviceRegistry(context.db, expander),
        IngestMetrics(registry_of(context)),
        context.settings.ingest_max_message_bytes,
    )
