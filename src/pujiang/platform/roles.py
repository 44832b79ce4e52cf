"""Roles and the permissions each holds — the whole security matrix in one reviewable place.

Permissions are opaque strings "<area>.<verb>". The kernel checks them; it does not know what a
case or a dataset is. A module adds its permissions here when it adds routes that need them.
"""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    DISPATCHER = "dispatcher"
    HANDLER = "handler"
    SUPERVISOR = "supervisor"
    DATA_STEWARD = "data_steward"
    AUDITOR = "auditor"
    CITIZEN = "citizen"


ROLE_TITLES: dict[Role, tuple[str, str]] = {
    Role.ADMIN: ("系统管理员", "Administrator"),
    Role.OPERATOR: ("值班/热线坐席", "Operator"),
    Role.DISPATCHER: ("派遣员", "Dispatcher"),
    Role.HANDLER: ("处置人员", "Handler"),
    Role.SUPERVISOR: ("监督员", "Supervisor"),
    Role.DATA_STEWARD: ("数据管理员", "Data steward"),
    Role.AUDITOR: ("审计员", "Auditor"),
    Role.CITIZEN: ("市民", "Citizen"),
}

ALL = "*"

# Kernel permissions.
USERS_READ = "users.read"
USERS_WRITE = "users.write"
DEPARTMENTS_READ = "departments.read"
DEPARTMENTS_WRITE = "departments.write"
GRANTS_WRITE = "grants.write"
AUDIT_READ = "audit.read"
PERSONAL_DATA_READ = "personal_data.read"
# Seeing every department's data without a grant (city-wide roles).
ALL_DEPARTMENTS = "departments.all_data"

# City model (city/) and base registries (city/registries/).
CITY_READ = "city.read"
CITY_WRITE = "city.write"
REGISTRY_READ = "registry.read"
REGISTRY_WRITE = "registry.write"

_STAFF = frozenset({DEPARTMENTS_READ, CITY_READ})

ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.ADMIN: frozenset({ALL}),
    Role.OPERATOR: _STAFF | {REGISTRY_READ},
    Role.DISPATCHER: _STAFF | {REGISTRY_READ},
    Role.HANDLER: _STAFF | {REGISTRY_READ},
    Role.SUPERVISOR: _STAFF | {REGISTRY_READ},
    Role.DATA_STEWARD: _STAFF
    | {GRANTS_WRITE, CITY_WRITE, REGISTRY_READ, REGISTRY_WRITE, PERSONAL_DATA_READ},
    Role.AUDITOR: frozenset({AUDIT_READ, USERS_READ, DEPARTMENTS_READ, CITY_READ, REGISTRY_READ}),
    Role.CITIZEN: frozenset(),
}


def permissions_of(roles: list[str] | tuple[str, ...] | set[str]) -> frozenset[str]:
    granted: set[str] = set()
    for name in roles:
        try:
            granted |= ROLE_PERMISSIONS[Role(name)]
        except ValueError:
            continue  # a role removed from the code no longer grants anything
    return frozenset(granted)


def holds(permissions: frozenset[str], needed: str) -> bool:
    return ALL in permissions or needed in permissions
