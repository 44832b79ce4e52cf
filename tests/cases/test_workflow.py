"""The workflow through the API: every step, and every way a step is refused."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from pujiang.cases.workflow import TRANSITIONS, Action, State
from pujiang.platform.deps import AppContext
from pujiang.platform.models import AuditEntry
from tests.cases.conftest import XUHUI, Clock, People, act, report


def _photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), "green").save(out, "JPEG")
    return out.getvalue()


def _audit_actions(context: AppContext, case_id: int) -> list[str]:
    with context.db.session() as session:
        return list(
            session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.target == f"case:{case_id}")
                .order_by(AuditEntry.id)
            )
        )


def test_the_whole_way(
    client: TestClient, cases_context: AppContext, people: People, clock: Clock
) -> None:
    case = report(client, people.supervisor)
    case_id = case["id"]
    assert case["state"] == "reported"
    assert case["district_code"] == "310101"
    assert case["grid_code"] == "310101002001017"
    assert case["center_code"] == "310101-CYZX"
    assert case["tracking_id"].startswith("PJ")

    photo = client.post(
        f"/api/cases/{case_id}/files",
        files=[("files", ("stall.jpg", _photo(), "image/jpeg"))],
        data={"stage": "report"},
        headers=people.supervisor,
    )
    assert photo.status_code == 201, photo.text
    thumb = client.get(photo.json()[0]["thumbnail_url"], headers=people.dispatcher)
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/jpeg"

    act(client, people.dispatcher, case_id, "register", {"note": "符合立案标准"})
    dispatched = act(client, people.dispatcher, case_id, "dispatch")
    assert dispatched["department_code"] == "310101-CGZF"  # the class's rule
    assert dispatched["level"] == "district"

    act(client, people.handler, case_id, "accept")
    act(
        client, people.handler, case_id, "request-extension", {"hours": 7, "reason": "摊主拒不配合"}
    )
    pending = act(client, people.dispatcher, case_id, "approve-extension")
    assert pending["extension_pending_hours"] is None
    assert pending["extension_count"] == 1

    client.post(
        f"/api/cases/{case_id}/files",
        files=[("files", ("done.jpg", _photo(), "image/jpeg"))],
        data={"stage": "feedback"},
        headers=people.handler,
    ).raise_for_status()
    act(client, people.handler, case_id, "feedback", {"result": "摊点已取缔"})
    reworked = act(client, people.supervisor, case_id, "rework", {"reason": "现场仍有残留"})
    assert reworked["state"] == "handling"
    assert reworked["rework_count"] == 1
    act(client, people.handler, case_id, "feedback", {"result": "残留已清理"})
    act(client, people.supervisor, case_id, "verify", {"note": "现场核查通过"})
    closed = act(client, people.dispatcher, case_id, "close")
    assert closed["state"] == "closed"
    done = act(client, people.dispatcher, case_id, "evaluate", {"score": 5})
    assert done["state"] == "evaluated"
    assert done["allowed_actions"] == []
    assert [e["action"] for e in done["events"]] == [
        "report", "register", "dispatch", "accept", "request-extension", "approve-extension",
        "feedback", "rework", "feedback", "verify", "close", "evaluate",
    ]  # fmt: skip
    assert len(done["files"]) == 2
    actions = [a for a in _audit_actions(cases_context, case_id) if a.startswith("case.")]
    assert actions == [f"case.{e['action']}" for e in done["events"]]

    tracked = client.get(f"/api/cases/track/{case['tracking_id']}")
    assert tracked.status_code == 200
    assert tracked.json()["state"] == "evaluated"
    assert "reporter_phone" not in tracked.text


def test_manual_dispatch_return_and_redispatch(
    client: TestClient, cases_context: AppContext, people: People
) -> None:
    case_id = report(client, people.supervisor)["id"]
    act(client, people.dispatcher, case_id, "register")
    sent = act(client, people.dispatcher, case_id, "dispatch", {"department_code": "SCJG"})
    assert (sent["department_code"], sent["level"]) == ("SCJG", "city")
    # The handler of the district bureau no longer sees it; the city's market regulator would.
    act(client, people.handler, case_id, "accept", status=404)
    moved = act(
        client, people.dispatcher, case_id, "redispatch", {"department_code": "310101-CGZF"}
    )
    assert moved["department_code"] == "310101-CGZF"
    back = act(client, people.handler, case_id, "return", {"reason": "不属于本部门职责"})
    assert back["state"] == "registered"
    assert back["department_code"] == "310101-CYZX"
    act(client, people.handler, case_id, "accept", status=404)
    act(client, people.dispatcher, case_id, "dispatch", {"department_code": "NOPE"}, status=422)


def test_reject_and_leader_instruction(
    client: TestClient, cases_context: AppContext, people: People
) -> None:
    case_id = report(client, people.supervisor)["id"]
    act(client, people.dispatcher, case_id, "reject", {}, status=422)
    rejected = act(client, people.dispatcher, case_id, "reject", {"reason": "不在立案范围"})
    assert rejected["state"] == "rejected"
    order = report(client, people.dispatcher, source="leader", description="领导交办：整治乱设摊")
    assert order["state"] == "registered"
    refused = client.post(
        "/api/cases",
        json={"category_code": "E0501", "source": "leader", "address": "人民广场"},
        headers=people.supervisor,
    )
    assert refused.status_code == 403


def test_hotline_intake(client: TestClient, cases_context: AppContext, people: People) -> None:
    taken = client.post(
        "/api/cases",
        json={
            "category_code": "E0101",
            "source": "hotline",
            "request_type": "complaint",
            "description": "邻居在屋顶搭建违法建筑",
            "address": "徐汇区漕溪北路100弄",
            "lon": XUHUI[0],
            "lat": XUHUI[1],
            "reporter_name": "王小明",
            "reporter_phone": "+86 138-0013-8000",
        },
        headers=people.operator,
    )
    assert taken.status_code == 201, taken.text
    body = taken.json()
    assert body["request_type"] == "complaint"
    assert body["center_code"] == "310104-CYZX"
    assert body["reporter_phone"] == "138****8000"
    missing = client.post(
        "/api/cases",
        json={"category_code": "E0101", "source": "hotline", "address": "x"},
        headers=people.operator,
    )
    assert missing.status_code == 422


# -- every step refused for the wrong role, the wrong state, the wrong department -------------

BODIES: dict[Action, dict[str, Any]] = {
    Action.REJECT: {"reason": "x"},
    Action.RETURN: {"reason": "x"},
    Action.REWORK: {"reason": "x"},
    Action.MERGE: {"into": 1},
    Action.REQUEST_EXTENSION: {"hours": 2, "reason": "x"},
    Action.FEEDBACK: {"result": "done"},
    Action.EVALUATE: {"score": 4},
}


@pytest.mark.parametrize("action", list(Action))
def test_every_step_needs_its_permission(
    client: TestClient, cases_context: AppContext, people: People, action: Action
) -> None:
    case_id = report(client, people.supervisor)["id"]
    problem = act(client, people.citizen, case_id, action.value, BODIES.get(action), status=403)
    assert TRANSITIONS[action].permission in problem["detail"]


@pytest.mark.parametrize("action", list(Action))
def test_every_step_in_a_wrong_state(
    client: TestClient, cases_context: AppContext, people: People, action: Action
) -> None:
    case_id = report(client, people.supervisor)["id"]
    if State.REPORTED in TRANSITIONS[action].sources:
        act(client, people.dispatcher, case_id, "register")
    problem = act(client, people.admin, case_id, action.value, BODIES.get(action), status=409)
    assert problem["type"] == "/problems/conflict"
    assert problem["state"] in {"reported", "registered"}
    assert action.value not in problem["allowed_actions"]


def test_other_departments_neither_see_nor_act(
    client: TestClient, cases_context: AppContext, people: People
) -> None:
    case_id = report(client, people.supervisor)["id"]
    act(client, people.dispatcher, case_id, "register")
    act(client, people.dispatcher, case_id, "dispatch")
    assert client.get(f"/api/cases/{case_id}", headers=people.other_handler).status_code == 404
    listed = client.get("/api/cases", headers=people.other_handler).json()
    assert listed["items"] == []
    act(client, people.other_handler, case_id, "accept", status=404)
    # The center sees the case but is not the handling department: 403, saying whose step it is.
    problem = act(client, people.center_handler, case_id, "accept", status=403)
    assert "承办部门" in problem["detail"]
    english = client.post(
        f"/api/cases/{case_id}/accept", headers={**people.center_handler, "Accept-Language": "en"}
    )
    assert "handling department" in english.json()["detail"]
    # The handler may not do the center's steps even with a dispatcher's role elsewhere.
    act(client, people.handler, case_id, "verify", status=403)


def test_extension_needs_a_request_and_only_one(
    client: TestClient, cases_context: AppContext, people: People
) -> None:
    case_id = report(client, people.supervisor)["id"]
    act(client, people.dispatcher, case_id, "register")
    act(client, people.dispatcher, case_id, "dispatch")
    act(client, people.handler, case_id, "accept")
    act(client, people.dispatcher, case_id, "approve-extension", status=409)
    act(client, people.handler, case_id, "request-extension", {"hours": 3, "reason": "x"})
    act(client, people.handler, case_id, "request-extension", {"hours": 3, "reason": "x"}, 409)
    denied = act(client, people.dispatcher, case_id, "deny-extension")
    assert denied["extension_count"] == 0
    act(client, people.handler, case_id, "request-extension", {"hours": 500, "reason": "x"}, 422)
