"""History retention: purging history rows older than the retention, by the app and the CLI."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from pujiang.app import create_app
from pujiang.cli import app as cli_app
from pujiang.context import jobs
from pujiang.context.history import HISTORY, SERIES
from pujiang.context.readings import Reading
from pujiang.context.service import ContextBroker
from pujiang.platform.deps import AppContext
from pujiang.platform.models import AuditEntry
from pujiang.settings import Settings
from tests.conftest import eventually
from tests.context.conftest import BASE

VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
PM25 = VOCAB + "pm25"
STATION = VOCAB + "AirQualityObserved"
OLD = "urn:ngsi-ld:AirQualityObserved:old"
NEW = "urn:ngsi-ld:AirQualityObserved:new"


def _entity(entity_id: str) -> dict[str, Any]:
    return {
        "id": entity_id,
        "type": [STATION],
        PM25: [{"type": "Property", "value": 10.0, "observedAt": "2026-03-01T07:00:00Z"}],
    }


def _write(broker: ContextBroker, entity_id: str, readings: int, tenant: str = "") -> None:
    broker.batch_upsert(tenant, [_entity(entity_id)])
    for minute in range(readings):
        observed = f"2026-03-01T08:{minute:02d}:00Z"
        instance = {"type": "Property", "value": minute, "observedAt": observed}
        broker.record(tenant, [Reading(entity_id, PM25, instance, None)])


def _backdate(context: AppContext, entity_id: str, days: int) -> None:
    """Make an entity's history rows look stored `days` days ago."""
    series = select(SERIES.c.id).where(SERIES.c.entity_id == entity_id)
    stored = datetime.now(UTC) - timedelta(days=days)
    with context.db.session() as session:
        session.execute(
            update(HISTORY).where(HISTORY.c.series_id.in_(series)).values(modified_at=stored)
        )


def _history(context: AppContext, entity_id: str) -> int:
    series = select(SERIES.c.id).where(SERIES.c.entity_id == entity_id)
    with context.db.session() as session:
        query = select(func.count()).select_from(HISTORY).where(HISTORY.c.series_id.in_(series))
        return int(session.execute(query).scalar_one())


@pytest.fixture
def aged(context: AppContext) -> ContextBroker:
    """OLD: 1 + 6 history rows stored 40 days ago, in two tenants; NEW: 1 + 3 stored now."""
    broker = ContextBroker(context.db)
    _write(broker, OLD, 6)
    _write(broker, OLD, 6, tenant="pudong")
    _backdate(context, OLD, 40)
    _write(broker, NEW, 3)
    return broker


def test_rows_stored_before_the_cutoff_go_and_the_rest_stay(
    context: AppContext, aged: ContextBroker
) -> None:
    outcome = jobs.purge_history(context.db, jobs.cutoff(30), chunk=3)
    assert outcome.ran
    assert outcome.rows == 14  # both tenants, walked in chunks of 3
    assert _history(context, OLD) == 0
    assert _history(context, NEW) == 4
    # The current state stays: the entity keeps its last value.
    entity = aged.retrieve("", OLD)
    assert entity[PM25][0]["value"] == 5
    assert jobs.purge_history(context.db, jobs.cutoff(30)).rows == 0  # nothing left to purge


def test_a_dry_run_counts_and_deletes_nothing(context: AppContext, aged: ContextBroker) -> None:
    outcome = jobs.purge_history(context.db, jobs.cutoff(30), dry_run=True, chunk=4)
    assert outcome.dry_run
    assert outcome.rows == 14
    assert _history(context, OLD) == 14
    assert jobs.purge_history(context.db, jobs.cutoff(50), dry_run=True).rows == 0


def test_a_purge_is_audited_with_its_cutoff_and_count(
    context: AppContext, aged: ContextBroker
) -> None:
    before = jobs.cutoff(30)
    jobs.purge_history(context.db, before, actor="cli")
    jobs.purge_history(context.db, before)  # deleted nothing: no entry
    with context.db.session() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "context.history.purge")
        ).all()
    assert [(e.actor, e.detail["rows"]) for e in entries] == [("cli", 14)]
    assert entries[0].detail["before"] == before.isoformat()


def test_only_one_purge_runs_at_a_time(context: AppContext, aged: ContextBroker) -> None:
    with context.db.single_run(jobs.JOB_NAME) as only_run:
        assert only_run
        outcome = jobs.purge_history(context.db, jobs.cutoff(30))
    assert not outcome.ran
    assert outcome.rows == 0
    assert _history(context, OLD) == 14


def test_a_stopped_purge_ends_between_chunks(context: AppContext, aged: ContextBroker) -> None:
    stop = threading.Event()
    stop.set()
    assert jobs.purge_history(context.db, jobs.cutoff(30), stop=stop).rows == 0
    assert _history(context, OLD) == 14


def test_the_temporal_api_no_longer_shows_purged_instances(
    client: TestClient, context: AppContext, writer: dict[str, str], aged: ContextBroker
) -> None:
    def instances(entity_id: str) -> list[Any]:
        reply = client.get(f"{BASE}/temporal/entities/{entity_id}", headers=writer)
        assert reply.status_code == 200, reply.text
        pm25: list[Any] = reply.json()["pm25"]
        return pm25

    assert len(instances(OLD)) == 7
    jobs.purge_history(context.db, jobs.cutoff(30))
    assert len(instances(NEW)) == 4
    # With all its history purged an entity has no temporal evolution, but its current state.
    gone = client.get(f"{BASE}/temporal/entities/{OLD}", headers=writer)
    assert gone.status_code == 404, gone.text
    reply = client.get(f"{BASE}/entities/{OLD}", headers=writer)
    assert reply.status_code == 200, reply.text
    assert reply.json()["pm25"]["value"] == 5


def test_a_retention_of_less_than_a_day_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="at least 1 day"):
        jobs.cutoff(0)
    data = settings.model_dump()
    for bad in ({"context_history_retention_days": 0}, {"context_history_purge_interval": -1}):
        with pytest.raises(ValidationError) as caught:
            Settings(**{**data, **bad})
        assert next(iter(bad)) in str(caught.value)


# -- the app's job and the CLI -----------------------------------------------------------------


def _purge_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "context-history-purge" and t.is_alive()]


def test_the_app_purges_while_it_serves_when_a_retention_is_set(
    settings: Settings, context: AppContext, aged: ContextBroker
) -> None:
    settings = settings.model_copy(
        update={"context_history_retention_days": 30, "context_history_purge_interval": 0.05}
    )
    context.settings = settings
    with TestClient(create_app(settings, context)) as test_client:
        assert test_client.get("/healthz").status_code == 200
        assert _purge_threads()
        assert eventually(lambda: _history(context, OLD) == 0)
    assert not _purge_threads()
    assert _history(context, NEW) == 4


def test_without_a_retention_the_app_keeps_every_change(
    settings: Settings, context: AppContext, aged: ContextBroker
) -> None:
    assert settings.context_history_retention_days is None
    with TestClient(create_app(settings, context)) as test_client:
        assert test_client.get("/healthz").status_code == 200
        assert not _purge_threads()
    assert _history(context, OLD) == 14


@pytest.fixture
def cli(context: AppContext, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("PUJIANG_DATABASE_URL", context.settings.database_url)
    monkeypatch.delenv("PUJIANG_CONTEXT_HISTORY_RETENTION_DAYS", raising=False)
    return CliRunner()


def test_the_cli_purges_with_days_or_the_setting(
    cli: CliRunner, context: AppContext, aged: ContextBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    dry = cli.invoke(cli_app, ["context", "purge-history", "--days", "30", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would delete 14 rows" in dry.output
    assert "将删除 14 行" in dry.output
    assert _history(context, OLD) == 14
    monkeypatch.setenv("PUJIANG_CONTEXT_HISTORY_RETENTION_DAYS", "30")
    done = cli.invoke(cli_app, ["context", "purge-history"])
    assert done.exit_code == 0, done.output
    assert "deleted 14 rows" in done.output
    assert _history(context, OLD) == 0
    assert _history(context, NEW) == 4


def test_the_cli_needs_a_retention_of_a_day_or_more(
    cli: CliRunner, context: AppContext, aged: ContextBroker
) -> None:
    unset = cli.invoke(cli_app, ["context", "purge-history"])
    assert unset.exit_code == 2
    assert "--days" in unset.output
    assert "PUJIANG_CONTEXT_HISTORY_RETENTION_DAYS" in unset.output
    zero = cli.invoke(cli_app, ["context", "purge-history", "--days", "0"])
    assert zero.exit_code == 2
    assert "--days" in zero.output
    assert _history(context, OLD) == 14
