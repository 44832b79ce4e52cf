"""Routes of the catalog module: catalog, data, sharing and exchange, open-data applications,
quality and DCAT. The CKAN Action API lives in `ckan.py` and is included here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, File, Query, Request, UploadFile, status
from fastapi.responses import Response
from sqlalchemy import select

from pujiang.catalog import ckan, dcat, opendata, quality, search, service, sharing
from pujiang.catalog.datastore import TableQuery
from pujiang.catalog.models import CatalogResource
from pujiang.catalog.schemas import (
    AgreeIn,
    ApproveIn,
    ChainOut,
    DataPage,
    DepartmentQualityOut,
    ExchangeLogOut,
    OpenApplicationIn,
    OpenApplicationOut,
    PublishOut,
    QualityOut,
    RefuseIn,
    ResourceIn,
    ResourceOut,
    ReviewIn,
    SearchOut,
    ShareRequestIn,
    ShareRequestOut,
    UploadOut,
)
from pujiang.catalog.views import view_names
from pujiang.catalog.vocab import OpenType, ResourceFormat
from pujiang.platform.deps import AUTHENTICATED, Context, DbSession, public, require
from pujiang.platform.errors import Problem, problem_body
from pujiang.platform.roles import (
    AUDIT_READ,
    CATALOG_READ,
    CATALOG_WRITE,
    EXCHANGE_CALL,
    OPENDATA_PUBLISH,
    SHARING_APPROVE,
    SHARING_REQUEST,
)
from pujiang.platform.security import CurrentPrincipal

router = APIRouter()
catalog = APIRouter(prefix="/api/catalog", tags=["数据目录 Catalog"])
sharing_router = APIRouter(prefix="/api/sharing", tags=["共享交换 Sharing"])
exchange_router = APIRouter(prefix="/api/exchange", tags=["共享交换 Sharing"])
open_router = APIRouter(prefix="/api/opendata", tags=["开放数据 Open data"])

Reader = Annotated[CurrentPrincipal, Depends(require(CATALOG_READ))]
Writer = Annotated[CurrentPrincipal, Depends(require(CATALOG_WRITE))]
Publisher = Annotated[CurrentPrincipal, Depends(require(OPENDATA_PUBLISH))]
Approver = Annotated[CurrentPrincipal, Depends(require(SHARING_APPROVE))]
Anyone = Annotated[CurrentPrincipal, Depends(require(AUTHENTICATED))]
RdfFormat = Literal["ttl", "jsonld"]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _json_param(name: str, raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise service.field_problem(
            422,
            "validation-error",
            "catalog.bad_query",
            name,
            field=name,
            reason="须为 JSON 对象 / must be a JSON object",
        )
    return value


# -- catalog ------------------------------------------------------------------------------------


@catalog.get("/resources", response_model=SearchOut, summary="检索目录 / Search the catalog")
def search_catalog(
    session: DbSession,
    _: Reader,
    q: Annotated[str, Query(max_length=200)] = "",
    department: str | None = None,
    theme: str | None = None,
    format: ResourceFormat | None = None,
    open_type: OpenType | None = None,
    tag: Annotated[list[str] | None, Query()] = None,
    opened: bool = False,
    sort: Literal["score", "title", "released", "modified"] = "score",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> SearchOut:
    query = search.SearchQuery(
        q=q,
        department=department,
        theme=theme,
        format=format.value if format else None,
        open_type=open_type.value if open_type else None,
        tags=tag or (),
        opened_only=opened,
        sort=sort,
        descending=sort != "title",
        offset=offset,
        limit=limit,
    )
    return service.search_resources(session, query)


@catalog.post(
    "/resources",
    response_model=ResourceOut,
    status_code=status.HTTP_201_CREATED,
    summary="登记资源 / Register a resource",
)
def create_resource(session: DbSession, principal: Writer, body: ResourceIn) -> ResourceOut:
    return service.resource_out(service.create_resource(session, principal, body))


@catalog.get("/resources/{name}", response_model=ResourceOut, summary="资源详情 / One resource")
def read_resource(session: DbSession, _: Reader, name: str) -> ResourceOut:
    return service.resource_out(service.get_resource(session, name))


@catalog.put("/resources/{name}", response_model=ResourceOut, summary="修改资源 / Replace metadata")
def update_resource(
    session: DbSession, principal: Writer, name: str, body: ResourceIn
) -> ResourceOut:
    return service.resource_out(service.update_resource(session, principal, name, body))


@catalog.post(
    "/resources/{name}/data",
    response_model=UploadOut,
    summary="上传数据（CSV/XLSX）/ Upload data",
    responses={422: {"description": "Bad rows (every one listed) or an unreadable file"}},
)
async def upload_data(
    session: DbSession,
    principal: Writer,
    name: str,
    file: Annotated[UploadFile, File(description="CSV（UTF-8/GBK/GB18030）或 XLSX")],
    accept_bad_rows: bool = False,
    append: bool = False,
) -> UploadOut:
    data = await file.read()
    report, stored = service.upload(
        session,
        principal,
        name,
        filename=file.filename or "upload",
        data=data,
        accept_bad_rows=accept_bad_rows,
        append=append,
    )
    if not stored:
        raise Problem(422, "validation-error", report.message, **report.model_dump(mode="json"))
    return report


@catalog.get("/resources/{name}/data", response_model=DataPage, summary="本部门数据 / Source data")
def read_data(
    session: DbSession,
    principal: Reader,
    name: str,
    filters: Annotated[str | None, Query(description='JSON, e.g. {"区名称": "黄浦区"}')] = None,
    q: str | None = None,
    sort: str | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> DataPage:
    query = TableQuery(
        filters=_json_param("filters", filters), q=q, sort=sort, limit=limit, offset=offset
    )
    page = service.read_source(session, principal, name, query)
    return DataPage(total=page.total or 0, fields=page.fields, records=page.records)


@catalog.post(
    "/resources/{name}/refresh", response_model=ResourceOut, summary="刷新实时视图 / Refresh"
)
def refresh(session: DbSession, principal: Writer, name: str) -> ResourceOut:
    resource = service.get_resource(session, name)
    service.ensure_provider(principal, resource)
    service.refresh_view(session, resource, force=True)
    return service.resource_out(resource)


@catalog.post(
    "/resources/{name}/open", response_model=PublishOut, summary="开放 / Open to the public"
)
def open_resource(session: DbSession, principal: Publisher, name: str) -> PublishOut:
    return opendata.open_resource(session, principal, name)


@catalog.delete("/resources/{name}/open", response_model=ResourceOut, summary="撤回开放 / Close")
def close_resource(session: DbSession, principal: Publisher, name: str) -> ResourceOut:
    return service.resource_out(opendata.close_resource(session, principal, name))


@catalog.get("/resources/{name}/quality", response_model=QualityOut, summary="数据质量 / Quality")
def resource_quality(session: DbSession, _: Reader, name: str) -> QualityOut:
    return quality.resource_quality(session, service.get_resource(session, name))


@catalog.get("/quality", summary="质量报告 / Quality report, per department, late datasets")
def quality_report(session: DbSession, _: Reader) -> dict[str, Any]:
    scores = quality.all_quality(session)
    departments = quality.by_department(scores)
    return {
        "resources": [s.model_dump(mode="json") for s in scores],
        "departments": [
            DepartmentQualityOut.model_validate(d).model_dump(mode="json") for d in departments
        ],
        "late": [s.model_dump(mode="json") for s in scores if s.late],
    }


@catalog.get("/views", summary="可用实时视图 / Live view providers")
def live_views(_: Reader) -> list[str]:
    return view_names()


@catalog.get("/dcat.{fmt}", summary="DCAT-AP 全目录 / The whole catalog as DCAT-AP")
def catalog_dcat(request: Request, session: DbSession, _: Reader, fmt: RdfFormat) -> Response:
    resources = session.scalars(select(CatalogResource).order_by(CatalogResource.name))
    graph = dcat.catalog_graph(_base(request), resources, "浦江政务数据资源目录")
    body, media = dcat.serialise(graph, fmt)
    return Response(body, media_type=media)


@catalog.get("/resources/{name}/dcat.{fmt}", summary="DCAT-AP 单个资源 / One resource as DCAT-AP")
def resource_dcat(
    request: Request, session: DbSession, _: Reader, name: str, fmt: RdfFormat
) -> Response:
    body, media = dcat.serialise(
        dcat.dataset_graph(_base(request), service.get_resource(session, name)), fmt
    )
    return Response(body, media_type=media)


# -- sharing ------------------------------------------------------------------------------------


@sharing_router.post(
    "/requests",
    response_model=ShareRequestOut,
    status_code=status.HTTP_201_CREATED,
    summary="申请共享 / Request a resource",
)
def create_request(
    session: DbSession,
    principal: Annotated[CurrentPrincipal, Depends(require(SHARING_REQUEST))],
    body: ShareRequestIn,
) -> ShareRequestOut:
    return sharing.request_out(sharing.create_request(session, principal, body))


@sharing_router.get(
    "/requests", response_model=list[ShareRequestOut], summary="共享申请 / Requests"
)
def list_requests(
    session: DbSession,
    principal: Reader,
    role: Literal["consumer", "provider"] | None = None,
    overdue: bool = False,
) -> list[ShareRequestOut]:
    rows = sharing.list_requests(session, principal, role=role, overdue_only=overdue)
    return [sharing.request_out(r) for r in rows]


@sharing_router.get("/requests/{request_id}", response_model=ShareRequestOut, summary="一条申请")
def read_request(session: DbSession, principal: Reader, request_id: int) -> ShareRequestOut:
    return sharing.request_out(sharing._visible_request(session, principal, request_id))


@sharing_router.post(
    "/requests/{request_id}/approve", response_model=ShareRequestOut, summary="批准 / Approve"
)
def approve(
    session: DbSession, principal: Approver, request_id: int, body: ApproveIn
) -> ShareRequestOut:
    return sharing.request_out(sharing.approve(session, principal, request_id, body))


@sharing_router.post(
    "/requests/{request_id}/refuse", response_model=ShareRequestOut, summary="拒绝 / Refuse"
)
def refuse(
    session: DbSession, principal: Approver, request_id: int, body: RefuseIn
) -> ShareRequestOut:
    return sharing.request_out(sharing.refuse(session, principal, request_id, body.reason))


@sharing_router.post(
    "/requests/{request_id}/revoke", response_model=ShareRequestOut, summary="撤销授权 / Revoke"
)
def revoke(session: DbSession, principal: Approver, request_id: int) -> ShareRequestOut:
    return sharing.request_out(sharing.revoke(session, principal, request_id))


@exchange_router.get(
    "/{name}",
    summary="交换调用 / Exchange call (service account of the consumer department)",
    responses={200: {"description": "Records of the granted fields, masked per the grant"}},
)
def exchange_call(
    request: Request,
    context: Context,
    session: DbSession,
    principal: Annotated[CurrentPrincipal, Depends(require(EXCHANGE_CALL))],
    name: str,
    filters: Annotated[str | None, Query(description="JSON object of field → value")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    digest = sharing.request_hash(
        "GET", request.url.path, dict(sorted(request.query_params.items())), b""
    )
    try:
        query = TableQuery(filters=_json_param("filters", filters), limit=limit, offset=offset)
        reply = sharing.exchange(session, principal, name, query, context.secret_key)
        media = "application/json"
    except Problem as problem:
        body = orjson.dumps(
            problem_body(
                problem.status, problem.slug, problem.detail, request.url.path, **problem.extra
            )
        )
        reply = sharing.ExchangeReply(problem.status, body, 0, None)
        media = "application/problem+json"
    entry = sharing.log_call(
        context.db,
        principal=principal,
        resource=name,
        reply_status=reply.status,
        reply_body=reply.body,
        rows=reply.rows,
        grant_id=reply.grant_id,
        request_digest=digest,
        request_id=getattr(request.state, "request_id", ""),
    )
    headers = {"X-Exchange-Log-Id": str(entry.id), "X-Exchange-Log-Hash": entry.hash}
    return Response(reply.body, status_code=reply.status, media_type=media, headers=headers)


@sharing_router.get(
    "/exchange-log", response_model=list[ExchangeLogOut], summary="交换日志 / Exchange log"
)
def exchange_log(
    session: DbSession,
    principal: Reader,
    after_id: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ExchangeLogOut]:
    rows = sharing.read_log(session, principal, after_id=after_id, limit=limit)
    return [ExchangeLogOut.model_validate(r, from_attributes=True) for r in rows]


@sharing_router.get(
    "/exchange-log/verify", response_model=ChainOut, summary="校验交换日志 / Verify"
)
def verify_exchange_log(
    session: DbSession, _: Annotated[CurrentPrincipal, Depends(require(AUDIT_READ))]
) -> ChainOut:
    result = sharing.verify_log(session)
    return ChainOut(**result.__dict__)


# -- open data ----------------------------------------------------------------------------------


@open_router.post(
    "/applications",
    response_model=OpenApplicationOut,
    status_code=status.HTTP_201_CREATED,
    summary="申请使用有条件开放数据 / Apply for a conditionally open dataset",
)
def apply(session: DbSession, principal: Anyone, body: OpenApplicationIn) -> OpenApplicationOut:
    return opendata.application_out(opendata.apply(session, principal, body))


@open_router.get(
    "/applications", response_model=list[OpenApplicationOut], summary="我的申请 / Applications"
)
def list_applications(session: DbSession, principal: Anyone) -> list[OpenApplicationOut]:
    return [opendata.application_out(a) for a in opendata.list_applications(session, principal)]


@open_router.get(
    "/applications/{application_id}", response_model=OpenApplicationOut, summary="一条申请"
)
def read_application(
    session: DbSession, principal: Anyone, application_id: int
) -> OpenApplicationOut:
    return opendata.application_out(opendata.get_application(session, principal, application_id))


@open_router.post(
    "/applications/{application_id}/review",
    response_model=OpenApplicationOut,
    summary="审核 / Review",
)
def review(
    session: DbSession, principal: Publisher, application_id: int, body: ReviewIn
) -> OpenApplicationOut:
    return opendata.application_out(opendata.review(session, principal, application_id, body))


@open_router.post(
    "/applications/{application_id}/agreement",
    response_model=OpenApplicationOut,
    summary="签署数据使用协议，获得 API 密钥 / Sign the agreement, receive the key (once)",
)
def agree(
    session: DbSession, principal: Anyone, application_id: int, body: AgreeIn
) -> OpenApplicationOut:
    application, key = opendata.agree(session, principal, application_id, body.accept)
    return opendata.application_out(application, api_key=key)


@open_router.post(
    "/applications/{application_id}/revoke",
    response_model=OpenApplicationOut,
    summary="撤销 / Revoke",
)
def revoke_application(
    session: DbSession, principal: Publisher, application_id: int
) -> OpenApplicationOut:
    return opendata.application_out(opendata.revoke_application(session, principal, application_id))


@open_router.get("/dcat.{fmt}", dependencies=[Depends(public)], summary="开放数据目录 DCAT-AP")
def open_dcat(request: Request, session: DbSession, fmt: RdfFormat) -> Response:
    resources = session.scalars(
        select(CatalogResource)
        .where(CatalogResource.opened_at.is_not(None))
        .order_by(CatalogResource.name)
    )
    body, media = dcat.serialise(dcat.catalog_graph(_base(request), resources, "浦江开放数据"), fmt)
    return Response(body, media_type=media)


@open_router.get(
    "/datasets/{name}/dcat.{fmt}", dependencies=[Depends(public)], summary="开放数据集 DCAT-AP"
)
def open_dataset_dcat(request: Request, session: DbSession, name: str, fmt: RdfFormat) -> Response:
    body, media = dcat.serialise(
        dcat.dataset_graph(_base(request), opendata.opened(session, name)), fmt
    )
    return Response(body, media_type=media)


for _sub in (catalog, sharing_router, exchange_router, open_router, ckan.router):
    router.include_router(_sub)
