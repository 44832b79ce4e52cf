"""NGSI-LD subscription routes (`/ngsi-ld/v1/subscriptions`) and the subscription document.

This adapter reads and checks the NGSI-LD Subscription document (ETSI GS CIM 009 v1.8,
clauses 5.2.12 Subscription, 5.2.14 NotificationParams, 5.2.15 Endpoint), expands its names
with the request's @context into the *compiled* form `subscriptions.py` matches with, and
shapes replies (status fields included). Every fault in a document is a 400 ProblemDetails of
type BadRequestData whose detail names the member and what to send instead.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.exc import IntegrityError

from pujiang.context import implicit_contexts, ngsild_join, ngsild_scope
from pujiang.context import subscriptions as subs
from pujiang.context.errors import BadData
from pujiang.context.jsonld import (
    ActiveContext,
    ContextNotAvailable,
    ContextProcessor,
    InvalidContext,
)
from pujiang.context.ngsild import (
    DISTRIBUTION,
    NgsiLdError,
    NgsiLdRoute,
    _link_header,
    _page_links,
    broker_of,
    checked_params,
    link_context,
    location,
    negotiate,
    processor_of,
    tenant_of,
)
from pujiang.context.ngsild_projection import ProjectionError, parse_projection
from pujiang.context.ngsild_q import parse_q
from pujiang.context.notify import (
    HTTP_SCHEMES,
    MQTT_SCHEMES,
    mqtt_options,
    parse_mqtt_uri,
)
from pujiang.context.subscription_models import Subscription
from pujiang.platform import audit
from pujiang.platform.db import utcnow
from pujiang.platform.deps import AppContext, Context, DbSession, require
from pujiang.platform.roles import CONTEXT_SUBSCRIBE
from pujiang.platform.security import CurrentPrincipal

router = APIRouter(
    prefix="/ngsi-ld/v1", route_class=NgsiLdRoute, tags=["NGSI-LD 订阅 Subscriptions"]
)

Subscriber = Annotated[CurrentPrincipal, Depends(require(CONTEXT_SUBSCRIBE))]

JSON = "application/json"
JSONLD = "application/ld+json"
ACCEPTS = (JSON, JSONLD)
MERGE_PATCH = "application/merge-patch+json"
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 20
STATUS_MEMBERS = ("timesSent", "timesFailed", "lastNotification", "lastSuccess", "lastFailure")
UNSUPPORTED = ("csf", "temporalQ")


class SubscriptionError(ValueError):
    """A fault in a subscription document; the message tells the client what to change."""


def bad_data(detail: str) -> NgsiLdError:
    return NgsiLdError("BadRequestData", detail)


# -- the document ---------------------------------------------------------------------------------


def _is_uri(value: Any) -> bool:
    return isinstance(value, str) and bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$", value))


def _uri(value: Any, member: str) -> str:
    if not _is_uri(value):
        raise SubscriptionError(f"{member} must be a URI (e.g. urn:ngsi-ld:...), not {value!r}")
    return str(value)


def _names(value: Any, member: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise SubscriptionError(f"{member} must be a non-empty array of attribute names")
    for name in value:
        if not isinstance(name, str) or not name.strip():
            raise SubscriptionError(f"{member} must hold attribute names (strings), not {name!r}")
    return value


def _positive(value: Any, member: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise SubscriptionError(f"{member} must be a number of seconds above 0, not {value!r}")
    return float(value)


def _key_values(value: Any, member: str) -> dict[str, str]:
    if not isinstance(value, list):
        raise SubscriptionError(f'{member} must be an array of {{"key": ..., "value": ...}}')
    pairs: dict[str, str] = {}
    for item in value:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("key"), str)
            or not isinstance(item.get("value"), str)
            or not item["key"]
        ):
            raise SubscriptionError(
                f'{member} entries must be {{"key": "<text>", "value": "<text>"}}, not {item!r}'
            )
        if "\r" in item["value"] or "\n" in item["value"]:
            raise SubscriptionError(f"{member} value of {item['key']!r} may not hold line breaks")
        pairs[item["key"]] = item["value"]
    return pairs


def _time(value: Any, member: str) -> datetime:
    if not isinstance(value, str):
        raise SubscriptionError(f"{member} must be an ISO 8601 DateTime string, not {value!r}")
    try:
        return subs._parse_time(value)
    except ValueError as exc:
        raise SubscriptionError(
            f"{member} must be an ISO 8601 DateTime such as 2030-01-01T00:00:00Z, not {value!r}"
        ) from exc


def _entities(value: Any, terms: ActiveContext) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise SubscriptionError("entities must be a non-empty array of entity selectors")
    selectors = []
    for item in value:
        if not isinstance(item, dict):
            raise SubscriptionError(f"each of entities must be an object, not {item!r}")
        unknown = set(item) - {"id", "idPattern", "type"}
        if unknown:
            raise SubscriptionError(f"entities members may be id, idPattern, type; not {unknown}")
        kind = item.get("type")
        if not isinstance(kind, str) or not kind.strip():
            raise SubscriptionError("each of entities must name a type (NGSI-LD EntitySelector)")
        selector: dict[str, Any] = {"id": None, "idPattern": None}
        if "id" in item:
            selector["id"] = _uri(item["id"], "entities.id")
        if "idPattern" in item:
            pattern = item["idPattern"]
            try:
                re.compile(pattern)
            except (re.error, TypeError) as exc:
                raise SubscriptionError(
                    f"entities.idPattern {pattern!r} is not a regular expression: {exc}"
                ) from exc
            selector["idPattern"] = pattern
        try:
            selector["types"] = subs.parse_type_selection(kind, terms.expand)
        except ValueError as exc:
            raise SubscriptionError(f"entities.type: {exc}") from exc
        selectors.append(selector)
    return selectors


def _datasets(value: Any) -> list[str]:
    """The subscription's `datasetId` (Table 5.2.12-1): a URI or "@none" (the default
    instance), or a non-empty array of them."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(i == "@none" or _is_uri(i) for i in items):
        raise SubscriptionError(
            f'datasetId 必须是 URI 或 "@none"，或它们组成的非空数组，不是 {value!r} / '
            f'datasetId must be a URI or "@none", or a non-empty array of them, not {value!r}'
        )
    return list(dict.fromkeys(items))


def _geo(value: Any, terms: ActiveContext) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SubscriptionError("geoQ must be an object with geometry, coordinates and georel")
    for member in ("geometry", "coordinates", "georel"):
        if member not in value:
            raise SubscriptionError(f"geoQ.{member} is missing")
    coordinates = value["coordinates"]
    if isinstance(coordinates, str):
        try:
            coordinates = orjson.loads(coordinates)
        except orjson.JSONDecodeError as exc:
            raise SubscriptionError(f"geoQ.coordinates is not a JSON array: {exc}") from exc
    geo = {
        "geometry": value["geometry"],
        "coordinates": coordinates,
        "georel": value["georel"],
        "geoproperty": terms.expand(value.get("geoproperty") or "location"),
    }
    try:
        subs.compile_geo(geo)
    except ValueError as exc:
        raise SubscriptionError(f"geoQ: {exc}") from exc
    except Exception as exc:
        raise SubscriptionError(f"geoQ is not a valid geo-query: {exc}") from exc
    return geo


def _endpoint(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SubscriptionError("notification.endpoint must be an object with a uri")
    uri = value.get("uri")
    if not isinstance(uri, str) or ":" not in uri:
        raise SubscriptionError("notification.endpoint.uri must be an http(s) or mqtt(s) URI")
    scheme = uri.split(":", 1)[0].lower()
    accept = value.get("accept", JSON)
    if accept not in ACCEPTS:
        raise SubscriptionError(
            f"notification.endpoint.accept must be {JSON} or {JSONLD}, not {accept!r}"
        )
    receiver = _key_values(value.get("receiverInfo", []), "notification.endpoint.receiverInfo")
    notifier = _key_values(value.get("notifierInfo", []), "notification.endpoint.notifierInfo")
    if scheme in HTTP_SCHEMES:
        if not re.match(r"^https?://[^/\s]+", uri):
            raise SubscriptionError(f"notification.endpoint.uri {uri!r} names no host")
        for key in receiver:
            if not _HEADER_NAME.match(key):
                raise SubscriptionError(f"receiverInfo key {key!r} is not a valid HTTP header")
    elif scheme in MQTT_SCHEMES:
        try:
            parse_mqtt_uri(uri)
            mqtt_options(notifier)
        except ValueError as exc:
            raise SubscriptionError(f"notification.endpoint: {exc}") from exc
    else:
        raise SubscriptionError(
            f"notification.endpoint.uri must use http, https, mqtt or mqtts, not {scheme!r}"
        )
    return {"uri": uri, "accept": accept, "receiverInfo": receiver, "notifierInfo": notifier}


def _notification(value: Any, terms: ActiveContext) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SubscriptionError("notification is missing: it must be an object with an endpoint")
    compiled: dict[str, Any] = {"endpoint": _endpoint(value.get("endpoint"))}
    if "attributes" in value:
        attributes = _names(value["attributes"], "notification.attributes")
        members = sorted(set(attributes) & {"id", "type", "scope"})
        if members:
            names = ", ".join(members)
            raise SubscriptionError(
                f"notification.attributes 只能列属性名，不能有 {names}（实体成员请用 "
                f"notification.pick）/ notification.attributes names attributes only, not "
                f"{names} (use notification.pick to choose entity members)"
            )
        compiled["attributes"] = [terms.expand(a) for a in attributes]
    compiled.update(_projection(value, terms))
    fmt = value.get("format", "normalized")
    if fmt not in (*subs.FORMATS, *subs.FORMAT_ALIASES):
        raise SubscriptionError(
            "notification.format must be normalized, keyValues (or simplified) or concise, "
            f"not {fmt!r}"
        )
    compiled["format"] = subs.FORMAT_ALIASES.get(fmt, fmt)
    if "join" in value or "joinLevel" in value:
        # Linked Entity retrieval (clause 4.5.23): joinLevel is a JSON number here.
        try:
            mode, level, _ = ngsild_join.parse_join(
                value.get("join"), value.get("joinLevel"), body=True
            )
        except BadData as exc:
            raise SubscriptionError(f"notification.{exc}") from exc
        if mode is not None:
            compiled["join"] = mode
            compiled["joinLevel"] = level
    for flag in ("sysAttrs", "showChanges"):
        if flag in value:
            if not isinstance(value[flag], bool):
                raise SubscriptionError(f"notification.{flag} must be true or false")
            compiled[flag] = value[flag]
    if compiled.get("showChanges") and compiled["format"] == "keyValues":
        raise SubscriptionError(
            "notification.showChanges 不能与 keyValues（simplified）格式同用："
            "该格式无处放先前的值 / "
            "notification.showChanges cannot be true with the keyValues (simplified) format: "
            "it has no place for previous values"
        )
    return compiled


def _projection(value: dict[str, Any], terms: ActiveContext) -> dict[str, Any]:
    """notification.pick/omit (clause 4.21, Table 5.2.14-1): non-empty arrays of entity members
    (id, type, scope) and attribute names, not beside notification.attributes, no member in
    both; attribute names are expanded for matching."""
    given = [m for m in ("pick", "omit") if m in value]
    if not given:
        return {}
    if "attributes" in value:
        raise SubscriptionError(
            f"notification.attributes 不能与 notification.{given[0]} 同时使用（attributes 是 "
            f"pick 的旧写法）/ notification.attributes cannot be combined with "
            f"notification.{given[0]} (attributes is the deprecated form of pick)"
        )
    try:
        projection = parse_projection(value.get("pick"), value.get("omit")).map_names(terms.expand)
    except ProjectionError as exc:
        raise SubscriptionError(f"notification: {exc}") from exc
    compiled: dict[str, Any] = {}
    if projection.pick is not None:
        compiled["pick"] = sorted(projection.pick)
    if projection.omit:
        compiled["omit"] = sorted(projection.omit)
    return compiled


def compile_subscription(
    doc: dict[str, Any],
    ld_context: Any,
    *,
    now: datetime | None = None,
    check_expiry: bool = True,
    processor: ContextProcessor | None = None,
) -> dict[str, Any]:
    """Check a whole Subscription document; return its compiled form (expanded names).

    `check_expiry`: expiresAt must lie in the future (on creation, and when a PATCH sets it).
    Raises SubscriptionError, or ContextNotAvailable for an @context URL the broker lacks.
    """
    now = now or utcnow()
    try:
        terms = subs.terms_for(ld_context, processor)
    except InvalidContext as exc:
        raise SubscriptionError(f"@context: {exc}") from exc
    if doc.get("type") != "Subscription":
        raise SubscriptionError('type must be "Subscription"')
    _uri(doc.get("id"), "id")
    for member in UNSUPPORTED:
        if member in doc:
            raise SubscriptionError(f"{member} is not supported by this broker; leave it out")
    compiled: dict[str, Any] = {}
    if "entities" in doc:
        compiled["entities"] = _entities(doc["entities"], terms)
    if "watchedAttributes" in doc:
        watched = _names(doc["watchedAttributes"], "watchedAttributes")
        compiled["watchedAttributes"] = [terms.expand(a) for a in watched]
    if "timeInterval" in doc:
        compiled["timeInterval"] = _positive(doc["timeInterval"], "timeInterval")
        if "watchedAttributes" in doc:
            raise SubscriptionError("timeInterval and watchedAttributes may not be used together")
        if "throttling" in doc:
            raise SubscriptionError("timeInterval and throttling may not be used together")
    if "entities" not in doc and "watchedAttributes" not in doc:
        raise SubscriptionError("a subscription needs entities, watchedAttributes or both")
    if "throttling" in doc:
        compiled["throttling"] = _positive(doc["throttling"], "throttling")
    if "notificationTrigger" in doc:
        triggers = doc["notificationTrigger"]
        if not isinstance(triggers, list) or not triggers:
            raise SubscriptionError("notificationTrigger must be a non-empty array")
        wrong = [t for t in triggers if t not in subs.TRIGGERS]
        if wrong:
            raise SubscriptionError(
                f"notificationTrigger values must be among {', '.join(subs.TRIGGERS)}; not {wrong}"
            )
        compiled["triggers"] = list(dict.fromkeys(triggers))
    if "q" in doc:
        if not isinstance(doc["q"], str) or not doc["q"].strip():
            raise SubscriptionError("q must be a non-empty NGSI-LD query string")
        try:
            subs.compile_q(doc["q"], terms)
        except ValueError as exc:
            raise SubscriptionError(f"q: {exc}") from exc
        except Exception as exc:
            raise SubscriptionError(f"q is not a valid NGSI-LD query: {exc}") from exc
        compiled["q"] = doc["q"]
    if "geoQ" in doc:
        compiled["geoQ"] = _geo(doc["geoQ"], terms)
    if "scopeQ" in doc:
        try:
            ngsild_scope.parse_scope_q(doc["scopeQ"])
        except ValueError as exc:
            raise SubscriptionError(f"scopeQ: {exc}") from exc
        compiled["scopeQ"] = doc["scopeQ"]
    if "isActive" in doc and not isinstance(doc["isActive"], bool):
        raise SubscriptionError("isActive must be true or false")
    if "expiresAt" in doc and _time(doc["expiresAt"], "expiresAt") <= now and check_expiry:
        raise SubscriptionError("expiresAt must lie in the future")
    if "jsonldContext" in doc:
        compiled["jsonldContext"] = _uri(doc["jsonldContext"], "jsonldContext")
        if processor is not None:  # it must resolve: ContextNotAvailable is 504
            processor.active(compiled["jsonldContext"])
    if "datasetId" in doc:
        compiled["datasetId"] = _datasets(doc["datasetId"])
    for member in ("subscriptionName", "description"):
        if member in doc and not isinstance(doc[member], str):
            raise SubscriptionError(f"{member} must be a string")
    compiled.update(_notification(doc.get("notification"), terms))
    return compiled


def clean_document(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as stored: without @context and the read-only status members."""
    body = {k: v for k, v in doc.items() if k not in {"@context", "status"}}
    notification = body.get("notification")
    if isinstance(notification, dict):
        body["notification"] = {
            k: v for k, v in notification.items() if k not in {*STATUS_MEMBERS, "status"}
        }
    return body


def merge_fragment(body: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """PATCH (clause 5.8.2, by the partial update patch of clause 5.5.8): every member of the
    fragment replaces the stored member as a whole, `null` removes one. `notification` too is
    replaced, not merged member by member, so a fragment's notification must carry its
    `endpoint` (mandatory in NotificationParams, Table 5.2.14-1); the ETSI suite's 029_03 and
    029_04 expect BadRequestData for one without."""
    notification = fragment.get("notification")
    if isinstance(notification, dict) and not isinstance(notification.get("endpoint"), dict):
        raise SubscriptionError(
            "PATCH 中的 notification 会整体替换原有的 notification，必须带 endpoint "
            "（只改格式等成员也要把 endpoint 一并发送）/ a notification in a PATCH replaces the "
            "stored one as a whole (clause 5.5.8): it must carry its endpoint (send the endpoint "
            "along when changing only format or other notification members)"
        )
    merged = dict(body)
    for key, value in fragment.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _default_context_url(ld_context: Any) -> str | None:
    """The URL of the @context a subscription was written with, when it is one URL (with or
    without the core context): the default of `jsonldContext` (Table 5.2.12-1)."""
    if ld_context is None:
        return subs.CORE_CONTEXT_URL
    if isinstance(ld_context, str):
        return ld_context
    if isinstance(ld_context, list) and all(isinstance(c, str) for c in ld_context):
        urls = [c for c in ld_context if c != subs.CORE_CONTEXT_URL]
        if len(urls) <= 1:
            return urls[0] if urls else subs.CORE_CONTEXT_URL
    return None


def _context_url(row: Subscription, implicit: dict[str, str]) -> str | None:
    """The one URL of the @context `row` was written with: itself, or its implicit copy."""
    url = _default_context_url(row.ld_context)
    if url is None:
        url = implicit.get(implicit_contexts.key(row.ld_context))
    return url


def _implicit_of(session: DbSession, rows: list[Subscription]) -> dict[str, str]:
    return implicit_contexts.urls_of(
        session, (r.ld_context for r in rows if _default_context_url(r.ld_context) is None)
    )


def render(
    row: Subscription,
    *,
    with_context: bool,
    implicit: dict[str, str] | None = None,
    names: Renamer | None = None,
) -> dict[str, Any]:
    """A stored subscription as GET returns it: the document as written, the defaults of the
    members it left out (Tables 5.2.12-1, 5.2.14-1, 5.2.15-1: notificationTrigger,
    notification.format, endpoint.accept, jsonldContext when the @context was one URL, or else
    the URL of its ImplicitlyCreated copy from `implicit` (`implicit_contexts.urls_of`); not
    `isActive`, whose absence already says true) and the status members that have a value
    (Table 5.2.14-1, all 0..1): `timesSent`, `timesFailed`, `lastNotification` and the
    notification's `status` once a notification was sent, `lastSuccess`/`lastFailure` once one
    succeeded/failed. Before the first notification none of them is shown.

    `names` (see `_renamer`) compacts the names of the document with the request's @context
    instead (clause 5.8.2: each term as the request's @context names its IRI); the JSON-LD
    form then carries that @context."""
    out = _renamed(row.body, names) if names is not None else dict(row.body)
    out.setdefault("notificationTrigger", list(subs.DEFAULT_TRIGGERS))
    if "jsonldContext" not in out:
        url = _context_url(row, implicit or {})
        if url is not None:
            out["jsonldContext"] = url
    out["status"] = subs.status_of(row)
    notification = dict(out.get("notification") or {})
    notification.setdefault("format", "normalized")
    if isinstance(notification.get("endpoint"), dict):
        notification["endpoint"] = {"accept": JSON, **notification["endpoint"]}
    if row.times_sent:
        notification["timesSent"] = row.times_sent
        notification["timesFailed"] = row.times_failed
    for member, value in (
        ("lastNotification", row.last_notification),
        ("lastSuccess", row.last_success),
        ("lastFailure", row.last_failure),
    ):
        if value is not None:
            notification[member] = subs.iso(value)
    if row.last_notification is not None:
        failed = row.last_failure is not None and (
            row.last_success is None or row.last_failure > row.last_success
        )
        notification["status"] = "failed" if failed else "ok"
    out["notification"] = notification
    if with_context:
        shown = names.context if names is not None else row.ld_context
        out["@context"] = shown or subs.CORE_CONTEXT_URL
    return out


@dataclass(frozen=True)
class Renamer:
    """Names as one subscription's @context reads them, compacted with the request's."""

    stored: ActiveContext
    wanted: ActiveContext
    context: str  # the request's @context URL (the core context's when it named none)

    def __call__(self, name: str) -> str:
        return self.wanted.compact(self.stored.expand(name))


def _renamer(request: Request, row: Subscription) -> Renamer | None:
    """How to show `row`'s names to this request; None when the request reads them with the
    @context they were written with (the document is then shown as written)."""
    wanted = link_context(request) or subs.CORE_CONTEXT_URL
    if _default_context_url(row.ld_context) == wanted:
        return None
    processor = processor_of(request.app.state.pujiang)
    terms = processor.active(wanted)  # one the broker lacks is 504, as on the entity routes
    try:
        return Renamer(subs.terms_for(row.ld_context, processor), terms, wanted)
    except (ContextNotAvailable, InvalidContext):
        return None  # its own @context no longer available: the names as written


_TYPE_TOKENS = re.compile(r"([,;|()\s])")


def _renamed(body: dict[str, Any], names: Renamer) -> dict[str, Any]:
    """`body` with its attribute and type names renamed: entity types (within their type
    expressions), watchedAttributes, `q`, geoQ.geoproperty, notification.attributes/pick/omit."""
    out = dict(body)

    def name_list(value: Any) -> Any:
        if isinstance(value, str):
            return ",".join(names(v.strip()) for v in value.split(","))
        if isinstance(value, list):
            return [names(v) if isinstance(v, str) else v for v in value]
        return value

    if isinstance(out.get("entities"), list):
        out["entities"] = [_renamed_selector(item, names) for item in out["entities"]]
    if "watchedAttributes" in out:
        out["watchedAttributes"] = name_list(out["watchedAttributes"])
    if isinstance(out.get("q"), str):
        out["q"] = _renamed_q(out["q"], names)
    geo = out.get("geoQ")
    if isinstance(geo, dict) and isinstance(geo.get("geoproperty"), str):
        out["geoQ"] = {**geo, "geoproperty": names(geo["geoproperty"])}
    notification = out.get("notification")
    if isinstance(notification, dict):
        out["notification"] = {
            k: name_list(v) if k in ("attributes", "pick", "omit") else v
            for k, v in notification.items()
        }
    return out


def _renamed_q(text: str, names: Renamer) -> str:
    """A q with its attribute names renamed, rendered anew; as written when a name has no term
    in the request's @context (the query language has no syntax for a full IRI)."""
    try:
        rendered = str(parse_q(text).map_names(names))
        if str(parse_q(rendered)) == rendered:
            return rendered
    except ValueError:
        pass
    return text


def _renamed_selector(item: Any, names: Renamer) -> Any:
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        return item
    tokens = _TYPE_TOKENS.split(item["type"])
    renamed = "".join(t if not t or _TYPE_TOKENS.fullmatch(t) else names(t) for t in tokens)
    return {**item, "type": renamed}


# -- requests -------------------------------------------------------------------------------------


async def read_document(request: Request, *, merge: bool = False) -> tuple[dict[str, Any], Any]:
    """The JSON body and the @context it is to be read with (body, Link header, or core).
    `merge`: a PATCH, which also takes application/merge-patch+json (clause 6.3.4), read as
    application/json (the @context from the Link header)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    allowed = (*ACCEPTS, MERGE_PATCH) if merge else ACCEPTS
    if media not in allowed:
        raise NgsiLdError(
            "UnsupportedMediaType",
            f"不支持的 Content-Type {media or '（空）'}，请用 {' 或 '.join(allowed)} / send "
            f"Content-Type {' or '.join(allowed)}, not {media or 'nothing'!r}",
        )
    try:
        doc = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise NgsiLdError("InvalidRequest", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise NgsiLdError("InvalidRequest", "the body must be a JSON object")
    if media == JSONLD:
        if "@context" not in doc:
            raise bad_data(f"a {JSONLD} body must carry its @context")
        return doc, doc["@context"]
    if "@context" in doc:
        raise bad_data(f"a {JSON} body may not carry @context: send it in a Link header")
    return doc, link_context(request)


def _wants_jsonld(request: Request) -> bool:
    return JSONLD in request.headers.get("accept", "")


def _json(
    content: Any,
    request: Request,
    headers: dict[str, str] | None = None,
) -> Response:
    """The reply in JSON-LD (the @context in each subscription, see `render`) or in JSON with
    the @context in a Link header (clause 6.3.5), as the entity routes answer: the request's
    Link @context, with which `render` compacted the names, else the core context. A `Link` in
    `headers` (paging) is kept before it."""
    headers = dict(headers or {})
    if _wants_jsonld(request):
        return Response(orjson.dumps(content), media_type=JSONLD, headers=headers)
    url = link_context(request) or subs.CORE_CONTEXT_URL
    # a header is Latin-1: an IRI goes percent-encoded (RFC 3987 3.1)
    link = _link_header(quote(url, safe=":/?#[]@!$&'()*+,;=%~"))
    headers["Link"] = f"{headers['Link']}, {link}" if "Link" in headers else link
    return Response(orjson.dumps(content), media_type=JSON, headers=headers)


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def _compile(request: Request, doc: dict[str, Any], ld_context: Any, **options: Any) -> Any:
    processor = processor_of(request.app.state.pujiang)
    try:  # ContextNotAvailable becomes 504 LdContextNotAvailable in NgsiLdRoute
        return compile_subscription(doc, ld_context, processor=processor, **options)
    except SubscriptionError as exc:
        raise bad_data(str(exc)) from exc


def _keep_implicit(
    request: Request, session: DbSession, body: dict[str, Any], ld_context: Any
) -> None:
    """An @context that is not one URL is stored as ImplicitlyCreated (clause 5.13), in the
    subscription's transaction, unless the subscription names its own `jsonldContext`."""
    if "jsonldContext" not in body and _default_context_url(ld_context) is None:
        implicit_contexts.ensure(session, str(request.base_url), ld_context)


def _found(session: DbSession, context: AppContext, tenant: str, sub_id: str) -> Subscription:
    if not sub_id:
        # PATCH or DELETE on the collection itself (`/subscriptions/`, the suite's 029_01 and
        # 032_01): only GET and POST apply there.
        raise NgsiLdError(
            "MethodNotAllowed",
            "订阅集合只接受 GET 和 POST，修改或删除请给出订阅 id / the subscriptions collection "
            "allows GET and POST only: name the subscription to change or delete",
            405,
        )
    try:
        _uri(sub_id, "the subscription id")
    except SubscriptionError as exc:
        raise bad_data(f"订阅 id 必须是 URI / {exc}") from exc
    row = subs.get(session, tenant, sub_id)
    if row is None:
        broker_of(context).require_tenant(tenant)  # an unknown tenant is NonexistentTenant
        raise NgsiLdError("ResourceNotFound", f"there is no subscription {sub_id!r}")
    return row


@router.post("/subscriptions", status_code=201)
# Some clients (ngsildclient 0.5) POST to ".../subscriptions/"; the GET/PATCH/DELETE routes'
# `{sub_id:path}` would otherwise answer that path with 405 instead of the usual redirect.
@router.post("/subscriptions/", status_code=201, include_in_schema=False)
@checked_params(*DISTRIBUTION)
async def create_subscription(
    request: Request, session: DbSession, context: Context, principal: Subscriber
) -> Response:
    tenant = tenant_of(request)
    doc, ld_context = await read_document(request)
    doc = dict(doc)
    doc.setdefault("id", f"urn:ngsi-ld:Subscription:{uuid.uuid4()}")
    compiled = _compile(request, doc, ld_context)
    if subs.get(session, tenant, doc["id"]) is not None:
        raise NgsiLdError("AlreadyExists", f"a subscription {doc['id']!r} exists already")
    body = clean_document(doc)
    _keep_implicit(request, session, body, ld_context)
    try:
        with session.begin_nested():
            subs.create(session, tenant, body, compiled, ld_context, principal.actor)
    except IntegrityError as exc:
        raise NgsiLdError("AlreadyExists", f"a subscription {doc['id']!r} exists already") from exc
    broker_of(context).ensure_tenant(session, tenant)  # clause 4.14: made by its first resource
    audit.append(
        session,
        actor=principal.actor,
        action="context.subscription.create",
        target=doc["id"],
        request_id=_request_id(request),
        detail={"tenant": tenant, "endpoint": compiled["endpoint"]["uri"]},
    )
    return Response(status_code=201, headers=location(f"/ngsi-ld/v1/subscriptions/{doc['id']}"))


@router.get("/subscriptions")
# The conformance suite (and clients that build ".../subscriptions/" + id) list with a trailing
# slash; it must not reach the `{sub_id:path}` route as an empty id.
@router.get("/subscriptions/", include_in_schema=False)
@checked_params(*DISTRIBUTION)
def list_subscriptions(
    request: Request,
    session: DbSession,
    context: Context,
    _principal: Subscriber,
    limit: str | None = None,
    offset: str | None = None,
    count: str | None = None,
) -> Response:
    tenant = tenant_of(request)
    try:
        size = DEFAULT_LIMIT if limit is None else int(limit)
        skip = 0 if offset is None else int(offset)
    except ValueError as exc:
        raise bad_data("limit and offset must be whole numbers") from exc
    if not 0 <= size <= MAX_LIMIT or skip < 0:
        raise bad_data(f"limit must be 0..{MAX_LIMIT} and offset 0 or more")
    if count not in (None, "true", "false"):
        raise bad_data("count must be true or false")
    if size == 0 and count != "true":
        raise bad_data("limit=0 only makes sense with count=true")
    rows, total = subs.page(session, tenant, size, skip)
    if total == 0:
        # Like the entity routes: a tenant is known from its first entity or subscription.
        broker_of(context).require_tenant(tenant)
    with_context = _wants_jsonld(request)
    implicit = _implicit_of(session, rows)
    headers = {"NGSILD-Results-Count": str(total)} if count == "true" else {}
    # Paging links as on /entities (clause 6.3.10); limit=0 (a count only) pages nothing
    media = JSONLD if with_context else JSON
    links = _page_links(request, skip, size, size > 0 and skip + len(rows) < total, media)
    if links:
        headers["Link"] = links
    return _json(
        [
            render(r, with_context=with_context, implicit=implicit, names=_renamer(request, r))
            for r in rows
        ],
        request,
        headers,
    )


@router.get("/subscriptions/{sub_id:path}")
@checked_params(*DISTRIBUTION)
def get_subscription(
    sub_id: str, request: Request, session: DbSession, context: Context, _principal: Subscriber
) -> Response:
    negotiate(request, geo=False)  # 406 comes before 404 (clause 6.3.4)
    row = _found(session, context, tenant_of(request), sub_id)
    implicit = _implicit_of(session, [row])
    names = _renamer(request, row)
    body = render(row, with_context=_wants_jsonld(request), implicit=implicit, names=names)
    return _json(body, request)


@router.patch("/subscriptions/{sub_id:path}", status_code=204)
@checked_params(*DISTRIBUTION)
async def update_subscription(
    sub_id: str, request: Request, session: DbSession, context: Context, principal: Subscriber
) -> Response:
    tenant = tenant_of(request)
    fragment, ld_context = await read_document(request, merge=True)
    row = _found(session, context, tenant, sub_id)
    if "id" in fragment and fragment["id"] != sub_id:
        raise bad_data("the id of a subscription cannot be changed")
    fragment = clean_document(fragment)
    if not fragment:
        raise bad_data("the fragment changes nothing: send the members to change")
    terms = ld_context if ld_context is not None else row.ld_context
    try:
        body = merge_fragment(row.body, fragment)
    except SubscriptionError as exc:
        raise bad_data(str(exc)) from exc
    compiled = _compile(request, body, terms, check_expiry="expiresAt" in fragment)
    if ld_context is not None:
        _keep_implicit(request, session, body, ld_context)
    subs.replace(session, row, body, compiled, terms)
    audit.append(
        session,
        actor=principal.actor,
        action="context.subscription.update",
        target=sub_id,
        request_id=_request_id(request),
        detail={"tenant": tenant, "members": sorted(fragment)},
    )
    return Response(status_code=204)


@router.delete("/subscriptions/{sub_id:path}", status_code=204)
@checked_params(*DISTRIBUTION)
def delete_subscription(
    sub_id: str, request: Request, session: DbSession, context: Context, principal: Subscriber
) -> Response:
    tenant = tenant_of(request)
    row = _found(session, context, tenant, sub_id)
    subs.remove(session, row)
    audit.append(
        session,
        actor=principal.actor,
        action="context.subscription.delete",
        target=sub_id,
        request_id=_request_id(request),
        detail={"tenant": tenant},
    )
    return Response(status_code=204)
