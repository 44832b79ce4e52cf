"""综合评价: the grid-management indicators by department, district, street or month.

One GROUP BY over the cases reported in a period; the formulas are in docs/cases.md and in
`RATES` below. Merged duplicates are left out: they are counted once, as the case they joined.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import Integer, case, func, literal, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from pujiang.cases.models import Case
from pujiang.cases.service import visible_clause
from pujiang.cases.workflow import State
from pujiang.platform.db import utcnow
from pujiang.platform.models import Department
from pujiang.platform.security import CurrentPrincipal
from pujiang.platform.workcal import SHANGHAI

GroupBy = Literal["department", "district", "street", "month", "all"]

# name, 中文, numerator, denominator
RATES: tuple[tuple[str, str, str, str], ...] = (
    ("registration_rate", "立案率", "registered", "reported"),
    ("handling_rate", "处置率", "handled", "dispatched"),
    ("on_time_handling_rate", "按期处置率", "handled_on_time", "dispatched"),
    ("closing_rate", "结案率", "closed", "registered"),
    ("on_time_closing_rate", "按期结案率", "closed_on_time", "registered"),
    ("rework_rate", "返工率", "reworked", "handled"),
    ("extension_rate", "延期率", "extended", "dispatched"),
)
COUNTS: tuple[tuple[str, str], ...] = (
    ("reported", "上报数"),
    ("registered", "立案数"),
    ("dispatched", "派遣数（应处置数）"),
    ("handled", "处置数"),
    ("handled_on_time", "按期处置数"),
    ("closed", "结案数"),
    ("closed_on_time", "按期结案数"),
    ("reworked", "返工数"),
    ("extended", "延期数"),
)


@dataclass(frozen=True)
class Row:
    key: str
    name: str
    counts: dict[str, int]

    @property
    def rates(self) -> dict[str, float | None]:
        return {
            name: round(self.counts[num] / self.counts[den], 4) if self.counts[den] else None
            for name, _, num, den in RATES
        }

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, **self.counts, **self.rates}


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0).cast(Integer)


def _month(session: Session) -> ColumnElement[str]:
    # Months of Shanghai local time; SQLite keeps UTC text, PostgreSQL a timestamptz.
    if session.get_bind().dialect.name == "sqlite":
        return func.strftime("%Y-%m", Case.created_at, "+8 hours")
    return func.to_char(func.timezone("Asia/Shanghai", Case.created_at), "YYYY-MM")


def compute(
    session: Session,
    principal: CurrentPrincipal,
    *,
    start: datetime,
    end: datetime,
    by: GroupBy = "department",
) -> list[Row]:
    """Indicator rows for cases reported in [start, end) that the principal may see."""
    key: Any
    if by == "department":
        key = Case.department_id
    elif by == "district":
        key = Case.district_code
    elif by == "street":
        key = Case.street_code
    elif by == "month":
        key = _month(session)
    else:
        key = literal("all")
    query = (
        select(
            key.label("key"),
            func.count().label("reported"),
            _count(Case.registered_at.is_not(None)).label("registered"),
            _count(Case.dispatched_at.is_not(None)).label("dispatched"),
            _count(Case.handled_at.is_not(None)).label("handled"),
            _count(Case.handled_on_time.is_(True)).label("handled_on_time"),
            _count(Case.closed_at.is_not(None)).label("closed"),
            _count(Case.closed_on_time.is_(True)).label("closed_on_time"),
            _count(Case.rework_count > 0).label("reworked"),
            _count(Case.extension_count > 0).label("extended"),
        )
        .where(
            Case.created_at >= start,
            Case.created_at < end,
            Case.state != State.MERGED.value,
        )
        .group_by(key)
        .order_by(key)
    )
    clause = visible_clause(session, principal)
    if clause is not None:
        query = query.where(clause)
    names: dict[Any, str] = {}
    if by == "department":
        names = {d.id: d.code for d in session.scalars(select(Department))}
    rows = []
    for row in session.execute(query):
        counts = {name: int(getattr(row, name)) for name, _ in COUNTS}
        raw = row.key
        label = names.get(raw, str(raw)) if by == "department" else str(raw or "")
        rows.append(Row(key=label, name=_name(session, by, raw), counts=counts))
    return rows


def _name(session: Session, by: str, raw: Any) -> str:
    if by == "department" and raw is not None:
        department = session.get(Department, raw)
        return department.name if department else ""
    return ""


def columns() -> list[tuple[str, str]]:
    """(field, 中文 heading) for exports."""
    return [
        ("key", "分组"),
        ("name", "名称"),
        *COUNTS,
        *[(name, zh) for name, zh, _, _ in RATES],
    ]


def to_csv(rows: list[Row]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    heads = columns()
    writer.writerow([f"{zh} {name}" for name, zh in heads])
    for row in rows:
        data = row.as_dict()
        writer.writerow(["" if data[name] is None else data[name] for name, _ in heads])
    # The BOM makes Excel read the Chinese headings as UTF-8.
    return out.getvalue().encode("utf-8-sig")


def to_xlsx(rows: list[Row], title: str) -> bytes:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("综合评价")
    sheet.append([title])
    heads = columns()
    sheet.append([zh for _, zh in heads])
    sheet.append([name for name, _ in heads])
    for row in rows:
        data = row.as_dict()
        sheet.append([data[name] for name, _ in heads])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# -- monthly statistics by district (a live dataset for the catalog) ---------------------------


def month_bounds(
    month: str | date | None, *, at: datetime | None = None
) -> tuple[str, datetime, datetime]:
    """("YYYY-MM", start, end) of a month in Shanghai time; None → the last complete month."""
    if month is None:
        local = (at or utcnow()).astimezone(SHANGHAI)
        year, number = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    elif isinstance(month, date):
        year, number = month.year, month.month
    else:
        try:
            year, number = (int(part) for part in month.split("-"))
        except ValueError:
            raise ValueError(f"month must be YYYY-MM, not {month!r}") from None
    if not 1 <= number <= 12:
        raise ValueError(f"month must be YYYY-MM, not {month!r}")
    start = datetime(year, number, 1, tzinfo=SHANGHAI)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=SHANGHAI)
    return f"{year:04d}-{number:02d}", start, end


def monthly_by_district(
    session: Session, month: str | date | None = None, *, at: datetime | None = None
) -> list[dict[str, Any]]:
    """One row per district for the cases reported in `month` (see docs/cases.md)."""
    from pujiang.cases.service import SYSTEM
    from pujiang.city.reference import districts

    label, start, end = month_bounds(month, at=at)
    names = {d.code: d.name for d in districts()}
    states: dict[str | None, dict[str, int]] = {}
    for district, state, count in session.execute(
        select(Case.district_code, Case.state, func.count())
        .where(Case.created_at >= start, Case.created_at < end)
        .group_by(Case.district_code, Case.state)
    ):
        states.setdefault(district, {})[str(state)] = int(count)
    indicators = {
        row.key or None: row
        for row in compute(session, SYSTEM, start=start, end=end, by="district")
    }
    out = []
    for district in sorted(states, key=lambda code: (code is None, code or "")):
        by_state = states[district]
        row = indicators.get(district)
        counts = row.counts if row else {name: 0 for name, _ in COUNTS}
        rates = row.rates if row else {name: None for name, _, _, _ in RATES}
        out.append(
            {
                "month": label,
                "district_code": district,
                "district_name": names.get(district or "", ""),
                "cases": sum(by_state.values()),
                **{f"status_{state.value}": by_state.get(state.value, 0) for state in State},
                **counts,
                **rates,
            }
        )
    return out
