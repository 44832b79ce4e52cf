"""Two people taking the same step of one case at the same moment: it is taken once."""

from __future__ import annotations

import threading
from typing import Any

from fastapi.testclient import TestClient

from pujiang.platform.deps import AppContext
from tests.cases.conftest import People, report

CASES = 12


def test_two_dispatchers_registering_one_case_at_once_register_it_once(
    client: TestClient, cases_context: AppContext, people: People
) -> None:
    case_ids = [report(client, people.supervisor)["id"] for _ in range(CASES)]
    headers = people.dispatcher
    with TestClient(client.app) as second:
        for case_id in case_ids:
            statuses = _at_once(
                [client, second],
                f"/api/cases/{case_id}/register",
                {"note": "符合立案标准"},
                headers,
            )
            assert sorted(statuses) == [200, 409], f"case {case_id}: {statuses}"


def _at_once(
    clients: list[TestClient], path: str, body: dict[str, Any], headers: dict[str, str]
) -> list[int]:
    """POST one request from each client at one moment; their status codes."""
    statuses: list[int] = []
    start = threading.Barrier(len(clients))

    def post(http: TestClient) -> None:
        start.wait()
        statuses.append(http.post(path, json=body, headers=headers).status_code)

    threads = [threading.Thread(target=post, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses
