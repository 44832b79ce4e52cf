"""The catalogue through the API, and bad input on every route answered with problem+json."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from pujiang.platform.deps import AppContext
from tests.cases.conftest import People, report

NEW_CLASS = {
    "code": "E0699",
    "kind": "event",
    "major_name": "扩展事件",
    "name": "违规设置地锁",
    "register_standard": "在公共道路、小区公共区域擅自设置地锁",
    "close_standard": "地锁拆除",
    "time_limits": {"handle": 14},
    "dispatch_rule": {"department": "{district}-CGZF", "level": "street"},
}


def test_seed_catalogue_is_complete(
    client: TestClient, cases_context: AppContext, people: People
) -> None:
    rows = client.get("/api/cases/catalogue", headers=people.handler).json()
    assert len(rows) >= 60
    kinds = {(r["kind"], r["major_name"]) for r in rows}
    for major in (
        "公用设施",
        "道路交通",
        "市容环境",
        "园林绿化",
        "房屋土地",
        "其他设施",
        "扩展部件",
    ):
        assert ("component", major) in kinds
    for major in ("市容环境", "宣传广告", "施工管理", "街面秩序", "突发事件", "扩展事件"):
        assert ("event", major) in kinds
    for row in rows:
        assert row["register_standard"]
        assert row["close_standard"]
        assert set(row["time_limits"]) == {"register", "dispatch", "handle", "verify", "close"}
        assert row["dispatch_rule"]["level"] in {"street", "district", "city"}


def test_edit_the_catalogue(client: TestClient, cases_context: AppContext, people: People) -> None:
    made = client.post("/api/cases/catalogue", json=NEW_CLASS, headers=people.steward)
    assert made.status_code == 201, made.text
    assert made.json()["time_limits"]["handle"] == 14
    assert made.json()["time_limits"]["register"] == 1
    again = client.post("/api/cases/catalogue", json=NEW_CLASS, headers=people.steward)
    assert again.status_code == 409
    forbidden = client.post("/api/cases/catalogue", json=NEW_CLASS, headers=people.dispatcher)
    assert forbidden.status_code == 403
    changed = client.patch(
        "/api/cases/catalogue/E0699",
        json={"time_limits": {"verify": 2}, "active": False},
        headers=people.steward,
    )
    assert changed.status_code == 200
    assert changed.json()["time_limits"]["handle"] == 14
    assert changed.json()["time_limits"]["verify"] == 2
    retired = client.post(
        "/api/cases", json={"category_code": "E0699", "address": "x"}, headers=people.supervisor
    )
    assert retired.status_code == 404
    case = report(client, people.supervisor, category_code="C0101")
    assert case["category_name"] == "上水井盖"


def test_street_level_rule_and_city_departments(
    client: TestClient, cases_context: AppContext, people: People
) -> None:
    client.post("/api/cases/catalogue", json=NEW_CLASS, headers=people.steward).raise_for_status()
    case = report(client, people.supervisor, category_code="E0699")
    client.post(f"/api/cases/{case['id']}/register", headers=people.dispatcher).raise_for_status()
    sent = client.post(f"/api/cases/{case['id']}/dispatch", headers=people.dispatcher).json()
    assert (sent["department_code"], sent["level"]) == ("310101-CGZF", "street")
    gas = report(client, people.supervisor, category_code="E0403")
    client.post(f"/api/cases/{gas['id']}/register", headers=people.dispatcher).raise_for_status()
    sent = client.post(f"/api/cases/{gas['id']}/dispatch", headers=people.dispatcher).json()
    assert (sent["department_code"], sent["level"]) == ("RQ", "city")


BAD: list[tuple[str, str, Any, int]] = [
    ("post", "/api/cases/catalogue", {**NEW_CLASS, "code": "Z0101"}, 422),
    ("post", "/api/cases/catalogue", {**NEW_CLASS, "code": "C0699"}, 422),  # kind says event
    ("post", "/api/cases/catalogue", {**NEW_CLASS, "time_limits": {"handle": -1}}, 422),
    ("post", "/api/cases/catalogue", {**NEW_CLASS, "time_limits": {"later": 1}}, 422),
    ("post", "/api/cases/catalogue", {**NEW_CLASS, "colour": "red"}, 422),
    ("patch", "/api/cases/catalogue/E0501", {"duplicate_radius_m": 0}, 422),
    ("patch", "/api/cases/catalogue/X0000", {"name": "x"}, 404),
    ("get", "/api/cases/catalogue/X0000", None, 404),
    ("post", "/api/cases", {"category_code": "E0501"}, 422),  # no location
    ("post", "/api/cases", {"category_code": "E05", "address": "x"}, 422),
    ("post", "/api/cases", {"category_code": "E0501", "lon": 500, "lat": 31}, 422),
    ("post", "/api/cases", {"category_code": "E0501", "address": "x", "source": "tv"}, 422),
    (
        "post",
        "/api/cases",
        {"category_code": "E0501", "address": "x", "reporter_phone": "abc"},
        422,
    ),
    ("post", "/api/cases", {"category_code": "E0501", "address": "x", "reporter_email": "a@"}, 422),
    ("post", "/api/cases", {"category_code": "E0501", "address": "x", "secret": 1}, 422),
    ("post", "/api/cases", "not json", 422),
    ("get", "/api/cases?state=lost", None, 422),
    ("get", "/api/cases?limit=0", None, 422),
    ("get", "/api/cases?district=31", None, 422),
    ("get", "/api/cases?created_from=monday", None, 422),
    ("get", "/api/cases/abc", None, 422),
    ("get", "/api/cases/999999", None, 404),
    ("get", "/api/cases/999999/duplicates", None, 404),
    ("get", "/api/cases/{id}/files/999", None, 404),
    ("get", "/api/cases/track/PJNOTHING", None, 404),
    ("post", "/api/cases/{id}/register", {"note": 5}, 422),
    ("post", "/api/cases/{id}/register", {"unknown": 1}, 422),
    ("post", "/api/cases/{id}/reject", {}, 422),
    ("post", "/api/cases/{id}/merge", {"into": 0}, 422),
    ("post", "/api/cases/{id}/merge", {"into": 999999}, 409),
    ("post", "/api/cases/{id}/dispatch", {"level": "planet"}, 422),
    ("post", "/api/cases/{id}/evaluate", {"score": 9}, 422),
    ("post", "/api/cases/{id}/feedback", {"result": ""}, 422),
    ("post", "/api/cases/{id}/request-extension", {"hours": "long", "reason": "x"}, 422),
    ("post", "/api/cases/999999/register", None, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), BAD)
def test_bad_input_is_a_clear_problem(
    client: TestClient,
    cases_context: AppContext,
    people: People,
    method: str,
    path: str,
    body: Any,
    status: int,
) -> None:
    case = report(client, people.supervisor)
    url = path.replace("{id}", str(case["id"]))
    kwargs: dict[str, Any] = {"headers": people.admin}
    if isinstance(body, str):
        kwargs["content"] = body
        kwargs["headers"] = {**people.admin, "Content-Type": "application/json"}
    elif body is not None:
        kwargs["json"] = body
    reply = client.request(method.upper(), url, **kwargs)
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["detail"]


def test_bad_uploads(client: TestClient, cases_context: AppContext, people: People) -> None:
    case_id = report(client, people.supervisor)["id"]
    url = f"/api/cases/{case_id}/files"
    exe = client.post(url, files=[("files", ("a.jpg", b"MZ\x90\x00", "image/jpeg"))],
                      headers=people.supervisor)  # fmt: skip
    assert exe.status_code == 415
    stage = client.post(url, files=[("files", ("a.jpg", b"x", "image/jpeg"))],
                        data={"stage": "lunch"}, headers=people.supervisor)  # fmt: skip
    assert stage.status_code == 422
    handler_only = client.post(url, files=[("files", ("a.pdf", b"%PDF-1.4", "application/pdf"))],
                               data={"stage": "feedback"}, headers=people.supervisor)  # fmt: skip
    assert handler_only.status_code == 403
    assert client.post(url, headers=people.supervisor).status_code == 422
