"""`pujiang demo` as a person runs it: it loads, serves, and the printed login works."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

DEMO_SECONDS = 240


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(
    bool(os.environ.get("PUJIANG_TEST_DATABASE_URL")),
    reason="the demo runs on SQLite; covered by the SQLite run",
)
def test_demo_serves_and_the_printed_login_works(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "PUJIANG_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "PUJIANG_PORT": str(port),
        "PUJIANG_VAR_DIR": str(tmp_path / "var"),
    }
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pujiang", "demo"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + DEMO_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"demo exited early:\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"demo not ready within {DEMO_SECONDS}s:\n{log.read_text()}")
        printed = log.read_text()
        assert f"{base}/docs" in printed
        match = re.search(r"^\s+admin\s+(\S+)", printed, re.MULTILINE)
        assert match, printed
        token = httpx.post(
            f"{base}/api/auth/token", data={"username": "admin", "password": match.group(1)}
        )
        assert token.status_code == 200, token.text
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        assert httpx.get(f"{base}/api/auth/me", headers=bearer).json()["roles"] == ["admin"]
        spec = httpx.get(f"{base}/openapi.json").json()
        assert "/api/auth/token" in spec["paths"]
    finally:
        process.terminate()
        process.wait(timeout=20)
