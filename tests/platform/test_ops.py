"""Health, readiness and metrics."""

from __future__ import annotations

from fastapi.testclient import TestClient

from pujiang.platform import db as dbtools
from pujiang.platform.deps import AppContext


def test_metrics_count_requests_by_route(client: TestClient) -> None:
    client.get("/healthz")
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert 'pujiang_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "pujiang_http_request_duration_seconds_bucket" in text


def test_not_ready_when_migrations_are_behind(client: TestClient, context: AppContext) -> None:
    if not context.db.is_sqlite:
        # On PostgreSQL the per-run database is shared; test_migrations covers that dialect.
        return
    dbtools.downgrade(context.settings.database_url, "base")
    reply = client.get("/readyz")
    assert reply.status_code == 503
    assert reply.json()["checks"]["migrations_current"] is False
    assert client.get("/healthz").status_code == 200
