"""Interop: the unchanged `ngsildclient` from PyPI drives our broker over real HTTP.

ngsildclient 0.5.x pins `httpx<0.24` (for its async client), which cannot live beside our httpx,
so `make install` gives it a venv of its own, `.venv-interop` (override with
PUJIANG_INTEROP_PYTHON). Each test runs a short script with that interpreter against a uvicorn
server on a free port of 127.0.0.1 serving this test's database; the script prints JSON.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from pujiang.app import create_app
from pujiang.platform.deps import AppContext
from pujiang.settings import Settings
from tests.conftest import IN_CI, TEST_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
INTEROP_PYTHON = Path(
    os.environ.get("PUJIANG_INTEROP_PYTHON", str(ROOT / ".venv-interop" / "bin" / "python"))
)

PRELUDE = """
import json, os, sys
from requests.auth import AuthBase
from ngsildclient import Client, Entity

class Bearer(AuthBase):
    def __call__(self, request):
        request.headers["Authorization"] = "Bearer " + os.environ["TOKEN"]
        return request

client = Client(hostname="127.0.0.1", port=int(os.environ["PORT"]), custom_auth=Bearer(),
                verbose=False)
out = {}
"""


@pytest.fixture(scope="module")
def interop_python() -> Path:
    probe = [str(INTEROP_PYTHON), "-c", "import ngsildclient; print(ngsildclient.__version__)"]
    try:
        subprocess.run(probe, check=True, capture_output=True, timeout=60)  # noqa: S603
    except (OSError, subprocess.SubprocessError) as exc:
        message = f"ngsildclient in {INTEROP_PYTHON} is not usable ({exc}); run `make install`"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return INTEROP_PYTHON


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(settings: Settings, context: AppContext) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 serving this test's app; yields its base URL."""
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings, context), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start", pytrace=False)
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)


@pytest.fixture
def token(server: str, make_user: Callable[..., str]) -> str:
    make_user("steward", "data_steward")
    reply = httpx.post(
        f"{server}/api/auth/token", data={"username": "steward", "password": TEST_PASSWORD}
    )
    assert reply.status_code == 200, reply.text
    access: str = reply.json()["access_token"]
    return access


@pytest.fixture
def run_client(interop_python: Path, server: str, token: str) -> Callable[[str], dict[str, Any]]:
    """Run `code` after PRELUDE (a connected `client`) with the interop Python; returns `out`."""

    def run(code: str) -> dict[str, Any]:
        script = PRELUDE + textwrap.dedent(code) + "\nprint(json.dumps(out, default=str))\n"
        env = {**os.environ, "PORT": server.rsplit(":", 1)[1], "TOKEN": token}
        env.pop("PYTHONPATH", None)
        done = subprocess.run(  # noqa: S603 - our own script, our own interpreter
            [str(interop_python), "-c", script],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    return run


ENTITY = """
def station(n, pm25):
    e = Entity("AirQualityObserved", f"urn:ngsi-ld:AirQualityObserved:{n}")
    e.prop("pm25", pm25, unitcode="GQ")
    e.gprop("location", (31.23, 121.47 + n * 0.001))
    return e
"""


def test_create_and_retrieve(run_client: Callable[[str], dict[str, Any]]) -> None:
    out = run_client(
        ENTITY
        + """
out["created"] = client.create(station(1, 35))
got = client.get("urn:ngsi-ld:AirQualityObserved:1")
out["type"] = got.type
out["pm25"] = got["pm25.value"]
out["location"] = got["location.value"]
out["exists"] = client.exists("urn:ngsi-ld:AirQualityObserved:1")
out["missing"] = client.exists("urn:ngsi-ld:AirQualityObserved:404")
"""
    )
    assert out["created"] not in (None, False)
    assert out["type"] == "AirQualityObserved"
    assert out["pm25"] == 35
    assert out["location"]["coordinates"] == [121.471, 31.23]
    assert out["exists"] is True
    assert out["missing"] is False


def test_query_by_type_and_q(run_client: Callable[[str], dict[str, Any]]) -> None:
    out = run_client(
        ENTITY
        + """
for n, pm25 in [(1, 35), (2, 80), (3, 120)]:
    client.create(station(n, pm25))
out["all"] = sorted(e.id for e in client.query(type="AirQualityObserved"))
out["high"] = sorted(e.id for e in client.query(type="AirQualityObserved", q="pm25>50"))
out["count"] = client.count(type="AirQualityObserved", q="pm25>100")
"""
    )
    ids = [f"urn:ngsi-ld:AirQualityObserved:{n}" for n in (1, 2, 3)]
    assert out["all"] == ids
    assert out["high"] == ids[1:]
    assert out["count"] == 1


def test_batch_upsert(run_client: Callable[[str], dict[str, Any]]) -> None:
    out = run_client(
        ENTITY
        + """
first = client.upsert([station(n, 10 * n) for n in range(1, 6)])
out["first"] = [first.n_ok, first.n_err]
second = client.upsert([station(n, 99) for n in range(3, 8)])
out["second"] = [sorted(second.success), second.n_err]
out["pm25"] = sorted(
    (e.id, e["pm25.value"]) for e in client.query(type="AirQualityObserved", limit=100)
)
"""
    )
    assert out["first"] == [5, 0]
    # 201 lists only the entities the upsert created (ETSI GS CIM 009 §6.15.3.1): the client
    # counts those as its "success", the three replaced ones show in the query below.
    assert out["second"] == [[f"urn:ngsi-ld:AirQualityObserved:{n}" for n in (6, 7)], 0]
    expected = {n: (10 * n if n < 3 else 99) for n in range(1, 8)}
    assert out["pm25"] == [[f"urn:ngsi-ld:AirQualityObserved:{n}", v] for n, v in expected.items()]


def test_temporal(run_client: Callable[[str], dict[str, Any]]) -> None:
    out = run_client(
        ENTITY
        + """
client.create(station(1, 35))
for pm25 in (40, 45):
    e = station(1, pm25)
    client.update(e)
troes = client.temporal.get("urn:ngsi-ld:AirQualityObserved:1", attrs=["pm25"])
out["troes"] = troes
"""
    )
    troe = out["troes"]  # one entity: the client hands back its TRoE as is (a dict)
    assert troe["id"] == "urn:ngsi-ld:AirQualityObserved:1"
    values = [pair[0] for pair in troe["pm25"]["values"]]
    assert values == [35, 40, 45]


def test_subscription_create(run_client: Callable[[str], dict[str, Any]]) -> None:
    out = run_client(
        """
sub = {
    "id": "urn:ngsi-ld:Subscription:interop-1",
    "type": "Subscription",
    "entities": [{"type": "AirQualityObserved"}],
    "watchedAttributes": ["pm25"],
    "q": "pm25>75",
    "notification": {
        "endpoint": {"uri": "http://127.0.0.1:9/notify", "accept": "application/json"}
    },
    "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
}
out["id"] = client.subscriptions.create(sub)
out["exists"] = client.subscriptions.exists("urn:ngsi-ld:Subscription:interop-1")
out["listed"] = [s["id"] for s in client.subscriptions.list()]
"""
    )
    assert out["id"] == "urn:ngsi-ld:Subscription:interop-1"
    assert out["exists"] is True
    assert out["listed"] == ["urn:ngsi-ld:Subscription:interop-1"]


def test_the_client_keeps_its_own_httpx(interop_python: Path) -> None:
    """ngsildclient runs with the httpx it pins; our venv keeps ours."""
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [str(interop_python), "-c", "import httpx; print(httpx.__version__)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    theirs = tuple(int(p) for p in done.stdout.strip().split(".")[:2])
    ours = tuple(int(p) for p in httpx.__version__.split(".")[:2])
    assert theirs < (0, 24)
    assert ours >= (0, 27)
