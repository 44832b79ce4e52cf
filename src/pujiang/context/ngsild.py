"""The NGSI-LD HTTP adapter (ETSI GS CIM 009 v1.8) under /ngsi-ld/v1.

Parses requests (tenant, @context from the Link header or the body, content negotiation,
`options`/`format`, query parameters), calls `ContextBroker` on the internal form, compacts the
reply with the request's @context, and answers every client error with the spec's
ProblemDetails (`https://uri.etsi.org/ngsi-ld/errors/<Type>`), never with a 500.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import quote, unquote, urlencode

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

from pujiang.context import jsonld, ngsild_join, ngsild_projection, ngsild_scope
from pujiang.context.entity_form import LOCATION, Entity, parse_time
from pujiang.context.errors import (
    AlreadyExists,
    BadData,
    BrokerError,
    InvalidRequest,
    NotFound,
    NotSupported,
    TooManyResults,
)
from pujiang.context.jsonld import (
    CORE_CONTEXT_URL,
    ActiveContext,
    ContextNotAvailable,
    ContextProcessor,
    InvalidContext,
    Renderer,
    expand_attribute,
    expand_entity,
    expand_instance,
    is_uri,
)
from pujiang.context.jsonld_fetch import ContextFetchError, FetchPolicy, fetch_context
from pujiang.context.models import ContextJsonld
from pujiang.context.ngsild_projection import Projection
from pujiang.context.queries import MAX_LIMIT
from pujiang.context.queries import Query as BrokerQuery
from pujiang.context.queries import Selector as EntitySelector
from pujiang.context.service import ContextBroker
from pujiang.context.writes import BatchResult
from pujiang.platform import roles
from pujiang.platform.deps import (
    PERMISSION_ATTR,
    AppContext,
    Context,
    authenticate_request,
    public,
    require,
)
from pujiang.platform.security import CurrentPrincipal

PREFIX = "/ngsi-ld/v1"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
JSON = "application/json"
LD_JSON = "application/ld+json"
GEO_JSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"
PROBLEM = "application/problem+json"
LINK_REL = "http://www.w3.org/ns/json-ld#context"
TENANT_HEADER = "NGSILD-Tenant"
BROKER_KEY = "context.broker"
PROCESSOR_KEY = "context.jsonld"
DEFAULT_LIMIT = 20

STATUS = {
    "BadRequestData": 400,
    "InvalidRequest": 400,
    "ResourceNotFound": 404,
    "NonexistentTenant": 404,
    "AlreadyExists": 409,
    "OperationNotSupported": 422,
    "TooManyResults": 403,
    "TooComplexQuery": 403,
    "LdContextNotAvailable": 504,  # v1.8.1 table 6.3.2-1 (504 Gateway Timeout)
    "NotAcceptable": 406,
    "UnsupportedMediaType": 415,
    "InternalError": 500,
}
TITLES = {
    "BadRequestData": "请求数据无效 / Bad request data",
    "InvalidRequest": "请求无效 / Invalid request",
    "ResourceNotFound": "资源不存在 / Resource not found",
    "NonexistentTenant": "租户不存在 / Nonexistent tenant",
    "AlreadyExists": "已存在 / Already exists",
    "OperationNotSupported": "不支持的操作 / Operation not supported",
    "TooManyResults": "结果过多 / Too many results",
    "LdContextNotAvailable": "@context 不可用 / LD context not available",
    "NotAcceptable": "无法提供所请求的格式 / Not acceptable",
    "UnsupportedMediaType": "不支持的内容类型 / Unsupported media type",
}
_TENANT = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


class NgsiLdError(Exception):
    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status or STATUS.get(kind, 400)


def problem_body(kind: str, detail: str, status: int | None = None, **extra: Any) -> dict[str, Any]:
    body = {
        "type": ERRORS + kind,
        "title": TITLES.get(kind, kind),
        "status": status or STATUS.get(kind, 400),
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem_response(kind: str, detail: str, status: int | None = None) -> Response:
    body = problem_body(kind, detail, status)
    return Response(orjson.dumps(body), status_code=body["status"], media_type=PROBLEM)


def _as_problem(exc: Exception) -> Response | None:
    if isinstance(exc, BrokerError):
        return problem_response(exc.kind, exc.message)
    if isinstance(exc, NgsiLdError):
        return problem_response(exc.kind, exc.message, exc.status)
    if isinstance(exc, ContextNotAvailable):
        if exc.reason:
            return problem_response(
                "LdContextNotAvailable",
                f"无法取得 @context {exc.url} / the @context {exc.url} cannot be retrieved: "
                f"{exc.reason}",
            )
        return problem_response(
            "LdContextNotAvailable",
            f"无法取得 @context {exc.url}：未存入，且未允许从其主机下载，请先经 /jsonldContexts "
            f"存入 / the @context {exc.url} cannot be retrieved: it is not stored and its host "
            "is not one to fetch from (setting context_fetch_hosts); store it first with POST "
            "/ngsi-ld/v1/jsonldContexts",
        )
    if isinstance(exc, InvalidContext):
        return problem_response("BadRequestData", f"@context 无效 / invalid @context: {exc}")
    if isinstance(exc, RequestValidationError):
        parts = []
        for error in exc.errors():
            loc = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path"))
            parts.append(f"{loc}: {error.get('msg', '')}")
        return problem_response(
            "BadRequestData", "参数无效 / invalid parameter: " + "; ".join(parts)
        )
    return None


# -- query parameter checks (clause 6.3.20) and IRIs in path segments ---------------------------

_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])
_TOLERATED: dict[Callable[..., Any], frozenset[str]] = {}
# Parameters the spec defines for (nearly) every operation that this broker accepts and ignores:
# `local` (clause 6.3.18: we never forward, so every operation is local) and `via` (v1.9).
DISTRIBUTION = ("local", "via")
# Spec-defined parameters of entity retrieval and query (tables 6.4.3.2-1, 6.5.3.1-1) that are
# accepted but not implemented (docs/context.md "Known gaps"): they do not change the reply.
NOT_IMPLEMENTED = (
    "csf",
    "entityMap",
    "geometryProperty",
    "orderBy",
    "expandValues",
    "jsonKeys",
)
RETRIEVE_NOT_IMPLEMENTED = (
    "type",
    "entityMap",
    "geometryProperty",
)


def checked_params(*tolerated: str) -> Callable[[_Endpoint], _Endpoint]:
    """Mark an operation whose query parameters are checked (clause 6.3.20): a parameter that
    neither its handler declares nor `tolerated` names (ones the spec defines for the operation
    that this broker accepts and ignores) is 400 InvalidRequest."""

    def mark(endpoint: _Endpoint) -> _Endpoint:
        _TOLERATED[endpoint] = frozenset(tolerated)
        return endpoint

    return mark


def _query_names(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def check_query_names(request: Request, allowed: frozenset[str]) -> None:
    unknown = sorted({name for name in request.query_params if name not in allowed})
    if unknown:
        names = ", ".join(unknown)
        raise NgsiLdError(
            "InvalidRequest",
            f"此操作不支持查询参数 {names}；可用 {', '.join(sorted(allowed)) or '（无）'} / the "
            f"query parameter(s) {names} are not defined for this operation; allowed: "
            f"{', '.join(sorted(allowed)) or '(none)'}",
        )


_SLASH = "\ue000"  # stands in for an encoded slash (%2F) of the raw path while routes match
_ENCODED_SLASH = re.compile("%2f", re.IGNORECASE)


def _slash_safe_path(scope: Scope) -> str | None:
    """The request path with each `%2F` of the raw path kept apart from real `/`s, so that an
    IRI in a path segment (`/types/https%3A%2F%2Fexample.org%2FT`) matches one parameter; None
    when the raw path holds no `%2F` (or cannot be lined up with the decoded path)."""
    raw = scope.get("raw_path")
    path: str = scope.get("path", "")
    if not isinstance(raw, bytes) or (b"%2F" not in raw and b"%2f" not in raw) or _SLASH in path:
        return None
    safe = unquote(_ENCODED_SLASH.sub(_SLASH, raw.decode("latin-1")))
    plain = safe.replace(_SLASH, "/")
    if not path.endswith(plain):
        return None
    return path[: len(path) - len(plain)] + safe


class NgsiLdRoute(APIRoute):
    """Turns broker, @context and parameter errors into NGSI-LD ProblemDetails; lets path
    parameters hold IRIs with percent-encoded slashes; checks the query parameters of the
    operations marked with `checked_params`."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        tolerated = _TOLERATED.get(endpoint)
        self.query_names: frozenset[str] | None = (
            None if tolerated is None else frozenset(_query_names(self.dependant) | tolerated)
        )

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        safe = _slash_safe_path(scope)
        if safe is None:
            return super().matches(scope)
        match, child = super().matches({**scope, "path": safe})
        params = child.get("path_params")
        if params:
            child["path_params"] = {
                k: v.replace(_SLASH, "/") if isinstance(v, str) else v for k, v in params.items()
            }
        return match, child

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                allowed = getattr(self, "query_names", None)  # set after APIRoute.__init__
                if allowed is not None:
                    check_query_names(request, allowed)
                return await handler(request)
            except Exception as exc:
                response = _as_problem(exc)
                if response is None:
                    raise
                return response

        return route


router = APIRouter(prefix=PREFIX, route_class=NgsiLdRoute, tags=["NGSI-LD"])

_bearer = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False)
_require_read = require(roles.CONTEXT_READ)


def read_access(
    request: Request,
    context: Context,
    token: Annotated[str | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> CurrentPrincipal | None:
    """`context.read`, or nobody at all for GET requests when `context_anonymous_read` is set.

    With anonymous reads on, a GET without credentials reads as `None`; one who sends a token or
    key is still authenticated (a bad one is 401) but needs no particular permission. Queries by
    POST (`/entityOperations/query`) always need `context.read`, like every write.
    """
    anonymous = context.settings.context_anonymous_read and request.method in {"GET", "HEAD"}
    if not anonymous:
        principal = authenticate_request(request, context, token, api_key)
        return _require_read(request, principal)
    if not token and not api_key:
        return None
    return authenticate_request(request, context, token, api_key)


setattr(read_access, PERMISSION_ATTR, roles.CONTEXT_READ)

Reader = Annotated[CurrentPrincipal | None, Depends(read_access)]
Writer = Annotated[CurrentPrincipal, Depends(require(roles.CONTEXT_WRITE))]


# -- the app's broker and @context processor ----------------------------------------------------


def broker_of(context: AppContext) -> ContextBroker:
    broker = context.extras.get(BROKER_KEY)
    if broker is None:
        broker = ContextBroker(context.db, context.bus)
        context.extras[BROKER_KEY] = broker
    return broker


def processor_of(context: AppContext) -> ContextProcessor:
    processor = context.extras.get(PROCESSOR_KEY)
    if processor is None:
        processor = ContextProcessor(
            _stored_resolver(context),
            on_uses=_record_uses(context),
            stamp=_store_stamp(context),
        )
        context.extras[PROCESSOR_KEY] = processor
    return processor


def _store_stamp(context: AppContext) -> Callable[[], object]:
    """What changes when any process adds, deletes or reloads a stored @context: the number
    of entries and the newest `created_at` (a reload stores the copy anew)."""

    def stamp() -> object:
        with context.db.session() as session:
            row = session.execute(select(func.count(), func.max(ContextJsonld.created_at))).one()
        return tuple(row)

    return stamp


def _stored_row(session: Any, url: str) -> Any:
    """(id, body) of the stored @context a URL names, or None."""
    row = session.execute(
        select(ContextJsonld.id, ContextJsonld.body).where(ContextJsonld.url == url)
    ).first()
    if row is None and f"{PREFIX}/jsonldContexts/" in url:
        # A hosted context by its relative path, or reached under another host name (a proxy):
        # its local id.
        local = unquote(url.rsplit("/jsonldContexts/", 1)[1]).removeprefix(LOCAL_ID_PREFIX)
        row = session.execute(
            select(ContextJsonld.id, ContextJsonld.body).where(ContextJsonld.id == local)
        ).first()
    return row


def _stored_resolver(context: AppContext) -> Callable[[str], Any]:
    """Stored @contexts by URL; an unknown URL is downloaded and stored as Cached when the
    settings allow its host (`jsonld_fetch`), else it is not available."""

    failed: dict[str, tuple[float, str]] = {}  # url -> (when, why): not retried for a while

    def resolve(url: str) -> Any:
        with context.db.session() as session:
            row = _stored_row(session, url)
        if row is not None:
            document = orjson.loads(row[1])
            return document.get("@context") if isinstance(document, dict) else document
        policy = _fetch_policy(context)
        if not policy.enabled:
            return None
        last = failed.get(url)
        if last is not None and time.monotonic() - last[0] < FETCH_RETRY_SECONDS:
            raise ContextNotAvailable(url, last[1])
        try:
            value = fetch_context(url, policy)
        except ContextFetchError as exc:
            if len(failed) > 1000:
                failed.clear()
            failed[url] = (time.monotonic(), str(exc))
            raise ContextNotAvailable(url, str(exc)) from None
        failed.pop(url, None)
        _store_download(context, url, value)
        return value

    return resolve


# A remote @context that could not be downloaded is not tried again for this long: every
# request naming it would otherwise wait for the same timeout.
FETCH_RETRY_SECONDS = 60


def _fetch_policy(context: AppContext) -> FetchPolicy:
    settings = context.settings
    return FetchPolicy.from_setting(settings.context_fetch_hosts, settings.context_fetch_timeout)


def _store_download(context: AppContext, url: str, value: Any) -> None:
    """Keep a downloaded @context as the Cached entry of its URL (unless a request that
    fetched it at the same moment stored it first)."""
    body = orjson.dumps({"@context": value}).decode()
    try:
        with context.db.session() as session:
            session.add(
                ContextJsonld(
                    id=secrets.token_hex(12),
                    tenant="",
                    url=url,
                    kind="Cached",
                    body=body,
                    created_at=datetime.now(UTC),
                    hits=0,
                )
            )
    except IntegrityError:
        pass  # stored by the other request


def _record_uses(context: AppContext) -> Callable[[dict[str, tuple[int, datetime]]], None]:
    """Write the uses the processor counted (`numberOfHits`, `lastUsage`) in one transaction:
    one UPDATE per stored @context used since the last flush, not one per request."""

    def record(uses: dict[str, tuple[int, datetime]]) -> None:
        with context.db.session() as session:
            for url, (hits, last) in uses.items():
                row = _stored_row(session, url)
                if row is None:  # deleted since
                    continue
                session.execute(
                    update(ContextJsonld)
                    .where(ContextJsonld.id == row[0])
                    .values(hits=ContextJsonld.hits + hits, last_used_at=last)
                )

    return record


# -- request parsing ----------------------------------------------------------------------------


async def raw_body(request: Request) -> bytes:
    return await request.body()


Body = Annotated[bytes, Depends(raw_body)]


@dataclass
class LdRequest:
    """What every NGSI-LD request carries besides its payload."""

    tenant: str
    ctx: ActiveContext
    context_url: str | None  # the Link header's context URL, if any
    accept: str
    broker: ContextBroker
    processor: ContextProcessor
    # For GeoJSON replies (clause 4.5.16.1): the `geometryProperty` and `datasetId` parameters.
    geometry_property: str | None = None
    geometry_datasets: str | None = None


def tenant_of(request: Request) -> str:
    tenant = request.headers.get(TENANT_HEADER)
    if tenant is None or tenant == "":
        return ""
    if not _TENANT.match(tenant):
        raise NgsiLdError(
            "BadRequestData",
            f"租户名 {tenant!r} 无效：只能含字母、数字、- 和 _，最长 64 / invalid tenant "
            f"{tenant!r}: use letters, digits, - and _, at most 64",
        )
    return tenant


def link_context(request: Request) -> str | None:
    """The @context URL of a JSON-LD Link header (rel=http://www.w3.org/ns/json-ld#context)."""
    header = request.headers.get("link")
    if not header:
        return None
    for match in _LINK.finditer(header):
        url, params = match.group(1).strip(), match.group(2)
        if LINK_REL in params:
            if not is_uri(url):
                raise NgsiLdError("BadRequestData", f"Link 头中的 @context 不是 URL：{url!r}")
            return url
    return None


def negotiate(request: Request, *, geo: bool = True) -> str:
    header = request.headers.get("accept", "")
    if not header.strip():
        return JSON
    offered = [JSON, LD_JSON] + ([GEO_JSON] if geo else [])
    best, best_q = None, -1.0
    for position, part in enumerate(header.split(",")):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        if media in ("*/*", "application/*"):
            candidate = JSON
        elif media in offered:
            candidate = media
        else:
            continue
        score = q - position * 1e-6
        if score > best_q:
            best, best_q = candidate, score
    if best is None:
        raise NgsiLdError(
            "NotAcceptable",
            f"无法提供 {header}；可选 {', '.join(offered)} / cannot answer in {header}; "
            f"offered: {', '.join(offered)}",
        )
    return best


def ld_request(request: Request, context: Context) -> LdRequest:
    """Tenant, Accept and the Link-header @context (GET, DELETE and application/json bodies)."""
    return _ld_request(request, context, geo=True)


def ld_request_no_geo(request: Request, context: Context) -> LdRequest:
    """As `ld_request`, for operations whose replies are not entities (`/types`,
    `/attributes`): GeoJSON is not offered (clause 6.3.15 applies it to entities only), so an
    Accept of `application/geo+json` alone is 406 NotAcceptable."""
    return _ld_request(request, context, geo=False)


def _ld_request(request: Request, context: Context, *, geo: bool) -> LdRequest:
    processor = processor_of(context)
    url = link_context(request)
    ctx = processor.active(url)
    return LdRequest(
        tenant=tenant_of(request),
        ctx=ctx,
        context_url=url,
        accept=negotiate(request, geo=geo),
        broker=broker_of(context),
        processor=processor,
        geometry_property=request.query_params.get("geometryProperty"),
        geometry_datasets=request.query_params.get("datasetId"),
    )


Ld = Annotated[LdRequest, Depends(ld_request)]
LdNoGeo = Annotated[LdRequest, Depends(ld_request_no_geo)]


def read_payload(
    request: Request, body: bytes, ld: LdRequest, *, merge: bool = False, batch: bool = False
) -> Any:
    """The JSON payload; for application/ld+json its @context replaces the Link one in `ld`.
    `merge`: a PATCH, which also takes application/merge-patch+json (clause 6.3.4), read as
    application/json (the @context from the Link header). `batch`: an array's items are
    checked one by one by the caller (an @context in one item of an application/json batch
    fails that entity, not the request)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    allowed = (JSON, LD_JSON, MERGE_PATCH) if merge else (JSON, LD_JSON)
    if media not in allowed:
        raise NgsiLdError(
            "UnsupportedMediaType",
            f"不支持的 Content-Type {media or '（空）'}，请用 {' 或 '.join(allowed)} / "
            f"unsupported Content-Type {media or '(none)'}; use {' or '.join(allowed)}",
        )
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NgsiLdError(
            "InvalidRequest", f"请求体不是有效的 JSON：{exc} / the body is not valid JSON: {exc}"
        ) from exc
    items = payload if isinstance(payload, list) else [payload]
    has_context = any(isinstance(i, dict) and "@context" in i for i in items)
    if media == LD_JSON:
        if ld.context_url is not None:
            raise NgsiLdError(
                "BadRequestData",
                "application/ld+json 请求的 @context 应在请求体中，不能再带 JSON-LD Link 头 / "
                "an application/ld+json request carries its @context in the body; drop the Link "
                "header",
            )
        if not isinstance(payload, list) and not has_context:
            raise NgsiLdError(
                "BadRequestData",
                "application/ld+json 请求体必须含 @context / an application/ld+json body must "
                "contain @context",
            )
        if isinstance(payload, dict):
            ld.ctx = ld.processor.active(payload["@context"])
    elif has_context and not (batch and isinstance(payload, list)):
        raise NgsiLdError(
            "BadRequestData",
            "application/json 请求体不能含 @context，请改用 Link 头或 application/ld+json / an "
            "application/json body must not contain @context: send it in a Link header or use "
            "application/ld+json",
        )
    return payload


def _entity_ctx(ld: LdRequest, item: Any) -> ActiveContext:
    if isinstance(item, dict) and "@context" in item:
        return ld.processor.active(item["@context"])
    return ld.ctx


def check_entity_id(entity_id: str) -> str:
    if not is_uri(entity_id):
        raise BadData(
            f"实体 id 必须是 URI：{entity_id!r} / the entity id must be a URI, not {entity_id!r}"
        )
    return entity_id


def check_attr_name(attr: str) -> str:
    """An attribute name in a path: BadRequestData when it is no valid name (a JSON-LD keyword
    such as `@invalid`, whitespace, ...), rather than 404 for an attribute never found."""
    jsonld.check_name(attr)
    if attr.startswith("@"):
        raise BadData(f"属性名 {attr} 无效 / invalid attribute name {attr}")
    return attr


def _options(options: str | None) -> set[str]:
    return {o.strip() for o in (options or "").split(",") if o.strip()}


# `options` and `format` values of entity retrieval and query (clauses 6.3.7, 6.3.11).
READ_OPTIONS = frozenset({"keyValues", "simplified", "concise", "normalized", "sysAttrs"})
READ_FORMATS = ("normalized", "concise", "simplified", "keyValues")
NO_OVERWRITE = frozenset({"noOverwrite"})  # append attributes, batch update


def check_options(options: str | None, allowed: frozenset[str]) -> set[str]:
    """The `options` values; 400 InvalidRequest for a value the operation does not support
    (clause 6.3.20), naming it and the ones it does."""
    opts = _options(options)
    unknown = opts - allowed
    if unknown:
        bad = ", ".join(sorted(unknown))
        raise InvalidRequest(
            f"此操作不支持 options 值 {bad}；可用 {', '.join(sorted(allowed))} / options value(s) "
            f"{bad} are not supported by this operation; use {', '.join(sorted(allowed))}"
        )
    return opts


def _renderer(
    ld: LdRequest,
    options: str | None,
    fmt: str | None,
    lang: str | None = None,
    pick: Any = None,
    omit: Any = None,
    attrs: Any = None,
) -> Renderer:
    opts = check_options(options, READ_OPTIONS)
    chosen = "normalized"
    if opts & {"keyValues", "simplified"}:
        chosen = "simplified"
    elif "concise" in opts:
        chosen = "concise"
    if fmt is not None:
        aliases = {"keyValues": "simplified", "simplified": "simplified"}
        if fmt not in READ_FORMATS:
            raise InvalidRequest(
                f"format 只能是 {'、'.join(READ_FORMATS)}，不是 {fmt!r} / format must be one of "
                f"{', '.join(READ_FORMATS)}, not {fmt!r}"
            )
        chosen = aliases.get(fmt, fmt)
    shown = projection(ld, pick, omit, attrs)
    return Renderer(
        ld.ctx,
        fmt=chosen,
        sys_attrs="sysAttrs" in opts,
        lang=lang,
        pick=None if shown.pick is None else set(shown.pick),
        omit=set(shown.omit),
    )


def projection(ld: LdRequest, pick: Any, omit: Any, attrs: Any = None) -> Projection:
    """`pick`/`omit` (clause 4.21; query-string text or the Query's string arrays) with the
    attribute names expanded; 400 BadRequestData when malformed, asking for Linked Entity
    retrieval, combined with `attrs`, or naming a member in both."""
    try:
        parsed = ngsild_projection.parse_projection(pick, omit, attrs_given=attrs is not None)
    except ngsild_projection.ProjectionError as exc:
        raise BadData(str(exc)) from exc
    return parsed.map_names(ld.ctx.expand)


# -- replies ------------------------------------------------------------------------------------


def _link_header(url: str | None) -> str:
    return f'<{url or CORE_CONTEXT_URL}>; rel="{LINK_REL}"; type="{LD_JSON}"'


def reply(
    ld: LdRequest,
    data: Any,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    geoproperty: str = LOCATION,
    renderer: Renderer | None = None,
) -> Response:
    """`data` (rendered entities or other reply bodies) in the negotiated representation.
    `geoproperty` and `renderer` are not used: a GeoJSON reply takes its geometry from the
    `geometryProperty` parameter (clause 4.5.16.1), not from the geo-query's `geoproperty`."""
    headers = dict(headers or {})
    context_value = ld.context_url or CORE_CONTEXT_URL
    if ld.accept == GEO_JSON:
        # GeoJSON-LD: the @context is in the body, once, on the FeatureCollection or Feature.
        data = {**_geojson(data, ld), "@context": context_value}
    elif ld.accept == LD_JSON:
        if isinstance(data, list):
            data = [{"@context": context_value, **d} if isinstance(d, dict) else d for d in data]
        elif isinstance(data, dict):
            data = {"@context": context_value, **data}
    else:
        link = _link_header(ld.context_url)
        headers["Link"] = f"{headers['Link']}, {link}" if "Link" in headers else link
    return Response(orjson.dumps(data), status_code=status, media_type=ld.accept, headers=headers)


def _geojson(data: Any, ld: LdRequest) -> dict[str, Any]:
    """The GeoJSON representation (clause 4.5.16) of rendered entities: one Feature, or a
    FeatureCollection for a list. `geometry` is the GeoProperty named by `geometryProperty`
    (default `location`): its default instance, or the instance of the requested `datasetId`;
    null when the entity lacks it or it holds no GeoJSON geometry. `properties` hold the
    entity's type and every attribute (the selected GeoProperty too) as rendered."""
    name = ld.geometry_property
    if name is not None:
        jsonld.check_name(name)
    short = ld.ctx.compact(LOCATION if name is None else ld.ctx.expand(name))
    wanted = parse_datasets(ld.geometry_datasets) or {""}

    def feature(entity: Any) -> dict[str, Any]:
        if not isinstance(entity, dict):
            return {"type": "Feature", "geometry": None, "properties": entity}
        geometry = next(
            (g for dataset, g in _geometry_instances(entity.get(short)) if dataset in wanted),
            None,
        )
        return {
            "id": entity.get("id"),
            "type": "Feature",
            "geometry": geometry if _is_geometry(geometry) else None,
            "properties": {k: v for k, v in entity.items() if k != "id"},
        }

    if isinstance(data, list):
        return {"type": "FeatureCollection", "features": [feature(e) for e in data]}
    return feature(data)


def _geometry_instances(member: Any) -> list[tuple[str, Any]]:
    """(datasetId, value) of each instance of a rendered GeoProperty ("" = default instance),
    whatever the format: normalized, concise (bare geometry or typeless instance) or
    simplified (bare geometry, or `{"dataset": {...}}` for several instances)."""
    if (
        isinstance(member, dict)
        and set(member) == {"dataset"}
        and isinstance(member["dataset"], dict)
    ):
        return [("" if k == "@none" else k, v) for k, v in member["dataset"].items()]
    found: list[tuple[str, Any]] = []
    for item in member if isinstance(member, list) else [member]:
        if not isinstance(item, dict):
            continue
        if item.get("type") in jsonld.GEOJSON_TYPES:
            found.append(("", item))
        elif item.get("type", "GeoProperty") == "GeoProperty" and "value" in item:
            found.append((str(item.get("datasetId") or ""), item["value"]))
    return found


def _is_geometry(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("type") in jsonld.GEOJSON_TYPES
        and isinstance(value.get("coordinates"), list)
    )


def no_content() -> Response:
    return Response(status_code=204)


def _update_result(result: Any, ctx: ActiveContext) -> Response:
    if not result.not_updated:
        return no_content()
    body = {
        "updated": [ctx.compact(n) for n in result.updated],
        "notUpdated": [
            {"attributeName": ctx.compact(name), "reason": reason}
            for name, reason in result.not_updated
        ],
    }
    return Response(orjson.dumps(body), status_code=207, media_type=JSON)


def _batch_error(entity_id: str, error: Exception) -> dict[str, Any]:
    kind = getattr(error, "kind", "BadRequestData")
    message = getattr(error, "message", str(error))
    return {"entityId": entity_id, "error": problem_body(kind, message)}


def _batch_reply(result: BatchResult, parse_errors: list[dict[str, Any]], *, ok: int) -> Response:
    errors = parse_errors + [_batch_error(eid, err) for eid, err in result.errors]
    if errors:
        body = {"success": result.success, "errors": errors}
        return Response(orjson.dumps(body), status_code=207, media_type=JSON)
    if ok == 201:
        return Response(orjson.dumps(result.created), status_code=201, media_type=JSON)
    return no_content()


# -- entities -----------------------------------------------------------------------------------


@router.post("/entities", status_code=201, summary="创建实体 / create an entity")
@checked_params(*DISTRIBUTION)
def create_entity(request: Request, ld: Ld, body: Body, principal: Writer) -> Response:
    payload = read_payload(request, body, ld)
    if not isinstance(payload, dict):  # not an entity at all: a malformed request (6.3.5)
        raise NgsiLdError(
            "InvalidRequest", "请求体必须是一个实体 JSON 对象 / the body must be one entity object"
        )
    entity = expand_entity(payload, ld.ctx)
    ld.broker.create(ld.tenant, entity, owner=principal.department_code)
    request.state.audit_target = entity["id"]
    return Response(status_code=201, headers=entity_location(entity["id"]))


def parse_types(text: str, ctx: ActiveContext) -> list[frozenset[str]]:
    """A type expression (`A,B`, `A|B`, `A;B`, parentheses) in disjunctive normal form."""
    tokens = re.findall(r"[(),;|]|[^(),;|]+", text.replace(" ", ""))
    position = 0

    def fail(why: str) -> NoReturn:
        raise BadData(f"type 表达式 {text!r} 无效：{why} / invalid type expression: {why}")

    def expr() -> list[frozenset[str]]:
        nonlocal position
        result = term()
        while position < len(tokens) and tokens[position] in ",|":
            position += 1
            result = result + term()
        return result

    def term() -> list[frozenset[str]]:
        nonlocal position
        result = factor()
        while position < len(tokens) and tokens[position] == ";":
            position += 1
            right = factor()
            result = [a | b for a in result for b in right]
        return result

    def factor() -> list[frozenset[str]]:
        nonlocal position
        if position >= len(tokens):
            fail("unexpected end")
        piece = tokens[position]
        position += 1
        if piece == "(":
            inner = expr()
            if position >= len(tokens) or tokens[position] != ")":
                fail("missing )")
            position += 1
            return inner
        if piece in "),;|":
            fail(f"unexpected {piece!r}")
        jsonld.check_name(piece)
        return [frozenset({ctx.expand(piece)})]

    if not tokens:
        fail("empty")
    result = expr()
    if position != len(tokens):
        fail(f"unexpected {tokens[position]!r}")
    if len(result) > 64:
        fail("too many alternatives")
    return result


def location(path: str) -> dict[str, str]:
    """A Location header for a created resource: ids may hold any Unicode (浦东), but a header
    is Latin-1, so the path is percent-encoded as a URI reference (RFC 3986)."""
    return {"Location": quote(path, safe="/:@!$&'()*+,;=~")}


def entity_location(entity_id: str, collection: str = "/entities/") -> dict[str, str]:
    """The Location of a created entity: its id as one path segment, a '/' in it as %2F (an
    IRI id such as https://example.org/e/1), so that the URL leads back to the entity."""
    return {"Location": quote(PREFIX + collection) + quote(entity_id, safe=":@!$&'()*+,;=~")}


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    return items or None


NONE_DATASET = "@none"  # the default instance in a `datasetId` list (clause 4.5.5)


def parse_datasets(value: Any) -> list[str] | None:
    """The `datasetId` parameter (clause 4.5.5) of entity and temporal reads: datasetIds (URIs)
    of the instances to show, `@none` for the default instance, as the `dataset_of` values to
    keep ("" = default), in order; None when absent. A query string gives comma-separated
    text, a Query body a non-empty array of strings; an empty item is an error."""
    if value is None:
        return None
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise BadData(
            "datasetId 必须是字符串或非空字符串数组 / datasetId must be a string or a non-empty "
            "array of strings"
        )
    chosen: list[str] = []
    for item in items:
        if item == NONE_DATASET:
            chosen.append("")
        elif is_uri(item):
            chosen.append(item)
        else:
            raise BadData(
                f"datasetId 必须是 URI 或 @none，不是 {item!r} / datasetId must be a URI or "
                f"@none, not {item!r}"
            )
    return list(dict.fromkeys(chosen))


def only_datasets(entity: Entity, datasets: Collection[str]) -> Entity:
    """The entity with only the attribute instances of `datasets` (clause 5.7.1/5.7.2
    `datasetId`); an attribute left with no instance is dropped, the entity itself stays."""
    out: Entity = {}
    for name, value in entity.items():
        if name in jsonld.ENTITY_MEMBERS or not isinstance(value, list):
            out[name] = value
            continue
        kept = [i for i in value if str(i.get("datasetId") or "") in datasets]
        if kept:
            out[name] = kept
    return out


# `id` and `type` are entity members, never attribute names (an `attrs` listing them is wrong).
_NOT_ATTRIBUTES = frozenset({"id", "type", "@id", "@type"})


def build_query(
    ld: LdRequest,
    *,
    id: str | None = None,
    id_pattern: str | None = None,
    type: str | None = None,
    attrs: list[str] | None = None,
    q: str | None = None,
    georel: str | None = None,
    geometry: str | None = None,
    coordinates: Any = None,
    geoproperty: str | None = None,
    scope_q: str | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    count: bool = False,
    require_filter: bool = True,
    local: bool = False,
    q_from_url: bool = False,
) -> BrokerQuery:
    query = BrokerQuery(limit=limit, offset=offset, count=count)
    if limit < 0 or offset < 0:
        raise BadData("limit 和 offset 不能为负 / limit and offset must not be negative")
    if limit > MAX_LIMIT:
        raise TooManyResults(
            f"limit 最大为 {MAX_LIMIT} / limit must not exceed {MAX_LIMIT}; page with offset"
        )
    if limit == 0 and not count:
        raise BadData("limit=0 只能与 count=true 一起用 / limit=0 needs count=true")
    if type:
        query.types = parse_types(type, ld.ctx)
    ids = _split(id)
    if ids:
        for entity_id in ids:
            check_entity_id(entity_id)
        query.ids = ids
    if id_pattern:
        query.id_pattern = checked_pattern(id_pattern)
    if attrs:
        for name in attrs:
            jsonld.check_name(name)
            if name in _NOT_ATTRIBUTES:
                raise BadData(
                    f"{name} 是实体成员而不是属性，不能用在 attrs 中 / {name} is an entity member, "
                    "not an attribute: it cannot be listed in attrs"
                )
        query.attrs = [ld.ctx.expand(a) for a in attrs]
    if q:
        query.q, query.q_evaluate, query.prefilter = _parse_q(q, ld.ctx, from_url=q_from_url)
    given = [p for p in (georel, geometry, coordinates) if p not in (None, "")]
    if given and len(given) < 3:
        raise BadData(
            "地理查询需要同时给出 georel、geometry 和 coordinates / a geo-query needs georel, "
            "geometry and coordinates together"
        )
    if given:
        query.geo = parse_geo(georel, geometry, coordinates, geoproperty, ld.ctx)
    if scope_q is not None:
        query.scope = parse_scope(scope_q)
    # Clause 5.7.2: a query names a type, attrs, q or a geo-query (or scopeQ, idPattern), or
    # asks for local=true; a list of ids alone is not enough.
    if require_filter and not (type or attrs or q or given or id_pattern or scope_q or local):
        raise BadData(
            "查询实体至少需要 type、attrs、q、idPattern、scopeQ、地理查询之一或 local=true / "
            "querying entities needs at least one of type, attrs, q, idPattern, scopeQ, "
            "a geo-query or local=true"
        )
    return query


def checked_pattern(id_pattern: str) -> str:
    try:
        re.compile(id_pattern)
    except re.error as exc:
        raise BadData(f"idPattern 不是有效的正则：{exc} / idPattern is not a regex: {exc}") from exc
    return id_pattern


def selector_members(item: Any, position: int) -> dict[str, Any]:
    """An item of a POST query's `entities` (EntitySelector, clause 5.2.33), its members
    checked for their JSON types."""
    if not isinstance(item, dict):
        raise BadData(f"entities[{position}] 必须是对象 / entities[{position}] must be an object")
    for member in ("id", "idPattern", "type"):
        if member in item and not isinstance(item[member], str):
            raise BadData(
                f"entities[{position}] 的 {member} 必须是字符串 / the {member} of "
                f"entities[{position}] must be a string"
            )
    return item


def query_selectors(
    ld: LdRequest, payload: dict[str, Any]
) -> tuple[dict[str, Any], list[EntitySelector]]:
    """A POST query's `entities`: one selector's members (an ordinary query's id, idPattern
    and type), or, for several, the alternatives (the members dict then empty)."""
    selectors = payload.get("entities") or []
    if not isinstance(selectors, list):
        raise BadData("entities 必须是数组 / entities must be an array of entity selectors")
    if len(selectors) > 1:
        return {}, [entity_selector(ld, item, n) for n, item in enumerate(selectors)]
    return (selector_members(selectors[0], 0) if selectors else {}), []


def entity_selector(ld: LdRequest, item: Any, position: int) -> EntitySelector:
    """One of several selectors: each must narrow (alone, the Query's other members may)."""
    item = selector_members(item, position)
    if not any(item.get(member) for member in ("id", "idPattern", "type")):
        raise BadData(
            f"entities[{position}] 须给出 type、id 或 idPattern / entities[{position}] needs a "
            "type, id or idPattern"
        )
    ids = _split(item.get("id")) or []
    for entity_id in ids:
        check_entity_id(entity_id)
    pattern = item.get("idPattern")
    return EntitySelector(
        types=parse_types(item["type"], ld.ctx) if item.get("type") else None,
        ids=ids or None,
        id_pattern=checked_pattern(pattern) if pattern else None,
    )


def parse_scope(text: Any) -> ngsild_scope.ScopeExpr:
    """A scopeQ (clause 4.19); BadRequestData naming the fault and its position."""
    if not isinstance(text, str):
        raise BadData("scopeQ 必须是字符串 / scopeQ must be a string")
    try:
        return ngsild_scope.parse_scope_q(text)
    except ValueError as exc:
        raise BadData(f"scopeQ 无效：{exc} / invalid scopeQ: {exc}") from exc


def _parse_q(text: str, ctx: ActiveContext, *, from_url: bool = False) -> tuple[Any, Any, Any]:
    """`from_url`: the q of a URL query string, which may have been percent-encoded twice
    (`ngsild_q.parse_url_q`); a q in a JSON body is never percent-encoded."""
    try:
        from pujiang.context import ngsild_q  # the query-language engineer's module
    except ImportError as exc:  # pragma: no cover - until ngsild_q.py lands
        raise NotSupported("q 查询暂不可用 / q queries are not available yet") from exc
    try:
        parse = ngsild_q.parse_url_q if from_url else ngsild_q.parse_q
        expr = parse(text).map_names(ctx.expand)
    except ValueError as exc:
        raise BadData(f"q 无效：{exc} / invalid q: {exc}") from exc
    prefilter = ngsild_q.sql_prefilter(expr)
    return expr, ngsild_q.evaluate, prefilter


def parse_geo(
    georel: Any, geometry: Any, coordinates: Any, geoproperty: str | None, ctx: ActiveContext
) -> Any:
    try:
        from pujiang.context import ngsild_geo  # the geo engineer's module
    except ImportError as exc:  # pragma: no cover - until ngsild_geo.py lands
        raise NotSupported("地理查询暂不可用 / geo-queries are not available yet") from exc
    prop = ctx.expand(geoproperty) if geoproperty else LOCATION
    try:
        return ngsild_geo.parse_geoquery(georel, geometry, coordinates, prop)
    except ValueError as exc:
        raise BadData(f"地理查询无效：{exc} / invalid geo-query: {exc}") from exc


def _page_links(
    request: Request, offset: int, limit: int, has_next: bool, media_type: str | None = None
) -> str | None:
    """The `Link` header of a page (clause 6.3.10): `prev` and `next` on the route's own path
    (without a trailing slash the request may have had), typed with the reply's media type."""
    links = []
    params = dict(request.query_params)
    path = request.url.path.rstrip("/") or "/"
    kind = f'; type="{media_type}"' if media_type else ""

    def url(new_offset: int) -> str:
        return f"{path}?{urlencode({**params, 'offset': new_offset, 'limit': limit})}"

    if offset > 0 and limit > 0:
        links.append(f'<{url(max(0, offset - limit))}>; rel="prev"{kind}')
    if has_next:
        links.append(f'<{url(offset + limit)}>; rel="next"{kind}')
    return ", ".join(links) or None


def _joined(
    ld: LdRequest, entities: list[Entity], renderer: Renderer, linked: ngsild_join.Plan | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The entities rendered, with their linked entities per `join` (clause 4.5.23): inline in
    the first list, or (flat) in the second, read from the same tenant."""
    fetch = ngsild_join.broker_fetch(ld.broker, ld.tenant)
    return ngsild_join.render(entities, renderer, linked or ngsild_join.Plan(), fetch)


def _query_reply(
    request: Request,
    ld: LdRequest,
    query: BrokerQuery,
    renderer: Renderer,
    geoproperty: str | None = None,
    datasets: Collection[str] | None = None,
    linked: ngsild_join.Plan | None = None,
) -> Response:
    wanted = query.limit
    query.limit = wanted + 1 if wanted else 0
    entities, total = ld.broker.query(ld.tenant, query)
    has_next = len(entities) > wanted
    entities = entities[:wanted]
    if query.attrs is not None:
        keep = set(query.attrs)
        entities = [
            {k: v for k, v in e.items() if k in jsonld.ENTITY_MEMBERS or k in keep}
            for e in entities
        ]
    if datasets is not None:
        entities = [only_datasets(e, datasets) for e in entities]
    headers: dict[str, str] = {}
    if total is not None:
        headers["NGSILD-Results-Count"] = str(total)
    links = _page_links(request, query.offset, wanted, has_next, ld.accept)
    if links:
        headers["Link"] = links
    data, appended = _joined(ld, entities, renderer, linked)
    data += appended  # join=flat: the linked entities follow the page (clause 4.5.23.3)
    prop = ld.ctx.expand(geoproperty) if geoproperty else LOCATION
    return reply(ld, data, headers=headers, geoproperty=prop, renderer=renderer)


@router.get("/entities", summary="查询实体 / query entities")
@checked_params(*DISTRIBUTION, *NOT_IMPLEMENTED)
def query_entities(
    request: Request,
    ld: Ld,
    _: Reader,
    id: str | None = None,
    idPattern: str | None = None,  # noqa: N803 - the NGSI-LD parameter name
    type: str | None = None,
    attrs: str | None = None,
    pick: str | None = None,
    omit: str | None = None,
    q: str | None = None,
    georel: str | None = None,
    geometry: str | None = None,
    coordinates: str | None = None,
    geoproperty: str | None = None,
    scopeQ: str | None = None,  # noqa: N803 - the NGSI-LD parameter name
    limit: Annotated[int, Query()] = DEFAULT_LIMIT,
    offset: Annotated[int, Query()] = 0,
    count: bool = False,
    options: str | None = None,
    format: str | None = None,
    lang: str | None = None,
    datasetId: str | None = None,  # noqa: N803 - the NGSI-LD parameter name
    join: str | None = None,
    joinLevel: str | None = None,  # noqa: N803 - the NGSI-LD parameter name
    containedBy: str | None = None,  # noqa: N803 - the NGSI-LD parameter name
    local: bool = False,
) -> Response:
    linked = ngsild_join.plan(join, joinLevel, containedBy, pick, omit, ld.ctx.expand)
    renderer = _renderer(ld, options, format, lang, linked.pick, linked.omit, attrs)
    datasets = parse_datasets(datasetId)
    query = build_query(
        ld,
        id=id,
        id_pattern=idPattern,
        type=type,
        attrs=_split(attrs),
        q=q,
        georel=georel,
        geometry=geometry,
        coordinates=coordinates,
        geoproperty=geoproperty,
        scope_q=scopeQ,
        limit=limit,
        offset=offset,
        count=count,
        local=local,
        q_from_url=True,
    )
    return _query_reply(request, ld, query, renderer, geoproperty, datasets, linked)


@router.get("/entities/{entity_id}", summary="读取实体 / retrieve an entity")
@checked_params(*DISTRIBUTION, *RETRIEVE_NOT_IMPLEMENTED)
def retrieve_entity(
    entity_id: str,
    ld: Ld,
    _: Reader,
    attrs: str | None = None,
    pick: str | None = None,
    omit: str | None = None,
    options: str | None = None,
    format: str | None = None,
    lang: str | None = None,
    geoproperty: str | None = None,
    datasetId: str | None = None,  # noqa: N803 - the NGSI-LD parameter name
    join: str | None = None,
    joinLevel: str | None = None,  # noqa: N803 - the NGSI-LD parameter name
    containedBy: str | None = None,  # noqa: N803 - the NGSI-LD parameter name
) -> Response:
    check_entity_id(entity_id)
    linked = ngsild_join.plan(join, joinLevel, containedBy, pick, omit, ld.ctx.expand)
    renderer = _renderer(ld, options, format, lang, linked.pick, linked.omit, attrs)
    datasets = parse_datasets(datasetId)
    entity = ld.broker.retrieve(ld.tenant, entity_id)
    wanted = _split(attrs)
    if wanted:
        keep = {ld.ctx.expand(a) for a in wanted}
        if not keep & (entity.keys() - jsonld.ENTITY_MEMBERS):
            # Clause 5.7.1: an entity holding none of the requested attributes is not found.
            raise NotFound(
                f"实体 {entity_id} 没有所请求的属性 / entity {entity_id} has none of the "
                "requested attributes",
                id=entity_id,
            )
        entity = {k: v for k, v in entity.items() if k in jsonld.ENTITY_MEMBERS or k in keep}
    if datasets is not None:
        entity = only_datasets(entity, datasets)
    prop = ld.ctx.expand(geoproperty) if geoproperty else LOCATION
    (shown,), appended = _joined(ld, [entity], renderer, linked)
    if not shown:  # pick/omit left no member of the entity
        raise NotFound(
            f"实体 {entity_id} 在 pick/omit 之后没有剩余成员 / nothing of entity {entity_id} "
            "is left after pick/omit",
            id=entity_id,
        )
    # join=flat: an array of the entity and its linked entities, when any was found
    body: Any = [shown, *appended] if appended else shown
    return reply(ld, body, geoproperty=prop, renderer=renderer)


@router.put("/entities/{entity_id}", status_code=204, summary="替换实体 / replace an entity")
@checked_params(*DISTRIBUTION, "type")
def replace_entity(entity_id: str, request: Request, ld: Ld, body: Body, _: Writer) -> Response:
    check_entity_id(entity_id)
    payload = read_payload(request, body, ld)
    if isinstance(payload, dict) and payload.get("id", entity_id) != entity_id:
        raise BadData("请求体中的 id 与路径不一致 / the id in the body differs from the path")
    if isinstance(payload, dict):
        payload = {**payload, "id": entity_id}
    entity = expand_entity(payload, ld.ctx)
    ld.broker.replace(ld.tenant, entity)
    return no_content()


@router.patch(
    "/entities/{entity_id}", status_code=204, summary="合并修改实体 / merge-patch an entity"
)
@checked_params(*DISTRIBUTION, "type", "observedAt", "lang")
def merge_entity(entity_id: str, request: Request, ld: Ld, body: Body, _: Writer) -> Response:
    check_entity_id(entity_id)
    payload = read_payload(request, body, ld, merge=True)
    if isinstance(payload, dict) and payload.get("id", entity_id) != entity_id:
        raise BadData("请求体中的 id 与路径不一致 / the id in the body differs from the path")
    fragment = expand_entity(
        {**payload, "id": entity_id} if isinstance(payload, dict) else payload,
        ld.ctx,
        require_type=False,
        allow_null=True,
    )
    ld.broker.merge(ld.tenant, entity_id, fragment)
    return no_content()


@router.delete("/entities/{entity_id}", status_code=204, summary="删除实体 / delete an entity")
@checked_params(*DISTRIBUTION, "type")
def delete_entity(entity_id: str, ld: Ld, _: Writer) -> Response:
    check_entity_id(entity_id)
    ld.broker.require_tenant(ld.tenant)
    ld.broker.delete(ld.tenant, entity_id)
    return no_content()


def _fragment(payload: Any, ld: LdRequest, entity_id: str, *, allow_null: bool = False) -> Entity:
    if not isinstance(payload, dict):
        raise BadData("请求体必须是 JSON 对象 / the body must be a JSON object")
    if payload.get("id", entity_id) != entity_id:
        raise BadData("请求体中的 id 与路径不一致 / the id in the body differs from the path")
    fragment = expand_entity(
        {**payload, "id": entity_id}, ld.ctx, require_type=False, allow_null=allow_null
    )
    if (
        len([k for k in fragment if k not in jsonld.ENTITY_MEMBERS]) == 0
        and not fragment["type"]
        and not fragment.get("scope")
    ):
        raise BadData("请求体中没有属性 / the body holds no attribute")
    return fragment


@router.post("/entities/{entity_id}/attrs", status_code=204, summary="追加属性 / append attributes")
@router.post("/entities/{entity_id}/attrs/", status_code=204, include_in_schema=False)
@checked_params(*DISTRIBUTION, "type")
def append_attrs(
    entity_id: str,
    request: Request,
    ld: Ld,
    body: Body,
    _: Writer,
    options: str | None = None,
) -> Response:
    check_entity_id(entity_id)
    payload = read_payload(request, body, ld)
    opts = check_options(options, NO_OVERWRITE)
    fragment = _fragment(payload, ld, entity_id)
    result = ld.broker.append_attrs(
        ld.tenant, entity_id, fragment, no_overwrite="noOverwrite" in opts
    )
    return _update_result(result, ld.ctx)


@router.patch(
    "/entities/{entity_id}/attrs", status_code=204, summary="更新属性 / update attributes"
)
@router.patch("/entities/{entity_id}/attrs/", status_code=204, include_in_schema=False)
@checked_params(*DISTRIBUTION, "type")
def update_attrs(entity_id: str, request: Request, ld: Ld, body: Body, _: Writer) -> Response:
    check_entity_id(entity_id)
    payload = read_payload(request, body, ld, merge=True)  # PATCH: merge-patch+json (6.3.4)
    # NGSI-LD Nulls delete here (clause 5.6.2), so a GeoProperty's may pass validation.
    fragment = _fragment(payload, ld, entity_id, allow_null=True)
    result = ld.broker.update_attrs(ld.tenant, entity_id, fragment)
    return _update_result(result, ld.ctx)


@router.patch(
    "/entities/{entity_id}/attrs/{attr}",
    status_code=204,
    summary="部分更新一个属性 / partial attribute update",
)
@checked_params(*DISTRIBUTION, "type")
def patch_attr(
    entity_id: str, attr: str, request: Request, ld: Ld, body: Body, _: Writer
) -> Response:
    check_entity_id(entity_id)
    check_attr_name(attr)
    payload = read_payload(request, body, ld, merge=True)  # PATCH: merge-patch+json (6.3.4)
    if not isinstance(payload, dict):
        raise BadData("请求体必须是 JSON 对象 / the body must be a JSON object")
    name = ld.ctx.expand(attr)
    patch: dict[str, Any] = {}
    for key, value in payload.items():
        if key == "@context":
            continue
        if key in ("value", "object", "languageMap", "valueList", "objectList", "json") or key in (
            "observedAt",
            "unitCode",
            "datasetId",
            "type",
        ):
            patch[key] = value
        elif key == "vocab":
            patch[key] = ld.ctx.expand(value) if isinstance(value, str) else value
        else:
            jsonld.check_name(key)
            patch[ld.ctx.expand(key)] = expand_instance(key, value, ld.ctx, sub=True)
    if "observedAt" in patch and parse_time(patch["observedAt"]) is None:
        raise BadData("observedAt 不是 ISO 8601 时间 / observedAt is not an ISO 8601 date-time")
    if "datasetId" in patch and not is_uri(patch["datasetId"]):
        raise BadData("datasetId 必须是 URI / datasetId must be a URI")
    ld.broker.patch_attr(ld.tenant, entity_id, name, patch)
    return no_content()


@router.put(
    "/entities/{entity_id}/attrs/{attr}", status_code=204, summary="替换属性 / replace an attribute"
)
@checked_params(*DISTRIBUTION, "type")
def replace_attr(
    entity_id: str, attr: str, request: Request, ld: Ld, body: Body, _: Writer
) -> Response:
    check_entity_id(entity_id)
    check_attr_name(attr)
    payload = read_payload(request, body, ld)
    if isinstance(payload, dict):
        payload = {k: v for k, v in payload.items() if k != "@context"}
    name, instances = expand_attribute(attr, payload, ld.ctx)
    ld.broker.replace_attr(ld.tenant, entity_id, name, instances)
    return no_content()


@router.delete(
    "/entities/{entity_id}/attrs/{attr}", status_code=204, summary="删除属性 / delete an attribute"
)
@checked_params(*DISTRIBUTION, "type", "lang")
def delete_attr(
    entity_id: str,
    attr: str,
    ld: Ld,
    _: Writer,
    datasetId: str | None = None,  # noqa: N803 - the NGSI-LD parameter name
    deleteAll: bool = False,  # noqa: N803
) -> Response:
    check_entity_id(entity_id)
    check_attr_name(attr)
    if datasetId is not None and not is_uri(datasetId):
        raise BadData("datasetId 必须是 URI / datasetId must be a URI")
    ld.broker.require_tenant(ld.tenant)
    name = "scope" if attr == "scope" else ld.ctx.expand(attr)  # the entity's scope (4.18)
    ld.broker.delete_attr(ld.tenant, entity_id, name, dataset_id=datasetId, delete_all=deleteAll)
    return no_content()


def _route_path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root + "/") else path


class _EmptySegmentRoute(NgsiLdRoute):
    """Takes the `/entities/...` and `/temporal/entities/...` paths that hold an empty segment
    (`/entities//attrs/speed`, or an IRI id sent with bare slashes) and `PUT`/`PATCH`/`DELETE
    /entities/` (no entity id), which no other route serves, so that they answer 400
    BadRequestData rather than 404 or 405.
    `GET`/`POST /entities/` keep the usual redirect to `/entities`."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get("type") != "http":
            return Match.NONE, {}
        safe = _slash_safe_path(scope)  # an IRI's encoded // is no empty segment
        rest = _route_path({**scope, "path": safe} if safe else scope).removeprefix(PREFIX)
        temporal = rest.startswith("/temporal/entities/")
        rest = rest.removeprefix("/temporal")
        if not rest.startswith("/entities/"):
            return Match.NONE, {}
        no_id = (
            not temporal
            and rest == "/entities/"
            and scope.get("method") in ("PUT", "PATCH", "DELETE")
        )
        if "//" not in rest and not no_id:
            return Match.NONE, {}
        return super().matches(scope)


def _empty_segment(request: Request) -> Response:
    raise BadData(
        f"路径 {request.url.path} 缺少实体 id 或属性名（有空的段）；id 中的 / 请编码为 %2F / the "
        f"path {request.url.path} lacks an entity id or attribute name (an empty segment); "
        "percent-encode a '/' inside an id as %2F"
    )


for _path in ("/entities/{rest:path}", "/temporal/entities/{rest:path}"):
    router.add_api_route(
        _path,
        _empty_segment,
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
        route_class_override=_EmptySegmentRoute,
        # It only ever answers 400 naming the path's fault: nothing to protect, and a caller
        # with no token learns nothing about the data.
        dependencies=[Depends(public)],
    )


# -- batch operations ---------------------------------------------------------------------------


def _batch_entities(
    request: Request,
    body: bytes,
    ld: LdRequest,
    *,
    require_type: bool = True,
    merge: bool = False,
) -> tuple[list[Entity], list[dict[str, Any]]]:
    """The entities of a batch body, expanded, and a BatchEntityError per entity that is not.

    With `merge` (batch merge, clause 5.6.20): NGSI-LD Nulls are allowed, and an item that is
    not a JSON object fails the whole request (clause 5.5.4), as there is no entity to name."""
    payload = read_payload(request, body, ld, batch=True)
    if not isinstance(payload, list):
        raise BadData("批量操作的请求体必须是实体数组 / a batch body must be an array of entities")
    if not payload:
        raise BadData("批量操作的实体数组为空 / the batch holds no entity")
    if merge:
        for position, item in enumerate(payload):
            if not isinstance(item, dict):
                kind = "null" if item is None else type(item).__name__
                raise BadData(
                    f"批量合并的第 {position + 1} 项不是实体对象（{kind}）/ item {position + 1} "
                    f"of the batch is not an entity object but {kind}"
                )
    entities: list[Entity] = []
    errors: list[dict[str, Any]] = []
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    for item in payload:
        entity_id = item.get("id") if isinstance(item, dict) else None
        try:
            has_context = isinstance(item, dict) and "@context" in item
            if media == LD_JSON and not has_context:
                raise BadData(
                    "application/ld+json 的每个实体都必须含 @context / every entity needs @context"
                )
            if media != LD_JSON and has_context:
                raise BadData(
                    "application/json 的实体不能含 @context，请改用 Link 头或 application/ld+json "
                    "/ an entity sent as application/json must not contain @context: send it in "
                    "a Link header or use application/ld+json"
                )
            ctx = _entity_ctx(ld, item)
            entities.append(expand_entity(item, ctx, require_type=require_type, allow_null=merge))
        except (BrokerError, ContextNotAvailable, InvalidContext) as exc:
            response_kind = (
                "LdContextNotAvailable"
                if isinstance(exc, ContextNotAvailable)
                else getattr(exc, "kind", "BadRequestData")
            )
            errors.append(
                {
                    "entityId": entity_id if isinstance(entity_id, str) else "",
                    "error": problem_body(response_kind, getattr(exc, "message", str(exc))),
                }
            )
    return entities, errors


@router.post("/entityOperations/create", summary="批量创建 / batch create")
@checked_params(*DISTRIBUTION)
def batch_create(request: Request, ld: Ld, body: Body, principal: Writer) -> Response:
    entities, errors = _batch_entities(request, body, ld)
    result = (
        ld.broker.batch_create(ld.tenant, entities, owner=principal.department_code)
        if entities
        else BatchResult()
    )
    return _batch_reply(result, errors, ok=201)


@router.post("/entityOperations/upsert", summary="批量创建或更新 / batch upsert")
@checked_params(*DISTRIBUTION)
def batch_upsert(
    request: Request, ld: Ld, body: Body, principal: Writer, options: str | None = None
) -> Response:
    opts = check_options(options, frozenset({"update", "replace"}))
    if len(opts) > 1:
        raise InvalidRequest(
            "options 只能是 update 或 replace 之一 / options must be update or replace, not both"
        )
    entities, errors = _batch_entities(request, body, ld)
    result = BatchResult()
    if entities:
        result = ld.broker.batch_upsert(
            ld.tenant, entities, replace="update" not in opts, owner=principal.department_code
        )
    if not errors and not result.errors and not result.created:
        return no_content()
    return _batch_reply(result, errors, ok=201)


@router.post("/entityOperations/update", summary="批量更新 / batch update")
@checked_params(*DISTRIBUTION)
def batch_update(
    request: Request, ld: Ld, body: Body, _: Writer, options: str | None = None
) -> Response:
    opts = check_options(options, NO_OVERWRITE)
    entities, errors = _batch_entities(request, body, ld, require_type=False)
    result = BatchResult()
    if entities:
        ld.broker.require_tenant(ld.tenant)
        result = ld.broker.batch_update(ld.tenant, entities, no_overwrite="noOverwrite" in opts)
    for eid, names in result.not_updated.items():
        # noOverwrite kept some attributes: the entity is not (wholly) updated, so it is a
        # BatchEntityError naming them rather than a success (a 207 as in clause 5.6.3).
        result.success = [s for s in result.success if s != eid]
        shown = ", ".join(ld.ctx.compact(n) for n in names)
        result.errors.append(
            (
                eid,
                BadData(
                    f"属性 {shown} 已存在，按 noOverwrite 未改写 / attribute(s) {shown} exist "
                    "and were not overwritten (noOverwrite)"
                ),
            )
        )
    return _batch_reply(result, errors, ok=204)


@router.post("/entityOperations/merge", summary="批量合并修改 / batch merge")
@checked_params(*DISTRIBUTION)
def batch_merge(request: Request, ld: Ld, body: Body, _: Writer) -> Response:
    """Clause 5.6.20: each entity merged as by PATCH /entities/{id}; 204 when all are merged,
    else 207 with a BatchOperationResult (`success` ids, `errors` BatchEntityErrors)."""
    entities, errors = _batch_entities(request, body, ld, require_type=False, merge=True)
    result = BatchResult()
    if entities:
        ld.broker.require_tenant(ld.tenant)
        result = ld.broker.batch_merge(ld.tenant, entities)
    return _batch_reply(result, errors, ok=204)


@router.post("/entityOperations/delete", summary="批量删除 / batch delete")
@checked_params(*DISTRIBUTION)
def batch_delete(request: Request, ld: Ld, body: Body, _: Writer) -> Response:
    payload = read_payload(request, body, ld)
    if not isinstance(payload, list) or not payload:
        raise BadData("请求体必须是实体 id 数组 / the body must be an array of entity ids")
    ids: list[str] = []
    errors: list[dict[str, Any]] = []
    for item in payload:
        if is_uri(item):
            ids.append(item)
        else:
            errors.append(
                {
                    "entityId": item if isinstance(item, str) else "",
                    "error": problem_body(
                        "BadRequestData", f"实体 id 必须是 URI：{item!r} / not a URI"
                    ),
                }
            )
    ld.broker.require_tenant(ld.tenant)
    result = ld.broker.batch_delete(ld.tenant, ids) if ids else BatchResult()
    # The same id again (clause 5.5.11: items in order): the entity is gone by then.
    seen: set[str] = set()
    for eid in ids:
        if eid in seen:
            result.errors.append(
                (
                    eid,
                    NotFound(
                        f"实体 {eid} 已被本批中前面的一项删除或不存在 / entity {eid} was deleted "
                        "by an earlier item of this batch, or does not exist"
                    ),
                )
            )
        seen.add(eid)
    return _batch_reply(result, errors, ok=204)


@router.post("/entityOperations/query", summary="以请求体查询实体 / query entities (POST)")
@checked_params(*DISTRIBUTION)
def batch_query(
    request: Request,
    ld: Ld,
    body: Body,
    _: Reader,
    limit: Annotated[int, Query()] = DEFAULT_LIMIT,
    offset: Annotated[int, Query()] = 0,
    count: bool = False,
    options: str | None = None,
    format: str | None = None,
    lang: str | None = None,
) -> Response:
    payload = read_payload(request, body, ld)
    if not isinstance(payload, dict) or payload.get("type") != "Query":
        raise BadData('请求体必须是 {"type": "Query", ...} / the body must be a Query object')
    linked = ngsild_join.plan(
        payload.get("join"),
        payload.get("joinLevel"),
        payload.get("containedBy"),
        payload.get("pick"),
        payload.get("omit"),
        ld.ctx.expand,
        body=True,
    )
    renderer = _renderer(ld, options, format, lang, linked.pick, linked.omit, payload.get("attrs"))
    selector, several = query_selectors(ld, payload)
    geo_q = payload.get("geoQ") or {}
    if not isinstance(geo_q, dict):
        raise BadData("geoQ 必须是对象 / geoQ must be an object")
    attrs = payload.get("attrs")
    if attrs is not None and not (
        isinstance(attrs, list) and all(isinstance(a, str) for a in attrs)
    ):
        raise BadData("attrs 必须是字符串数组 / attrs must be an array of strings")
    geometry = geo_q.get("geometry")
    coordinates = geo_q.get("coordinates")
    query = build_query(
        ld,
        id=selector.get("id"),
        id_pattern=selector.get("idPattern"),
        type=selector.get("type"),
        attrs=attrs,
        q=payload.get("q"),
        georel=geo_q.get("georel"),
        geometry=geometry,
        coordinates=coordinates,
        geoproperty=geo_q.get("geoproperty"),
        scope_q=payload.get("scopeQ"),
        limit=limit,
        offset=offset,
        count=count,
        require_filter=not several,
    )
    if several:
        query.selectors = several
    return _query_reply(request, ld, query, renderer, geo_q.get("geoproperty"), linked=linked)


# -- discovery ----------------------------------------------------------------------------------


def _list_id(kind: str) -> str:
    return f"urn:ngsi-ld:{kind}:{secrets.token_hex(8)}"


@router.get("/types", summary="实体类型 / entity types")
@checked_params(*DISTRIBUTION)
def list_types(ld: LdNoGeo, _: Reader, details: bool = False) -> Response:
    if not details:
        names = ld.broker.entity_types(ld.tenant)
        body: Any = {
            "id": _list_id("EntityTypeList"),
            "type": "EntityTypeList",
            "typeList": sorted(ld.ctx.compact(t) for t in names),
        }
        return reply(ld, body)
    body = [
        {
            "id": item["type"],
            "type": "EntityType",
            "typeName": ld.ctx.compact(item["type"]),
            "attributeNames": [ld.ctx.compact(a) for a in item["attributes"]],
        }
        for item in ld.broker.type_details(ld.tenant)
    ]
    return reply(ld, body)


@router.get("/types/{type_name}", summary="实体类型详情 / entity type information")
@checked_params(*DISTRIBUTION)
def type_info(type_name: str, ld: LdNoGeo, _: Reader) -> Response:
    jsonld.check_name(type_name)
    iri = ld.ctx.expand(type_name)
    found = ld.broker.type_details(ld.tenant, iri)
    if not found:
        raise NotFound(f"没有类型为 {type_name} 的实体 / no entity of type {type_name}")
    item = found[0]
    body = {
        "id": iri,
        "type": "EntityTypeInfo",
        "typeName": ld.ctx.compact(iri),
        "entityCount": item["count"],
        "attributeDetails": [
            {
                "id": attr,
                "type": "Attribute",
                "attributeName": ld.ctx.compact(attr),
                "attributeTypes": kinds,
            }
            for attr, kinds in item["attributes"].items()
        ],
    }
    return reply(ld, body)


@router.get("/attributes", summary="属性 / attributes")
@checked_params(*DISTRIBUTION)
def list_attributes(ld: LdNoGeo, _: Reader, details: bool = False) -> Response:
    found = ld.broker.attribute_details(ld.tenant)
    if not details:
        body: Any = {
            "id": _list_id("AttributeList"),
            "type": "AttributeList",
            "attributeList": sorted(ld.ctx.compact(a["attr"]) for a in found),
        }
        return reply(ld, body)
    body = [
        {
            "id": a["attr"],
            "type": "Attribute",
            "attributeName": ld.ctx.compact(a["attr"]),
            "typeNames": [ld.ctx.compact(t) for t in a["types"]],
        }
        for a in found
    ]
    return reply(ld, body)


@router.get("/attributes/{attr}", summary="属性详情 / attribute information")
@checked_params(*DISTRIBUTION)
def attribute_info(attr: str, ld: LdNoGeo, _: Reader) -> Response:
    jsonld.check_name(attr)
    iri = ld.ctx.expand(attr)
    found = ld.broker.attribute_details(ld.tenant, iri)
    if not found:
        raise NotFound(f"没有实体含属性 {attr} / no entity has the attribute {attr}")
    item = found[0]
    body = {
        "id": iri,
        "type": "Attribute",
        "attributeName": ld.ctx.compact(iri),
        "attributeCount": item["count"],
        "attributeTypes": item["kinds"],
        "typeNames": [ld.ctx.compact(t) for t in item["types"]],
    }
    return reply(ld, body)


# -- stored @contexts (clauses 5.13, 6.29, 6.30) ------------------------------------------------

CONTEXT_KINDS = ("Cached", "Hosted", "ImplicitlyCreated")
LOCAL_ID_PREFIX = "urn:ngsi-ld:jsonldContext:"
CORE_LOCAL_ID = "core"


def context_path(local_id: str) -> str:
    """The local relative path of a stored @context (the `Location` of POST /jsonldContexts)."""
    return f"{PREFIX}/jsonldContexts/{local_id}"


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class StoredContext:
    """One entry of the @context store: a `context_jsonld` row, or the built-in core @context
    (kind Cached: a copy of ETSI's core @context, shipped with Pujiang)."""

    local_id: str
    url: str
    kind: str
    created_at: datetime
    body: str | None = None  # the stored {"@context": ...} document; None for the core
    hits: int | None = None
    last_used_at: datetime | None = None

    @property
    def is_core(self) -> bool:
        return self.local_id == CORE_LOCAL_ID

    def details(self) -> dict[str, Any]:
        """The metadata object of clause 5.13.3.5."""
        info: dict[str, Any] = {
            "URL": self.url,
            "localId": LOCAL_ID_PREFIX + self.local_id,
            "kind": self.kind,
            "createdAt": _utc_text(self.created_at),
        }
        if self.last_used_at is not None:
            info["lastUsage"] = _utc_text(self.last_used_at)
        if self.hits is not None:
            info["numberOfHits"] = self.hits
        return info


def _core_entry(context: AppContext) -> StoredContext:
    return StoredContext(
        CORE_LOCAL_ID, CORE_CONTEXT_URL, "Cached", processor_of(context).core_loaded_at
    )


def _stored_entry(row: ContextJsonld) -> StoredContext:
    return StoredContext(
        row.id, row.url, row.kind, row.created_at, row.body, row.hits, row.last_used_at
    )


def find_context(context: AppContext, context_id: str) -> StoredContext | None:
    """The entry a `contextId` path parameter names: its local id (as in `Location`, or the
    `localId` URN of the listing), the URL of a stored @context, or a core @context URL."""
    if context_id in (CORE_LOCAL_ID, LOCAL_ID_PREFIX + CORE_LOCAL_ID) or jsonld.is_core_url(
        context_id
    ):
        return _core_entry(context)
    local_id = context_id.removeprefix(LOCAL_ID_PREFIX)
    with context.db.session() as session:
        row = session.get(ContextJsonld, local_id)
        if row is None and is_uri(context_id):
            row = session.scalars(
                select(ContextJsonld).where(ContextJsonld.url == context_id)
            ).first()
        return None if row is None else _stored_entry(row)


def _context_not_found(context_id: str) -> NotFound:
    return NotFound(f"@context {context_id} 不存在 / no stored @context {context_id}")


def _check_kind(kind: str | None) -> None:
    if kind is not None and kind not in CONTEXT_KINDS:
        raise BadData(
            f"kind 只能是 {'、'.join(CONTEXT_KINDS)}，不是 {kind!r} / kind must be one of "
            f"{', '.join(CONTEXT_KINDS)}, not {kind!r}"
        )


@router.get("/jsonldContexts", summary="已存 @context 列表 / list stored @contexts")
@router.get("/jsonldContexts/", include_in_schema=False)
def list_contexts(
    context: Context, _: Reader, details: bool = False, kind: str | None = None
) -> Response:
    """List @contexts (clause 5.13.3): URLs, or with `details=true` their metadata; `kind`
    (Cached, Hosted, ImplicitlyCreated) filters. The core @context is listed as Cached."""
    _check_kind(kind)
    if details:
        processor_of(context).flush_uses()  # numberOfHits counts the uses not yet written
    entries = [_core_entry(context)]
    with context.db.session() as session:
        rows = session.scalars(select(ContextJsonld).order_by(ContextJsonld.created_at))
        entries += [_stored_entry(row) for row in rows]
    chosen = [e for e in entries if kind is None or e.kind == kind]
    body = [e.details() for e in chosen] if details else [e.url for e in chosen]
    return Response(orjson.dumps(body), media_type=JSON)


@router.post("/jsonldContexts", status_code=201, summary="存入 @context / add an @context")
@router.post("/jsonldContexts/", status_code=201, include_in_schema=False)
def create_context(
    request: Request, context: Context, body: Body, _: Writer, url: str | None = None
) -> Response:
    """Add @context (clause 5.13.2): store `{"@context": ...}` as a Hosted @context, served at
    the relative path given in `Location`. With `url=` (our extension for offline sites) store it
    instead as the Cached copy of that remote URL."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in (JSON, LD_JSON):
        raise NgsiLdError(
            "UnsupportedMediaType",
            f"不支持的 Content-Type {media or '（空）'}，请用 {JSON} 或 {LD_JSON} / unsupported "
            f"Content-Type {media or '(none)'}; use {JSON} or {LD_JSON}",
        )
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NgsiLdError(
            "InvalidRequest", f"请求体不是有效的 JSON：{exc} / the body is not valid JSON: {exc}"
        ) from exc
    if not isinstance(document, dict) or "@context" not in document:
        raise BadData(
            '请求体必须是含 @context 成员的对象 {"@context": ...} / the body must be an '
            'object with an @context member: {"@context": ...}'
        )
    if url is not None and (not is_uri(url) or jsonld.is_core_url(url)):
        raise BadData(
            f"url 必须是绝对 URL，且不能是核心 @context：{url!r} / url must be an absolute URL "
            f"other than the core @context, not {url!r}"
        )
    value = document["@context"]
    processor = processor_of(context)
    processor.active(value)  # JSON-LD syntax, then every URL it references (clause 5.5.4)
    local_id = secrets.token_hex(12)
    location = url or f"{str(request.base_url).rstrip('/')}{context_path(local_id)}"
    with context.db.session() as session:
        if session.execute(select(ContextJsonld.id).where(ContextJsonld.url == location)).first():
            raise AlreadyExists(f"@context {location} 已存在 / the @context {location} exists")
        session.add(
            ContextJsonld(
                id=local_id,
                tenant="",
                url=location,
                kind="Cached" if url else "Hosted",
                # Anything beside @context is discarded (clause 5.13.2.3).
                body=orjson.dumps({"@context": value}).decode(),
                created_at=datetime.now(UTC),
                hits=0,
            )
        )
    processor.clear()
    return Response(status_code=201, headers={"Location": context_path(local_id)})


@router.get("/jsonldContexts/{context_id}", summary="读取 @context / serve an @context")
def serve_context(
    context_id: str, request: Request, context: Context, _: Reader, details: bool = False
) -> Response:
    """Serve @context (clause 5.13.4): the stored document of a Hosted @context, or with
    `details=true` the metadata of any entry; a Cached one is not served (422)."""
    media = negotiate(request, geo=False)
    if details:
        processor_of(context).flush_uses()  # numberOfHits counts the uses not yet written
    entry = find_context(context, context_id)
    if entry is None:
        raise _context_not_found(context_id)
    if details:
        return Response(orjson.dumps(entry.details()), media_type=JSON)
    if entry.body is None or entry.kind == "Cached":
        raise NotSupported(
            f"@context {context_id} 是缓存副本（Cached），不对外提供，可用 details=true "
            f"查看其信息 / the @context {context_id} is a Cached copy, which is not served; "
            "ask for its metadata with details=true"
        )
    return Response(entry.body.encode(), media_type=media)


@router.delete("/jsonldContexts/", status_code=204, include_in_schema=False)
def delete_context_without_id(_: Writer) -> Response:
    raise BadData("缺少 @context 标识 / the @context identifier is missing")


def _reload(context: AppContext, entry: StoredContext) -> None:
    """Download a Cached @context again and replace the stored copy; the copy stays when
    its host may not be fetched from or the download fails (504)."""
    policy = _fetch_policy(context)
    if not policy.enabled:
        raise NgsiLdError(
            "LdContextNotAvailable",
            f"无法重新下载 @context {entry.url}：未允许从其主机下载（context_fetch_hosts），原副本"
            f"保留；可经 POST /jsonldContexts?url= 存入新副本 / the @context {entry.url} cannot "
            "be downloaded again: its host is not one to fetch from (setting "
            "context_fetch_hosts); the stored copy is kept (store a new one with POST "
            "/ngsi-ld/v1/jsonldContexts?url=)",
            504,
        )
    try:
        value = fetch_context(entry.url, policy)
    except ContextFetchError as exc:
        raise NgsiLdError(
            "LdContextNotAvailable",
            f"无法重新下载 @context {entry.url}，原副本保留 / the @context {entry.url} could not "
            f"be downloaded again, the stored copy is kept: {exc}",
            504,
        ) from None
    with context.db.session() as session:
        session.execute(
            update(ContextJsonld)
            .where(ContextJsonld.id == entry.local_id)
            .values(body=orjson.dumps({"@context": value}).decode(), created_at=datetime.now(UTC))
        )
    processor_of(context).clear()


@router.delete("/jsonldContexts/{context_id}", status_code=204, summary="删除 @context / delete")
def delete_context(context_id: str, context: Context, _: Writer, reload: bool = False) -> Response:
    """Delete and reload @context (clause 5.13.5). `reload=true` is for Cached entries only:
    the core @context is reloaded from the copy shipped with Pujiang; any other Cached copy
    cannot be downloaded again (no network), so that is 504 LdContextNotAvailable and the
    entry stays. The core @context itself cannot be deleted."""
    entry = find_context(context, context_id)
    if entry is None:
        raise _context_not_found(context_id)
    if reload:
        if entry.kind != "Cached":
            raise BadData(
                f"reload 只适用于缓存（Cached）的 @context，{context_id} 是 {entry.kind} / reload "
                f"applies to Cached @contexts only; {context_id} is {entry.kind}"
            )
        if entry.is_core:
            processor_of(context).reload_core()
            return no_content()
        _reload(context, entry)
        return no_content()
    if entry.is_core:
        raise BadData(
            "核心 @context 始终有效，不能删除 / the core @context is always in force and cannot "
            "be deleted"
        )
    with context.db.session() as session:
        session.execute(delete(ContextJsonld).where(ContextJsonld.id == entry.local_id))
    processor_of(context).clear()
    return no_content()


__all__ = ["InvalidRequest", "router"]
