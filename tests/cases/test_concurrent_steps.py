"""Two people taking the same step of one case at the same moment: it is taken once."""

from __future__ import annotations

import threading

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
            statuses: list[int] = []
            start = threading.Barrier(2)

            def register(http: TestClient, case_id: int = case_id) -> None:
                start.wait()
                reply = http.post(
                    f"/api/cases/{case_id}/register", json={"note": "符合立案标准"}, headers=headers
                )
                statuses.append(reply.status_code)

            threads = [threading.Thread(target=register, args=(c,)) for c in (client, second)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert sorted(statuses) == [200, 409], f"case {case_id}: {statuses}"
