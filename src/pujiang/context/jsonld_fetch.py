"""Remote @contexts fetched on first use, from the hosts an operator allows.

A request whose @context names a URL that is neither the core nor stored fails with 504
LdContextNotAvailable unless the setting `context_fetch_hosts` allows the URL's host: then the
document is downloaded once, checked, and kept as a Cached entry of the @context store (as
Orion-LD, Stellio and Scorpio do), so later requests never wait for the network.

What may be fetched is the operator's choice, since the URL comes from the client:

- a listed host (`smartdatamodels.org`, an intranet context server) is trusted as it is;
- `*` allows any host whose addresses are all public: a client cannot make the broker read
  the operator's own services (loopback, private, link-local, ...). The check is made before
  connecting; a name that resolves differently a moment later is not caught;
- http and https only; at most `MAX_REDIRECTS` redirects, each checked like the first URL;
  at most `MAX_BYTES`; the whole download within the timeout.

The document must be JSON with an `@context` member (any media type: raw.githubusercontent.com
serves contexts as text/plain), and that member a valid @context.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import orjson

from pujiang.context.jsonld import InvalidContext, check_context

MAX_BYTES = 1024 * 1024
MAX_REDIRECTS = 3
ANY_PUBLIC_HOST = "*"
_ACCEPT = "application/ld+json, application/json;q=0.9, */*;q=0.1"


class ContextFetchError(Exception):
    """Why a remote @context could not be used; the message is shown to the client."""


@dataclass(frozen=True)
class FetchPolicy:
    """Which remote @context URLs may be downloaded (setting `context_fetch_hosts`)."""

    hosts: frozenset[str] = frozenset()
    any_public: bool = False
    timeout: float = 5.0

    @classmethod
    def from_setting(cls, text: str, timeout: float = 5.0) -> FetchPolicy:
        """`text`: host names separated by commas, `*` for any public host, empty for none."""
        names = {part.strip().lower() for part in text.split(",") if part.strip()}
        return cls(frozenset(names - {ANY_PUBLIC_HOST}), ANY_PUBLIC_HOST in names, timeout)

    @property
    def enabled(self) -> bool:
        return bool(self.hosts) or self.any_public

    def check(self, url: str) -> None:
        """Raise ContextFetchError unless `url` may be fetched."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ContextFetchError(f"只能下载 http(s) URL / only http(s) URLs are fetched: {url}")
        host = parts.hostname.lower()
        if host in self.hosts:
            return
        if not self.any_public:
            raise ContextFetchError(
                f"主机 {host} 不在 context_fetch_hosts 之内 / the host {host} is not in "
                "context_fetch_hosts"
            )
        for address in _addresses(host, parts.port or (443 if parts.scheme == "https" else 80)):
            if not address.is_global:
                raise ContextFetchError(
                    f"主机 {host} 指向内部地址 {address}，未列入 context_fetch_hosts 不下载 / "
                    f"the host {host} has the non-public address {address}; list it in "
                    "context_fetch_hosts to allow it"
                )


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise ContextFetchError(f"无法解析主机 {host} / cannot resolve the host {host}") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def fetch_context(url: str, policy: FetchPolicy) -> Any:
    """The `@context` member of the JSON document at `url`, checked; ContextFetchError if it
    may not be fetched or is not a usable @context document."""
    deadline = time.monotonic() + policy.timeout
    with httpx.Client(follow_redirects=False, headers={"Accept": _ACCEPT}) as client:
        target = url
        for _ in range(MAX_REDIRECTS + 1):
            policy.check(target)
            status, location, body = _get(client, target, deadline)
            if status in (301, 302, 303, 307, 308) and location:
                target = urljoin(target, location)
                continue
            if status != 200:
                raise ContextFetchError(f"{target} 回应 HTTP {status} / {target} answered {status}")
            return _context_of(body, target)
    raise ContextFetchError(
        f"{url} 重定向超过 {MAX_REDIRECTS} 次 / {url} redirects more than {MAX_REDIRECTS} times"
    )


def _get(client: httpx.Client, url: str, deadline: float) -> tuple[int, str | None, bytes]:
    """(status, Location, body) of a GET, the body cut off at MAX_BYTES + 1."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise ContextFetchError(f"下载 {url} 超时 / fetching {url} timed out")
    try:
        with client.stream("GET", url, timeout=left) as reply:
            chunks: list[bytes] = []
            size = 0
            for chunk in reply.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BYTES:
                    raise ContextFetchError(
                        f"{url} 超过 {MAX_BYTES // 1024} KiB / {url} is larger than "
                        f"{MAX_BYTES // 1024} KiB"
                    )
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("deadline")
            return reply.status_code, reply.headers.get("location"), b"".join(chunks)
    except httpx.TimeoutException as exc:
        raise ContextFetchError(f"下载 {url} 超时 / fetching {url} timed out") from exc
    except httpx.HTTPError as exc:
        raise ContextFetchError(
            f"无法下载 {url}：{type(exc).__name__} / cannot fetch {url}: {type(exc).__name__}"
        ) from exc


def _context_of(body: bytes, url: str) -> Any:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ContextFetchError(f"{url} 不是 JSON / {url} is not JSON") from exc
    if not isinstance(document, dict) or "@context" not in document:
        raise ContextFetchError(
            f"{url} 不是含 @context 成员的 JSON 对象 / {url} is not a JSON object with an "
            "@context member"
        )
    value = document["@context"]
    try:
        check_context(value)
    except InvalidContext as exc:
        raise ContextFetchError(f"{url} 的 @context 无效：{exc} / invalid @context: {exc}") from exc
    return value
