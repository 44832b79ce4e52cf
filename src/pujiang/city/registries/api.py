"""Routes of the base registries: import files, search and read with masking, counts."""

from __future__ import annotations

import csv
import io
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import Response

from pujiang.city.registries import service
from pujiang.city.registries.columns import COLUMNS, Kind
from pujiang.city.registries.ingest import (
    ImportOptions,
    ImportRejected,
    ImportReport,
    error_dict,
    import_file,
)
from pujiang.city.registries.locate import city_locator
from pujiang.city.registries.schemas import (
    AddressOut,
    AddressPage,
    EntityOut,
    EntityPage,
    ImportReportOut,
    PersonOut,
    PersonPage,
    RegistryStats,
    RowErrorOut,
)
from pujiang.platform.deps import Context, DbSession, require
from pujiang.platform.geo import Crs
from pujiang.platform.roles import REGISTRY_READ, REGISTRY_WRITE
from pujiang.platform.security import CurrentPrincipal

router = APIRouter(prefix="/api/registries", tags=["基础库 Base registries"])

Reader = Annotated[CurrentPrincipal, Depends(require(REGISTRY_READ))]
Writer = Annotated[CurrentPrincipal, Depends(require(REGISTRY_WRITE))]
AfterId = Annotated[int, Query(ge=0, description="Return rows after this id (keyset paging)")]
Limit = Annotated[int, Query(ge=1, le=service.MAX_LIMIT)]
District = Annotated[str | None, Query(pattern=r"^\d{6}$", description="GB/T 2260 district code")]
Community = Annotated[str | None, Query(pattern=r"^\d{12}$", description="12-digit community code")]


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


# -- import -----------------------------------------------------------------------------------


def report_out(report: ImportReport) -> ImportReportOut:
    return ImportReportOut(
        **report.summary(),
        header_row=report.header_row,
        columns=report.columns,
        ignored_columns=report.ignored_columns,
        seconds=report.seconds,
        errors=[RowErrorOut(**error_dict(e)) for e in report.errors],
    )


@router.post(
    "/{kind}/import",
    response_model=ImportReportOut,
    summary="导入基础库文件 / Import a registry file (CSV or XLSX)",
    responses={
        415: {"description": "Not a CSV or XLSX file"},
        422: {"description": "Bad rows (nothing imported, each listed) or an unreadable file"},
    },
)
def import_registry(
    kind: Kind,
    request: Request,
    context: Context,
    session: DbSession,
    _: Writer,
    file: Annotated[UploadFile, File(description="CSV (UTF-8, GBK, GB18030) or XLSX")],
    partial: Annotated[
        bool, Query(description="Import the good rows of a file that has bad ones")
    ] = False,
    crs: Annotated[Crs, Query(description="Coordinate system of the lon/lat columns")] = Crs.WGS84,
) -> ImportReportOut:
    """Upserts by ID number, credit code or standard address. By default a file with any bad
    row imports nothing and the 422 reply lists every bad row; `partial=true` imports the good
    rows and lists the bad ones. Files above the server's body limit: use
    `pujiang registry import`."""
    request.state.audit_target = f"registry:{kind.value}"
    try:
        report = import_file(
            session,
            kind,
            file.file,
            source=file.filename or "",
            options=ImportOptions(partial=partial, crs=crs),
            locator=city_locator(context),
        )
    except ImportRejected as exc:
        request.state.audit_detail = exc.report.summary()
        raise
    request.state.audit_detail = report.summary()
    return report_out(report)


@router.get(
    "/{kind}/template",
    summary="导入模板 / An empty import file with the standard headers",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
def import_template(kind: Kind, _: Reader) -> Response:
    out = io.StringIO()
    csv.writer(out).writerow([column.zh for column in COLUMNS[kind]])
    # UTF-8 with a BOM: what Excel needs to show Chinese headers of a CSV correctly.
    body = "\ufeff" + out.getvalue()
    disposition = f'attachment; filename="{kind.value}-template.csv"'
    return Response(
        body.encode(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": disposition},
    )


# -- population -------------------------------------------------------------------------------


@router.get("/persons", response_model=PersonPage, summary="人口库查询 / Search persons")
def search_persons(
    request: Request,
    session: DbSession,
    caller: Reader,
    name: Annotated[
        str | None, Query(max_length=64, description="Name prefix, e.g. 张 or 张三")
    ] = None,
    id_number: Annotated[str | None, Query(max_length=32, description="Exact ID number")] = None,
    district: District = None,
    community: Community = None,
    after_id: AfterId = 0,
    limit: Limit = service.DEFAULT_LIMIT,
) -> PersonPage:
    rows = service.search_persons(
        session,
        name=name,
        id_number=id_number,
        district_code=district,
        community_code=community,
        after_id=after_id,
        limit=limit,
    )
    reveal = service.reveal_persons(session, caller, rows, request_id=_request_id(request))
    return PersonPage(
        items=[service.person_out(row, reveal=reveal) for row in rows],
        next_after_id=rows[-1].id if len(rows) == limit else None,
        masked=not reveal,
    )


@router.get("/persons/{person_id}", response_model=PersonOut, summary="人口详情 / One person")
def get_person(request: Request, session: DbSession, caller: Reader, person_id: int) -> PersonOut:
    row = service.get_person(session, person_id)
    reveal = service.reveal_persons(session, caller, [row], request_id=_request_id(request))
    return service.person_out(row, reveal=reveal)


# -- legal entities ---------------------------------------------------------------------------


@router.get("/entities", response_model=EntityPage, summary="法人库查询 / Search legal entities")
def search_entities(
    request: Request,
    session: DbSession,
    caller: Reader,
    name: Annotated[str | None, Query(max_length=255, description="Name prefix")] = None,
    credit_code: Annotated[
        str | None, Query(max_length=32, description="Exact credit code")
    ] = None,
    status: Annotated[str | None, Query(max_length=32, examples=["存续", "revoked"])] = None,
    district: District = None,
    community: Community = None,
    after_id: AfterId = 0,
    limit: Limit = service.DEFAULT_LIMIT,
) -> EntityPage:
    rows = service.search_entities(
        session,
        name=name,
        credit_code=credit_code,
        status=status,
        district_code=district,
        community_code=community,
        after_id=after_id,
        limit=limit,
    )
    reveal = service.reveal_entities(session, caller, rows, request_id=_request_id(request))
    return EntityPage(
        items=[service.entity_out(row, reveal=reveal) for row in rows],
        next_after_id=rows[-1].id if len(rows) == limit else None,
        masked=not reveal,
    )


@router.get(
    "/entities/{entity_id}", response_model=EntityOut, summary="法人详情 / One legal entity"
)
def get_entity(request: Request, session: DbSession, caller: Reader, entity_id: int) -> EntityOut:
    row = service.get_entity(session, entity_id)
    reveal = service.reveal_entities(session, caller, [row], request_id=_request_id(request))
    return service.entity_out(row, reveal=reveal)


# -- addresses and buildings ------------------------------------------------------------------


@router.get("/addresses", response_model=AddressPage, summary="地址库查询 / Search addresses")
def search_addresses(
    session: DbSession,
    _: Reader,
    q: Annotated[str | None, Query(max_length=255, description="Beginning of the address")] = None,
    district: District = None,
    community: Community = None,
    grid: Annotated[str | None, Query(pattern=r"^\d{15}$", description="Unit grid code")] = None,
    after_id: AfterId = 0,
    limit: Limit = service.DEFAULT_LIMIT,
) -> AddressPage:
    rows = service.search_addresses(
        session,
        prefix=q,
        district_code=district,
        community_code=community,
        grid_code=grid,
        after_id=after_id,
        limit=limit,
    )
    return AddressPage(
        items=[service.address_out(row) for row in rows],
        next_after_id=rows[-1].id if len(rows) == limit else None,
    )


@router.get("/addresses/{address_id}", response_model=AddressOut, summary="地址详情 / One address")
def get_address(session: DbSession, _: Reader, address_id: int) -> AddressOut:
    return service.address_out(service.get_address(session, address_id))


@router.get("/stats", response_model=RegistryStats, summary="基础库统计 / Counts per district")
def registry_stats(session: DbSession, _: Reader) -> RegistryStats:
    return service.stats(session)
