"""CKAN Action API adapter: `/api/3/action/{name}` and `/api/action/{name}`, GET or POST.

Translates CKAN's vocabulary to the catalog's services and back: a package is an opened
resource, an organization a department, a group a theme, a CKAN resource the published table
(its id is the table's name, as in CKAN's datastore). Replies use CKAN's envelope
({help, success, result} or {success: false, error: {__type, message}}) and error types, so
unchanged CKAN clients (ckanapi) work. Only opened datasets exist here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from pujiang.catalog import datastore, opendata, publishing, search, sqlguard
from pujiang.catalog.datastore import MAX_LIMIT, QueryError, TableQuery
from pujiang.catalog.models import CatalogResource
from pujiang.catalog.service import refresh_view
from pujiang.catalog.vocab import THEMES, OpenType
from pujiang.platform.db import Base
from pujiang.platform.deps import Context, get_session, public
from pujiang.platform.errors import Problem
from pujiang.platform.models import Department

router = APIRouter(tags=["开放数据 CKAN API"])

CKAN_VERSION = "2.10.4"
ROWS_MAX = 1000
# CKAN facet names -> the catalog's facet fields.
FACETS = {
    "organization": "department",
    "groups": "theme",
    "res_format": "format",
    "open_type": "open_type",
}
_STATUS = {
    "Not Found Error": 404,
    "Validation Error": 409,
    "Authorization Error": 403,
    "Search Query Error": 400,
    "Bad Request": 400,
    "Rate Limit Error": 429,
}


class CkanError(Exception):
    def __init__(self, kind: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.kind, self.message, self.fields = kind, message, fields


def _validation(field: str, message: str) -> CkanError:
    return CkanError("Validation Error", f"{field}: {message}", **{field: [message]})


@dataclass
class Call:
    session: Session
    context: Any
    request: Request
    data: dict[str, Any]

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.data.get(name, default)
        return None if value is None else str(value)

    def required(self, name: str) -> str:
        value = self.text(name)
        if not value:
            raise _validation(name, "Missing value / 缺少参数")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.data.get(name, default)
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise _validation(name, f"Invalid integer / 不是整数: {value!r}") from None
        if not low <= number <= high:
            raise _validation(name, f"Must be between {low} and {high} / 须在 {low}–{high} 之间")
        return number

    def flag(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"true", "1", "yes", "on"}:
            return True
        if text in {"false", "0", "no", "off", ""}:
            return False
        raise _validation(name, f"Invalid boolean / 不是布尔值: {value!r}")

    def listing(self, name: str) -> list[str] | None:
        value = self.data.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            value = _maybe_json(value)
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise _validation(name, "Must be a list of strings / 须为字符串列表")

    def mapping(self, name: str) -> dict[str, Any] | None:
        value = self.data.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            value = _maybe_json(value)
        if not isinstance(value, dict):
            raise _validation(name, "Must be a JSON object / 须为 JSON 对象")
        return value

    @property
    def base(self) -> str:
        return str(self.request.base_url).rstrip("/")

    @property
    def api_key(self) -> str | None:
        headers = self.request.headers
        key = (
            headers.get("x-api-key")
            or headers.get("x-ckan-api-key")
            or headers.get("authorization")
        )
        if key and key.lower().startswith("bearer "):
            key = key[7:]
        return key or None


def _maybe_json(text: str) -> Any:
    stripped = text.strip()
    if stripped[:1] in "[{":
        try:
            return orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return text
    return text


# -- dictionaries -------------------------------------------------------------------------------


def _org_name(department: Department) -> str:
    return department.code.lower()


def _org(department: Department, count: int | None = None) -> dict[str, Any]:
    org = {
        "id": _org_name(department),
        "name": _org_name(department),
        "title": department.name,
        "display_name": department.name,
        "description": department.name_en,
        "type": "organization",
        "is_organization": True,
        "state": "active",
        "approval_status": "approved",
        "image_url": "",
        "created": department.created_at.isoformat(),
    }
    if count is not None:
        org["package_count"] = count
    return org


def _group(theme: str, count: int | None = None) -> dict[str, Any]:
    group: dict[str, Any] = {
        "id": theme,
        "name": theme,
        "title": theme,
        "display_name": theme,
        "description": "",
        "type": "group",
        "is_organization": False,
        "state": "active",
        "approval_status": "approved",
        "image_url": "",
    }
    if count is not None:
        group["package_count"] = count
    return group


def _resource(call: Call, resource: CatalogResource) -> dict[str, Any]:
    published = resource.published_id or ""
    return {
        "id": published,
        "package_id": resource.uid,
        "name": resource.title,
        "description": resource.summary,
        "format": resource.format,
        "url": f"{call.base}/api/3/action/datastore_search?resource_id={published}",
        "url_type": "datastore",
        "datastore_active": True,
        "state": "active",
        "position": 0,
        "created": resource.opened_at.isoformat() if resource.opened_at else None,
        "last_modified": (
            resource.data_updated_at.isoformat() if resource.data_updated_at else None
        ),
        "mimetype": "application/json",
        "resource_type": "datastore",
    }


def _package(call: Call, resource: CatalogResource) -> dict[str, Any]:
    extras = {
        "resource_code": resource.code,
        "share_type": resource.share_type,
        "open_type": resource.open_type,
        "open_conditions": resource.open_conditions,
        "update_cycle": resource.update_cycle,
        "released_on": resource.released_on.isoformat(),
        "base_registry": resource.base_registry or "",
        "provider_code": resource.department.code,
        "related_codes": ",".join(resource.related_codes),
    }
    return {
        "id": resource.uid,
        "name": resource.name,
        "title": resource.title,
        "notes": resource.summary,
        "type": "dataset",
        "state": "active",
        "private": False,
        "license_id": resource.license_id,
        "license_title": resource.license_id.upper(),
        "author": resource.department.name,
        "maintainer": resource.department.name,
        "url": f"{call.base}/api/catalog/resources/{resource.name}",
        "version": None,
        "metadata_created": resource.created_at.isoformat(),
        "metadata_modified": resource.updated_at.isoformat(),
        "owner_org": _org_name(resource.department),
        "organization": _org(resource.department),
        "groups": [_group(resource.theme)],
        "tags": [{"name": t, "display_name": t, "state": "active"} for t in resource.tags],
        "num_tags": len(resource.tags),
        "resources": [_resource(call, resource)],
        "num_resources": 1,
        "extras": [{"key": k, "value": v} for k, v in extras.items()],
    }


# -- actions ------------------------------------------------------------------------------------


def _opened(session: Session) -> Select[Any]:
    return select(CatalogResource).where(CatalogResource.opened_at.is_not(None))


def _find_package(call: Call) -> CatalogResource:
    ident = call.required("id")
    resource: CatalogResource | None = call.session.scalars(
        _opened(call.session).where(
            (CatalogResource.name == ident) | (CatalogResource.uid == ident)
        )
    ).one_or_none()
    if resource is None:
        raise CkanError("Not Found Error", f"Not found: dataset {ident} / 数据集不存在")
    return resource


def _find_published(call: Call, name: str = "resource_id") -> CatalogResource:
    ident = call.required(name)
    resource: CatalogResource | None = call.session.scalars(
        _opened(call.session).where(CatalogResource.published_id == ident)
    ).one_or_none()
    if resource is None:
        raise CkanError("Not Found Error", f"Not found: resource {ident} / 资源不存在")
    return resource


def package_list(call: Call) -> Any:
    limit = call.integer("limit", ROWS_MAX, 1, ROWS_MAX)
    offset = call.integer("offset", 0, 0, 10**9)
    return list(
        call.session.scalars(
            select(CatalogResource.name)
            .where(CatalogResource.opened_at.is_not(None))
            .order_by(CatalogResource.name)
            .limit(limit)
            .offset(offset)
        )
    )


def package_show(call: Call) -> Any:
    return _package(call, _find_package(call))


def _parse_fq(fq: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    text = fq.strip()
    position = 0
    while position < len(text):
        while position < len(text) and text[position] in " +":
            position += 1
        if text.startswith("AND ", position):
            position += 4
            continue
        colon = text.find(":", position)
        if colon < 0:
            if text[position:].strip():
                raise CkanError(
                    "Search Query Error", f"fq: expected field:value near {text[position:]!r}"
                )
            break
        key = text[position:colon].strip()
        position = colon + 1
        if position < len(text) and text[position] == '"':
            end = text.find('"', position + 1)
            if end < 0:
                raise CkanError("Search Query Error", "fq: unterminated quote / 引号不成对")
            value, position = text[position + 1 : end], end + 1
        else:
            end = text.find(" ", position)
            end = len(text) if end < 0 else end
            value, position = text[position:end], end
        found.setdefault(key, []).append(value)
    return found


_FQ_FIELDS = {"organization", "groups", "res_format", "tags", "open_type"}


def package_search(call: Call) -> Any:
    rows = call.integer("rows", 10, 0, ROWS_MAX)
    start = call.integer("start", 0, 0, 10**9)
    query = search.SearchQuery(
        q=call.text("q", "") or "", opened_only=True, offset=start, limit=rows
    )
    q = query.q.strip()
    if q in {"*:*", "*"}:
        query.q = ""
    filters = _parse_fq(call.text("fq", "") or "")
    unknown = sorted(set(filters) - _FQ_FIELDS)
    if unknown:
        raise CkanError(
            "Search Query Error",
            f"fq: unsupported field {', '.join(unknown)}; use {', '.join(sorted(_FQ_FIELDS))}",
        )
    departments = {d.code.lower(): d.code for d in call.session.scalars(select(Department))}
    if "organization" in filters:
        query.department = departments.get(filters["organization"][0].lower(), "-")
    if "groups" in filters:
        query.theme = filters["groups"][0]
    if "res_format" in filters:
        query.format = filters["res_format"][0]
    if "open_type" in filters:
        query.open_type = filters["open_type"][0]
    if "tags" in filters:
        query.tags = filters["tags"]
    sort = (call.text("sort", "score desc, metadata_modified desc") or "").split(",")[0].split()
    sort_fields = {
        "score": "score",
        "metadata_modified": "modified",
        "name": "title",
        "title_string": "title",
        "metadata_created": "released",
    }
    if not sort or sort[0] not in sort_fields or (len(sort) > 1 and sort[1] not in {"asc", "desc"}):
        raise CkanError(
            "Search Query Error", f"sort: use one of {', '.join(sort_fields)} with asc or desc"
        )
    query.sort = sort_fields[sort[0]]
    query.descending = len(sort) < 2 or sort[1] == "desc"
    facet_fields = call.listing("facet.field") or []
    for name in facet_fields:
        if name not in FACETS:
            raise CkanError(
                "Search Query Error", f"facet.field: unsupported {name}; use {', '.join(FACETS)}"
            )
    facet_limit = call.integer("facet.limit", 50, -1, 1000)
    query.facets = [FACETS[f] for f in facet_fields]
    result = search.search(call.session, query)
    names = {d.code: d for d in call.session.scalars(select(Department))}
    facets: dict[str, dict[str, int]] = {}
    search_facets: dict[str, Any] = {}
    for ckan_name in facet_fields:
        counts = result.facets.get(FACETS[ckan_name], [])
        if facet_limit >= 0:
            counts = counts[:facet_limit]
        items: list[dict[str, Any]] = []
        for value, count in counts:
            if ckan_name == "organization":
                department = names[value]
                items.append(
                    {"name": _org_name(department), "display_name": department.name, "count": count}
                )
            else:
                items.append({"name": value, "display_name": value, "count": count})
        facets[ckan_name] = {i["name"]: i["count"] for i in items}
        search_facets[ckan_name] = {"title": ckan_name, "items": items}
    packages = [_package(call, r) for r in search.load(call.session, result.ids)]
    return {
        "count": result.total,
        "results": packages,
        "facets": facets,
        "search_facets": search_facets,
        "sort": " ".join(sort),
    }


def _counts_by(call: Call, column: Any) -> dict[Any, int]:
    counts: dict[Any, int] = {}
    for value in call.session.scalars(select(column).where(CatalogResource.opened_at.is_not(None))):
        counts[value] = counts.get(value, 0) + 1
    return counts


def organization_list(call: Call) -> Any:
    all_fields = call.flag("all_fields", False)
    counts = _counts_by(call, CatalogResource.department_id)
    departments = list(call.session.scalars(select(Department).order_by(Department.code)))
    if all_fields:
        return [_org(d, counts.get(d.id, 0)) for d in departments]
    return [_org_name(d) for d in departments]


def organization_show(call: Call) -> Any:
    ident = call.required("id").upper()
    department = call.session.scalars(
        select(Department).where(Department.code == ident)
    ).one_or_none()
    if department is None:
        raise CkanError("Not Found Error", f"Not found: organization {ident.lower()} / 组织不存在")
    resources = list(
        call.session.scalars(
            _opened(call.session)
            .where(CatalogResource.department_id == department.id)
            .order_by(CatalogResource.name)
        )
    )
    org = _org(department, len(resources))
    if call.flag("include_datasets", False):
        org["packages"] = [_package(call, r) for r in resources[:ROWS_MAX]]
    return org


def group_list(call: Call) -> Any:
    counts = _counts_by(call, CatalogResource.theme)
    if call.flag("all_fields", False):
        return [_group(t, counts.get(t, 0)) for t in THEMES]
    return list(THEMES)


def group_show(call: Call) -> Any:
    theme = call.required("id")
    if theme not in THEMES:
        raise CkanError("Not Found Error", f"Not found: group {theme} / 分组不存在")
    resources = list(
        call.session.scalars(
            _opened(call.session)
            .where(CatalogResource.theme == theme)
            .order_by(CatalogResource.name)
        )
    )
    group = _group(theme, len(resources))
    if call.flag("include_datasets", False):
        group["packages"] = [_package(call, r) for r in resources[:ROWS_MAX]]
    return group


def tag_list(call: Call) -> Any:
    query = (call.text("query", "") or "").lower()
    tags: set[str] = set()
    for row in call.session.scalars(
        select(CatalogResource.tags).where(CatalogResource.opened_at.is_not(None))
    ):
        tags.update(row or [])
    names = sorted(t for t in tags if query in t.lower())
    if call.flag("all_fields", False):
        return [{"id": t, "name": t, "display_name": t} for t in names]
    return names


def resource_show(call: Call) -> Any:
    return _resource(call, _find_published(call, "id"))


def datastore_search(call: Call) -> Any:
    resource = _find_published(call)
    limiter: opendata.RateLimiter = call.context.extras.setdefault(
        "catalog.rate", opendata.RateLimiter()
    )
    try:
        opendata.check_data_access(call.session, resource, call.api_key, limiter)
    except Problem as problem:
        kind = "Rate Limit Error" if problem.status == 429 else "Authorization Error"
        raise CkanError(kind, problem.detail) from None
    refresh_view(call.session, resource)
    q_value: Any = call.data.get("q")
    if isinstance(q_value, str):
        q_value = _maybe_json(q_value)
    if q_value is not None and not isinstance(q_value, str | dict):
        raise _validation("q", "Must be a string or an object / 须为字符串或对象")
    limit = call.integer("limit", 100, 0, MAX_LIMIT)
    offset = call.integer("offset", 0, 0, 10**9)
    query = TableQuery(
        filters=call.mapping("filters"),
        q=q_value or None,
        fields=call.listing("fields"),
        sort=call.text("sort"),
        limit=limit,
        offset=offset,
        distinct=call.flag("distinct", False),
        include_total=call.flag("include_total", True),
    )
    try:
        page = datastore.run_query(
            call.session,
            publishing.published_table(resource),
            publishing.published_specs(resource),
            query,
        )
    except QueryError as exc:
        raise _validation(exc.field, str(exc)) from None
    link = f"/api/3/action/datastore_search?resource_id={resource.published_id}"
    result: dict[str, Any] = {
        "resource_id": resource.published_id,
        "fields": page.fields,
        "records": page.records,
        "limit": limit,
        "offset": offset,
        "include_total": query.include_total,
        "records_format": "objects",
        "_links": {"start": link, "next": f"{link}&offset={offset + limit}"},
    }
    if page.total is not None:
        result["total"] = page.total
        result["total_was_estimated"] = False
    return result


def datastore_search_sql(call: Call) -> Any:
    sql = call.required("sql")
    # Only 无条件开放 tables: a 有条件开放 table is read through datastore_search with its key.
    tables = set(
        call.session.scalars(
            select(CatalogResource.published_id).where(
                CatalogResource.opened_at.is_not(None),
                CatalogResource.open_type == OpenType.UNCONDITIONAL.value,
            )
        )
    )
    try:
        result = sqlguard.run(
            call.context.db, sql, {t for t in tables if t}, other_tables=Base.metadata.tables
        )
    except sqlguard.SqlRefused as exc:
        raise _validation("sql", str(exc)) from None
    reply: dict[str, Any] = {"sql": sql, "fields": result.fields, "records": result.records}
    if result.truncated:
        reply["records_truncated"] = True
    return reply


def status_show(call: Call) -> Any:
    return {
        "ckan_version": CKAN_VERSION,
        "site_title": "浦江开放数据 Pujiang Open Data",
        "site_url": call.base,
        "extensions": ["datastore"],
    }


ACTIONS: dict[str, Callable[[Call], Any]] = {
    f.__name__: f
    for f in (
        package_list,
        package_show,
        package_search,
        organization_list,
        organization_show,
        group_list,
        group_show,
        tag_list,
        resource_show,
        datastore_search,
        datastore_search_sql,
        status_show,
    )
}


def _reply(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _query_data(request: Request) -> dict[str, Any]:
    # A repeated parameter (facet.field=a&facet.field=b) is a list, as CKAN reads it.
    data: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in data:
            data[key] = [*data[key], value] if isinstance(data[key], list) else [data[key], value]
        else:
            data[key] = value
    return data


async def _data_of(request: Request) -> dict[str, Any]:
    if request.method == "GET":
        return _query_data(request)
    content_type = request.headers.get("content-type", "")
    if "form" in content_type:
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    raw = await request.body()
    if not raw.strip():
        return _query_data(request)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CkanError("Bad Request", f"JSON Error: {exc} / 请求体不是有效的 JSON") from None
    if not isinstance(data, dict):
        raise CkanError(
            "Bad Request", "JSON Error: the body must be an object / 请求体须为 JSON 对象"
        )
    return data


def _help(call_base: str, action: str) -> str:
    return f"{call_base}/api/3/action/help_show?name={action}"


async def action(
    action: str,
    request: Request,
    context: Context,
    session: Annotated[Session, Depends(get_session)],
) -> Response:
    base = str(request.base_url).rstrip("/")
    help_url = _help(base, action)
    handler = ACTIONS.get(action)
    try:
        if handler is None:
            raise CkanError("Bad Request", f"Bad request - Action name not known: {action}")
        data = await _data_of(request)
        result = handler(Call(session, context, request, data))
    except CkanError as exc:
        error = {"__type": exc.kind, "message": exc.message, **exc.fields}
        status = _STATUS.get(exc.kind, 400)
        return _reply(status, {"help": help_url, "success": False, "error": error})
    except Problem as problem:
        kind = {404: "Not Found Error", 403: "Authorization Error", 401: "Authorization Error"}.get(
            problem.status, "Validation Error"
        )
        error = {"__type": kind, "message": problem.detail}
        return _reply(_STATUS[kind], {"help": help_url, "success": False, "error": error})
    return _reply(200, {"help": help_url, "success": True, "result": result})


for _prefix in ("/api/3/action", "/api/action"):
    for _method in ("GET", "POST"):
        router.add_api_route(
            f"{_prefix}/{{action}}",
            action,
            methods=[_method],
            dependencies=[Depends(public)],
            summary="CKAN Action API",
            operation_id=f"ckan_action_{_method.lower()}",
            include_in_schema=_prefix == "/api/3/action",
        )
for _route in router.routes:
    # Reads, though CKAN clients POST them: the audit log is for changes.
    _route.audit_exempt = True  # type: ignore[attr-defined]
