"""The history store: narrow rows in series, the series-id cache, and the 0009 migration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text

from pujiang.context.history import SERIES, HistoryWriter
from pujiang.context.models import history_rows
from pujiang.context.readings import Reading
from pujiang.context.service import ContextBroker
from pujiang.context.temporal import TemporalStore, parse_temporal_query
from pujiang.platform import db as dbtools
from pujiang.platform.deps import AppContext

HISTORY = history_rows()
VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
PM25 = VOCAB + "pm25"
STATION = VOCAB + "AirQualityObserved"


def _reading(n: int, value: float, minute: int) -> Reading:
    instance = {"type": "Property", "value": value, "observedAt": f"2026-03-01T08:{minute:02d}:00Z"}
    return Reading(f"urn:ngsi-ld:AirQualityObserved:h{n}", PM25, instance, None)


def _entity(n: int) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:AirQualityObserved:h{n}",
        "type": [STATION],
        PM25: [{"type": "Property", "value": 10.0, "observedAt": "2026-03-01T07:00:00Z"}],
    }


def _rows(context: AppContext, entity_id: str) -> list[Any]:
    with context.db.session() as session:
        query = select(HISTORY).where(HISTORY.c.entity_id == entity_id).order_by(HISTORY.c.id)
        return list(session.execute(query).all())


def _series_count(context: AppContext) -> int:
    with context.db.session() as session:
        return int(session.execute(select(func.count()).select_from(SERIES)).scalar_one())


def test_readings_of_one_attribute_share_one_series(context: AppContext) -> None:
    broker = ContextBroker(context.db)
    broker.batch_upsert("", [_entity(1), _entity(2)])
    series_after_create = _series_count(context)
    for minute in range(1, 6):
        outcomes = broker.record("", [_reading(1, 20.0 + minute, minute), _reading(2, 1, minute)])
        assert outcomes == ["stored", "stored"]
    assert _series_count(context) == series_after_create  # no new series for new readings
    rows = _rows(context, "urn:ngsi-ld:AirQualityObserved:h1")
    assert [row.num for row in rows if row.attr == PM25] == [10.0, 21.0, 22.0, 23.0, 24.0, 25.0]
    assert len({row.series_id for row in rows if row.attr == PM25}) == 1
    assert all(row.entity_type == STATION and row.kind == "Property" for row in rows)


def test_a_rolled_back_series_is_not_remembered(context: AppContext) -> None:
    """A series created by a transaction that rolls back must not stay in the id cache:
    rows written later under that id would name a series that does not exist."""
    broker = ContextBroker(context.db)
    writer = broker.history
    key = ("", "urn:ngsi-ld:Thing:rolled", VOCAB + "Thing", PM25, "", "Property")
    row = (*key, None, writer.time_param(datetime.now(UTC)), False, 1.0, None, "{}")

    def fail_after_the_write() -> None:
        with context.db.session() as session:
            writer.write(session, [row], readings=True)
            raise RuntimeError("the transaction fails after the history write")

    with pytest.raises(RuntimeError):
        fail_after_the_write()
    assert _series_count(context) == 0
    with context.db.session() as session:
        writer.write(session, [row], readings=True)
    rows = _rows(context, "urn:ngsi-ld:Thing:rolled")
    assert [(r.attr, r.num) for r in rows] == [(PM25, 1.0)]
    with context.db.session() as session:  # now remembered: no new series
        writer.write(session, [row], readings=True)
    assert _series_count(context) == 1
    assert len(_rows(context, "urn:ngsi-ld:Thing:rolled")) == 2


def test_a_full_cache_is_emptied_and_refilled(context: AppContext) -> None:
    writer = HistoryWriter(context.db.engine.dialect.name == "postgresql", cache_limit=3)
    at = writer.time_param(datetime.now(UTC))
    thing = VOCAB + "Thing"
    rows = [
        ("", f"urn:ngsi-ld:Thing:c{n}", thing, PM25, "", "Property", None, at, False, n, None, "")
        for n in range(5)
    ]
    for _ in range(2):
        with context.db.session() as session:
            writer.write(session, rows, readings=True)
    assert _series_count(context) == 5
    with context.db.session() as session:
        found = session.execute(select(HISTORY.c.entity_id, HISTORY.c.num)).all()
    assert sorted(found) == sorted([(f"urn:ngsi-ld:Thing:c{n}", float(n)) for n in range(5)] * 2)


def test_deleting_a_temporal_evolution_keeps_later_writes_visible(context: AppContext) -> None:
    """Series outlive their rows: after the temporal DELETE, cached ids still name a series."""
    broker = ContextBroker(context.db)
    store = TemporalStore(broker)
    broker.batch_upsert("", [_entity(3)])
    broker.record("", [_reading(3, 30.0, 1)])
    store.delete_entity("", "urn:ngsi-ld:AirQualityObserved:h3")
    assert _rows(context, "urn:ngsi-ld:AirQualityObserved:h3") == []
    # the device reports again: its entity is made anew from the seed, through cached ids
    reading = _reading(3, 31.0, 2)
    reading.seed = _entity(3)
    assert broker.record("", [reading]) == ["stored"]
    page = store.retrieve("", "urn:ngsi-ld:AirQualityObserved:h3", parse_temporal_query())
    values = [i["value"] for e in page.entities for i in e.get(PM25, [])]
    assert values == [10.0, 31.0]


# -- the migration ---------------------------------------------------------------------------


_WIDE = (
    "INSERT INTO context_attr_instances (id, tenant, entity_id, entity_type, attr, dataset_id, "
    "kind, observed_at, modified_at, deleted, num, txt, instance) VALUES (:id, :tenant, :eid, "
    ":type, :attr, :ds, :kind, :obs, :mod, :deleted, :num, :txt, :inst)"
)


def _wide_rows() -> list[dict[str, Any]]:
    at = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    base = {"tenant": "", "type": STATION, "kind": "Property", "mod": at, "txt": None}
    return [
        {**base, "id": 5, "eid": "urn:a", "attr": PM25, "ds": "", "obs": at, "deleted": False}
        | {"num": 1.0, "inst": '{"value":1.0}'},
        {**base, "id": 9, "eid": "urn:a", "attr": PM25, "ds": "", "obs": None, "deleted": True}
        | {"num": None, "inst": '{"value":"urn:ngsi-ld:null"}'},
        {**base, "id": 12, "eid": "urn:a", "attr": PM25, "ds": "urn:ds:2", "obs": at}
        | {"deleted": False, "num": 2.0, "inst": '{"value":2.0}'},
        {**base, "id": 20, "eid": "urn:b", "attr": VOCAB + "name", "ds": "", "obs": at}
        | {"tenant": "t1", "kind": "LanguageProperty", "deleted": False, "num": None}
        | {"txt": "浦江", "inst": '{"languageMap":{"zh":"浦江"}}'},
    ]


COMPARED = ("id", "tenant", "entity_id", "attr", "dataset_id", "kind", "deleted", "num", "txt")
WIDE_NAMES = ("id", "tenant", "eid", "attr", "ds", "kind", "deleted", "num", "txt", "inst")


def _columns(rows: list[Any]) -> list[tuple[Any, ...]]:
    return [(*(getattr(r, c) for c in COMPARED), r.instance) for r in rows]


def test_the_migration_keeps_every_history_row_and_its_id(empty_url: str) -> None:
    dbtools.upgrade(empty_url, "0008")
    database = dbtools.Database(empty_url)
    try:
        with database.session() as session:
            for row in _wide_rows():
                session.execute(text(_WIDE), {**row, "obs": row["obs"], "mod": row["mod"]})
    finally:
        database.dispose()
    dbtools.upgrade(empty_url)
    database = dbtools.Database(empty_url)
    try:
        with database.session() as session:
            rows = session.execute(select(HISTORY).order_by(HISTORY.c.id)).all()
            series = session.execute(select(func.count()).select_from(SERIES)).scalar_one()
        wide = _wide_rows()
        assert _columns(rows) == [tuple(w[c] for c in WIDE_NAMES) for w in wide]
        assert [r.observed_at for r in rows] == [w["obs"] for w in wide]
        assert series == 3  # urn:a pm25 default and urn:ds:2, urn:b name
        # New rows continue after the copied ids (they are the temporal API's instance ids).
        ContextBroker(database).batch_upsert("", [_entity(1)])
        with database.session() as session:
            assert session.execute(select(func.max(HISTORY.c.id))).scalar_one() > 20
    finally:
        database.dispose()
    dbtools.downgrade(empty_url, "0008")
    database = dbtools.Database(empty_url)
    try:
        with database.session() as session:
            ids = session.execute(text("SELECT id FROM context_attr_instances ORDER BY id"))
            assert [r[0] for r in ids][:4] == [5, 9, 12, 20]
    finally:
        database.dispose()


def test_a_temporal_create_that_fails_half_way_writes_nothing(
    context: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`POST /temporal/entities` of a new entity writes the older instances to the history
    and creates the current entity from the latest: one transaction. A failure in the
    create (a full disk, here made to happen) leaves neither the history nor the new tenant,
    and the same request succeeds afterwards."""
    broker = ContextBroker(context.db)
    store = TemporalStore(broker)
    entity_id = "urn:ngsi-ld:AirQualityObserved:h9"
    evolution = {
        "id": entity_id,
        "type": [STATION],
        PM25: [
            {"type": "Property", "value": 30.0, "observedAt": "2026-03-01T08:00:00Z"},
            {"type": "Property", "value": 31.0, "observedAt": "2026-03-01T09:00:00Z"},
        ],
    }

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(broker, "_persist", disk_full)
    with pytest.raises(OSError, match="disk full"):
        store.upsert_current("newtown", evolution, None, None)
    monkeypatch.undo()
    assert _rows(context, entity_id) == []
    assert not broker.tenant_exists("newtown")
    assert store.upsert_current("newtown", evolution, None, None) is True
    assert broker.retrieve("newtown", entity_id)[PM25][0]["value"] == 31.0
    assert sorted(row.num for row in _rows(context, entity_id)) == [30.0, 31.0]
