"""The periodic escalation job the app lifespan runs: it escalates, survives errors, stops."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from pujiang import cases
from pujiang.app import create_app
from pujiang.cases import jobs, service
from pujiang.cases.models import Case
from pujiang.platform.deps import AppContext
from pujiang.settings import Settings
from tests.cases.conftest import HUANGPU, Clock
from tests.conftest import eventually


def _new_case(context: AppContext) -> int:
    new = service.NewCase(
        "E0501", service.Source.PATROL, "人行道设摊", lon=HUANGPU[0], lat=HUANGPU[1]
    )
    with context.db.session() as session:
        case_id: int = service.create_case(session, context, service.SYSTEM, new).id
        return case_id


def _job_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cases-escalation" and t.is_alive()]


def test_the_app_escalates_overdue_cases_while_it_serves(
    settings: Settings, cases_context: AppContext, clock: Clock
) -> None:
    case_id = _new_case(cases_context)
    clock.now += timedelta(days=1)  # far past the register limit
    cases_context.extras[jobs.INTERVAL_KEY] = 0.05

    def escalated() -> bool:
        with cases_context.db.session() as session:
            case = session.get(Case, case_id)
            return case is not None and case.overdue and case.escalation_level == 1

    with TestClient(create_app(settings, cases_context)) as client:
        assert client.get("/healthz").status_code == 200
        assert _job_threads()
        assert eventually(escalated)
        started = time.monotonic()
    assert time.monotonic() - started < 3  # shutdown does not wait for the next period
    assert not _job_threads()
    # Idempotent: later runs leave an escalated case alone.
    assert cases.escalate_overdue(cases_context) == []


def test_a_failing_run_is_logged_and_the_job_goes_on(
    cases_context: AppContext, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = {"n": 0}
    real = cases.escalate_overdue

    def flaky(context: AppContext) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database went away")
        done: list[int] = real(context)
        return done

    monkeypatch.setattr(cases, "escalate_overdue", flaky)
    job = jobs.PeriodicEscalation(cases_context, 0.02).start()
    try:
        assert eventually(lambda: job.runs >= 3)
    finally:
        job.stop()
    assert job.failures == 1
    assert not job.running
    assert "periodic escalation failed" in caplog.text


def test_the_interval_is_configurable_and_off_by_default_in_tests(
    cases_context: AppContext,
) -> None:
    assert jobs.interval(cases_context) == 0  # Mode.TEST: tests opt in
    cases_context.extras[jobs.INTERVAL_KEY] = 5
    assert jobs.interval(cases_context) == 5
    assert jobs.interval(cases_context, 1.5) == 1.5
    cases_context.extras[jobs.INTERVAL_KEY] = 0
    with jobs.periodic_escalation(cases_context) as job:
        assert job is None
        assert not _job_threads()
