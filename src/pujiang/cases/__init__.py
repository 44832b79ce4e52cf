"""Governance cases: grid management (GB/T 30428), the 12345 hotline and Open311.

What other modules may call (they never import our models):
- `setup(context)`: subscribe to the bus (`alert.raised` opens a case); create_app calls it.
- `open_case_from_alert(context, payload)`: the same, called directly.
- `escalate_overdue(context)`: flag and escalate cases past their stage deadline.
- `monthly_statistics_by_district(session, month=None)`: rows of case counts by status and
  the 综合评价 indicators per district for a month (a catalog live view's `produce`).
"""

from __future__ import annotations

from datetime import date
from typing import Any


def setup(context: Any) -> None:
    from pujiang.cases import ingest

    # One subscription per context, however many apps a test builds on it.
    if not context.extras.get("cases.subscribed"):
        ingest.subscribe(context)
        context.extras["cases.subscribed"] = True


def open_case_from_alert(context: Any, payload: dict[str, Any]) -> int | None:
    from pujiang.cases import ingest

    return ingest.open_case_from_alert(context, payload)


def escalate_overdue(context: Any) -> list[int]:
    from pujiang.cases import service

    with context.db.session() as session:
        return service.escalate_overdue(session, context)


def monthly_statistics_by_district(
    session: Any, month: str | date | None = None
) -> list[dict[str, Any]]:
    """One row per district for the cases reported in `month` ("YYYY-MM" or a date, Shanghai
    time; None = the last complete month): counts by status and the 综合评价 indicators.
    Aggregates only, no personal data. See docs/cases.md for the columns."""
    from pujiang.cases import indicators

    return indicators.monthly_by_district(session, month)


__all__ = [
    "escalate_overdue",
    "monthly_statistics_by_district",
    "open_case_from_alert",
    "setup",
]
