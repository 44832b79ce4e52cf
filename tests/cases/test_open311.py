"""Open311 GeoReport v2: the unchanged PyPI client `georeport` reads; spec-style form POSTs write.

XML replies are parsed with the standard library: they come from our own test server.
"""

from __future__ import annotations

import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest
import requests
import uvicorn
from fastapi.testclient import TestClient
from georeport import GeoReport

from pujiang.app import create_app
from pujiang.platform import identity
from pujiang.platform.deps import AppContext
from pujiang.settings import Settings
from tests.cases.conftest import HUANGPU, People, act


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def base_url(settings: Settings, cases_context: AppContext) -> Iterator[str]:
    """The app served over real HTTP, for a client that speaks `requests`."""
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings, cases_context), host="127.0.0.1", port=port, log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/open311/v2"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def api_key(cases_context: AppContext) -> str:
    with cases_context.db.session() as session:
        app = identity.create_service_account(
            session, name="citizen-app", department_code="RX12345", roles=["citizen"]
        )
        _, key = identity.issue_api_key(session, app, label="test")
    return key


def _post(base: str, fmt: str = "json", **fields: str) -> httpx.Response:
    # Form-encoded, exactly as the spec's examples, including attribute[code].
    return httpx.post(f"{base}/requests.{fmt}", data=fields, timeout=10)


def test_discovery_and_services(base_url: str) -> None:
    client = GeoReport(base_url)
    services = client.get_service_list()
    assert len(services) >= 60
    by_code = {s["service_code"]: s for s in services}
    assert by_code["E0501"]["service_name"] == "乱设摊"
    assert by_code["E0501"]["metadata"] is True
    assert by_code["E0102"]["metadata"] is False
    definition = client.get_service_definition("C0102")
    assert definition["service_code"] == "C0102"
    attribute = definition["attributes"][0]
    assert (attribute["code"], attribute["datatype"], attribute["required"]) == (
        "damage",
        "singlevaluelist",
        True,
    )
    assert {v["key"] for v in attribute["values"]} >= {"missing", "broken"}
    xml = GeoReport(base_url, output_format="xml")
    assert len(xml.get_service_list()) == len(services)
    assert xml.get_service_definition("C0102")["attributes"]["attribute"]["code"] == "damage"
    discovery = httpx.get(f"{base_url}/discovery.xml")
    root = ET.fromstring(discovery.content)  # noqa: S314
    assert root.tag == "discovery"
    assert root.find("endpoints/endpoint/url").text == base_url  # type: ignore[union-attr]


def test_post_then_read_back(
    base_url: str, api_key: str, client: TestClient, people: People
) -> None:
    created = _post(
        base_url,
        api_key=api_key,
        service_code="C0102",
        lat=str(HUANGPU[1]),
        long=str(HUANGPU[0]),
        description="污水井盖缺失，很危险",
        email="lin@example.com",
        first_name="林",
        last_name="王",
        phone="13912345678",
        media_url="https://example.com/photo.jpg",
        **{"attribute[damage]": "missing"},
    )
    assert created.status_code == 200, created.text
    (answer,) = created.json()
    request_id, token = answer["service_request_id"], answer["token"]
    assert isinstance(request_id, str)
    reader = GeoReport(base_url)
    one = reader.get_service_request(request_id)
    assert one["status"] == "open"
    assert one["service_code"] == "C0102"
    assert one["media_url"] == "https://example.com/photo.jpg"
    assert one["lat"] == pytest.approx(HUANGPU[1])
    assert "13912345678" not in str(one)
    tokens = httpx.get(f"{base_url}/tokens/{token}.json").json()
    assert tokens == [{"service_request_id": request_id, "token": token}]
    # Staff see the reporter (masked) and the case goes the normal way.
    case = client.get(f"/api/cases/{request_id}", headers=people.dispatcher).json()
    assert case["source"] == "open311"
    assert case["reporter_name"] == "王*"
    case_id = int(request_id)
    act(client, people.dispatcher, case_id, "reject", {"reason": "已由水务部门处理"})
    closed = reader.get_service_requests(service_request_id=request_id)
    assert [(r["status"], r["extended_status"]) for r in closed] == [
        ("closed", "no_further_action")
    ]
    assert reader.get_service_requests(status="open") == []
    assert len(reader.get_service_requests(status="closed", service_code="C0102")) == 1
    xml_one = GeoReport(base_url, output_format="xml").get_service_request(request_id)
    assert xml_one["service_request_id"] == request_id
    updates = httpx.get(f"{base_url}/servicerequestupdates.json").json()
    assert [(u["service_request_id"], u["status"]) for u in updates] == [
        (request_id, "no_further_action")
    ]
    updates_xml = ET.fromstring(httpx.get(f"{base_url}/servicerequestupdates.xml").content)  # noqa: S314
    assert updates_xml.tag == "service_request_updates"
    assert updates_xml.find("request_update/status").text == "no_further_action"  # type: ignore[union-attr]


def test_anonymous_report_by_address(base_url: str, api_key: str) -> None:
    created = _post(base_url, "xml", api_key=api_key, service_code="E0201",
                    address_string="南京东路 100 号")  # fmt: skip
    assert created.status_code == 200, created.text
    root = ET.fromstring(created.content)  # noqa: S314
    assert root.tag == "service_requests"
    assert root.find("request/service_request_id").text  # type: ignore[union-attr]


def test_request_window_defaults_to_90_days(base_url: str) -> None:
    reader = GeoReport(base_url)
    assert reader.get_service_requests(start_date="2020-01-01T00:00:00Z") == []
    too_long = httpx.get(
        f"{base_url}/requests.json",
        params={"start_date": "2024-01-01T00:00:00Z", "end_date": "2024-06-01T00:00:00Z"},
    )
    assert too_long.status_code == 400


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_errors_in_the_spec_format(base_url: str, api_key: str, fmt: str) -> None:
    place = {"lat": str(HUANGPU[1]), "long": str(HUANGPU[0])}
    cases = [
        (403, {"api_key": "pjk_nope_nope", "service_code": "E0501", **place}),
        (403, {"service_code": "E0501", **place}),
        (404, {"api_key": api_key, "service_code": "X9999", **place}),
        (400, {"api_key": api_key, "service_code": "E0501"}),
        (400, {"api_key": api_key, **place}),
        (400, {"api_key": api_key, "service_code": "C0102", **place}),  # required attribute
        (400, {"api_key": api_key, "service_code": "C0102", "attribute[damage]": "gone", **place}),
        (400, {"api_key": api_key, "service_code": "E0501", "lat": "north", "long": "1"}),
        (400, {"api_key": api_key, "service_code": "E0501", "email": "not-mail", **place}),
    ]
    for status, fields in cases:
        reply = _post(base_url, fmt, **fields)
        assert reply.status_code == status, (fields, reply.text)
        if fmt == "json":
            (err,) = reply.json()
            assert err["code"] == status
            assert err["description"]
        else:
            root = ET.fromstring(reply.content)  # noqa: S314
            assert root.tag == "errors"
            assert root.find("error/code").text == str(status)  # type: ignore[union-attr]
    missing = httpx.get(f"{base_url}/requests/999999.{fmt}")
    assert missing.status_code == 404
    unknown = httpx.get(f"{base_url}/services/X9999.{fmt}")
    assert unknown.status_code == 404
    with pytest.raises(requests.HTTPError):
        GeoReport(base_url, output_format=fmt).get_service_definition("X9999")
    assert httpx.get(f"{base_url}/services.yaml").status_code == 400
    assert httpx.get(f"{base_url}/requests.{fmt}", params={"status": "maybe"}).status_code == 400
    assert httpx.get(f"{base_url}/requests.{fmt}", params={"start_date": "x"}).status_code == 400
