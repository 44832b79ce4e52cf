"""The catalog: resources and their metadata, their data (uploads and live views), search.

Plain functions over a session. The catalog's metadata is visible to every holder of
`catalog.read` (the catalog exists so departments know what others hold); a resource's data
is read by its provider, by consumers through a sharing grant (`sharing.py`) and by the public
once opened (`opendata.py`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pujiang.catalog import datastore, publishing, search
from pujiang.catalog.datastore import QueryError, TablePage, TableQuery
from pujiang.catalog.ingest import FileError, parse_file
from pujiang.catalog.models import CatalogResource
from pujiang.catalog.schemas import (
    BadCell,
    BadRow,
    ColumnReport,
    DataItemOut,
    FacetCount,
    ResourceIn,
    ResourceOut,
    SearchOut,
    UploadOut,
)
from pujiang.catalog.views import get_view, view_names
from pujiang.catalog.vocab import CYCLE_PERIOD, UpdateCycle
from pujiang.platform import identity
from pujiang.platform.db import lock_for_write, utcnow
from pujiang.platform.errors import Problem
from pujiang.platform.i18n import register, translate
from pujiang.platform.roles import ALL_DEPARTMENTS
from pujiang.platform.security import CurrentPrincipal

register(
    {
        "catalog.not_found": ("资源 {name} 不存在", "No resource named {name}"),
        "catalog.not_provider": (
            "只有提供部门 {department} 可以修改资源 {name} 或读取其原始数据",
            "Only the provider department {department} may change resource {name} or read "
            "its source data",
        ),
        "catalog.no_department": (
            "当前账户不属于任何部门，不能登记资源",
            "Your account belongs to no department, so it cannot register resources",
        ),
        "catalog.taken": (
            "{field} 为 {value} 的资源已存在",
            "A resource with {field} {value} exists",
        ),
        "catalog.related_unknown": (
            "关联资源代码 {value} 不在目录中",
            "Related resource code {value} is not in the catalog",
        ),
        "catalog.view_unknown": (
            "实时视图 {value} 不存在；可用：{known}",
            "No live view {value}; available: {known}",
        ),
        "catalog.items_locked": (
            "资源 {name} 已有数据，不能修改信息项；请先清空数据（上传空表）",
            "Resource {name} holds data, so its data items cannot change; empty it first",
        ),
        "catalog.live_no_upload": (
            "资源 {name} 是实时视图，数据由平台生成，不能上传",
            "Resource {name} is a live view: the platform produces its rows, uploads are refused",
        ),
        "catalog.bad_file": (
            "文件 {filename} 无法读取：{reason}",
            "Cannot read {filename}: {reason}",
        ),
        "catalog.bad_rows": (
            "文件有 {bad} 行不合格（共 {read} 行），未保存任何数据；修正后重传，或加 "
            "accept_bad_rows=true 只保存合格的行",
            "{bad} of {read} rows are bad, so nothing was stored; fix them and upload again, or "
            "send accept_bad_rows=true to store only the good rows",
        ),
        "catalog.stored": ("已保存 {rows} 行", "Stored {rows} rows"),
        "catalog.bad_query": (
            "查询参数 {field} 无效：{reason}",
            "Query parameter {field}: {reason}",
        ),
        "catalog.view_failed": (
            "实时视图 {name} 刷新失败：{reason}",
            "Live view {name} could not refresh: {reason}",
        ),
    }
)


def field_problem(status: int, slug: str, key: str, at: str, **params: Any) -> Problem:
    """A Problem whose body also names the offending field `at`, as the validation handler does."""
    problem = Problem.of(status, slug, key, **params)
    problem.extra["errors"] = [{"field": at, "message": problem.detail}]
    return problem


def query_problem(exc: QueryError) -> Problem:
    return field_problem(
        422, "validation-error", "catalog.bad_query", exc.field, field=exc.field, reason=str(exc)
    )


# -- resources ----------------------------------------------------------------------------------


def get_resource(session: Session, name: str, *, for_update: bool = False) -> CatalogResource:
    """The resource of that name, else 404; `for_update` when this transaction's writes
    depend on what it reads (row counts, the items lock, opening and closing)."""
    query = select(CatalogResource).where(CatalogResource.name == name)
    if for_update:
        lock_for_write(session)
        # OF: the resource's row only (its department comes along in an outer join)
        query = query.with_for_update(of=CatalogResource).execution_options(populate_existing=True)
    resource = session.scalars(query).one_or_none()
    if resource is None:
        raise Problem.of(404, "not-found", "catalog.not_found", name=name)
    return resource


def is_provider(principal: CurrentPrincipal, resource: CatalogResource) -> bool:
    return principal.can(ALL_DEPARTMENTS) or principal.department_id == resource.department_id


def ensure_provider(principal: CurrentPrincipal, resource: CatalogResource) -> None:
    if not is_provider(principal, resource):
        raise Problem.of(
            403,
            "forbidden",
            "catalog.not_provider",
            department=resource.department.code,
            name=resource.name,
        )


def _check_references(session: Session, body: ResourceIn, existing: CatalogResource | None) -> None:
    for field, value, column in (
        ("name", body.name, CatalogResource.name),
        ("code", body.code, CatalogResource.code),
    ):
        other = session.scalars(select(CatalogResource.id).where(column == value)).first()
        if other is not None and (existing is None or other != existing.id):
            raise field_problem(409, "conflict", "catalog.taken", field, field=field, value=value)
    known = set(
        session.scalars(
            select(CatalogResource.code).where(CatalogResource.code.in_(body.related_codes))
        )
    )
    for code in body.related_codes:
        if code not in known:
            raise field_problem(
                422, "validation-error", "catalog.related_unknown", "related_codes", value=code
            )
    if body.live_view is not None and get_view(body.live_view) is None:
        raise field_problem(
            422,
            "validation-error",
            "catalog.view_unknown",
            "live_view",
            value=body.live_view,
            known=", ".join(view_names()),
        )


def _apply(resource: CatalogResource, body: ResourceIn, department_id: int) -> None:
    resource.name = body.name
    resource.code = body.code
    resource.title = body.title
    resource.summary = body.summary
    resource.department_id = department_id
    resource.format = body.format.value
    resource.items = [item.model_dump(mode="json") for item in body.items]
    resource.share_type = body.share_type.value
    resource.share_conditions = body.share_conditions
    resource.share_basis = body.share_basis
    resource.open_type = body.open_type.value
    resource.open_conditions = body.open_conditions
    resource.update_cycle = body.update_cycle.value
    resource.released_on = body.released_on
    resource.related_codes = list(body.related_codes)
    resource.base_registry = body.base_registry.value if body.base_registry else None
    resource.theme = body.theme
    resource.tags = list(dict.fromkeys(body.tags))
    resource.min_k = body.min_k
    resource.live_view = body.live_view
    resource.updated_at = utcnow()


def _provider_department(session: Session, principal: CurrentPrincipal, code: str) -> int:
    department = identity.get_department(session, code)
    if not principal.can(ALL_DEPARTMENTS) and principal.department_id != department.id:
        if principal.department_id is None:
            raise Problem.of(403, "forbidden", "catalog.no_department")
        raise field_problem(
            403, "forbidden", "catalog.not_provider", "department_code", department=code, name=code
        )
    return department.id


def create_resource(
    session: Session, principal: CurrentPrincipal, body: ResourceIn
) -> CatalogResource:
    department_id = _provider_department(session, principal, body.department_code)
    _check_references(session, body, None)
    resource = CatalogResource(uid=str(uuid.uuid4()), created_by=principal.actor)
    _apply(resource, body, department_id)
    session.add(resource)
    session.flush()
    session.refresh(resource)
    search.index_resource(session, resource, resource.department.name)
    return resource


def update_resource(
    session: Session, principal: CurrentPrincipal, name: str, body: ResourceIn
) -> CatalogResource:
    resource = get_resource(session, name, for_update=True)
    ensure_provider(principal, resource)
    department_id = _provider_department(session, principal, body.department_code)
    _check_references(session, body, resource)
    new_items = [item.model_dump(mode="json") for item in body.items]
    if new_items != resource.items and (resource.row_count or resource.opened_at):
        raise field_problem(422, "validation-error", "catalog.items_locked", "items", name=name)
    _apply(resource, body, department_id)
    session.flush()
    session.refresh(resource)
    search.index_resource(session, resource, resource.department.name)
    if resource.opened_at is not None:
        publishing.publish_copy(session, resource)  # open/share conditions changed: rebuild
    return resource


def resource_out(resource: CatalogResource) -> ResourceOut:
    return ResourceOut(
        uid=resource.uid,
        name=resource.name,
        code=resource.code,
        title=resource.title,
        summary=resource.summary,
        department_code=resource.department.code,
        department_name=resource.department.name,
        format=resource.format,
        items=[DataItemOut(**item) for item in resource.items],
        share_type=resource.share_type,
        share_conditions=resource.share_conditions,
        share_basis=resource.share_basis,
        open_type=resource.open_type,
        open_conditions=resource.open_conditions,
        update_cycle=resource.update_cycle,
        released_on=resource.released_on,
        related_codes=resource.related_codes,
        base_registry=resource.base_registry,
        theme=resource.theme,
        tags=resource.tags,
        min_k=resource.min_k,
        live_view=resource.live_view,
        row_count=resource.row_count,
        rejected_rows=resource.rejected_rows,
        data_updated_at=resource.data_updated_at,
        opened=resource.opened_at is not None,
        opened_at=resource.opened_at,
        created_at=resource.created_at,
        updated_at=resource.updated_at,
    )


def search_resources(session: Session, query: search.SearchQuery) -> SearchOut:
    result = search.search(session, query)
    return SearchOut(
        total=result.total,
        items=[resource_out(r) for r in search.load(session, result.ids)],
        facets={
            name: [FacetCount(value=v, count=c) for v, c in counts]
            for name, counts in result.facets.items()
        },
    )


# -- data ---------------------------------------------------------------------------------------


def store_rows(
    session: Session, resource: CatalogResource, rows: list[dict[str, Any]], *, append: bool
) -> int:
    """Write rows to the source table (replacing or appending) and refresh the open copy."""
    table = publishing.source_table(resource)
    if append and resource.data_updated_at is not None:
        written = datastore.append_rows(session, table, rows)
        resource.row_count += written
    else:
        written = datastore.replace_table(session, table, rows)
        resource.row_count = written
    resource.data_updated_at = utcnow()
    session.flush()
    if resource.opened_at is not None:
        publishing.publish_copy(session, resource)
    return written


def upload(
    session: Session,
    principal: CurrentPrincipal,
    name: str,
    *,
    filename: str,
    data: bytes,
    accept_bad_rows: bool = False,
    append: bool = False,
) -> tuple[UploadOut, bool]:
    """Check a file against the resource's items; store it if clean (or if asked to).

    Returns the report and whether anything was stored.
    """
    resource = get_resource(session, name, for_update=True)
    ensure_provider(principal, resource)
    if resource.live_view:
        raise Problem.of(409, "conflict", "catalog.live_no_upload", name=name)
    specs = publishing.source_specs(resource)
    try:
        parsed = parse_file(filename, data, specs)
    except FileError as exc:
        raise field_problem(
            422, "validation-error", "catalog.bad_file", "file", filename=filename, reason=str(exc)
        ) from None
    bad = [
        BadRow(row=line, errors=[BadCell(column=c, value=v, reason=r) for c, v, r in cells])
        for line, cells in parsed.bad
    ]
    columns = [
        ColumnReport(name=s.name, declared=s.type.value, inferred=parsed.inferred[s.name])
        for s in specs
    ]
    store = not parsed.bad or accept_bad_rows
    stored = 0
    if store:
        stored = store_rows(session, resource, parsed.good, append=append)
        resource.rejected_rows = (
            len(parsed.bad) if not append else resource.rejected_rows + len(parsed.bad)
        )
        message = translate("catalog.stored", rows=stored)
    else:
        message = translate("catalog.bad_rows", bad=len(parsed.bad), read=parsed.rows_read)
    report = UploadOut(
        stored=store,
        encoding=parsed.encoding,
        rows_read=parsed.rows_read,
        rows_stored=stored,
        bad_rows=bad,
        columns=columns,
        message=message,
    )
    return report, store


def refresh_view(session: Session, resource: CatalogResource, *, force: bool = False) -> bool:
    """Recompute a live view's rows if its cycle has passed (or if forced); True if it ran."""
    if resource.live_view is None:
        return False
    period = CYCLE_PERIOD[UpdateCycle(resource.update_cycle)]
    if (
        not force
        and resource.data_updated_at is not None
        and utcnow() - resource.data_updated_at < period
    ):
        return False
    provider = get_view(resource.live_view)
    if provider is None:
        raise Problem.of(
            503,
            "unavailable",
            "catalog.view_failed",
            name=resource.name,
            reason="provider not registered",
        )
    raw = provider.produce(session)
    specs = publishing.source_specs(resource)
    try:
        rows = [{s.name: datastore.parse_value(s.type, r.get(s.name)) for s in specs} for r in raw]
    except ValueError as exc:
        raise Problem.of(
            503, "unavailable", "catalog.view_failed", name=resource.name, reason=str(exc)
        ) from None
    store_rows(session, resource, rows, append=False)
    return True


def refresh_due(session: Session, *, force: bool = False) -> list[str]:
    done = []
    for resource in session.scalars(
        select(CatalogResource)
        .where(CatalogResource.live_view.is_not(None))
        .order_by(CatalogResource.name)
    ):
        if refresh_view(session, resource, force=force):
            done.append(resource.name)
    return done


def read_source(
    session: Session, principal: CurrentPrincipal, name: str, query: TableQuery
) -> TablePage:
    """The provider's own view of its data (no masking)."""
    resource = get_resource(session, name)
    ensure_provider(principal, resource)
    refresh_view(session, resource)
    if resource.data_updated_at is None:
        return TablePage([], [], 0)
    try:
        return datastore.run_query(
            session, publishing.source_table(resource), publishing.source_specs(resource), query
        )
    except QueryError as exc:
        raise query_problem(exc) from None


@dataclass(frozen=True)
class Lateness:
    due_at: datetime | None
    late: bool


def lateness(resource: CatalogResource, now: datetime | None = None) -> Lateness:
    """When the resource's next update is due, and whether that moment has passed."""
    now = now or utcnow()
    if resource.data_updated_at is None:
        return Lateness(None, True)
    period = CYCLE_PERIOD[UpdateCycle(resource.update_cycle)]
    due = resource.data_updated_at + period
    # A live view refreshes itself when read, so it is never late while its provider works.
    return Lateness(due, due < now and resource.live_view is None)
