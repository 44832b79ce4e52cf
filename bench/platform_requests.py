"""Kernel request overhead: what authentication and auditing cost per request.

Prints requests/s for a public route (the baseline), an authenticated read (JWT + principal
lookup) and an audited write, each measured in this run on a fresh SQLite database, and each
figure's ratio to the baseline.

    .venv/bin/python bench/platform_requests.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from pujiang.app import build_context, create_app
from pujiang.demo.seed import seed_departments
from pujiang.platform import db as dbtools
from pujiang.platform import identity
from pujiang.settings import Mode, Settings

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")


def rate(call: Callable[[int], object], seconds: float) -> float:
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        call(done)
        done += 1
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        dbtools.upgrade(url)
        settings = Settings(mode=Mode.TEST, database_url=url, secret_key=secrets.token_urlsafe(48))
        context = build_context(settings)
        with context.db.session() as session:
            seed_departments(session)
            identity.create_user(
                session,
                context,
                username="bench",
                password="bench-password-1",
                roles=["admin"],
                department_code="DSJ",
            )
        with TestClient(create_app(settings, context)) as client:
            token = client.post(
                "/api/auth/token", data={"username": "bench", "password": "bench-password-1"}
            )
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            base = rate(lambda _: client.get("/healthz"), args.seconds)
            authed = rate(lambda _: client.get("/api/auth/me", headers=headers), args.seconds)
            writes = rate(
                lambda n: client.post(
                    "/api/departments", headers=headers, json={"code": f"B-{n}", "name": f"部门{n}"}
                ),
                args.seconds,
            )
        context.db.dispose()
    print(f"public GET /healthz          {base:8.0f} req/s   (baseline)")
    print(f"authenticated GET /api/auth/me {authed:6.0f} req/s   ratio {authed / base:.2f}")
    print(f"audited POST /api/departments {writes:7.0f} req/s   ratio {writes / base:.2f}")


if __name__ == "__main__":
    main()
