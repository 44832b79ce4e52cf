"""Personal data (ID numbers, phones, names): masked unless the caller may see it, and every
unmasked read is written to the audit log."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from pujiang.platform import audit
from pujiang.platform.roles import PERSONAL_DATA_READ
from pujiang.platform.security import CurrentPrincipal


def may_see_personal(principal: CurrentPrincipal) -> bool:
    return principal.can(PERSONAL_DATA_READ)


def record_unmasked_read(
    session: Session,
    principal: CurrentPrincipal,
    *,
    what: str,
    targets: Sequence[str],
    request_id: str = "",
) -> None:
    """One audit entry per read, naming what was revealed and whose it was."""
    audit.append(
        session,
        actor=principal.actor,
        action="personal_data.read",
        target=what,
        request_id=request_id,
        detail={"count": len(targets), "records": list(targets[:100])},
    )
