"""Remote @contexts downloaded on first use from the hosts the settings allow, kept as Cached
entries, reloaded on request; every way a download can fail is a 504 naming the cause, with
nothing stored. The remote side is a real HTTP server on this machine."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from pujiang.context.jsonld_fetch import ContextFetchError, FetchPolicy
from pujiang.platform.deps import AppContext
from pujiang.settings import Settings
from tests.context.conftest import BASE, problem

WEATHER = "https://example.org/weather#"
ENTITY = {
    "id": "urn:ngsi-ld:WeatherObserved:remote-1",
    "type": "WeatherObserved",
    "temperature": {"type": "Property", "value": 21.5},
}


class ContextServer:
    """Serves @context documents (and broken ones) and counts the requests per path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.weather: dict[str, Any] = {"temperature": WEATHER + "temperature"}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                status, headers, body = server.answer(self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def answer(self, path: str) -> tuple[int, dict[str, str], bytes]:
        plain = {"Content-Type": "text/plain"}  # as raw.githubusercontent.com serves contexts
        if path == "/weather.jsonld":
            return 200, plain, orjson.dumps({"@context": self.weather})
        if path == "/nested.jsonld":
            inner = [self.url("/weather.jsonld"), {"humidity": WEATHER + "humidity"}]
            return 200, plain, orjson.dumps({"@context": inner})
        if path == "/moved":
            return 302, {"Location": "/weather.jsonld"}, b""
        if path == "/loop":
            return 302, {"Location": "/loop"}, b""
        if path == "/not-json":
            return 200, plain, b"<html>hello</html>"
        if path == "/no-context":
            return 200, plain, b'{"temperature": "x"}'
        if path == "/bad-context":
            return 200, plain, b'{"@context": 42}'
        if path == "/huge":
            return 200, plain, b'{"@context": {"a": "' + b"x" * (2 * 1024 * 1024) + b'"}}'
        if path == "/slow":
            time.sleep(2)
            return 200, plain, orjson.dumps({"@context": self.weather})
        return 404, plain, b"not found"

    def __enter__(self) -> ContextServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def remote() -> Iterator[ContextServer]:
    with ContextServer() as server:
        yield server


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"context_fetch_hosts": "127.0.0.1", "context_fetch_timeout": 1.0}
    )


def link(url: str) -> dict[str, str]:
    return {
        "Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    }


def test_a_remote_context_is_downloaded_once_and_kept_as_cached(
    client: TestClient, writer: dict[str, str], remote: ContextServer
) -> None:
    url = remote.url("/weather.jsonld")
    reply = client.post(f"{BASE}/entities", json=ENTITY, headers={**writer, **link(url)})
    assert reply.status_code == 201, reply.text
    entity_url = f"{BASE}/entities/{ENTITY['id']}"
    full = client.get(entity_url, headers=writer).json()
    assert WEATHER + "temperature" in full  # expanded with the downloaded context
    short = client.get(entity_url, headers={**writer, **link(url)}).json()
    assert short["temperature"]["value"] == 21.5
    assert remote.hits["/weather.jsonld"] == 1  # the second request used the stored copy
    listed = client.get(f"{BASE}/jsonldContexts", params={"details": "true"}, headers=writer)
    entry = next(e for e in listed.json() if e["URL"] == url)
    assert entry["kind"] == "Cached"
    assert entry["numberOfHits"] == 2


def test_redirects_and_nested_references_are_followed(
    client: TestClient, writer: dict[str, str], remote: ContextServer
) -> None:
    entity = {**ENTITY, "humidity": {"type": "Property", "value": 40}}
    headers = {**writer, **link(remote.url("/nested.jsonld"))}
    assert client.post(f"{BASE}/entities", json=entity, headers=headers).status_code == 201
    full = client.get(f"{BASE}/entities/{ENTITY['id']}", headers=writer).json()
    assert {WEATHER + "temperature", WEATHER + "humidity"} <= set(full)
    moved = client.get(
        f"{BASE}/entities/{ENTITY['id']}", headers={**writer, **link(remote.url("/moved"))}
    )
    assert moved.json()["temperature"]["value"] == 21.5


@pytest.mark.parametrize(
    ("path", "cause"),
    [
        ("/missing", "404"),
        ("/not-json", "not JSON"),
        ("/no-context", "@context member"),
        ("/bad-context", "invalid @context"),
        ("/huge", "larger than 1024 KiB"),
        ("/slow", "timed out"),
        ("/loop", "redirects more than 3 times"),
    ],
)
def test_a_failed_download_is_504_naming_the_cause_and_stores_nothing(
    client: TestClient, writer: dict[str, str], remote: ContextServer, path: str, cause: str
) -> None:
    url = remote.url(path)
    reply = client.post(f"{BASE}/entities", json=ENTITY, headers={**writer, **link(url)})
    detail = problem(reply, "LdContextNotAvailable", 504)["detail"]
    assert url in detail, detail
    assert cause in detail, detail
    assert client.get(f"{BASE}/entities/{ENTITY['id']}", headers=writer).status_code == 404
    assert url not in client.get(f"{BASE}/jsonldContexts", headers=writer).json()
    hits = remote.hits[path]
    again = client.post(f"{BASE}/entities", json=ENTITY, headers={**writer, **link(url)})
    problem(again, "LdContextNotAvailable", 504)
    assert remote.hits[path] == hits  # a failure is remembered, not retried at once


def test_a_host_not_allowed_is_not_contacted(
    client: TestClient, writer: dict[str, str], remote: ContextServer
) -> None:
    url = remote.url("/weather.jsonld", host="localhost")  # the same server under another name
    reply = client.post(f"{BASE}/entities", json=ENTITY, headers={**writer, **link(url)})
    detail = problem(reply, "LdContextNotAvailable", 504)["detail"]
    assert "context_fetch_hosts" in detail
    assert remote.hits["/weather.jsonld"] == 0


def test_reload_downloads_the_new_version(
    client: TestClient, writer: dict[str, str], remote: ContextServer
) -> None:
    url = remote.url("/weather.jsonld")
    assert (
        client.post(f"{BASE}/entities", json=ENTITY, headers={**writer, **link(url)}).status_code
        == 201
    )
    remote.weather = {"temperature": WEATHER + "airTemperature"}
    entity_url = f"{BASE}/entities/{ENTITY['id']}"
    stale = client.get(entity_url, headers={**writer, **link(url)}).json()
    assert "temperature" in stale  # the stored copy still maps the term to the old IRI
    reply = client.delete(
        f"{BASE}/jsonldContexts/{url.replace('/', '%2F')}",
        params={"reload": "true"},
        headers=writer,
    )
    assert reply.status_code == 204, reply.text
    fresh = client.get(entity_url, headers={**writer, **link(url)}).json()
    assert "temperature" not in fresh
    assert WEATHER + "temperature" in fresh
    assert remote.hits["/weather.jsonld"] == 2


def test_without_allowed_hosts_nothing_is_fetched(
    client: TestClient,
    writer: dict[str, str],
    remote: ContextServer,
    context: AppContext,
    settings: Settings,
) -> None:
    context.settings = settings.model_copy(update={"context_fetch_hosts": ""})
    url = remote.url("/weather.jsonld")
    reply = client.post(f"{BASE}/entities", json=ENTITY, headers={**writer, **link(url)})
    assert "context_fetch_hosts" in problem(reply, "LdContextNotAvailable", 504)["detail"]
    assert remote.hits["/weather.jsonld"] == 0


def test_any_public_host_excludes_internal_addresses() -> None:
    policy = FetchPolicy.from_setting(" * , intranet.example ")
    assert policy.any_public
    assert policy.hosts == {"intranet.example"}
    for url in ("http://127.0.0.1/c.jsonld", "https://10.1.2.3/c.jsonld", "http://[::1]:8080/c"):
        with pytest.raises(ContextFetchError, match="non-public address"):
            policy.check(url)
    with pytest.raises(ContextFetchError, match="only http"):
        policy.check("ftp://smartdatamodels.org/context.jsonld")
    policy.check("https://intranet.example/c.jsonld")  # listed: trusted without a lookup
    assert not FetchPolicy.from_setting("").enabled
