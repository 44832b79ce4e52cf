"""Every error is problem+json naming what was wrong; no traceback; body limit; request ids."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from pujiang.app import create_app
from pujiang.platform.deps import AppContext, public
from pujiang.settings import Settings

PROBLEM = "application/problem+json"


def test_unknown_path_is_a_problem(client: TestClient) -> None:
    reply = client.get("/no/such/place")
    assert reply.status_code == 404
    assert reply.headers["content-type"] == PROBLEM
    assert reply.json()["type"] == "/problems/not-found"
    assert "/no/such/place" in reply.json()["detail"]


def test_wrong_method(client: TestClient) -> None:
    reply = client.delete("/healthz")
    assert reply.status_code == 405
    assert reply.json()["type"] == "/problems/method-not-allowed"


def test_unknown_field_is_rejected_and_named(
    client: TestClient, login: Callable[..., dict[str, str]]
) -> None:
    admin = login("root", "admin")
    reply = client.post(
        "/api/departments", json={"code": "X-1", "name": "x", "colour": "red"}, headers=admin
    )
    assert reply.status_code == 422
    body = reply.json()
    assert body["type"] == "/problems/validation-error"
    assert body["errors"][0]["field"] == "colour"
    assert body["errors"][0]["value"] == "red"
    assert "colour" in body["detail"]
    # Nothing was written.
    codes = [d["code"] for d in client.get("/api/departments", headers=admin).json()]
    assert "X-1" not in codes


def test_bad_value_names_field_and_value(
    client: TestClient, login: Callable[..., dict[str, str]]
) -> None:
    admin = login("root", "admin")
    reply = client.post(
        "/api/departments", json={"code": "X-1", "name": "x", "district_code": "31A"}, headers=admin
    )
    assert reply.status_code == 422
    assert "district_code" in reply.json()["detail"]
    assert "31A" in reply.json()["detail"]


def test_malformed_json(client: TestClient, login: Callable[..., dict[str, str]]) -> None:
    admin = login("root", "admin")
    reply = client.post(
        "/api/departments",
        content=b"{not json",
        headers={**admin, "Content-Type": "application/json"},
    )
    assert reply.status_code == 422
    assert reply.headers["content-type"] == PROBLEM


def test_body_over_the_limit_is_413(
    client: TestClient, context: AppContext, login: Callable[..., dict[str, str]]
) -> None:
    admin = login("root", "admin")
    too_big = b"x" * (context.settings.max_body_bytes + 1)
    reply = client.post("/api/departments", content=too_big, headers=admin)
    assert reply.status_code == 413
    assert reply.headers["content-type"] == PROBLEM
    assert str(context.settings.max_body_bytes) in reply.json()["detail"]


def test_streamed_body_over_the_limit_is_413(
    client: TestClient, context: AppContext, login: Callable[..., dict[str, str]]
) -> None:
    admin = login("root", "admin")
    chunk = b"y" * 65536

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
        for _ in range(context.settings.max_body_bytes // len(chunk) + 2):
            yield chunk

    reply = client.post("/api/departments", content=chunks(), headers=admin)
    assert reply.status_code == 413


@pytest.fixture
def crashing_client(settings: Settings, context: AppContext) -> Iterator[TestClient]:
    app = create_app(settings, context)

    @app.get("/test/crash", dependencies=[Depends(public)])
    def crash() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_unexpected_error_hides_the_traceback(crashing_client: TestClient) -> None:
    reply = crashing_client.get("/test/crash")
    assert reply.status_code == 500
    assert reply.headers["content-type"] == PROBLEM
    text = reply.text
    assert "hunter2" not in text
    assert "Traceback" not in text
    assert "RuntimeError" not in text
    request_id = reply.headers["x-request-id"]
    assert request_id in reply.json()["detail"]


def test_every_reply_has_a_request_id(client: TestClient) -> None:
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz").headers["x-request-id"]
    assert first
    assert second
    assert first != second
    given = client.get("/healthz", headers={"X-Request-ID": "trace-abc.123"})
    assert given.headers["x-request-id"] == "trace-abc.123"
    hostile = client.get("/healthz", headers={"X-Request-ID": "bad id\nwith newline"})
    assert hostile.headers["x-request-id"] != "bad id\nwith newline"
