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
    # A department's system that pulls shared data through the exchange (a service account).
    EXCHANGE_CLIENT = "exchange_client"


ROLE_TITLES: dict[Role, tuple[str, str]] = {
    Role.ADMIN: ("系统管理员", "Administrator"),
    Role.OPERATOR: ("值班/热线坐席", "Operator"),
    Role.DISPATCHER: ("派遣员", "Dispatcher"),
    Role.HANDLER: ("处置人员", "Handler"),
    Role.SUPERVISOR: ("监督员", "Supervisor"),
    Role.DATA_STEWARD: ("数据管理员", "Data steward"),
    Role.AUDITOR: ("审计员", "Auditor"),
    Role.CITIZEN: ("市民", "Citizen"),
    Role.EXCHANGE_CLIENT: ("数据交换客户端", "Exchange client"),
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

# Governance cases (cases/): intake, the GB/T 30428 workflow, Open311.
CASES_READ = "cases.read"
CASES_CREATE = "cases.create"  # report or take in a problem (patrol, 12345, Open311)
CASES_REGISTER = "cases.register"  # 立案: accept, reject or merge
CASES_DISPATCH = "cases.dispatch"  # 派遣, and approving extensions and returns
CASES_HANDLE = "cases.handle"  # 处置 and its feedback
CASES_VERIFY = "cases.verify"  # 核查 on site
CASES_CLOSE = "cases.close"  # 结案 and evaluation
CASES_CATALOGUE_WRITE = "cases.catalogue.write"

# Data resources (catalog/): catalog, sharing and exchange, open data.
CATALOG_READ = "catalog.read"
CATALOG_WRITE = "catalog.write"
SHARING_REQUEST = "sharing.request"
SHARING_APPROVE = "sharing.approve"
EXCHANGE_CALL = "exchange.call"
OPENDATA_PUBLISH = "opendata.publish"

# Live city state (context/): NGSI-LD broker and device ingest.
CONTEXT_READ = "context.read"
CONTEXT_WRITE = "context.write"
CONTEXT_SUBSCRIBE = "context.subscribe"
IOT_PROVISION = "iot.provision"

_STAFF = frozenset({DEPARTMENTS_READ, CITY_READ, CASES_READ, CATALOG_READ, CONTEXT_READ})

ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.ADMIN: frozenset({ALL}),
    Role.OPERATOR: _STAFF | {REGISTRY_READ, CASES_CREATE},
    Role.DISPATCHER: _STAFF
    | {REGISTRY_READ, CASES_CREATE, CASES_REGISTER, CASES_DISPATCH, CASES_CLOSE},
    Role.HANDLER: _STAFF | {REGISTRY_READ, CASES_HANDLE},
    Role.SUPERVISOR: _STAFF | {REGISTRY_READ, CASES_CREATE, CASES_VERIFY},
    Role.DATA_STEWARD: _STAFF
    | {
        GRANTS_WRITE,
        CITY_WRITE,
        REGISTRY_READ,
        REGISTRY_WRITE,
        PERSONAL_DATA_READ,
        CASES_CATALOGUE_WRITE,
        CATALOG_WRITE,
        SHARING_REQUEST,
        SHARING_APPROVE,
        OPENDATA_PUBLISH,
        CONTEXT_WRITE,
        CONTEXT_SUBSCRIBE,
        IOT_PROVISION,
    },
    Role.AUDITOR: _STAFF | {AUDIT_READ, USERS_READ, REGISTRY_READ},
    Role.CITIZEN: frozenset({CASES_CREATE}),
    # What it may read is decided per call by its department's sharing grants.
    Role.EXCHANGE_CLIENT: frozenset({EXCHANGE_CALL}),
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
