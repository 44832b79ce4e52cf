"""Routes of the cases module: catalogue, intake, the workflow steps, files, indicators.

The workflow routes are made from the transition table, one per step, each declaring the
permission the table gives it. Open311 lives in its own adapter (`open311.py`), mounted here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from pujiang.cases import indicators, open311, service
from pujiang.cases.models import Case, CaseCategory, CaseEvent, CaseFile
from pujiang.cases.schemas import (
    CaseDetail,
    CaseIn,
    CaseOut,
    CasePage,
    CategoryIn,
    CategoryOut,
    CategoryPatch,
    DispatchIn,
    EvaluateIn,
    EventOut,
    ExtensionIn,
    FeedbackIn,
    FileOut,
    MergeIn,
    ReasonIn,
    StepIn,
    TrackOut,
)
from pujiang.cases.service import NewCase, StepInput
from pujiang.cases.workflow import STATE_TITLES, TRANSITIONS, Action, State, allowed_actions
from pujiang.platform import privacy
from pujiang.platform.db import utcnow
from pujiang.platform.deps import Context, DbSession, public, require
from pujiang.platform.errors import Problem
from pujiang.platform.files import file_store, put_file
from pujiang.platform.i18n import register
from pujiang.platform.identifiers import mask_name, mask_phone
from pujiang.platform.models import Department
from pujiang.platform.roles import (
    CASES_CATALOGUE_WRITE,
    CASES_CREATE,
    CASES_HANDLE,
    CASES_READ,
    CASES_VERIFY,
)
from pujiang.platform.security import CurrentPrincipal
from pujiang.platform.workcal import SHANGHAI

router = APIRouter(tags=["cases 案件"])
router.include_router(open311.router)

MAX_PAGE = 200
FILE_STAGES = {"report": CASES_CREATE, "feedback": CASES_HANDLE, "verify": CASES_VERIFY}

register(
    {
        "cases.file_stage": (
            "附件阶段 {stage} 无效；可用：{stages}",
            "Unknown attachment stage {stage}; use one of: {stages}",
        ),
        "cases.file_unknown": (
            "案件 {case_id} 没有附件 {file_id}",
            "Case {case_id} has no file {file_id}",
        ),
        "cases.too_many_files": (
            "一次最多上传 {max} 个文件",
            "At most {max} files per upload",
        ),
        "cases.period": (
            "统计区间无效：start 应早于 end，且不超过 400 天",
            "Invalid period: start must be before end and at most 400 days earlier",
        ),
    }
)


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


# -- shaping replies --------------------------------------------------------------------------


class _Lookups:
    """Category and department names for a page of cases, read once per request."""

    def __init__(self, session: Session, cases: list[Case]) -> None:
        category_ids = {c.category_id for c in cases}
        self.categories = {
            row.id: row
            for row in session.scalars(
                select(CaseCategory).where(CaseCategory.id.in_(category_ids))
            )
        }
        department_ids = {
            d for c in cases for d in (c.department_id, c.center_id, c.escalated_to_id) if d
        }
        self.departments = {
            row.id: row.code
            for row in session.scalars(select(Department).where(Department.id.in_(department_ids)))
        }


def _mask_email(value: str | None) -> str | None:
    if not value:
        return None
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}"


def _case_out(
    case: Case, lookups: _Lookups, principal: CurrentPrincipal, *, personal: bool
) -> dict[str, Any]:
    category = lookups.categories[case.category_id]
    state = State(case.state)
    name, phone, email = case.reporter_name, case.reporter_phone, case.reporter_email
    if not personal:
        name = mask_name(name) if name else None
        phone = mask_phone(phone) if phone else None
        email = _mask_email(email)
    possible = [a.value for a in allowed_actions(state) if principal.can(TRANSITIONS[a].permission)]
    return {
        "id": case.id,
        "tracking_id": case.tracking_id,
        "category_code": category.code,
        "category_name": category.name,
        "source": case.source,
        "request_type": case.request_type,
        "state": case.state,
        "state_title": STATE_TITLES[state][0],
        "description": case.description,
        "address": case.address,
        "lon": case.lon,
        "lat": case.lat,
        "district_code": case.district_code,
        "street_code": case.street_code,
        "community_code": case.community_code,
        "grid_code": case.grid_code,
        "place_name": case.place_name,
        "department_code": lookups.departments.get(case.department_id or 0),
        "center_code": lookups.departments.get(case.center_id or 0),
        "escalated_to_code": lookups.departments.get(case.escalated_to_id or 0),
        "level": case.level,
        "escalation_level": case.escalation_level,
        "stage_deadline": case.stage_deadline,
        "handle_deadline": case.handle_deadline,
        "overdue": case.overdue,
        "extension_pending_hours": case.extension_pending_hours,
        "rework_count": case.rework_count,
        "extension_count": case.extension_count,
        "duplicate_of": case.duplicate_of_id,
        "duplicate_candidates": list(case.duplicate_candidates or []),
        "reporter_name": name,
        "reporter_phone": phone,
        "reporter_email": email,
        "result": case.result,
        "evaluation_score": case.evaluation_score,
        "created_at": case.created_at,
        "updated_at": case.updated_at,
        "allowed_actions": possible,
    }


def _shape(
    session: Session, principal: CurrentPrincipal, cases: list[Case], request: Request
) -> list[dict[str, Any]]:
    """Cases as replies: personal data masked unless the caller may see it, and then audited."""
    personal = privacy.may_see_personal(principal)
    revealed = [
        f"case:{c.id}" for c in cases if c.reporter_name or c.reporter_phone or c.reporter_email
    ]
    if personal and revealed:
        privacy.record_unmasked_read(
            session,
            principal,
            what="case.reporter",
            targets=revealed,
            request_id=_request_id(request),
        )
    lookups = _Lookups(session, cases)
    return [_case_out(c, lookups, principal, personal=personal) for c in cases]


def _detail(
    session: Session, principal: CurrentPrincipal, case: Case, request: Request
) -> dict[str, Any]:
    out = _shape(session, principal, [case], request)[0]
    events = session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
    )
    out["events"] = [EventOut.model_validate(e, from_attributes=True) for e in events]
    files = session.scalars(
        select(CaseFile).where(CaseFile.case_id == case.id).order_by(CaseFile.id)
    )
    out["files"] = [_file_out(case.id, f) for f in files]
    return out


def _file_out(case_id: int, row: CaseFile) -> FileOut:
    base = f"/api/cases/{case_id}/files/{row.id}"
    return FileOut(
        id=row.id,
        stage=row.stage,
        media_type=row.media_type,
        size=row.size,
        filename=row.filename,
        url=row.url or base,
        thumbnail_url=f"{base}?thumbnail=true" if row.thumbnail_key else None,
    )


def _category_out(row: CaseCategory) -> CategoryOut:
    return CategoryOut.model_validate(row, from_attributes=True)


# -- catalogue --------------------------------------------------------------------------------


@router.get("/api/cases/catalogue", response_model=list[CategoryOut])
def list_catalogue(
    session: DbSession,
    _: Annotated[CurrentPrincipal, Depends(require(CASES_READ))],
    include_inactive: bool = False,
) -> list[CategoryOut]:
    """案件分类目录 / The case catalogue: components and events with their standards."""
    rows = service.list_categories(session, include_inactive=include_inactive)
    return [_category_out(r) for r in rows]


@router.get("/api/cases/catalogue/{code}", response_model=CategoryOut)
def get_catalogue_entry(
    code: str, session: DbSession, _: Annotated[CurrentPrincipal, Depends(require(CASES_READ))]
) -> CategoryOut:
    return _category_out(service.get_category(session, code, active=False))


@router.post("/api/cases/catalogue", response_model=CategoryOut, status_code=201)
def create_catalogue_entry(
    body: CategoryIn,
    request: Request,
    session: DbSession,
    principal: Annotated[CurrentPrincipal, Depends(require(CASES_CATALOGUE_WRITE))],
) -> CategoryOut:
    """新增小类 / Add a minor class with its standards, time limits and dispatch rule."""
    data = body.model_dump()
    row = service.create_category(session, principal, data, _request_id(request))
    return _category_out(row)


@router.patch("/api/cases/catalogue/{code}", response_model=CategoryOut)
def update_catalogue_entry(
    code: str,
    body: CategoryPatch,
    request: Request,
    session: DbSession,
    principal: Annotated[CurrentPrincipal, Depends(require(CASES_CATALOGUE_WRITE))],
) -> CategoryOut:
    """修改小类 / Change a class (standards, limits, rule, attributes; active=false retires it)."""
    changes = body.model_dump(exclude_unset=True)
    row = service.update_category(session, principal, code, changes, _request_id(request))
    return _category_out(row)


# -- intake and reading -----------------------------------------------------------------------


@router.post("/api/cases", response_model=CaseOut, status_code=201)
def create_case(
    body: CaseIn,
    request: Request,
    context: Context,
    session: DbSession,
    principal: Annotated[CurrentPrincipal, Depends(require(CASES_CREATE))],
) -> dict[str, Any]:
    """上报案件 / Report a case: patrol (巡查), 12345 hotline (热线) or a leader's instruction."""
    new = NewCase(**body.model_dump())
    case = service.create_case(session, context, principal, new, request_id=_request_id(request))
    return _shape(session, principal, [case], request)[0]


@router.get("/api/cases", response_model=CasePage)
def list_cases(
    request: Request,
    session: DbSession,
    principal: Annotated[CurrentPrincipal, Depends(require(CASES_READ))],
    state: Annotated[list[State] | None, Query()] = None,
    department: str | None = None,
    district: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
    street: Annotated[str | None, Query(pattern=r"^\d{9}$")] = None,
    category: str | None = None,
    source: service.Source | None = None,
    overdue: bool | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    before_id: Annotated[int | None, Query(gt=0)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> dict[str, Any]:
    """案件列表 / Cases you may see, newest first; page with `before_id`."""
    where: list[Any] = []
    if state:
        where.append(Case.state.in_([s.value for s in state]))
    if department:
        found = session.scalars(select(Department.id).where(Department.code == department)).first()
        where.append(Case.department_id == (found or -1))
    if district:
        where.append(Case.district_code == district)
    if street:
        where.append(Case.street_code == street)
    if category:
        found = session.scalars(
            select(CaseCategory.id).where(CaseCategory.code == category)
        ).first()
        where.append(Case.category_id == (found or -1))
    if source:
        where.append(Case.source == source.value)
    if overdue is not None:
        where.append(Case.overdue.is_(overdue))
    if created_from:
        where.append(Case.created_at >= _aware(created_from))
    if created_to:
        where.append(Case.created_at < _aware(created_to))
    if before_id:
        where.append(Case.id < before_id)
    rows = service.newest_visible(session, principal, where, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": _shape(session, principal, rows, request),
        "next_before_id": rows[-1].id if more and rows else None,
    }


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=SHANGHAI)


@router.get("/api/cases/indicators", response_model=None)
def get_indicators(
    session: DbSession,
    principal: Annotated[CurrentPrincipal, Depends(require(CASES_READ))],
    start: datetime | None = None,
    end: datetime | None = None,
    by: indicators.GroupBy = "department",
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Any:
    """综合评价 / Indicators for cases reported in [start, end) (default: the last 30 days)."""
    end_at = _aware(end) if end else utcnow()
    start_at = _aware(start) if start else end_at - timedelta(days=30)
    if start_at >= end_at or end_at - start_at > timedelta(days=400):
        raise Problem.of(422, "validation-error", "cases.period")
    rows = indicators.compute(session, principal, start=start_at, end=end_at, by=by)
    label = f"{start_at.astimezone(SHANGHAI):%Y%m%d}-{end_at.astimezone(SHANGHAI):%Y%m%d}"
    if format == "csv":
        return Response(
            indicators.to_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="cases-{by}-{label}.csv"'},
        )
    if format == "xlsx":
        return Response(
            indicators.to_xlsx(rows, f"综合评价 {label} 按 {by}"),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="cases-{by}-{label}.xlsx"'},
        )
    return {
        "start": start_at,
        "end": end_at,
        "by": by,
        "rates": {
            name: {"zh": zh, "numerator": n, "denominator": d}
            for name, zh, n, d in indicators.RATES
        },
        "rows": [r.as_dict() for r in rows],
    }


@router.get("/api/cases/track/{tracking_id}", response_model=TrackOut)
def track(
    tracking_id: str, session: DbSession, _: Annotated[None, Depends(public)]
) -> dict[str, Any]:
    """进度查询 / A reporter follows a case by its tracking id (no personal data shown)."""
    case = service.get_by_tracking(session, tracking_id.strip().upper())
    category = session.get(CaseCategory, case.category_id)
    master = session.get(Case, case.duplicate_of_id) if case.duplicate_of_id else None
    followed = master or case
    events = session.scalars(
        select(CaseEvent)
        .where(CaseEvent.case_id.in_({case.id, followed.id}), CaseEvent.public.is_(True))
        .order_by(CaseEvent.at, CaseEvent.id)
    )
    return {
        "tracking_id": case.tracking_id,
        "category_name": category.name if category else "",
        "state": followed.state,
        "state_title": STATE_TITLES[State(followed.state)][0],
        "created_at": case.created_at,
        "updated_at": followed.updated_at,
        "merged_into": master.tracking_id if master else None,
        "history": [
            {"at": e.at, "state": e.to_state, "title": STATE_TITLES[State(e.to_state)][0]}
            for e in events
        ],
    }


@router.get("/api/cases/{case_id}", response_model=CaseDetail)
def get_case(
    case_id: int,
    request: Request,
    session: DbSession,
    principal: Annotated[CurrentPrincipal, Depends(require(CASES_READ))],
) -> dict[str, Any]:
    """案件详情 / One case with its history and files."""
    return _detail(session, principal, service.get_case(session, principal, case_id), request)


@router.get("/api/cases/{case_id}/duplicates", response_model=list[CaseOut])
def get_duplicates(
    case_id: int,
    request: Request,
    session: DbSession,
    principal: Annotated[CurrentPrincipal, Depends(require(CASES_READ))],
) -> list[dict[str, Any]]:
    """疑似重复 / Open cases of the same class nearby that this one may duplicate."""
    case = service.get_case(session, principal, case_id)
    ids = list(case.duplicate_candidates or [])
    if not ids:
        return []
    query = service.scoped(session, principal, select(Case).where(Case.id.in_(ids)))
    return _shape(session, principal, list(session.scalars(query.order_by(Case.id))), request)


# -- files ------------------------------------------------------------------------------------

MAX_FILES = 9


@router.post("/api/cases/{case_id}/files", response_model=list[FileOut], status_code=201)
def upload_files(
    case_id: int,
    context: Context,
    session: DbSession,
    principal: Annotated[CurrentPrincipal, Depends(require(CASES_READ))],
    files: Annotated[list[UploadFile], File(description="Photos (JPEG, PNG, WebP, GIF) or PDF")],
    stage: Annotated[str, Form()] = "report",
) -> list[FileOut]:
    """上传照片 / Attach photos to a case: at report, with the handling feedback, or on site."""
    needed = FILE_STAGES.get(stage)
    if needed is None:
        raise Problem.of(
            422, "validation-error", "cases.file_stage", stage=stage, stages=", ".join(FILE_STAGES)
        )
    if not principal.can(needed):
        raise Problem.of(403, "forbidden", "auth.forbidden", permission=needed)
    if len(files) > MAX_FILES:
        raise Problem.of(422, "validation-error", "cases.too_many_files", max=MAX_FILES)
    case = service.get_case(session, principal, case_id)
    store = file_store(context)
    stored = [put_file(store, f.file.read(), f.filename or "", prefix="cases") for f in files]
    at = service.now(context)
    rows = [service.attach(session, principal, case, s, stage, at) for s in stored]
    return [_file_out(case.id, row) for row in rows]


@router.get("/api/cases/{case_id}/files/{file_id}", response_model=None)
def download_file(
    case_id: int,
    file_id: int,
    context: Context,
    session: DbSession,
    principal: Annotated[CurrentPrincipal, Depends(require(CASES_READ))],
    thumbnail: bool = False,
) -> Response:
    """附件下载 / A case's photo or its thumbnail."""
    service.get_case(session, principal, case_id)
    row = session.get(CaseFile, file_id)
    if row is None or row.case_id != case_id or not row.key:
        raise Problem.of(404, "not-found", "cases.file_unknown", case_id=case_id, file_id=file_id)
    key = row.thumbnail_key if thumbnail and row.thumbnail_key else row.key
    media_type = "image/jpeg" if key != row.key else row.media_type
    return Response(
        file_store(context).get(key),
        media_type=media_type,
        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


# -- the workflow steps, one route each, made from the transition table -----------------------

BODIES: dict[Action, type[BaseModel]] = {
    Action.REGISTER: StepIn,
    Action.REJECT: ReasonIn,
    Action.MERGE: MergeIn,
    Action.DISPATCH: DispatchIn,
    Action.REDISPATCH: DispatchIn,
    Action.ACCEPT: StepIn,
    Action.RETURN: ReasonIn,
    Action.REQUEST_EXTENSION: ExtensionIn,
    Action.APPROVE_EXTENSION: StepIn,
    Action.DENY_EXTENSION: StepIn,
    Action.FEEDBACK: FeedbackIn,
    Action.VERIFY: StepIn,
    Action.REWORK: ReasonIn,
    Action.CLOSE: StepIn,
    Action.EVALUATE: EvaluateIn,
}


def _step_input(body: BaseModel | None) -> StepInput:
    data = body.model_dump() if body is not None else {}
    return StepInput(
        note=data.get("note", ""),
        reason=data.get("reason", ""),
        department_code=data.get("department_code"),
        level=data.get("level"),
        hours=data.get("hours"),
        target_id=data.get("into"),
        result=data.get("result", ""),
        score=data.get("score"),
    )


def _step_route(action: Action) -> Callable[..., dict[str, Any]]:
    transition = TRANSITIONS[action]
    model = BODIES[action]

    def run(
        case_id: int,
        request: Request,
        context: Any,
        session: Session,
        principal: CurrentPrincipal,
        body: BaseModel | None = None,
    ) -> dict[str, Any]:
        case = service.step(
            session,
            context,
            principal,
            case_id,
            action,
            _step_input(body),
            request_id=_request_id(request),
        )
        return _detail(session, principal, case, request)

    optional = all(not f.is_required() for f in model.model_fields.values())
    body_type: Any = model | None if optional else model
    parameter = inspect.Parameter
    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            parameter("case_id", parameter.POSITIONAL_OR_KEYWORD, annotation=int),
            parameter("request", parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
            parameter("context", parameter.POSITIONAL_OR_KEYWORD, annotation=Context),
            parameter("session", parameter.POSITIONAL_OR_KEYWORD, annotation=DbSession),
            parameter(
                "principal",
                parameter.POSITIONAL_OR_KEYWORD,
                annotation=Annotated[CurrentPrincipal, Depends(require(transition.permission))],
            ),
            parameter(
                "body",
                parameter.POSITIONAL_OR_KEYWORD,
                annotation=Annotated[body_type, Body()],
                **({"default": None} if optional else {}),
            ),
        ]
    )
    run.__name__ = f"case_{action.value.replace('-', '_')}"
    run.__doc__ = f"{transition.title[0]} / {transition.title[1]} (needs {transition.permission})"
    return run


for _action in Action:
    router.add_api_route(
        f"/api/cases/{{case_id}}/{_action.value}",
        _step_route(_action),
        methods=["POST"],
        response_model=CaseDetail,
        summary=f"{TRANSITIONS[_action].title[0]} / {TRANSITIONS[_action].title[1]}",
    )
