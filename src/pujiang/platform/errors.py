"""One error model for every client: RFC 9457 problem+json with a stable `type`.

Services raise `Problem`; the handlers installed by `install_error_handlers` turn it and
FastAPI's validation and HTTP errors into problem+json in the request's language. Anything
unexpected is caught by the request middleware, logged with the request id and answered with a
plain 500 problem: a traceback never reaches a client.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from pujiang.platform.i18n import EN, ZH, translate

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "/problems/"

_STATUS_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    503: "unavailable",
}


class Problem(Exception):
    """An error to show a client. `detail` is already in the request's language."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra
        self._message: tuple[str, dict[str, Any]] | None = None

    @classmethod
    def of(cls, status: int, slug: str, message_key: str, **params: Any) -> Problem:
        """A Problem whose detail is the catalogue message `message_key` filled with params."""
        problem = cls(status, slug, translate(message_key, **params))
        problem._message = (message_key, params)
        return problem

    def bilingual(self) -> str:
        """The detail as "中文 / English" where it came from the catalogue (for the command
        line, which has no request language); else as it was written."""
        if self._message is None:
            return self.detail
        key, params = self._message
        return f"{translate(key, ZH, **params)} / {translate(key, EN, **params)}"


def problem_body(
    status: int, slug: str, detail: str, instance: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": translate(f"problem.{slug}"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


def problem_response(
    status: int,
    slug: str,
    detail: str,
    *,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    instance = request.url.path if request is not None else None
    body = problem_body(status, slug, detail, instance, **extra)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field_name(loc: tuple[int | str, ...]) -> str:
    # Drop the "body"/"query" prefix a client never wrote, but keep it if it is all there is.
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts)


def describe_validation_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each pydantic error as {field, value, message} in the request's language."""
    described = []
    for err in errors:
        field = _field_name(tuple(err.get("loc", ())))
        value = err.get("input")
        kind = err.get("type", "")
        if kind == "missing":
            message = translate("error.field_missing", field=field)
            value = None
        elif kind == "extra_forbidden":
            message = translate("error.field_unknown", field=field, value=_short(value))
        elif kind == "json_invalid":
            reason = str(err.get("ctx", {}).get("error", err.get("msg", "")))
            message = translate("error.invalid_json", reason=reason)
        else:
            reason = str(err.get("msg", "")).removeprefix("Value error, ")
            message = translate(
                "error.field_invalid", field=field, value=_short(value), reason=reason
            )
        described.append({"field": field, "value": value, "message": message})
    return described


async def _problem_handler(request: Request, exc: Exception) -> Response:
    problem = cast(Problem, exc)
    return problem_response(
        problem.status,
        problem.slug,
        problem.detail,
        request=request,
        headers=problem.headers,
        **problem.extra,
    )


async def _validation_handler(request: Request, exc: Exception) -> Response:
    errors = describe_validation_errors(
        [dict(e) for e in cast(RequestValidationError, exc).errors()]
    )
    detail = "; ".join(e["message"] for e in errors)
    safe_errors = [{**e, "value": _jsonable(e["value"])} for e in errors]
    return problem_response(422, "validation-error", detail, request=request, errors=safe_errors)


def _jsonable(value: Any) -> Any:
    try:
        orjson.dumps(value)
    except TypeError:
        return repr(value)
    return value


async def _http_handler(request: Request, exc: Exception) -> Response:
    exc = cast(StarletteHTTPException, exc)
    status = exc.status_code
    slug = _STATUS_SLUGS.get(status, "bad-request" if status < 500 else "internal-error")
    if status == 404 and exc.detail == "Not Found":
        detail = translate("error.not_found_path", path=request.url.path)
    elif status == 405:
        detail = translate("error.method_not_allowed", path=request.url.path, method=request.method)
    else:
        detail = str(exc.detail)
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(status, slug, detail, request=request, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _problem_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
