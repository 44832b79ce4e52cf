"""NGSI-LD temporal routes (clauses 6.18-6.24) under /ngsi-ld/v1/temporal: the HTTP adapter of
`temporal.py`. Request parsing, ProblemDetails and replies are the broker adapter's
(`ngsild.py`); this file only adds what the temporal representation needs.

Mount with `router.include_router(ngsild_temporal.router)` in `context/api.py`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from pujiang.context import jsonld, ngsild_q
from pujiang.context.entity_form import Entity
from pujiang.context.errors import (
    BadData,
    InvalidRequest,
    NotFound,
    TooManyResults,
)
from pujiang.context.jsonld import (
    VALUE_MEMBER,
    ActiveContext,
    expand_entity,
    expand_instance,
    expand_types,
    infer_kind,
    is_uri,
)
from pujiang.context.ngsild import (
    DEFAULT_LIMIT,
    DISTRIBUTION,
    PREFIX,
    Body,
    Ld,
    LdRequest,
    NgsiLdError,
    NgsiLdRoute,
    Reader,
    Writer,
    _page_links,
    check_entity_id,
    check_options,
    checked_params,
    checked_pattern,
    no_content,
    parse_datasets,
    parse_geo,
    parse_scope,
    parse_types,
    projection,
    query_selectors,
    read_payload,
    reply,
)
from pujiang.context.ngsild import (
    location as location_header,
)
from pujiang.context.ngsild_projection import Projection
from pujiang.context.temporal import (
    MAX_LIMIT,
    TemporalPage,
    TemporalQuery,
    TemporalStore,
    parse_temporal_query,
)
from pujiang.platform.deps import Context

router = APIRouter(prefix=PREFIX + "/temporal", route_class=NgsiLdRoute, tags=["NGSI-LD temporal"])

# Parameters the spec defines for the temporal queries (tables 6.18.3.2-1, 6.19.3.1-1,
# 6.24.3.1-1) that this broker accepts and ignores (clause 6.3.20 lets every other name be 400
# InvalidRequest): `csf` (no context sources), `expandValues`, `lang` (temporal replies are not
# language-filtered), `join`/`joinLevel`/`containedBy` (no linked entities in temporal replies),
# `entityMap`, and on retrieval `type`. The parameters the handlers read are allowed anyway.
TEMPORAL_NOT_IMPLEMENTED = (
    "csf",
    "expandValues",
    "lang",
    "join",
    "joinLevel",
    "containedBy",
    "entityMap",
)

# `format` and `options` values of the temporal retrieval and query (clauses 6.3.7, 6.3.12,
# 6.18-6.20); `count` is also taken as an option (as count=true).
_FORMATS = ("normalized", "concise", "temporalValues", "aggregatedValues")
_OPTIONS = frozenset({*_FORMATS, "sysAttrs", "count"})
# Simplified temporal representation (clause 4.5.9): the member holding [[value, time], ...].
_SIMPLE_MEMBER = {
    "Property": "values",
    "GeoProperty": "values",
    "Relationship": "objects",
    "LanguageProperty": "languageMaps",
    "ListProperty": "valueLists",
    "ListRelationship": "objectLists",
    "JsonProperty": "jsons",
    "VocabProperty": "vocabs",
}
# ... and what each [value, time] pair's value becomes in an instance.
_INSTANCE_MEMBER = VALUE_MEMBER
_WRAPPED = {"LanguageProperty", "JsonProperty", "VocabProperty"}  # values are {member: ...}


def temporal_store(ld: Ld, context: Context) -> TemporalStore:
    """The temporal store of the request's broker, paging per `context_temporal_page_size`."""
    return TemporalStore(ld.broker, page_size=context.settings.context_temporal_page_size)


Store = Annotated[TemporalStore, Depends(temporal_store)]


# -- parsing --------------------------------------------------------------------------------


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    return items or None


def _representation(options: str | None, fmt: str | None) -> tuple[str, bool]:
    """(normalized | concise | temporalValues | aggregatedValues, sysAttrs). `format` wins over
    `options`; among options aggregatedValues over temporalValues over concise. A value the
    temporal API does not define is 400 InvalidRequest (clause 6.3.20), as on /entities."""
    opts = check_options(options, _OPTIONS)
    chosen = "normalized"
    if "concise" in opts:
        chosen = "concise"
    if "temporalValues" in opts:
        chosen = "temporalValues"
    if "aggregatedValues" in opts:
        chosen = "aggregatedValues"
    if fmt is not None:
        if fmt not in _FORMATS:
            raise InvalidRequest(
                f"format 只能是 {'、'.join(_FORMATS)}，不是 {fmt!r} / format must be one of "
                f"{', '.join(_FORMATS)}, not {fmt!r}"
            )
        chosen = fmt
    return chosen, "sysAttrs" in opts


def _types(text: str | None, ctx: ActiveContext) -> list[frozenset[str]] | None:
    return parse_types(text, ctx) if text else None


def _q(text: str, ctx: ActiveContext, *, from_url: bool) -> ngsild_q.QExpr:
    """`from_url`: a q of the URL query string, maybe percent-encoded twice by its client
    (`ngsild_q.parse_url_q`); one of a JSON body is parsed as it is."""
    parse = ngsild_q.parse_url_q if from_url else ngsild_q.parse_q
    try:
        return parse(text).map_names(ctx.expand)
    except ngsild_q.QSyntaxError as exc:
        raise BadData(f"q 无效：{exc} / invalid q: {exc}") from exc


def _temporal_query(
    ld: LdRequest,
    *,
    ids: list[str] | None,
    id_pattern: str | None,
    type: str | None,
    attrs: list[str] | None,
    q: str | None,
    geo: tuple[Any, Any, Any, str | None] | None,
    scope_q: Any,
    timerel: str | None,
    time_at: str | None,
    end_time_at: str | None,
    timeproperty: str | None,
    last_n: str | int | None,
    aggr_methods: str | list[str] | None,
    aggr_period: str | None,
    representation: str,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    count: bool = False,
    shown: Projection | None = None,
    datasets: list[str] | None = None,
    q_from_url: bool = False,
) -> TemporalQuery:
    query = parse_temporal_query(
        timerel=timerel,
        time_at=time_at,
        end_time_at=end_time_at,
        timeproperty=timeproperty,
        last_n=last_n,
        aggr_methods=aggr_methods,
        aggr_period=aggr_period,
        aggregated=representation == "aggregatedValues",
    )
    if limit < 0 or offset < 0:
        raise BadData("limit 和 offset 不能为负 / limit and offset must not be negative")
    if limit > MAX_LIMIT:
        raise TooManyResults(f"limit 最大为 {MAX_LIMIT} / limit must not exceed {MAX_LIMIT}")
    if limit == 0 and not count:
        raise BadData("limit=0 只能与 count=true 一起用 / limit=0 needs count=true")
    query.limit, query.offset, query.count = limit, offset, count
    if ids:
        query.ids = [check_entity_id(i) for i in ids]
    if id_pattern:
        query.id_pattern = checked_pattern(id_pattern)
    query.types = _types(type, ld.ctx)
    if attrs:
        for name in attrs:
            jsonld.check_name(name)
        query.attrs = [ld.ctx.expand(a) for a in attrs]
    if q:
        query.q = _q(q, ld.ctx, from_url=q_from_url)
    if geo is not None:
        georel, geometry, coordinates, geoproperty = geo
        given = [p for p in (georel, geometry, coordinates) if p not in (None, "")]
        if len(given) < 3:
            raise BadData(
                "地理查询需要同时给出 georel、geometry 和 coordinates / a geo-query needs georel, "
                "geometry and coordinates together"
            )
        if geoproperty is not None and not isinstance(geoproperty, str):
            raise BadData("geoproperty 必须是字符串 / geoproperty must be a string")
        if geoproperty:
            jsonld.check_name(geoproperty)
        query.geo = parse_geo(georel, geometry, coordinates, geoproperty, ld.ctx)
    if scope_q is not None:
        query.scope = parse_scope(scope_q)
    if shown is not None:
        query.pick_attrs, query.omit_attrs = shown.attributes()
    query.datasets = datasets
    return query


def _instances(name: str, raw: Any, ctx: ActiveContext) -> list[dict[str, Any]]:
    """One attribute of an EntityTemporal payload: instances, or the simplified form."""
    if isinstance(raw, dict) and raw.get("type", "Property") in _SIMPLE_MEMBER:
        kind = raw.get("type", "Property")
        member = _SIMPLE_MEMBER[kind]
        if member in raw and _INSTANCE_MEMBER[kind] not in raw:
            return [expand_instance(name, item, ctx) for item in _from_simple(name, kind, raw)]
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise BadData(f"属性 {name} 没有实例 / attribute {name} has no instances")
    return [expand_instance(name, item, ctx) for item in items]


def _from_simple(name: str, kind: str, raw: dict[str, Any]) -> list[dict[str, Any]]:
    member = _SIMPLE_MEMBER[kind]
    pairs = raw[member]
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[1], str) for p in pairs
    ):
        raise BadData(
            f"属性 {name} 的 {member} 必须是 [值, 时间] 对的数组 / {member} of {name} must be an "
            "array of [value, time] pairs"
        )
    out = []
    for value, moment in pairs:
        target = _INSTANCE_MEMBER[kind]
        if kind in _WRAPPED and isinstance(value, dict) and target in value:
            value = value[target]
        instance: dict[str, Any] = {"type": kind, target: value, "observedAt": moment}
        if "datasetId" in raw:
            instance["datasetId"] = raw["datasetId"]
        out.append(instance)
    return out


def _temporal_entity(payload: Any, ctx: ActiveContext, *, fragment: bool) -> Entity:
    if not isinstance(payload, dict):
        raise BadData("请求体必须是 JSON 对象 / the body must be a JSON object")
    entity: Entity = {}
    if not fragment:
        entity_id = payload.get("id")
        if not is_uri(entity_id):
            raise BadData(
                f"实体 id 必须是 URI：{entity_id!r} / "
                f"the entity id must be a URI, not {entity_id!r}"
            )
        entity["id"] = entity_id
        entity["type"] = expand_types(payload.get("type"), ctx, required=False)
    for key, value in payload.items():
        if key in ("id", "type", "@context", "scope", "createdAt", "modifiedAt"):
            continue
        if key.startswith("@"):
            raise BadData(f"不允许出现 {key} / {key} is not allowed here")
        jsonld.check_name(key)
        entity.setdefault(ctx.expand(key), []).extend(_instances(key, value, ctx))
    return entity


# -- rendering ------------------------------------------------------------------------------


def _compact_value(kind: str, value: Any, ctx: ActiveContext) -> Any:
    if kind == "VocabProperty":
        if isinstance(value, str):
            return ctx.compact(value)
        if isinstance(value, list):
            return [ctx.compact(v) if isinstance(v, str) else v for v in value]
    return value


def _render_instance(instance: dict[str, Any], ctx: ActiveContext, keep: set[str]) -> Any:
    out: dict[str, Any] = {}
    kind = instance.get("type", "Property")
    for key, value in instance.items():
        if key in ("createdAt", "modifiedAt", "deletedAt"):
            if key in keep:
                out[key] = value
        elif key == "vocab":
            out[key] = _compact_value("VocabProperty", value, ctx)
        elif key == "objectType":
            out[key] = ctx.compact(value) if isinstance(value, str) else value
        elif key in _INSTANCE_MEMBER.values() or key in (
            "type",
            "datasetId",
            "observedAt",
            "unitCode",
            "instanceId",
            "lang",
        ):
            out[key] = value
        elif isinstance(value, dict):
            out[ctx.compact(key)] = _render_instance(value, ctx, keep)
        elif isinstance(value, list):
            out[ctx.compact(key)] = [
                _render_instance(v, ctx, keep) if isinstance(v, dict) else v for v in value
            ]
    out["type"] = kind
    return out


def _time_of(instance: dict[str, Any], timeproperty: str) -> Any:
    return instance.get(timeproperty) or instance.get("modifiedAt")


def _render(
    page: TemporalPage,
    ld: LdRequest,
    representation: str,
    sys_attrs: bool,
    shown: Projection | None = None,
) -> list[Any]:
    ctx = ld.ctx
    shown = shown or Projection()
    keep = {"createdAt", "modifiedAt", "deletedAt"} if sys_attrs else set()
    if page.time_property != "observedAt":
        keep.add(page.time_property)
    out = []
    for entity in page.entities:
        rendered: dict[str, Any] = {}
        if shown.keeps("id"):
            rendered["id"] = entity["id"]
        if shown.keeps("type"):
            types = [ctx.compact(t) for t in entity.get("type", [])]
            rendered["type"] = types[0] if len(types) == 1 else types
        for name, instances in entity.items():
            if name in ("id", "type") or not shown.keeps(name):
                continue
            short = ctx.compact(name)
            if page.aggregated:
                items = [dict(i) for i in instances]
                rendered[short] = items[0] if len(items) == 1 else items
            elif representation == "temporalValues" and not instances:  # cut to nothing
                kind = page.emptied.get(entity["id"], {}).get(name, "Property")
                rendered[short] = {"type": kind, _SIMPLE_MEMBER.get(kind, "values"): []}
            elif representation == "temporalValues":
                rendered[short] = _render_simple(instances, page.time_property, ctx)
            elif representation == "concise":
                rendered[short] = [_concise(_render_instance(i, ctx, keep)) for i in instances]
            else:
                rendered[short] = [_render_instance(i, ctx, keep) for i in instances]
        out.append(rendered)
    return out


def _concise(instance: dict[str, Any], *, sub: bool = False) -> Any:
    """The concise form of a rendered instance: `type` left out wherever it can be told from
    the other members (as when reading concise input: `object` a Relationship, `languageMap` a
    LanguageProperty, a GeoJSON `value` a GeoProperty...), so it stays lossless; where it
    cannot (a GeoProperty's deletion, `value` urn:ngsi-ld:null) it is kept. Instances over time stay
    objects; a sub-property holding nothing but its value becomes that value."""
    out: dict[str, Any] = {}
    for key, value in instance.items():
        out[key] = _concise(value, sub=True) if _is_attribute(key, value) else value
    kind = out.get("type", "Property")
    rest = {k: v for k, v in out.items() if k != "type"}
    if infer_kind(rest) != kind:
        return out
    if (
        sub
        and kind == "Property"
        and set(rest) == {"value"}
        and not isinstance(rest["value"], dict)
    ):
        return rest["value"]
    return rest


def _is_attribute(key: str, value: Any) -> bool:
    """A rendered sub-attribute (not a member of the instance itself)."""
    return isinstance(value, dict) and key not in _INSTANCE_MEMBER.values() and "type" in value


def _render_simple(instances: list[dict[str, Any]], timeproperty: str, ctx: ActiveContext) -> Any:
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for instance in instances:
        by_dataset.setdefault(str(instance.get("datasetId") or ""), []).append(instance)
    items = []
    for dataset, members in by_dataset.items():
        kind = members[0].get("type", "Property")
        member = _SIMPLE_MEMBER.get(kind, "values")
        target = _INSTANCE_MEMBER.get(kind, "value")
        pairs = []
        for instance in members:
            value = _compact_value(kind, instance.get(target), ctx)
            if kind in _WRAPPED:
                value = {target: value}
            pairs.append([value, _time_of(instance, timeproperty)])
        item: dict[str, Any] = {"type": kind, member: pairs}
        if dataset:
            item["datasetId"] = dataset
        items.append(item)
    return items[0] if len(items) == 1 else items


def _reply(
    ld: LdRequest,
    page: TemporalPage,
    data: Any,
    headers: dict[str, str] | None = None,
) -> Response:
    headers = dict(headers or {})
    status = 200
    if page.content_range is not None:
        headers["Content-Range"] = page.content_range
        status = 206
    if ld.accept not in ("application/json", "application/ld+json"):
        raise NgsiLdError(
            "NotAcceptable",
            "时间表示只提供 JSON / the temporal representation is JSON or JSON-LD only",
        )
    return reply(ld, data, status=status, headers=headers)


# -- routes ---------------------------------------------------------------------------------


@router.get("/entities", summary="查询时间演变 / query temporal evolution of entities")
@checked_params(*DISTRIBUTION, *TEMPORAL_NOT_IMPLEMENTED)
def query_temporal(
    request: Request,
    ld: Ld,
    store: Store,
    _: Reader,
    id: str | None = None,
    idPattern: str | None = None,  # noqa: N803 - the NGSI-LD parameter names
    type: str | None = None,
    attrs: str | None = None,
    pick: str | None = None,
    omit: str | None = None,
    datasetId: str | None = None,  # noqa: N803
    q: str | None = None,
    georel: str | None = None,
    geometry: str | None = None,
    coordinates: str | None = None,
    geoproperty: str | None = None,
    scopeQ: str | None = None,  # noqa: N803
    timerel: str | None = None,
    timeAt: str | None = None,  # noqa: N803
    endTimeAt: str | None = None,  # noqa: N803
    timeproperty: str | None = None,
    lastN: str | None = None,  # noqa: N803
    aggrMethods: str | None = None,  # noqa: N803
    aggrPeriodDuration: str | None = None,  # noqa: N803
    limit: Annotated[int, Query()] = DEFAULT_LIMIT,
    offset: Annotated[int, Query()] = 0,
    count: bool = False,
    options: str | None = None,
    format: str | None = None,
    local: bool = False,
) -> Response:
    representation, sys_attrs = _representation(options, format)
    shown = projection(ld, pick, omit, attrs)
    count = count or "count" in (options or "").split(",")
    ids = _split(id)
    attr_list = _split(attrs)
    geo_given = any(p for p in (georel, geometry, coordinates))
    # As for GET /entities (clause 5.7.2): a list of ids alone is not enough; local=true is.
    if not (type or attr_list or q or geo_given or idPattern or scopeQ is not None or local):
        raise BadData(
            "查询时间演变至少需要 type、attrs、q、idPattern、scopeQ、地理查询之一或 local=true / "
            "querying temporal evolution needs at least one of type, attrs, q, idPattern, "
            "scopeQ, a geo-query or local=true"
        )
    query = _temporal_query(
        ld,
        ids=ids,
        id_pattern=idPattern,
        type=type,
        attrs=attr_list,
        q=q,
        geo=(georel, geometry, coordinates, geoproperty) if geo_given else None,
        scope_q=scopeQ,
        timerel=timerel,
        time_at=timeAt,
        end_time_at=endTimeAt,
        timeproperty=timeproperty,
        last_n=lastN,
        aggr_methods=aggrMethods,
        aggr_period=aggrPeriodDuration,
        representation=representation,
        limit=limit,
        offset=offset,
        count=count,
        shown=shown,
        datasets=parse_datasets(datasetId),
        q_from_url=True,
    )
    return _query_reply(request, ld, store, query, representation, sys_attrs, shown)


def _query_reply(
    request: Request,
    ld: LdRequest,
    store: TemporalStore,
    query: TemporalQuery,
    representation: str,
    sys_attrs: bool,
    shown: Projection,
) -> Response:
    page = store.query(ld.tenant, query)
    headers: dict[str, str] = {}
    if page.total is not None:
        headers["NGSILD-Results-Count"] = str(page.total)
    links = _page_links(request, query.offset, query.limit, page.has_next, ld.accept)
    if links:
        headers["Link"] = links
    return _reply(ld, page, _render(page, ld, representation, sys_attrs, shown), headers)


@router.post(
    "/entityOperations/query",
    summary="以请求体查询时间演变 / query temporal evolution (POST)",
)
@checked_params(*DISTRIBUTION)
def query_temporal_post(
    request: Request,
    ld: Ld,
    store: Store,
    body: Body,
    _: Reader,
    limit: Annotated[int, Query()] = DEFAULT_LIMIT,
    offset: Annotated[int, Query()] = 0,
    count: bool = False,
    options: str | None = None,
    format: str | None = None,
) -> Response:
    payload = read_payload(request, body, ld)
    if not isinstance(payload, dict) or payload.get("type", "Query") != "Query":
        raise BadData(
            '请求体必须是 Query 对象 / the body must be a Query object ({"type": "Query"})'
        )
    representation, sys_attrs = _representation(options, format)
    shown = projection(ld, payload.get("pick"), payload.get("omit"), payload.get("attrs"))
    count = count or "count" in (options or "").split(",")
    selector, several = query_selectors(ld, payload)
    temporal = payload.get("temporalQ") or {}
    if not isinstance(temporal, dict):
        raise BadData("temporalQ 必须是对象 / temporalQ must be an object")
    attrs = payload.get("attrs")
    if attrs is not None and not (
        isinstance(attrs, list) and all(isinstance(a, str) for a in attrs)
    ):
        raise BadData("attrs 必须是字符串数组 / attrs must be an array of strings")
    q = payload.get("q")
    if q is not None and not isinstance(q, str):
        raise BadData("q 必须是字符串 / q must be a string")
    geo_q = payload.get("geoQ")
    if geo_q is not None and not isinstance(geo_q, dict):
        raise BadData("geoQ 必须是对象 / geoQ must be an object")
    scope_q = payload.get("scopeQ")
    if not (payload.get("entities") or attrs or q or geo_q or scope_q is not None):
        raise BadData(
            "查询时间演变至少需要 entities、attrs、q、geoQ 或 scopeQ 之一 / querying temporal "
            "evolution needs entities, attrs, q, geoQ or scopeQ"
        )

    def text(name: str) -> str | None:
        value = temporal.get(name)
        return None if value is None else str(value)

    query = _temporal_query(
        ld,
        ids=_split(selector.get("id")),
        id_pattern=selector.get("idPattern"),
        type=selector.get("type"),
        attrs=attrs,
        q=q,
        geo=(
            (
                geo_q.get("georel"),
                geo_q.get("geometry"),
                geo_q.get("coordinates"),
                geo_q.get("geoproperty"),
            )
            if geo_q
            else None
        ),
        scope_q=scope_q,
        timerel=text("timerel"),
        time_at=text("timeAt"),
        end_time_at=text("endTimeAt"),
        timeproperty=text("timeproperty"),
        last_n=temporal.get("lastN"),
        aggr_methods=_aggr(payload, temporal, "aggrMethods"),
        aggr_period=_aggr(payload, temporal, "aggrPeriodDuration"),
        representation=representation,
        limit=limit,
        offset=offset,
        count=count,
        shown=shown,
        datasets=parse_datasets(payload.get("datasetId")),
    )
    if several:
        query.selectors = several
    return _query_reply(request, ld, store, query, representation, sys_attrs, shown)


def _aggr(payload: dict[str, Any], temporal: dict[str, Any], name: str) -> Any:
    """aggrMethods or aggrPeriodDuration of a Query body: in its `temporalQ`, its `aggrParams`
    (AggregationParams, v1.9) or `aggregationParams`, or the Query itself, first found."""
    for holder in (temporal, payload.get("aggrParams"), payload.get("aggregationParams"), payload):
        if isinstance(holder, dict) and holder.get(name) is not None:
            return holder[name]
    return None


@router.get("/entities/{entity_id}", summary="读取时间演变 / retrieve temporal evolution")
@checked_params(*DISTRIBUTION, *TEMPORAL_NOT_IMPLEMENTED, "type")
def retrieve_temporal(
    entity_id: str,
    ld: Ld,
    store: Store,
    _: Reader,
    attrs: str | None = None,
    pick: str | None = None,
    omit: str | None = None,
    datasetId: str | None = None,  # noqa: N803
    timerel: str | None = None,
    timeAt: str | None = None,  # noqa: N803 - the NGSI-LD parameter names
    endTimeAt: str | None = None,  # noqa: N803
    timeproperty: str | None = None,
    lastN: str | None = None,  # noqa: N803
    aggrMethods: str | None = None,  # noqa: N803
    aggrPeriodDuration: str | None = None,  # noqa: N803
    options: str | None = None,
    format: str | None = None,
) -> Response:
    check_entity_id(entity_id)
    representation, sys_attrs = _representation(options, format)
    shown = projection(ld, pick, omit, attrs)
    query = _temporal_query(
        ld,
        ids=None,
        id_pattern=None,
        type=None,
        attrs=_split(attrs),
        q=None,
        geo=None,
        scope_q=None,
        timerel=timerel,
        time_at=timeAt,
        end_time_at=endTimeAt,
        timeproperty=timeproperty,
        last_n=lastN,
        aggr_methods=aggrMethods,
        aggr_period=aggrPeriodDuration,
        representation=representation,
        shown=shown,
        datasets=parse_datasets(datasetId),
    )
    page = store.retrieve(ld.tenant, entity_id, query)
    rendered = _render(page, ld, representation, sys_attrs, shown)[0]
    if not rendered:  # pick/omit left no member of the entity
        raise NotFound(
            f"实体 {entity_id} 在 pick/omit 之后没有剩余成员 / nothing of entity {entity_id} "
            "is left after pick/omit",
            id=entity_id,
        )
    return _reply(ld, page, rendered)


# -- writes ---------------------------------------------------------------------------------


def _scope(payload: dict[str, Any], entity_id: str, ctx: ActiveContext) -> list[str] | None:
    """The entity's `scope` (clause 4.18) if the payload gives one, checked as on create."""
    if "scope" not in payload:
        return None
    checked = expand_entity({"id": entity_id, "scope": payload["scope"]}, ctx, require_type=False)
    scope: list[str] = checked["scope"]
    return scope


@router.post(
    "/entities",
    status_code=201,
    summary="创建或更新时间演变 / create or update temporal evolution",
)
@checked_params(*DISTRIBUTION)
def upsert_temporal(
    request: Request, ld: Ld, store: Store, body: Body, principal: Writer
) -> Response:
    """Clause 5.6.11. An entity that has no current state is created in it too, from the
    latest instance of each attribute and datasetId (docs/context.md "Temporal evolution");
    for one that has, the instances are added to its history only."""
    payload = read_payload(request, body, ld)
    entity = _temporal_entity(payload, ld.ctx, fragment=False)
    scope = _scope(payload, entity["id"], ld.ctx)
    request.state.audit_target = entity["id"]
    created = store.upsert_current(ld.tenant, entity, scope, principal.department_code)
    if created:
        location = f"{PREFIX}/temporal/entities/{entity['id']}"
        return Response(status_code=201, headers=location_header(location))
    return no_content()


@router.delete(
    "/entities/{entity_id}", status_code=204, summary="删除时间演变 / delete temporal evolution"
)
@checked_params(*DISTRIBUTION)
def delete_temporal(entity_id: str, ld: Ld, store: Store, _: Writer) -> Response:
    check_entity_id(entity_id)
    store.delete_entity(ld.tenant, entity_id)
    return no_content()


@router.post(
    "/entities/{entity_id}/attrs",
    status_code=204,
    summary="向时间演变追加属性实例 / add attributes to temporal evolution",
)
@checked_params(*DISTRIBUTION)
def add_temporal_attrs(
    entity_id: str, request: Request, ld: Ld, store: Store, body: Body, _: Writer
) -> Response:
    check_entity_id(entity_id)
    payload = read_payload(request, body, ld)
    fragment = _temporal_entity(payload, ld.ctx, fragment=True)
    if not fragment:
        raise BadData("请求体没有属性 / the body holds no attributes")
    store.add_attrs(ld.tenant, entity_id, fragment)
    return no_content()


def _dataset(value: str | None) -> str | None:
    if value is not None and not is_uri(value):
        raise BadData(f"datasetId 必须是 URI：{value!r} / datasetId must be a URI")
    return value


@router.delete(
    "/entities/{entity_id}/attrs/{attr}",
    status_code=204,
    summary="删除时间演变中的属性 / delete an attribute from temporal evolution",
)
@checked_params(*DISTRIBUTION)
def delete_temporal_attr(
    entity_id: str,
    attr: str,
    ld: Ld,
    store: Store,
    _: Writer,
    datasetId: str | None = None,  # noqa: N803 - the NGSI-LD parameter names
    deleteAll: bool = False,  # noqa: N803
) -> Response:
    check_entity_id(entity_id)
    jsonld.check_name(attr)
    store.delete_attr(
        ld.tenant, entity_id, ld.ctx.expand(attr), _dataset(datasetId), delete_all=deleteAll
    )
    return no_content()


def _instance_id(value: str) -> str:
    if not is_uri(value):
        raise BadData(f"instanceId 必须是 URI：{value!r} / instanceId must be a URI")
    return value


@router.patch(
    "/entities/{entity_id}/attrs/{attr}/{instance_id}",
    status_code=204,
    summary="修改属性实例 / modify an attribute instance",
)
@checked_params(*DISTRIBUTION)
def modify_temporal_instance(
    entity_id: str,
    attr: str,
    instance_id: str,
    request: Request,
    ld: Ld,
    store: Store,
    body: Body,
    _: Writer,
) -> Response:
    check_entity_id(entity_id)
    jsonld.check_name(attr)
    _instance_id(instance_id)
    payload = read_payload(request, body, ld)
    if not isinstance(payload, dict):
        raise BadData("请求体必须是 JSON 对象 / the body must be a JSON object")
    members = {k: v for k, v in payload.items() if k != "@context"}
    if attr in members and len(members) == 1:
        raw = members[attr]
        if isinstance(raw, list):
            if len(raw) != 1:
                raise BadData(
                    f"属性 {attr} 必须恰有一个实例 / {attr} must hold exactly one instance"
                )
            raw = raw[0]
    elif "type" in members or "value" in members or "object" in members:
        raw = members  # a bare instance
    else:
        raise BadData(
            f"请求体应为 {{{attr!r}: [实例]}} / the body must be {{{attr!r}: [instance]}}"
        )
    instance = expand_instance(attr, raw, ld.ctx)
    store.modify_instance(ld.tenant, entity_id, ld.ctx.expand(attr), instance_id, instance)
    return no_content()


@router.delete(
    "/entities/{entity_id}/attrs/{attr}/{instance_id}",
    status_code=204,
    summary="删除属性实例 / delete an attribute instance",
)
@checked_params(*DISTRIBUTION)
def delete_temporal_instance(
    entity_id: str, attr: str, instance_id: str, ld: Ld, store: Store, _: Writer
) -> Response:
    check_entity_id(entity_id)
    jsonld.check_name(attr)
    _instance_id(instance_id)
    store.delete_instance(ld.tenant, entity_id, ld.ctx.expand(attr), instance_id)
    return no_content()
