"""Bulk loads leave PostgreSQL's planner statistics behind: without them a query right after a
load (before autovacuum's next round) planned a nested loop over every attribute row."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from pujiang.context.service import ContextBroker
from pujiang.context.store import BULK, _AnalyzeSchedule
from pujiang.platform.deps import AppContext

VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"


def _station(n: int) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:AirQualityObserved:s{n}",
        "type": [VOCAB + "AirQualityObserved"],
        VOCAB + "pm25": [{"type": "Property", "value": float(n % 300)}],
    }


def test_a_bulk_load_is_analyzed(context: AppContext) -> None:
    if context.db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite plans these queries without statistics")
    ContextBroker(context.db).batch_upsert("", [_station(n) for n in range(BULK)])
    with context.db.session() as session:
        columns = session.execute(
            text("SELECT attname FROM pg_stats WHERE tablename = 'context_attrs'")
        ).scalars()
        assert "num" in set(columns)
        entities = session.execute(
            text("SELECT reltuples FROM pg_class WHERE relname = 'context_entities'")
        ).scalar_one()
    assert entities == BULK


def test_analyses_grow_apart_as_the_load_grows() -> None:
    """A million entities in batches of 5,000: a handful of analyses, not one per batch."""
    schedule = _AnalyzeSchedule()
    runs = [i for i in range(200) if schedule.due(5000)]
    assert runs[:3] == [0, 1, 3]  # after 5,000, 10,000 and 20,000 entities
    assert len(runs) == 8  # up to 640,000; the next would be at 1,280,000
    assert not _AnalyzeSchedule().due(BULK - 1)  # small writes leave it to autovacuum
