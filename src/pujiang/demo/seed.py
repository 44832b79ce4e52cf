"""Departments and demo accounts of the simulated city. Idempotent: run it as often as you like.

Demo passwords are random and new on every run (nothing secret lives in the repository); the
demo prints them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from pujiang.city.reference import districts
from pujiang.platform import identity
from pujiang.platform.deps import AppContext
from pujiang.platform.models import Department, DepartmentLevel, Principal
from pujiang.platform.roles import Role

# City-level bodies the plan's systems involve: (code, name, English name).
CITY_DEPARTMENTS: tuple[tuple[str, str, str], ...] = (
    ("CGZF", "市城管执法局", "City Urban Management and Law Enforcement"),
    ("STHJ", "市生态环境局", "Ecology and Environment Bureau"),
    ("SW", "市水务局", "Water Authority"),
    ("RQ", "市燃气管理处", "Gas Administration"),
    ("JT", "市交通委", "Transport Commission"),
    ("ZJ", "市住建委", "Housing and Urban-Rural Development Commission"),
    ("SCJG", "市市场监管局", "Administration for Market Regulation"),
    ("WJ", "市卫健委", "Health Commission"),
    ("DSJ", "市大数据中心", "Big Data Center"),
    ("RX12345", "12345市民服务热线", "12345 Citizen Service Hotline"),
    ("CYZX", "市城市运行管理中心", "City Operations Center"),
)

# Units each district has: its operations center (which runs grid management) and its
# urban-management bureau.
DISTRICT_UNITS: tuple[tuple[str, str, str], ...] = (
    ("CYZX", "城市运行管理中心", "City Operations Center"),
    ("CGZF", "城管执法局", "Urban Management and Law Enforcement"),
)


@dataclass(frozen=True)
class DemoAccount:
    username: str
    display_name: str
    department: str | None
    roles: tuple[Role, ...]
    what: str


DEMO_ACCOUNTS: tuple[DemoAccount, ...] = (
    DemoAccount("admin", "系统管理员", "DSJ", (Role.ADMIN,), "全部权限 / everything"),
    DemoAccount("operator", "李热线", "RX12345", (Role.OPERATOR,), "12345 坐席 / hotline operator"),
    DemoAccount(
        "dispatcher", "王派遣", "310101-CYZX", (Role.DISPATCHER,), "黄浦区派遣 / dispatcher"
    ),
    DemoAccount("handler", "张处置", "310101-CGZF", (Role.HANDLER,), "黄浦区城管 / handler"),
    DemoAccount(
        "supervisor", "赵监督", "310101-CYZX", (Role.SUPERVISOR,), "网格监督员 / supervisor"
    ),
    DemoAccount("steward", "陈数据", "DSJ", (Role.DATA_STEWARD,), "数据管理员 / data steward"),
    DemoAccount("auditor", "周审计", "DSJ", (Role.AUDITOR,), "审计员 / auditor"),
)


def seed_departments(session: Session) -> int:
    """Create the demo city's departments that are missing; returns how many were added."""
    existing = set(session.scalars(select(Department.code)))
    added = 0
    for code, name, name_en in CITY_DEPARTMENTS:
        if code not in existing:
            identity.create_department(session, code=code, name=name, name_en=name_en)
            added += 1
    for district in districts():
        for suffix, name, name_en in DISTRICT_UNITS:
            code = f"{district.code}-{suffix}"
            if code not in existing:
                identity.create_department(
                    session,
                    code=code,
                    name=district.name + name,
                    name_en=f"{district.name_en} {name_en}",
                    level=DepartmentLevel.DISTRICT,
                    district_code=district.code,
                    parent_code=suffix if suffix in {c for c, _, _ in CITY_DEPARTMENTS} else None,
                )
                added += 1
    return added


def seed_accounts(session: Session, context: AppContext) -> dict[str, str]:
    """Create or reset the demo accounts with fresh random passwords; returns name -> password."""
    passwords: dict[str, str] = {}
    for account in DEMO_ACCOUNTS:
        password = secrets.token_urlsafe(12)
        exists = session.scalars(
            select(Principal.id).where(Principal.username == account.username)
        ).first()
        if exists:
            identity.update_principal(session, context, account.username, password=password)
            identity.set_active(session, account.username, True)
        else:
            identity.create_user(
                session,
                context,
                username=account.username,
                password=password,
                display_name=account.display_name,
                department_code=account.department,
                roles=[role.value for role in account.roles],
            )
        passwords[account.username] = password
    return passwords
