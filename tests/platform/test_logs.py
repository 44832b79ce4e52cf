"""Every log line of a request is JSON carrying that request's id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from pujiang.platform.logs import JsonFormatter


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("pujiang")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_access_line_is_json_with_the_request_id(
    client: TestClient, log_lines: io.StringIO
) -> None:
    reply = client.get("/healthz")
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    access = [line for line in lines if line.get("path") == "/healthz"]
    assert access, lines
    assert access[-1]["request_id"] == reply.headers["x-request-id"]
    assert access[-1]["status"] == 200
    assert access[-1]["level"] == "INFO"
