"""Live views: datasets whose rows are computed from platform data, refreshed on their cycle.

A provider is a named function returning rows (dicts keyed by data-item name). Modules register
theirs with `register_view` (exported from `pujiang.catalog`), so the catalog never imports
another module's tables. The catalog ships providers built from the kernel and the city
reference, and "cases.monthly_by_district" over the function `pujiang.cases` exports for it
(`monthly_statistics_by_district`, docs/cases.md), imported when the view is refreshed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pujiang.city.reference import districts
from pujiang.platform.db import utcnow
from pujiang.platform.models import Department, Principal
from pujiang.platform.workcal import SHANGHAI

Rows = list[dict[str, Any]]
Provider = Callable[[Session], Rows]


@dataclass(frozen=True)
class ViewProvider:
    name: str
    title: str
    produce: Provider


_PROVIDERS: dict[str, ViewProvider] = {}


def register_view(name: str, title: str, produce: Provider) -> None:
    """Make `produce` available as the live view `name` (a second registration replaces it)."""
    _PROVIDERS[name] = ViewProvider(name, title, produce)


def get_view(name: str) -> ViewProvider | None:
    return _PROVIDERS.get(name)


def view_names() -> list[str]:
    return sorted(_PROVIDERS)


def _district_population(_: Session) -> Rows:
    return [
        {
            "区划代码": d.code,
            "区名称": d.name,
            "常住人口": d.population,
            "面积_平方公里": d.area_km2,
            "人口密度": round(d.population / d.area_km2, 1),
        }
        for d in districts()
    ]


def _departments(session: Session) -> Rows:
    staff = dict(
        session.execute(
            select(Principal.department_id, func.count())
            .where(Principal.is_active.is_(True))
            .group_by(Principal.department_id)
        ).all()
    )
    return [
        {
            "部门代码": d.code,
            "部门名称": d.name,
            "层级": d.level,
            "所属区划代码": d.district_code,
            "账户数": int(staff.get(d.id, 0)),
        }
        for d in session.scalars(select(Department).order_by(Department.code))
    ]


# The cases function's keys (docs/cases.md) -> data item: name, type, description.
CASE_STATISTICS_ITEMS: tuple[tuple[str, str, str, str], ...] = (
    ("month", "月份", "string", "YYYY-MM，上海时间的自然月"),
    ("district_code", "区划代码", "string", "GB/T 2260；空为未定位到区的案件"),
    ("district_name", "区名称", "string", ""),
    ("cases", "案件数", "integer", "当月上报的案件，含合并的重复案件"),
    ("status_reported", "现状态_信息收集", "integer", "当月上报、现处于该状态的案件数"),
    ("status_registered", "现状态_已立案待派遣", "integer", ""),
    ("status_rejected", "现状态_不予立案", "integer", ""),
    ("status_merged", "现状态_已合并", "integer", ""),
    ("status_dispatched", "现状态_已派遣待接单", "integer", ""),
    ("status_handling", "现状态_处置中", "integer", ""),
    ("status_handled", "现状态_已反馈待核查", "integer", ""),
    ("status_verified", "现状态_已核查待结案", "integer", ""),
    ("status_closed", "现状态_已结案", "integer", ""),
    ("status_evaluated", "现状态_已评价", "integer", ""),
    ("reported", "上报数", "integer", "综合评价计数，不含合并的重复案件"),
    ("registered", "立案数", "integer", ""),
    ("dispatched", "派遣数", "integer", "应处置数"),
    ("handled", "处置数", "integer", ""),
    ("handled_on_time", "按期处置数", "integer", ""),
    ("closed", "结案数", "integer", ""),
    ("closed_on_time", "按期结案数", "integer", ""),
    ("reworked", "返工数", "integer", ""),
    ("extended", "延期数", "integer", ""),
    ("registration_rate", "立案率", "number", "立案数/上报数，分母为 0 时为空"),
    ("handling_rate", "处置率", "number", "处置数/派遣数"),
    ("on_time_handling_rate", "按期处置率", "number", "按期处置数/派遣数"),
    ("closing_rate", "结案率", "number", "结案数/立案数"),
    ("on_time_closing_rate", "按期结案率", "number", "按期结案数/立案数"),
    ("rework_rate", "返工率", "number", "返工数/处置数"),
    ("extension_rate", "延期率", "number", "延期数/派遣数"),
)
CASE_STATISTICS_MONTHS = 12  # the last twelve complete months


def complete_months(count: int, now: datetime) -> list[str]:
    """The `count` calendar months (Shanghai) before the one `now` falls in, oldest first."""
    local = now.astimezone(SHANGHAI)
    index = local.year * 12 + local.month - 1  # months since year 0 of the current month
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - count, index)]


def _case_statistics(session: Session) -> Rows:
    # Imported here: `cases` is a sibling domain, used only through its exported function.
    from pujiang.cases import monthly_statistics_by_district

    names = {key: name for key, name, _, _ in CASE_STATISTICS_ITEMS}
    return [
        {names[key]: value for key, value in row.items() if key in names}
        for month in complete_months(CASE_STATISTICS_MONTHS, utcnow())
        for row in monthly_statistics_by_district(session, month)
    ]


register_view("city.district_population", "各区常住人口与面积", _district_population)
register_view("platform.departments", "政务部门名录", _departments)
register_view("cases.monthly_by_district", "各区月度案件统计（网格化管理）", _case_statistics)
