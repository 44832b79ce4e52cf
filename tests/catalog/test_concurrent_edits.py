"""Catalog edits that meet: two appends to one resource both count, and two decisions on one
sharing request give one decision and one conflict."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.catalog.conftest import PEOPLE_ROWS, bus_resource, csv_bytes, people_resource
from tests.catalog.test_data import GOOD, HEADER

ROUNDS = 6


def _at_once(*calls: Callable[[TestClient], Any], client: TestClient) -> list[Any]:
    """Run each call on its own client at one moment; their replies, in call order."""
    replies: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))
    with TestClient(client.app) as second:
        clients = [client, second]

        def run(i: int) -> None:
            start.wait()
            replies[i] = calls[i](clients[i % 2])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    return replies


def test_two_appends_at_once_both_count(
    client: TestClient, create: Callable[..., Any], steward: Callable[[str], dict[str, str]]
) -> None:
    create(bus_resource())
    headers = steward("JT")
    path = "/api/catalog/resources/bus-arrivals/data"

    def append(http: TestClient) -> Any:
        files = {"file": ("data.csv", csv_bytes([HEADER, *GOOD]))}
        return http.post(path, files=files, params={"append": "true"}, headers=headers)

    first = client.post(
        path, files={"file": ("d.csv", csv_bytes([HEADER, *GOOD]))}, headers=headers
    )
    assert first.status_code == 200, first.text
    for _ in range(ROUNDS):
        replies = _at_once(append, append, client=client)
        assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
    expected = len(GOOD) * (1 + 2 * ROUNDS)
    assert client.get(path, headers=headers).json()["total"] == expected
    resource = client.get("/api/catalog/resources/bus-arrivals", headers=headers).json()
    assert resource["row_count"] == expected  # the count the catalog shows agrees with the table


def test_approve_and_refuse_at_once_give_one_decision(
    client: TestClient,
    create: Callable[..., Any],
    upload: Callable[..., Any],
    steward: Callable[[str], dict[str, str]],
) -> None:
    create(people_resource())
    assert upload("clinic-visits", "WJ", csv_bytes(PEOPLE_ROWS)).status_code == 200
    consumer, provider = steward("CGZF"), steward("WJ")
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    for _ in range(ROUNDS):
        body = {
            "resource": "clinic-visits",
            "purpose": "核查住户就医情况",
            "fields": ["区", "年龄"],
        }
        reply = client.post("/api/sharing/requests", json=body, headers=consumer)
        assert reply.status_code == 201, reply.text
        base = f"/api/sharing/requests/{reply.json()['id']}"

        def approve(http: TestClient, base: str = base) -> Any:
            return http.post(f"{base}/approve", json={"expires_at": expires}, headers=provider)

        def refuse(http: TestClient, base: str = base) -> Any:
            return http.post(f"{base}/refuse", json={"reason": "用途不符"}, headers=provider)

        replies = _at_once(approve, refuse, client=client)
        statuses = sorted(r.status_code for r in replies)
        assert statuses == [200, 409], [r.text for r in replies]
        winner = next(r.json()["status"] for r in replies if r.status_code == 200)
        assert client.get(base, headers=provider).json()["status"] == winner
        if winner == "approved":  # so that the next round may ask again
            assert client.post(f"{base}/revoke", headers=provider).status_code == 200
