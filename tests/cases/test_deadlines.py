"""Time limits in working hours on the Chinese calendar, overdue flags and escalation."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pujiang.cases import escalate_overdue, service
from pujiang.cli import app as cli_app
from pujiang.platform.deps import AppContext
from pujiang.platform.workcal import SHANGHAI
from pujiang.settings import Settings
from tests.cases.conftest import Clock, People, act, report


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)  # type: ignore[misc]


def test_deadline_across_national_day() -> None:
    # Tuesday 30 Sep 16:00; 1–8 Oct are holidays. One working day (7 h) = 1 h on the 30th,
    # then Thursday 9 Oct 9–12 and 13–16.
    assert service.deadline(at(2025, 9, 30, 16, 0), 7) == at(2025, 10, 9, 16, 0)
    # Five working days (35 h): 1 h + 9 Oct 7 h + 10 Oct 7 h + Saturday 11 Oct (make-up
    # working day) 7 h + Monday 13 Oct 7 h = 29 h, then 14 Oct 9–12 and 13–16.
    assert service.deadline(at(2025, 9, 30, 16, 0), 35) == at(2025, 10, 14, 16, 0)


def test_deadline_on_a_make_up_working_day() -> None:
    # Reported on Saturday 27 Sep; Sunday 28 Sep is a make-up working day (调休上班).
    assert service.deadline(at(2025, 9, 27, 10, 0), 1) == at(2025, 9, 28, 10, 0)
    # Friday evening before an ordinary weekend waits for Monday.
    assert service.deadline(at(2025, 9, 19, 18, 0), 0.5) == at(2025, 9, 22, 9, 30)


def test_case_deadlines_follow_the_class(
    client: TestClient, cases_context: AppContext, people: People, clock: Clock
) -> None:
    clock.now = at(2025, 9, 30, 16, 0)
    case = report(client, people.supervisor, category_code="E0101")  # 违法建筑: 35 h to handle
    # 1 h to register: the last working hour of the day before the break.
    assert datetime.fromisoformat(case["stage_deadline"]) == at(2025, 9, 30, 17, 0)
    act(client, people.dispatcher, case["id"], "register")
    dispatched = act(client, people.dispatcher, case["id"], "dispatch")
    assert datetime.fromisoformat(dispatched["handle_deadline"]) == at(2025, 10, 14, 16, 0)


def test_overdue_cases_are_escalated_once_per_stage(
    client: TestClient, cases_context: AppContext, people: People, clock: Clock
) -> None:
    late = report(client, people.supervisor)  # 乱设摊: 0.5 h to register
    fresh_id = report(client, people.supervisor, category_code="E0101")["id"]
    act(client, people.dispatcher, fresh_id, "register")
    clock.now += timedelta(minutes=45)
    assert escalate_overdue(cases_context) == [late["id"]]
    assert escalate_overdue(cases_context) == []  # flagged already
    escalated = client.get(f"/api/cases/{late['id']}", headers=people.admin).json()
    assert escalated["overdue"] is True
    assert escalated["escalation_level"] == 1
    assert escalated["level"] == "city"
    assert escalated["escalated_to_code"] == "CYZX"
    assert escalated["events"][-1]["action"] == "escalate"
    overdue = client.get("/api/cases?overdue=true", headers=people.dispatcher).json()["items"]
    assert [c["id"] for c in overdue] == [late["id"]]
    # Registering it late counts the missed stage, and the next stage starts clean.
    registered = act(client, people.dispatcher, late["id"], "register")
    assert registered["overdue"] is False


def test_city_center_sees_escalated_cases(
    client: TestClient, cases_context: AppContext, people: People, clock: Clock, login: object
) -> None:
    city = login("city.disp", "dispatcher", department="CYZX")  # type: ignore[operator]
    case = report(client, people.supervisor)
    assert client.get(f"/api/cases/{case['id']}", headers=city).status_code == 404
    clock.now += timedelta(hours=3)
    escalate_overdue(cases_context)
    assert client.get(f"/api/cases/{case['id']}", headers=city).status_code == 200
    act(client, city, case["id"], "register")


def test_cli_escalate(settings: Settings, cases_context: AppContext, monkeypatch: object) -> None:
    env = {
        "PUJIANG_DATABASE_URL": settings.database_url,
        "PUJIANG_MODE": "development",
        "PUJIANG_VAR_DIR": str(settings.var_dir),
    }
    result = CliRunner().invoke(cli_app, ["cases", "escalate"], env=env)
    assert result.exit_code == 0, result.output
    assert "escalated 0 cases" in result.output
    loaded = CliRunner().invoke(cli_app, ["cases", "load-catalogue"], env=env)
    assert loaded.exit_code == 0, loaded.output
    assert "added 0" in loaded.output
