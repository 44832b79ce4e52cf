"""Department ownership: data a department owns is invisible to others unless granted.

A module whose rows carry an owner department calls `scope_query` on list queries and
`ensure_access` on single reads and writes. Invisible rows answer 404, not 403, so a caller
cannot learn that another department's item exists.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, false, or_, select
from sqlalchemy.orm import Session

from pujiang.platform.db import utcnow
from pujiang.platform.errors import Problem
from pujiang.platform.i18n import register
from pujiang.platform.models import AccessGrant, Department
from pujiang.platform.roles import ALL_DEPARTMENTS
from pujiang.platform.security import CurrentPrincipal

Q = TypeVar("Q", bound=Select[Any])

register(
    {
        "access.not_visible": ("{kind} {resource_id} 不存在", "No {kind} {resource_id}"),
        "access.read_only": (
            "{kind} {resource_id} 属于其他部门，仅授权只读",
            "{kind} {resource_id} belongs to another department and is granted read-only",
        ),
        "access.grant_self": (
            "不能向本部门授权",
            "A department cannot be granted its own data",
        ),
    }
)


def _live_grants(principal: CurrentPrincipal, kind: str, now: datetime) -> Select[AccessGrant]:
    return select(AccessGrant).where(
        AccessGrant.grantee_department_id == principal.department_id,
        AccessGrant.kind == kind,
        AccessGrant.revoked_at.is_(None),
        or_(AccessGrant.expires_at.is_(None), AccessGrant.expires_at > now),
    )


def visibility_filter(
    session: Session,
    principal: CurrentPrincipal,
    kind: str,
    owner_column: ColumnElement[Any],
    id_column: ColumnElement[Any] | None = None,
) -> ColumnElement[bool] | None:
    """A WHERE clause limiting rows to those the principal may see (None: sees everything)."""
    if principal.can(ALL_DEPARTMENTS):
        return None
    if principal.department_id is None:
        return false()
    grants = session.scalars(_live_grants(principal, kind, utcnow())).all()
    whole = {g.owner_department_id for g in grants if g.resource_id is None}
    clauses: list[ColumnElement[bool]] = [owner_column.in_({principal.department_id, *whole})]
    items = [g.resource_id for g in grants if g.resource_id is not None]
    if items and id_column is not None:
        clauses.append(id_column.in_(items))
    return or_(*clauses)


def scope_query(
    session: Session,
    query: Q,
    principal: CurrentPrincipal,
    kind: str,
    owner_column: ColumnElement[Any],
    id_column: ColumnElement[Any] | None = None,
) -> Q:
    clause = visibility_filter(session, principal, kind, owner_column, id_column)
    return query if clause is None else query.where(clause)


def ensure_access(
    session: Session,
    principal: CurrentPrincipal,
    kind: str,
    owner_department_id: int | None,
    resource_id: str,
    *,
    write: bool = False,
) -> None:
    """Raise 404 if the principal may not see the item, 403 if it may see but not change it."""
    if principal.can(ALL_DEPARTMENTS) or (
        owner_department_id is not None and owner_department_id == principal.department_id
    ):
        return
    grants = [
        g
        for g in session.scalars(_live_grants(principal, kind, utcnow()))
        if g.owner_department_id == owner_department_id and g.resource_id in (None, resource_id)
    ]
    if not grants or principal.department_id is None:
        raise Problem.of(404, "not-found", "access.not_visible", kind=kind, resource_id=resource_id)
    if write and not any(g.can_write for g in grants):
        raise Problem.of(403, "forbidden", "access.read_only", kind=kind, resource_id=resource_id)


def grant(
    session: Session,
    *,
    owner: Department,
    grantee: Department,
    kind: str,
    created_by: str,
    resource_id: str | None = None,
    can_write: bool = False,
    expires_at: datetime | None = None,
) -> AccessGrant:
    if owner.id == grantee.id:
        raise Problem.of(422, "validation-error", "access.grant_self")
    row = AccessGrant(
        owner_department_id=owner.id,
        grantee_department_id=grantee.id,
        kind=kind,
        resource_id=resource_id,
        can_write=can_write,
        expires_at=expires_at,
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    return row


def revoke(session: Session, grant_id: int) -> AccessGrant:
    row = session.get(AccessGrant, grant_id)
    if row is None:
        raise Problem.of(404, "not-found", "error.no_such", kind="grant", id=grant_id)
    row.revoked_at = row.revoked_at or utcnow()
    return row
