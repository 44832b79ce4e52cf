"""Live views: datasets whose rows are computed from platform data, refreshed on their cycle.

A provider is a named function returning rows (dicts keyed by data-item name). Modules register
theirs with `register_view` (exported from `pujiang.catalog`), so the catalog never imports
another module's tables: `cases` would register "cases.monthly_by_district" from its own
service. The catalog ships providers built from the kernel and the city reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pujiang.city.reference import districts
from pujiang.platform.models import Department, Principal

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


register_view("city.district_population", "各区常住人口与面积", _district_population)
register_view("platform.departments", "政务部门名录", _departments)
