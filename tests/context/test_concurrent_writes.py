"""Concurrent writers on one entity: no write is lost.

Every broker write reads the entity's document, changes it and writes it back. Two writers
(threads of one server, or two `pujiang ingest` workers, here two engines on one database)
that interleave those steps must not overwrite each other's changes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from pujiang.context.errors import AlreadyExists
from pujiang.context.queries import Query
from pujiang.context.readings import Reading
from pujiang.context.service import ContextBroker
from pujiang.context.store import FINE_LIMIT
from pujiang.context.temporal import TemporalStore, parse_temporal_query
from pujiang.platform.db import Database
from pujiang.platform.deps import AppContext

VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
ENTITY_ID = "urn:ngsi-ld:WeatherObserved:race"
TEMPERATURE = VOCAB + "temperature"
ROUNDS = 40


def _at(second: int) -> str:
    return f"2026-05-01T08:{second // 60:02d}:{second % 60:02d}.000Z"


def _entity() -> dict[str, Any]:
    return {
        "id": ENTITY_ID,
        "type": [VOCAB + "WeatherObserved"],
        TEMPERATURE: [{"type": "Property", "value": 0.0, "observedAt": _at(0)}],
    }


def _run_together(*jobs: Callable[[], None]) -> None:
    """Start the jobs at one moment; re-raise the first failure."""
    start = threading.Barrier(len(jobs))
    failures: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        start.wait()
        try:
            job()
        except BaseException as exc:  # handed to the test below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    if failures:
        raise failures[0]


def test_appends_and_readings_from_two_writers_all_survive(context: AppContext) -> None:
    ContextBroker(context.db).create("", _entity())
    other_db = Database(context.db.url)  # a second process's engine, in effect
    try:
        appender, recorder = ContextBroker(context.db), ContextBroker(other_db)

        def append_attributes() -> None:
            for n in range(ROUNDS):
                fragment = {f"{VOCAB}note{n}": [{"type": "Property", "value": n}]}
                appender.append_attrs("", ENTITY_ID, fragment)

        def record_readings() -> None:
            for n in range(1, ROUNDS + 1):
                instance = {"type": "Property", "value": float(n), "observedAt": _at(n)}
                assert recorder.record("", [Reading(ENTITY_ID, TEMPERATURE, instance)]) == [
                    "stored"
                ]

        _run_together(append_attributes, record_readings)
    finally:
        other_db.dispose()
    entity = ContextBroker(context.db).retrieve("", ENTITY_ID)
    missing = [n for n in range(ROUNDS) if f"{VOCAB}note{n}" not in entity]
    assert missing == [], f"appended attributes lost to a concurrent writer: {missing}"
    assert entity[TEMPERATURE][0]["value"] == float(ROUNDS)


def test_readings_out_of_order_from_two_writers_leave_the_newest(context: AppContext) -> None:
    """Two workers share one device's readings: the current state ends at the newest
    reading, whatever order the commits come in, and each reading is kept once."""
    ContextBroker(context.db).create("", _entity())
    other_db = Database(context.db.url)
    try:
        brokers = [ContextBroker(context.db), ContextBroker(other_db)]

        def worker(parity: int) -> Callable[[], None]:
            def run() -> None:
                for n in range(1 + parity, 2 * ROUNDS + 1, 2):
                    instance = {"type": "Property", "value": float(n), "observedAt": _at(n)}
                    brokers[parity].record("", [Reading(ENTITY_ID, TEMPERATURE, instance)])

            return run

        _run_together(worker(0), worker(1))
    finally:
        other_db.dispose()
    entity = ContextBroker(context.db).retrieve("", ENTITY_ID)
    assert entity[TEMPERATURE][0]["value"] == float(2 * ROUNDS)
    assert entity[TEMPERATURE][0]["observedAt"] == _at(2 * ROUNDS)


def _station(n: int) -> dict[str, Any]:
    entity = _entity()
    entity["id"] = f"urn:ngsi-ld:WeatherObserved:new{n}"
    return entity


def test_two_writers_creating_the_same_entities_both_succeed(context: AppContext) -> None:
    """Two gateways upsert the same new entities at once: both batches succeed and every
    entity exists once (on PostgreSQL the second insert meets the first's unique key)."""
    other_db = Database(context.db.url)
    try:
        brokers = [ContextBroker(context.db), ContextBroker(other_db)]
        results: list[Any] = []

        def upsert(broker: ContextBroker) -> Callable[[], None]:
            return lambda: results.append(broker.batch_upsert("", [_station(n) for n in range(50)]))

        _run_together(upsert(brokers[0]), upsert(brokers[1]))
    finally:
        other_db.dispose()
    assert len(results) == 2
    assert all(not result.errors for result in results)
    found, _ = ContextBroker(context.db).query("", Query(id_pattern=".*new.*", limit=100))
    assert sorted(e["id"] for e in found) == sorted(_station(n)["id"] for n in range(50))


def test_two_creates_of_one_id_give_one_entity_and_one_conflict(context: AppContext) -> None:
    other_db = Database(context.db.url)
    outcomes: list[str] = []
    try:
        brokers = [ContextBroker(context.db), ContextBroker(other_db)]

        def create(broker: ContextBroker) -> Callable[[], None]:
            def run() -> None:
                try:
                    broker.create("", _station(1))
                    outcomes.append("created")
                except AlreadyExists:
                    outcomes.append("exists")

            return run

        _run_together(create(brokers[0]), create(brokers[1]))
    finally:
        other_db.dispose()
    assert sorted(outcomes) == ["created", "exists"]


def test_first_writes_of_a_new_tenant_from_two_writers_both_succeed(context: AppContext) -> None:
    """A tenant is created by its first write (clause 4.14): two writers of different
    entities in a new tenant both succeed (on PostgreSQL both insert the tenant's row)."""
    other_db = Database(context.db.url)
    try:
        brokers = [ContextBroker(context.db), ContextBroker(other_db)]
        for round_ in range(5):
            tenant = f"district{round_}"

            def create(n: int, tenant: str = tenant) -> Callable[[], None]:
                return lambda: brokers[n].create(tenant, _station(n))

            _run_together(create(0), create(1))
            found, _ = brokers[0].query(tenant, Query(id_pattern=".*new.*", limit=10))
            assert sorted(e["id"] for e in found) == [_station(0)["id"], _station(1)["id"]]
    finally:
        other_db.dispose()


def test_two_temporal_creates_of_one_new_entity_make_it_once(context: AppContext) -> None:
    """Two `POST /temporal/entities` of one new entity at once: one creates it (and its
    current state, from the latest instance), the other adds its instances to the history."""
    other_db = Database(context.db.url)
    evolution = {
        "id": ENTITY_ID,
        "type": [VOCAB + "WeatherObserved"],
        TEMPERATURE: [
            {"type": "Property", "value": 1.0, "observedAt": _at(1)},
            {"type": "Property", "value": 2.0, "observedAt": _at(2)},
        ],
    }
    created: list[bool] = []
    try:
        stores = [TemporalStore(ContextBroker(db)) for db in (context.db, other_db)]

        def post(store: TemporalStore) -> Callable[[], None]:
            return lambda: created.append(store.upsert_current("", evolution, None, None))

        _run_together(post(stores[0]), post(stores[1]))
    finally:
        other_db.dispose()
    assert sorted(created) == [False, True]
    broker = ContextBroker(context.db)
    assert broker.retrieve("", ENTITY_ID)[TEMPERATURE][0]["value"] == 2.0
    page = TemporalStore(broker).retrieve("", ENTITY_ID, parse_temporal_query())
    values = sorted(i["value"] for e in page.entities for i in e[TEMPERATURE])
    assert values == [1.0, 1.0, 2.0, 2.0]  # each request's two instances, once each


def test_large_batches_at_once_outnumbering_the_lock_table_are_written(
    context: AppContext,
) -> None:
    """PostgreSQL's lock table holds about 6,400 locks by default, shared by all transactions:
    with a lock per id, four gateway uploads of 5,000 entities at once failed with "out of
    shared memory"."""
    engines = [Database(context.db.url) for _ in range(4)]
    try:

        def upload(part: int) -> Callable[[], None]:
            stations = [_station(part * 5000 + n) for n in range(5000)]
            broker = ContextBroker(engines[part])
            return lambda: _assert_no_errors(broker.batch_upsert("", stations))

        _run_together(*(upload(part) for part in range(4)))
    finally:
        for engine in engines:
            engine.dispose()
    _, total = ContextBroker(context.db).query("", Query(id_pattern=".*new.*", limit=1, count=True))
    assert total == 20_000


def _assert_no_errors(result: Any) -> None:
    assert not result.errors, result.errors[:3]


def test_a_large_batch_and_small_writes_on_one_entity_all_survive(context: AppContext) -> None:
    """A batch larger than `FINE_LIMIT` locks buckets of ids, small writes lock ids: the two
    must still exclude each other on a shared entity."""
    broker = ContextBroker(context.db)
    broker.create("", _entity())
    others = [_station(n) for n in range(FINE_LIMIT + 50)]
    broker.batch_upsert("", others)
    other_db = Database(context.db.url)
    try:
        recorder = ContextBroker(other_db)

        def large_batches() -> None:
            for n in range(ROUNDS // 4):
                note = {f"{VOCAB}note{n}": [{"type": "Property", "value": n}]}
                fragments = [{"id": e["id"], **note} for e in others] + [{"id": ENTITY_ID, **note}]
                assert not broker.batch_update("", fragments).errors

        def record_readings() -> None:
            for n in range(1, ROUNDS + 1):
                instance = {"type": "Property", "value": float(n), "observedAt": _at(n)}
                assert recorder.record("", [Reading(ENTITY_ID, TEMPERATURE, instance)]) == [
                    "stored"
                ]

        _run_together(large_batches, record_readings)
    finally:
        other_db.dispose()
    entity = broker.retrieve("", ENTITY_ID)
    missing = [n for n in range(ROUNDS // 4) if f"{VOCAB}note{n}" not in entity]
    assert missing == [], f"batch updates lost to a concurrent writer: {missing}"
    assert entity[TEMPERATURE][0]["value"] == float(ROUNDS)
