"""Dispatch by location: a responsibility grid's team takes the cases of its line of business."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from pujiang.cases import service
from pujiang.cases.locate import LOCATOR_KEY
from pujiang.city import service as city_service
from pujiang.platform import identity
from pujiang.platform.deps import AppContext
from pujiang.platform.models import Department, DepartmentLevel
from tests.cases.conftest import People, act, report
from tests.city.conftest import grid_code, load_toy_city, xy

TEAM = "310101001-CGZF"  # 南京东路街道城管中队, a street-level team of 黄浦区城管执法局


def _toy_city_with_team(context: AppContext) -> None:
    context.extras.pop(LOCATOR_KEY, None)  # the real city model, not the fake one
    load_toy_city(context)
    with context.db.session() as session:
        identity.create_department(
            session,
            code=TEAM,
            name="西街道城管中队",
            level=DepartmentLevel.STREET,
            district_code="310101",
            parent_code="310101-CGZF",
        )
        city_service.put_responsibility_grid(
            session,
            "RG-310101001-01",
            name="西街道第一责任网格",
            department_code=TEAM,
            grid_codes=[grid_code(1, 1), grid_code(2, 1)],
        )


def _dispatch(client: TestClient, people: People, x: float, y: float, code: str) -> dict[str, Any]:
    lon, lat = xy(x, y)
    case = report(client, people.operator, category_code=code, lon=lon, lat=lat)
    act(client, people.dispatcher, case["id"], "register")
    return act(client, people.dispatcher, case["id"], "dispatch")


def test_a_case_in_a_responsibility_grid_goes_to_its_team(
    client: TestClient, cases_context: AppContext, people: People
) -> None:
    _toy_city_with_team(cases_context)
    inside = _dispatch(client, people, 1.5, 1.5, "E0501")  # 乱设摊: {district}-CGZF
    assert inside["grid_code"] == grid_code(1, 1)
    assert (inside["department_code"], inside["level"]) == (TEAM, "street")
    detail = client.get(f"/api/cases/{inside['id']}", headers=people.dispatcher).json()
    dispatch = next(e for e in detail["events"] if e["action"] == "dispatch")
    assert dispatch["detail"]["responsibility"] == "RG-310101001-01"
    # The team sees and takes its case.
    team = people._login("team.hand", "handler", department=TEAM)
    act(client, team, inside["id"], "accept")

    # Outside any responsibility grid: the rule's department, as before.
    outside = _dispatch(client, people, 5.5, 1.5, "E0501")
    assert (outside["department_code"], outside["level"]) == ("310101-CGZF", "district")

    # Another line of business (上水井盖 → 水务, city level) is not the team's.
    water = _dispatch(client, people, 1.5, 1.5, "C0101")
    assert water["department_code"] == "SW"


def test_which_teams_match_a_rule() -> None:
    def dept(code: str, level: str, district: str | None) -> Department:
        return Department(code=code, name=code, level=level, district_code=district)

    street_team = dept(TEAM, "street", "310101")
    assert service.rule_domain("{district}-CGZF") == "CGZF"
    assert service.rule_domain("SW") == "SW"
    assert service.team_matches(street_team, "CGZF", "district", "310101")
    assert not service.team_matches(street_team, "CGZF", "district", "310104")  # other district
    assert not service.team_matches(street_team, "SW", "city", "310101")  # other business
    assert not service.team_matches(dept("CGZF", "city", None), "CGZF", "district", "310101")
    bureau = dept("310101-CGZF", "district", "310101")
    assert service.team_matches(bureau, "CGZF", "district", "310101")
    assert service.team_matches(street_team, "CGZF", "city", "310101")
