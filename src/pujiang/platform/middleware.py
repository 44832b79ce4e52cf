"""The outermost layer of every request: id, language, body limit, metrics, access log, audit.

A plain ASGI middleware (not BaseHTTPMiddleware) so streaming bodies are counted as they arrive
and an unexpected error still becomes a problem+json reply carrying the request id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

import anyio
import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pujiang.platform import audit
from pujiang.platform.db import Database
from pujiang.platform.errors import problem_body
from pujiang.platform.i18n import current_language, negotiate, translate
from pujiang.platform.logs import request_id_var

log = logging.getLogger("pujiang.http")

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class HttpMetrics:
    """Prometheus collectors in a registry of the app's own (tests build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pujiang_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pujiang_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.errors = Counter(
            "pujiang_http_errors",
            "HTTP replies with status >= 500",
            ["route"],
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "pujiang_audit_write_failures",
            "Audit entries that could not be written",
            registry=self.registry,
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def _outcome(status: int) -> audit.Outcome:
    if status < 400:
        return audit.Outcome.SUCCESS
    if status in (401, 403, 423, 429):
        return audit.Outcome.DENIED
    return audit.Outcome.FAILURE


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        db: Database,
        metrics: HttpMetrics,
        max_body_bytes: int,
        default_language: str,
    ) -> None:
        self.app = app
        self.db = db
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.default_language = default_language

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client_id = _header(scope, b"x-request-id")
        request_id = (
            client_id if client_id and _CLIENT_REQUEST_ID.match(client_id) else uuid.uuid4().hex
        )
        scope.setdefault("state", {})["request_id"] = request_id
        id_token = request_id_var.set(request_id)
        lang_token = current_language.set(
            negotiate(_header(scope, b"accept-language"), self.default_language)
        )
        started = time.perf_counter()
        status = 500
        response_started = False
        too_large = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if too_large and response_started:
                return  # the 413 has gone out; drop whatever the app still says
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        async def reject_too_large() -> None:
            nonlocal too_large
            if not response_started:
                detail = translate("error.body_too_large", limit=self.max_body_bytes)
                await self._problem(send_with_id, 413, "payload-too-large", scope, detail)
            too_large = True

        received = 0

        async def limited_receive() -> Message:
            # Count what arrives (a client may send no Content-Length); past the limit answer
            # 413 at once and tell the app the client left, so it stops reading.
            nonlocal received
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    await reject_too_large()
                    return {"type": "http.disconnect"}
            return message

        try:
            declared = _header(scope, b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await reject_too_large()
            else:
                await self.app(scope, limited_receive, send_with_id)
        except Exception:
            if not too_large:
                log.exception("unhandled error on %s %s", scope["method"], scope["path"])
                if not response_started:
                    detail = translate("error.internal", request_id=request_id)
                    await self._problem(send_with_id, 500, "internal-error", scope, detail)
        finally:
            elapsed = time.perf_counter() - started
            await self._after(scope, status, elapsed, request_id)
            request_id_var.reset(id_token)
            current_language.reset(lang_token)

    @staticmethod
    async def _problem(send: Send, status: int, slug: str, scope: Scope, detail: str) -> None:

        body = orjson.dumps(problem_body(status, slug, detail, scope.get("path")))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _after(self, scope: Scope, status: int, elapsed: float, request_id: str) -> None:
        method, route = scope["method"], _route_template(scope)
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(elapsed)
        if status >= 500:
            self.metrics.errors.labels(route).inc()
        log.info(
            "%s %s %s %.1fms",
            method,
            scope["path"],
            status,
            elapsed * 1000,
            extra={
                "method": method,
                "path": scope["path"],
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "route": route,
            },
        )
        if method in STATE_CHANGING and not getattr(scope.get("route"), "audit_exempt", False):
            await anyio.to_thread.run_sync(self._audit, scope, method, route, status, request_id)

    def _audit(self, scope: Scope, method: str, route: str, status: int, request_id: str) -> None:
        state: dict[str, Any] = scope.get("state", {})
        principal = state.get("principal")
        try:
            audit.record(
                self.db,
                actor=principal.actor if principal is not None else "anonymous",
                action=f"{method} {route}",
                target=str(state.get("audit_target") or scope["path"]),
                outcome=_outcome(status),
                request_id=request_id,
                detail={"status": status, **state.get("audit_detail", {})},
            )
        except Exception:
            self.metrics.audit_failures.inc()
            log.exception("could not write the audit entry for %s %s", method, scope["path"])
