"""Cases: intake from every source, the workflow, deadlines, duplicates and escalation.

Plain functions over a session. Who may do what is the transition table in `workflow.py`;
which department sees a case is `platform/access.py` over three owner columns (the handling
department, the coordinating center, a center it was escalated to). Time limits run in
working hours on the Chinese calendar (`platform/workcal.py`).
"""

from __future__ import annotations

import enum
import math
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, false, or_, select, union
from sqlalchemy.orm import Session

from pujiang.cases import notify
from pujiang.cases.catalogue import DEFAULT_LIMITS, KINDS, STAGES, seed_rows
from pujiang.cases.locate import NOWHERE, locate
from pujiang.cases.models import Case, CaseCategory, CaseEvent, CaseFile
from pujiang.cases.workflow import (
    STAGE_OF,
    STATE_TITLES,
    TRANSITIONS,
    Action,
    Actor,
    State,
    allowed_actions,
)
from pujiang.platform import access, audit
from pujiang.platform.db import lock_for_write, utcnow
from pujiang.platform.errors import Problem
from pujiang.platform.files import StoredFile
from pujiang.platform.geo import Crs, distance_m
from pujiang.platform.i18n import register, translate
from pujiang.platform.models import Department, DepartmentLevel
from pujiang.platform.roles import ALL, CASES_CREATE, CASES_REGISTER
from pujiang.platform.security import CurrentPrincipal
from pujiang.platform.workcal import WorkCalendar, china_calendar

KIND = "cases"  # the access-grant kind of case data
CLOCK_KEY = "cases.clock"
CITY_CENTER = "CYZX"
LEVELS = ("street", "district", "city")
MAX_EXTENSION_HOURS = 7 * 20  # four working weeks

SYSTEM = CurrentPrincipal(
    id=0,
    username="cases",
    kind="system",
    department_id=None,
    department_code=None,
    roles=(),
    permissions=frozenset({ALL}),
)


class Source(enum.StrEnum):
    PATROL = "patrol"  # 网格监督员巡查
    HOTLINE = "hotline"  # 12345 热线
    OPEN311 = "open311"  # 市民通过 Open311 应用
    SENSOR = "sensor"  # 物联感知告警
    LEADER = "leader"  # 领导交办


class RequestType(enum.StrEnum):
    CONSULT = "consult"  # 咨询
    HELP = "help"  # 求助
    COMPLAINT = "complaint"  # 投诉
    REPORT = "report"  # 举报
    SUGGESTION = "suggestion"  # 建议


register(
    {
        "cases.not_found": ("案件 {case_id} 不存在", "No case {case_id}"),
        "cases.category_unknown": (
            "案件类别 {code} 不存在或已停用；可用 GET /api/cases/catalogue 查询",
            "No active case class {code}; see GET /api/cases/catalogue",
        ),
        "cases.category_exists": ("案件类别 {code} 已存在", "Case class {code} already exists"),
        "cases.category_code": (
            "类别代码 {code} 应为 {prefix} 加两位大类、两位小类，如 {prefix}0101",
            "Class code {code} must be {prefix}, two major and two minor digits, e.g. {prefix}0101",
        ),
        "cases.limits": (
            "时限 {stage} 无效：应为 0 到 1000 之间的工作小时数",
            "Time limit {stage} is invalid: give working hours between 0 and 1000",
        ),
        "cases.wrong_state": (
            "案件 {case_id} 当前为“{state}”，不能执行“{action}”；可执行：{allowed}",
            "Case {case_id} is {state_en}; it cannot {action_en}. Possible now: {allowed_en}",
        ),
        "cases.not_your_step": (
            "案件 {case_id} 的“{action}”应由{whose}执行，本部门不能执行",
            "{action_en} on case {case_id} is for {whose_en}, not your department",
        ),
        "cases.reason_required": (
            "“{action}”需要填写原因（reason）",
            "{action_en} needs a reason",
        ),
        "cases.merge_target": (
            "不能合并到案件 {target}：{why}",
            "Cannot merge into case {target}: {why_en}",
        ),
        "cases.extension_pending": (
            "案件 {case_id} 已有待审批的延期申请",
            "Case {case_id} already has an extension waiting for approval",
        ),
        "cases.no_extension": (
            "案件 {case_id} 没有待审批的延期申请",
            "Case {case_id} has no extension request to decide",
        ),
        "cases.extension_hours": (
            "延期时长应为 0 到 {max} 个工作小时",
            "An extension must be between 0 and {max} working hours",
        ),
        "cases.score": ("评价分值应为 1 到 5", "The evaluation score must be 1 to 5"),
        "cases.department_unknown": (
            "派遣部门 {code} 不存在",
            "No department {code} to dispatch to",
        ),
        "cases.result_required": (
            "处置反馈需要填写处置结果（result）",
            "Feedback needs the result of the handling",
        ),
        "cases.location_required": (
            "需要提供位置：经纬度或地址",
            "A location is required: coordinates or an address",
        ),
        "cases.hotline_fields": (
            "12345 工单需要诉求类型（request_type）",
            "A 12345 case needs its request type",
        ),
        "cases.leader_permission": (
            "领导交办案件需要立案权限 {permission}",
            "Leaders' instructions need the permission {permission}",
        ),
        "cases.tracking_unknown": ("查询编号 {tracking_id} 不存在", "No report {tracking_id}"),
        "cases.whose.center": ("运行管理中心", "the operations center"),
        "cases.whose.handler": ("承办部门", "the handling department"),
    }
)


# -- time -------------------------------------------------------------------------------------


def now(context: Any) -> datetime:
    """The current time; a test or a simulation may put a clock in context.extras."""
    clock: Callable[[], datetime] | None = context.extras.get(CLOCK_KEY)
    return clock() if clock else utcnow()


def calendar() -> WorkCalendar:
    return china_calendar()


def deadline(start: datetime, hours: float) -> datetime:
    """`hours` working hours after `start` on the Chinese calendar."""
    return calendar().add_working_hours(start, hours)


def limit_of(category: CaseCategory, stage: str) -> float:
    return float((category.time_limits or {}).get(stage, DEFAULT_LIMITS[stage]))


# -- catalogue --------------------------------------------------------------------------------


def load_catalogue(session: Session) -> int:
    """Add the seed classes that are missing (existing ones are left as edited)."""
    existing = set(session.scalars(select(CaseCategory.code)))
    rows = [row for row in seed_rows() if row["code"] not in existing]
    for row in rows:
        session.add(CaseCategory(**row))
    session.flush()
    return len(rows)


def list_categories(session: Session, *, include_inactive: bool = False) -> list[CaseCategory]:
    query = select(CaseCategory).order_by(CaseCategory.code)
    if not include_inactive:
        query = query.where(CaseCategory.active.is_(True))
    return list(session.scalars(query))


def get_category(session: Session, code: str, *, active: bool = True) -> CaseCategory:
    row = session.scalars(select(CaseCategory).where(CaseCategory.code == code)).one_or_none()
    if row is None or (active and not row.active):
        raise Problem.of(404, "not-found", "cases.category_unknown", code=code)
    return row


def _check_limits(limits: dict[str, float]) -> dict[str, float]:
    for stage, hours in limits.items():
        if stage not in STAGES or not (0 <= hours <= 1000) or math.isnan(hours):
            raise Problem.of(422, "validation-error", "cases.limits", stage=stage)
    return {**DEFAULT_LIMITS, **limits}


def create_category(
    session: Session, principal: CurrentPrincipal, data: dict[str, Any], request_id: str = ""
) -> CaseCategory:
    code, kind = data["code"], data["kind"]
    prefix = "C" if kind == KINDS[0] else "E"
    if len(code) != 5 or not code.startswith(prefix) or not code[1:].isdigit():
        raise Problem.of(422, "validation-error", "cases.category_code", code=code, prefix=prefix)
    if session.scalars(select(CaseCategory.id).where(CaseCategory.code == code)).first():
        raise Problem.of(409, "conflict", "cases.category_exists", code=code)
    row = CaseCategory(
        **{**data, "major_code": code[1:3], "minor_code": code[3:5]},
    )
    row.time_limits = _check_limits(data.get("time_limits") or {})
    session.add(row)
    session.flush()
    audit.append(
        session,
        actor=principal.actor,
        action="case.catalogue.create",
        target=f"case-class:{code}",
        request_id=request_id,
        detail={"name": row.name},
    )
    return row


def update_category(
    session: Session,
    principal: CurrentPrincipal,
    code: str,
    changes: dict[str, Any],
    request_id: str = "",
) -> CaseCategory:
    row = get_category(session, code, active=False)
    if "time_limits" in changes and changes["time_limits"] is not None:
        changes["time_limits"] = _check_limits({**row.time_limits, **changes["time_limits"]})
    for name, value in changes.items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    audit.append(
        session,
        actor=principal.actor,
        action="case.catalogue.update",
        target=f"case-class:{code}",
        request_id=request_id,
        detail={"fields": sorted(changes)},
    )
    return row


# -- departments ------------------------------------------------------------------------------


def _department(session: Session, code: str) -> Department | None:
    return session.scalars(select(Department).where(Department.code == code)).one_or_none()


def _department_by_id(session: Session, department_id: int | None) -> Department | None:
    return session.get(Department, department_id) if department_id is not None else None


def center_for(session: Session, district_code: str | None) -> Department:
    """The operations center coordinating cases of a district (the city's if none)."""
    found = _department(session, f"{district_code}-{CITY_CENTER}") if district_code else None
    found = found or _department(session, CITY_CENTER)
    if found is None:  # a bare installation: make the city center so cases have an owner
        found = Department(
            code=CITY_CENTER, name="城市运行管理中心", name_en="City Operations Center"
        )
        session.add(found)
        session.flush()
    return found


def rule_domain(template: str) -> str:
    """The line of business a dispatch rule names: "{district}-CGZF" → "CGZF", "SW" → "SW"."""
    return template.rsplit("-", 1)[-1] if "-" in template else template


def team_matches(team: Department, domain: str, level: str, district: str | None) -> bool:
    """Whether a responsibility grid's team may take a case the rule sends to `domain`/`level`.

    The team is of the same line of business (its code is the domain or ends in "-" + domain),
    not above the rule's level (a district rule takes street or district teams, a city rule any),
    and, below city level, of the case's own district.
    """
    if team.code != domain and not team.code.endswith(f"-{domain}"):
        return False
    team_level = team.level if team.level in LEVELS else "city"
    if LEVELS.index(team_level) > LEVELS.index(level if level in LEVELS else "district"):
        return False
    return level == "city" or (district is not None and team.district_code == district)


def dispatch_target(
    session: Session, category: CaseCategory, case: Case, team_code: str | None = None
) -> tuple[Department, str]:
    """The department and level the class's rule sends this case to.

    A rule names a department code ("{district}" is replaced by the case's district), may list
    per-district exceptions, and gives the level. When the case lies in a responsibility grid
    whose team (`team_code`, a department code) matches the rule (see `team_matches`), the
    team gets it at its own level. Otherwise a code that does not exist falls back to the
    district's urban-management bureau, then the city's, then the coordinating center.
    """
    rule = category.dispatch_rule or {}
    district = case.district_code or ""
    by_district: dict[str, str] = rule.get("by_district") or {}
    template = by_district.get(district) or str(rule.get("department") or "{district}-CGZF")
    level = str(rule.get("level") or "district")
    if team_code:
        team = _department(session, team_code)
        if team is not None and team_matches(
            team, rule_domain(template), level, case.district_code
        ):
            return team, team.level if team.level in LEVELS else "city"
    candidates = (
        [template.replace("{district}", district)] if district or "{" not in template else []
    )
    candidates += [f"{district}-CGZF"] if district else []
    candidates += ["CGZF"]
    for code in candidates:
        found = _department(session, code)
        if found is not None:
            if found.level == DepartmentLevel.CITY.value:
                level = "city"
            elif level == "city":
                level = "district"
            return found, level
    # Every case has a center from intake on; the guard keeps a broken row from crashing.
    center = _department_by_id(session, case.center_id) or center_for(session, case.district_code)
    return center, level


# -- visibility -------------------------------------------------------------------------------

OWNER_COLUMNS = (Case.department_id, Case.center_id, Case.escalated_to_id)


def visible_clause(session: Session, principal: CurrentPrincipal) -> ColumnElement[bool] | None:
    """Cases a principal may see: its department handles, coordinates or supervises them."""
    columns: tuple[Any, ...] = OWNER_COLUMNS
    clauses = [
        access.visibility_filter(session, principal, KIND, column, Case.__table__.c.id)
        for column in columns
    ]
    if any(clause is None for clause in clauses):
        return None
    return or_(*[c for c in clauses if c is not None]) if clauses else false()


def scoped(session: Session, principal: CurrentPrincipal, query: Select[Any]) -> Select[Any]:
    clause = visible_clause(session, principal)
    return query if clause is None else query.where(clause)


def newest_visible(
    session: Session,
    principal: CurrentPrincipal,
    filters: list[ColumnElement[bool]],
    limit: int,
) -> list[Case]:
    """The newest `limit` cases matching `filters` that the principal may see.

    A department sees cases through three owner columns. One OR over them makes the database
    merge and sort every matching row; instead each column gets its own index-ordered branch
    of at most `limit` ids, and the union of those few ids is sorted.
    """
    columns: tuple[Any, ...] = OWNER_COLUMNS
    clauses = [
        access.visibility_filter(session, principal, KIND, column, Case.__table__.c.id)
        for column in columns
    ]
    if any(clause is None for clause in clauses):
        query = select(Case).where(*filters).order_by(Case.id.desc()).limit(limit)
        return list(session.scalars(query))
    branches = [
        select(Case.id).where(*filters, clause).order_by(Case.id.desc()).limit(limit).subquery()
        for clause in clauses
        if clause is not None
    ]
    ids = union(*[select(branch.c.id) for branch in branches]).subquery()
    query = select(Case).where(Case.id.in_(select(ids.c.id))).order_by(Case.id.desc()).limit(limit)
    return list(session.scalars(query))


def _may(
    session: Session,
    principal: CurrentPrincipal,
    owners: Iterable[int | None],
    case_id: int,
    *,
    write: bool,
) -> bool:
    for owner in owners:
        if owner is None:
            continue
        try:
            access.ensure_access(session, principal, KIND, owner, str(case_id), write=write)
        except Problem:
            continue
        return True
    return False


def get_case(
    session: Session, principal: CurrentPrincipal, case_id: int, *, for_update: bool = False
) -> Case:
    """A case the principal may see, else 404 (another department's case is not revealed)."""
    query = select(Case).where(Case.id == case_id)
    if for_update:
        lock_for_write(session)  # SQLite: a concurrent step must not read the old state
        query = query.with_for_update()
    case = session.scalars(query).one_or_none()
    owners = (case.department_id, case.center_id, case.escalated_to_id) if case else ()
    if case is None or not _may(session, principal, owners, case_id, write=False):
        raise Problem.of(404, "not-found", "cases.not_found", case_id=case_id)
    return case


def get_by_tracking(session: Session, tracking_id: str) -> Case:
    case = session.scalars(select(Case).where(Case.tracking_id == tracking_id)).one_or_none()
    if case is None:
        raise Problem.of(404, "not-found", "cases.tracking_unknown", tracking_id=tracking_id)
    return case


# -- intake -----------------------------------------------------------------------------------


@dataclass
class NewCase:
    category_code: str
    source: Source
    description: str = ""
    address: str = ""
    lon: float | None = None
    lat: float | None = None
    crs: Crs = Crs.WGS84
    request_type: RequestType | None = None
    reporter_name: str | None = None
    reporter_phone: str | None = None
    reporter_email: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    external_ref: str | None = None
    media_urls: list[str] = field(default_factory=list)


def new_tracking_id() -> str:
    # 60 random bits in Crockford base32 (no I, L, O, U): unguessable, readable on the phone,
    # and a collision among ten years of a busy city's cases is a one-in-ten-thousand event.
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = secrets.randbits(60)
    return "PJ" + "".join(alphabet[(value >> (5 * i)) & 31] for i in range(12))


def find_duplicates(
    session: Session,
    category: CaseCategory,
    lon: float | None,
    lat: float | None,
    at: datetime,
    *,
    exclude: int | None = None,
) -> list[int]:
    """Open cases of the same class within the class's radius and time window."""
    if lon is None or lat is None:
        return []
    radius = float(category.duplicate_radius_m)
    dlat = radius / 111_195.0
    dlon = dlat / max(math.cos(math.radians(lat)), 0.01)
    since = at - timedelta(hours=float(category.duplicate_window_hours))
    rows = session.execute(
        select(Case.id, Case.lon, Case.lat)
        .where(
            Case.category_id == category.id,
            Case.created_at >= since,
            Case.created_at <= at,
            Case.state.not_in([State.REJECTED.value, State.MERGED.value]),
            Case.lat.between(lat - dlat, lat + dlat),
            Case.lon.between(lon - dlon, lon + dlon),
        )
        .order_by(Case.id)
        .limit(20)
    ).all()
    return [
        int(row.id)
        for row in rows
        if row.id != exclude and distance_m(lon, lat, row.lon, row.lat) <= radius
    ]


def create_case(
    session: Session,
    context: Any,
    principal: CurrentPrincipal,
    new: NewCase,
    *,
    request_id: str = "",
    category: CaseCategory | None = None,
) -> Case:
    """Take in a report from any source; it starts in 信息收集 (leaders' orders: 已立案).

    `category`: the active class of `new.category_code` if the caller already read it.
    """
    if not principal.can(CASES_CREATE):
        raise Problem.of(403, "forbidden", "auth.forbidden", permission=CASES_CREATE)
    if new.source is Source.LEADER and not principal.can(CASES_REGISTER):
        raise Problem.of(403, "forbidden", "cases.leader_permission", permission=CASES_REGISTER)
    if new.source is Source.HOTLINE and new.request_type is None:
        raise Problem.of(422, "validation-error", "cases.hotline_fields")
    if (new.lon is None or new.lat is None) and not new.address and not new.external_ref:
        raise Problem.of(422, "validation-error", "cases.location_required")
    if category is None or category.code != new.category_code or not category.active:
        category = get_category(session, new.category_code)
    at = now(context)
    place = (
        locate(context, new.lon, new.lat, new.crs)
        if new.lon is not None and new.lat is not None
        else NOWHERE
    )
    center = center_for(session, place.district_code)
    state = State.REGISTERED if new.source is Source.LEADER else State.REPORTED
    stage = STAGE_OF[state]
    case = Case(
        tracking_id=new_tracking_id(),
        category_id=category.id,
        source=new.source.value,
        request_type=new.request_type.value if new.request_type else None,
        state=state.value,
        description=new.description,
        address=new.address,
        lon=place.lon,
        lat=place.lat,
        district_code=place.district_code,
        street_code=place.street_code,
        community_code=place.community_code,
        grid_code=place.grid_code,
        place_name=place.name[:255],
        department_id=center.id,
        center_id=center.id,
        level="district" if center.district_code else "city",
        stage_deadline=deadline(at, limit_of(category, stage)),
        reporter_name=new.reporter_name or None,
        reporter_phone=new.reporter_phone or None,
        reporter_email=new.reporter_email or None,
        reporter_principal=principal.actor,
        attributes=new.attributes,
        external_ref=new.external_ref,
        duplicate_candidates=find_duplicates(session, category, place.lon, place.lat, at),
        created_at=at,
        updated_at=at,
        registered_at=at if state is State.REGISTERED else None,
    )
    session.add(case)
    session.flush()
    for url in new.media_urls:
        session.add(
            CaseFile(
                case_id=case.id,
                stage="report",
                key="",
                media_type="",
                size=0,
                sha256="",
                url=url,
                created_by=principal.actor,
                created_at=at,
            )
        )
    _record(
        session,
        principal,
        case,
        action="report",
        from_state=None,
        note=new.description[:200],
        detail={"source": new.source.value, "duplicates": case.duplicate_candidates},
        at=at,
        request_id=request_id,
    )
    notify.enqueue(session, case, state)
    return case


def _record(
    session: Session,
    principal: CurrentPrincipal,
    case: Case,
    *,
    action: str,
    from_state: str | None,
    note: str = "",
    detail: dict[str, Any] | None = None,
    at: datetime,
    request_id: str = "",
    public: bool = True,
) -> None:
    """One history step and one audit entry, in the caller's transaction."""
    session.add(
        CaseEvent(
            case_id=case.id,
            at=at,
            actor=principal.actor,
            action=action,
            from_state=from_state,
            to_state=case.state,
            note=note,
            detail=detail or {},
            public=public,
        )
    )
    audit.append(
        session,
        actor=principal.actor,
        action=f"case.{action}",
        target=f"case:{case.id}",
        request_id=request_id,
        detail={"from": from_state, "to": case.state, **(detail or {})},
    )


def attach(
    session: Session,
    principal: CurrentPrincipal,
    case: Case,
    stored: StoredFile,
    stage: str,
    at: datetime,
) -> CaseFile:
    row = CaseFile(
        case_id=case.id,
        stage=stage,
        key=stored.key,
        thumbnail_key=stored.thumbnail_key,
        media_type=stored.media_type,
        size=stored.size,
        sha256=stored.sha256,
        filename=stored.filename,
        created_by=principal.actor,
        created_at=at,
    )
    session.add(row)
    session.flush()
    return row


# -- the workflow -----------------------------------------------------------------------------


@dataclass
class StepInput:
    """What a step may carry; each action reads the fields it needs."""

    note: str = ""
    reason: str = ""
    department_code: str | None = None
    level: str | None = None
    hours: float | None = None
    target_id: int | None = None
    result: str = ""
    score: int | None = None


def _titles(action: Action) -> tuple[str, str]:
    return TRANSITIONS[action].title


def _need_reason(action: Action, data: StepInput) -> None:
    if not data.reason:
        zh, en = _titles(action)
        raise Problem.of(422, "validation-error", "cases.reason_required", action=zh, action_en=en)


def _restart_clock(case: Case, category: CaseCategory, at: datetime, target: State) -> None:
    """Leave the current stage (counting it if late) and start the target stage's limit."""
    if case.stage_deadline is not None and (case.overdue or at > case.stage_deadline):
        case.overdue_count += 1
    case.overdue = False
    stage = STAGE_OF.get(target)
    if stage is None:
        case.stage_deadline = None
        return
    case.stage_deadline = deadline(at, limit_of(category, stage))
    if stage == "handle":
        case.handle_deadline = case.stage_deadline


def _responsibility(context: Any, case: Case) -> tuple[str | None, str | None]:
    """The responsibility grid of the case's point now, and its team's department code."""
    if case.lon is None or case.lat is None:
        return None, None
    place = locate(context, case.lon, case.lat)
    return place.responsibility_code, place.responsibility_department


def _apply(
    session: Session,
    context: Any,
    case: Case,
    category: CaseCategory,
    action: Action,
    data: StepInput,
    at: datetime,
) -> dict[str, Any]:
    """The effect of one step on the case; returns what the history should remember."""
    detail: dict[str, Any] = {}
    if action is Action.REGISTER:
        case.registered_at = at
    elif action in (Action.REJECT, Action.RETURN, Action.REWORK):
        _need_reason(action, data)
        detail["reason"] = data.reason
        if action is Action.RETURN:
            case.return_count += 1
            case.department_id = case.center_id
        elif action is Action.REWORK:
            case.rework_count += 1
    elif action is Action.MERGE:
        target = data.target_id
        if target is None or target == case.id:
            raise Problem.of(
                422,
                "validation-error",
                "cases.merge_target",
                target=target,
                why="不能合并到自身",
                why_en="a case cannot be merged into itself",
            )
        master = session.get(Case, target)
        if master is None or master.state in (State.REJECTED.value, State.MERGED.value):
            raise Problem.of(
                409,
                "conflict",
                "cases.merge_target",
                target=target,
                why="目标案件不存在或已终止",
                why_en="it does not exist, was rejected or is itself merged",
            )
        case.duplicate_of_id = master.id
        detail["into"] = master.id
        detail["into_tracking_id"] = master.tracking_id
    elif action in (Action.DISPATCH, Action.REDISPATCH):
        if data.department_code:
            department = _department(session, data.department_code)
            if department is None:
                raise Problem.of(
                    422, "validation-error", "cases.department_unknown", code=data.department_code
                )
            level = data.level or (department.level if department.level in LEVELS else "district")
        else:
            team = _responsibility(context, case)
            department, level = dispatch_target(session, category, case, team[1])
            level = data.level or level
            if team[0] and department.code == team[1]:
                detail["responsibility"] = team[0]
        case.department_id = department.id
        case.level = level
        if action is Action.DISPATCH:
            case.dispatched_at = case.dispatched_at or at
        detail.update(department=department.code, level=level, manual=bool(data.department_code))
    elif action is Action.ACCEPT:
        case.accepted_at = case.accepted_at or at
    elif action is Action.REQUEST_EXTENSION:
        _need_reason(action, data)
        if case.extension_pending_hours is not None:
            raise Problem.of(409, "conflict", "cases.extension_pending", case_id=case.id)
        hours = data.hours
        if hours is None or not (0 < hours <= MAX_EXTENSION_HOURS):
            raise Problem.of(
                422, "validation-error", "cases.extension_hours", max=MAX_EXTENSION_HOURS
            )
        case.extension_pending_hours = hours
        detail.update(hours=hours, reason=data.reason)
    elif action in (Action.APPROVE_EXTENSION, Action.DENY_EXTENSION):
        hours = case.extension_pending_hours
        if hours is None:
            raise Problem.of(409, "conflict", "cases.no_extension", case_id=case.id)
        case.extension_pending_hours = None
        detail["hours"] = hours
        if action is Action.APPROVE_EXTENSION:
            base = case.handle_deadline or at
            case.handle_deadline = deadline(base, hours)
            case.stage_deadline = case.handle_deadline
            case.overdue = case.handle_deadline < at
            case.extension_count += 1
            detail["handle_deadline"] = case.handle_deadline.isoformat()
    elif action is Action.FEEDBACK:
        if not data.result:
            raise Problem.of(422, "validation-error", "cases.result_required")
        case.result = data.result
        case.handled_at = case.handled_at or at
        if case.handled_on_time is None:
            case.handled_on_time = case.handle_deadline is None or at <= case.handle_deadline
    elif action is Action.VERIFY:
        case.verified_at = at
    elif action is Action.CLOSE:
        case.closed_at = at
    elif action is Action.EVALUATE:
        if data.score is None or not 1 <= data.score <= 5:
            raise Problem.of(422, "validation-error", "cases.score")
        case.evaluation_score = data.score
        case.evaluation_note = data.note
        detail["score"] = data.score
    return detail


def step(
    session: Session,
    context: Any,
    principal: CurrentPrincipal,
    case_id: int,
    action: Action,
    data: StepInput | None = None,
    *,
    request_id: str = "",
) -> Case:
    """Take one step of the workflow, checking permission, department and state, in that order."""
    data = data or StepInput()
    transition = TRANSITIONS[action]
    if not principal.can(transition.permission):
        raise Problem.of(403, "forbidden", "auth.forbidden", permission=transition.permission)
    case = get_case(session, principal, case_id, for_update=True)
    owners = (
        (case.center_id, case.escalated_to_id)
        if transition.actor is Actor.CENTER
        else (case.department_id,)
    )
    if not _may(session, principal, owners, case.id, write=True):
        zh, en = transition.title
        whose = f"cases.whose.{transition.actor.value}"
        raise Problem.of(
            403,
            "forbidden",
            "cases.not_your_step",
            case_id=case.id,
            action=zh,
            action_en=en,
            whose=translate(whose, "zh-CN"),
            whose_en=translate(whose, "en"),
        )
    state = State(case.state)
    if state not in transition.sources:
        possible = allowed_actions(state)
        raise Problem(
            409,
            "conflict",
            translate(
                "cases.wrong_state",
                case_id=case.id,
                state=STATE_TITLES[state][0],
                state_en=STATE_TITLES[state][1],
                action=transition.title[0],
                action_en=transition.title[1],
                allowed="、".join(TRANSITIONS[a].title[0] for a in possible) or "无",
                allowed_en=", ".join(a.value for a in possible) or "none",
            ),
            state=state.value,
            allowed_actions=[a.value for a in possible],
        )
    category = session.get(CaseCategory, case.category_id)
    if category is None:  # a foreign key; only a damaged database gets here
        raise Problem.of(404, "not-found", "cases.not_found", case_id=case_id)
    at = now(context)
    detail = _apply(session, context, case, category, action, data, at)
    if transition.restart_clock:
        _restart_clock(case, category, at, transition.target)
    if action is Action.CLOSE:
        case.closed_on_time = case.overdue_count == 0
    case.state = transition.target.value
    case.updated_at = at
    _record(
        session,
        principal,
        case,
        action=action.value,
        from_state=state.value,
        note=data.note or data.reason or data.result,
        detail=detail,
        at=at,
        request_id=request_id,
        public=transition.notify,
    )
    if transition.notify:
        notify.enqueue(
            session, case, transition.target, data.result if action is Action.FEEDBACK else ""
        )
    if action is Action.MERGE and case.duplicate_of_id is not None:
        master = session.get(Case, case.duplicate_of_id)
        if master is not None:  # the master's reporters keep hearing; so does this one now
            master.updated_at = at
    return case


# -- escalation -------------------------------------------------------------------------------

ACTIVE = [s.value for s in STAGE_OF]


def _next_center(session: Session, case: Case) -> tuple[Department | None, str]:
    """Where an overdue case goes: one level up (street → district → city)."""
    level = case.level if case.level in LEVELS else "district"
    up = LEVELS[min(LEVELS.index(level) + 1, len(LEVELS) - 1)]
    if up == "district" and case.district_code:
        return _department(session, f"{case.district_code}-{CITY_CENTER}"), up
    return _department(session, CITY_CENTER), up


def escalate_overdue(
    session: Session, context: Any, *, at: datetime | None = None, batch: int = 1000
) -> list[int]:
    """Flag cases whose current stage ran past its deadline and hand them one level up."""
    at = at or now(context)
    rows = session.scalars(
        select(Case)
        .where(
            Case.state.in_(ACTIVE),
            Case.stage_deadline < at,
            Case.overdue.is_(False),
        )
        .order_by(Case.stage_deadline)
        .limit(batch)
        # Several escalating processes (app workers, cron) each claim other rows (PostgreSQL).
        .with_for_update(skip_locked=True)
    ).all()
    done = []
    for case in rows:
        center, level = _next_center(session, case)
        from_level = case.level
        case.overdue = True
        case.escalation_level += 1
        case.level = level
        if center is not None and center.id != case.center_id:
            case.escalated_to_id = center.id
        case.updated_at = at
        _record(
            session,
            SYSTEM,
            case,
            action="escalate",
            from_state=case.state,
            note="超期升级 / overdue, escalated",
            detail={
                "deadline": case.stage_deadline.isoformat() if case.stage_deadline else None,
                "from_level": from_level,
                "to_level": level,
                "to": center.code if center else None,
            },
            at=at,
            public=False,
        )
        done.append(case.id)
    return done
