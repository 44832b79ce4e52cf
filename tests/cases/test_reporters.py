"""Duplicates and merging, reporters' messages (SMTP), masking of personal data, sensor alerts."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from pujiang.cases import notify, open_case_from_alert, setup
from pujiang.cases.models import CaseMessage
from pujiang.cli import app as cli_app
from pujiang.platform.deps import AppContext
from pujiang.platform.models import AuditEntry
from pujiang.settings import Settings
from tests.cases.conftest import HUANGPU, Clock, People, act, report

NEAR = (HUANGPU[0] + 0.0003, HUANGPU[1])  # about 29 m east
FAR = (HUANGPU[0] + 0.001, HUANGPU[1])  # about 95 m east


def test_duplicates_are_flagged_within_radius_and_window(
    client: TestClient, cases_context: AppContext, people: People, clock: Clock
) -> None:
    first = report(client, people.supervisor)
    near = report(client, people.supervisor, lon=NEAR[0], lat=NEAR[1])
    far = report(client, people.supervisor, lon=FAR[0], lat=FAR[1])
    other_class = report(client, people.supervisor, category_code="E0102")
    assert near["duplicate_candidates"] == [first["id"]]
    assert far["duplicate_candidates"] == []
    assert other_class["duplicate_candidates"] == []
    listed = client.get(f"/api/cases/{near['id']}/duplicates", headers=people.dispatcher)
    assert [c["id"] for c in listed.json()] == [first["id"]]
    clock.now += timedelta(hours=25)
    later = report(client, people.supervisor)
    assert later["duplicate_candidates"] == []
    # The radius is the class's and can be changed at runtime.
    client.patch(
        "/api/cases/catalogue/E0501", json={"duplicate_radius_m": 200}, headers=people.steward
    ).raise_for_status()
    wide = report(client, people.supervisor, lon=FAR[0], lat=FAR[1])
    assert later["id"] in wide["duplicate_candidates"]


def test_merge_keeps_every_reporter_informed(
    client: TestClient, cases_context: AppContext, people: People
) -> None:
    first = report(client, people.operator, source="hotline", request_type="complaint",
                   reporter_phone="13800138000")  # fmt: skip
    second = report(client, people.operator, source="hotline", request_type="complaint",
                    lon=NEAR[0], lat=NEAR[1], reporter_email="li@example.com")  # fmt: skip
    act(client, people.dispatcher, second["id"], "merge", {"into": second["id"]}, status=422)
    merged = act(client, people.dispatcher, second["id"], "merge", {"into": first["id"]})
    assert merged["state"] == "merged"
    assert merged["duplicate_of"] == first["id"]
    act(client, people.dispatcher, first["id"], "register")
    act(client, people.dispatcher, first["id"], "dispatch")
    with cases_context.db.session() as session:
        rows = session.scalars(select(CaseMessage).order_by(CaseMessage.id)).all()
        to_li = [r for r in rows if r.recipient == "li@example.com"]
        to_phone = [r for r in rows if r.recipient == "13800138000"]
    assert len(to_li) == 4  # received, merged, and the master's registration and dispatch
    assert "合并" in to_li[-1].body
    assert second["tracking_id"] in to_li[-1].subject
    assert len(to_phone) == 3
    tracked = client.get(f"/api/cases/track/{second['tracking_id']}").json()
    assert tracked["merged_into"] == first["tracking_id"]
    assert tracked["state"] == "dispatched"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Inbox]]:
    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def test_outbox_is_sent_by_smtp(
    client: TestClient,
    cases_context: AppContext,
    people: People,
    smtp: tuple[int, _Inbox],
) -> None:
    port, inbox = smtp
    case = report(client, people.supervisor, reporter_email="zhang@example.com",
                  reporter_phone="13900139000")  # fmt: skip
    act(client, people.dispatcher, case["id"], "register")
    mail = notify.SmtpSender("127.0.0.1", port, "noreply@pujiang.test")
    memory = notify.MemorySender([])
    with cases_context.db.session() as session:
        sent, failed = notify.deliver(session, {"email": mail, "sms": memory})
    assert (sent, failed) == (4, 0)
    deadline = time.monotonic() + 5
    while len(inbox.messages) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [m.rcpt_tos for m in inbox.messages] == [["zhang@example.com"]] * 2
    text = inbox.messages[1].content.decode("utf-8", "replace")
    assert case["tracking_id"] in text
    assert [m.recipient for m in memory.sent] == ["13900139000"] * 2
    with cases_context.db.session() as session:
        assert notify.deliver(session, {"email": mail}) == (0, 0)  # nothing left


def test_failed_sends_stay_pending(
    client: TestClient, cases_context: AppContext, people: People
) -> None:
    report(client, people.supervisor, reporter_email="a@example.com")
    dead = notify.SmtpSender("127.0.0.1", _free_port(), timeout=1)
    with cases_context.db.session() as session:
        assert notify.deliver(session, {"email": dead}) == (0, 1)
    with cases_context.db.session() as session:
        row = session.scalars(select(CaseMessage)).one()
        assert row.sent_at is None
        assert row.attempts == 1
        assert row.last_error


def test_a_notify_run_sends_nothing_while_another_is_sending(
    client: TestClient,
    cases_context: AppContext,
    people: People,
    settings: Settings,
    smtp: tuple[int, _Inbox],
) -> None:
    """`pujiang cases notify` from cron may start while the previous run still sends (slow
    SMTP): it must not send the same pending messages a second time."""
    port, inbox = smtp
    report(client, people.supervisor, reporter_email="li@example.com")
    env = {
        "PUJIANG_DATABASE_URL": settings.database_url,
        "PUJIANG_MODE": "development",
        "PUJIANG_VAR_DIR": str(settings.var_dir),
    }
    command = ["cases", "notify", "--smtp-port", str(port)]
    with cases_context.db.single_run("cases-notify") as first:
        assert first
        second = CliRunner().invoke(cli_app, command, env=env)
        assert second.exit_code == 0, second.output
        assert "another notify run is still sending" in second.output
        with cases_context.db.session() as session:
            pending = session.scalars(select(CaseMessage)).one()
            assert (pending.sent_at, pending.attempts) == (None, 0)
    after = CliRunner().invoke(cli_app, command, env=env)
    assert after.exit_code == 0, after.output
    assert "sent 1, failed 0" in after.output
    deadline = time.monotonic() + 5
    while not inbox.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [m.rcpt_tos for m in inbox.messages] == [["li@example.com"]]


def test_personal_data_masked_and_unmasked_reads_audited(
    client: TestClient, cases_context: AppContext, people: People
) -> None:
    case = report(client, people.operator, source="hotline", request_type="report",
                  reporter_name="欧阳明月", reporter_phone="13800138000",
                  reporter_email="ouyang@example.com")  # fmt: skip
    seen = client.get(f"/api/cases/{case['id']}", headers=people.dispatcher).json()
    assert (seen["reporter_name"], seen["reporter_phone"], seen["reporter_email"]) == (
        "欧***",
        "138****8000",
        "o***@example.com",
    )
    listed = client.get("/api/cases", headers=people.dispatcher).json()["items"][0]
    assert listed["reporter_phone"] == "138****8000"
    full = client.get(f"/api/cases/{case['id']}", headers=people.admin).json()
    assert full["reporter_phone"] == "13800138000"
    with cases_context.db.session() as session:
        reads = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "personal_data.read")
        ).all()
    assert len(reads) == 1
    assert reads[0].actor == "user:root"
    assert reads[0].detail["records"] == [f"case:{case['id']}"]


def test_sensor_alerts_open_one_case_each(
    client: TestClient, cases_context: AppContext, people: People
) -> None:
    setup(cases_context)
    alert = {"id": "A-17", "kind": "waterlogging", "lon": HUANGPU[0], "lat": HUANGPU[1],
             "message": "积水深度 22 cm", "severity": "orange"}  # fmt: skip
    cases_context.bus.publish("alert.raised", alert)
    cases_context.bus.publish("alert.raised", alert)  # delivered twice
    listed = client.get("/api/cases?source=sensor", headers=people.dispatcher).json()["items"]
    assert len(listed) == 1
    assert listed[0]["category_code"] == "E0404"
    assert listed[0]["district_code"] == "310101"
    assert open_case_from_alert(cases_context, {"lon": 1}) is None  # no id: ignored
    unknown = open_case_from_alert(cases_context, {"id": "B", "case_category": "X9999"})
    assert unknown is None
