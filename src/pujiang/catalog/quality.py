"""Data quality per resource and per department.

- completeness: filled cells / all cells of the declared items;
- validity: rows that matched their item types / rows offered (rejected rows count against);
- uniqueness: distinct key values (the items marked `key`, else whole rows) / rows;
- timeliness: 1 if the data is within its update cycle, else 0 (and listed as late).
The score is their mean. Scores are computed on demand with a few aggregate queries a table.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pujiang.catalog import datastore, publishing
from pujiang.catalog.models import CatalogResource
from pujiang.catalog.schemas import DepartmentQualityOut, QualityOut
from pujiang.catalog.service import lateness
from pujiang.platform.db import utcnow


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def resource_quality(
    session: Session, resource: CatalogResource, now: datetime | None = None
) -> QualityOut:
    late = lateness(resource, now or utcnow())
    completeness = validity = uniqueness = None
    rows = resource.row_count
    if resource.data_updated_at is not None:
        table = publishing.source_table(resource)
        names = [i["name"] for i in resource.items]
        counts = session.execute(
            select(func.count(), *(func.count(table.c[n]) for n in names))
        ).one()
        rows = int(counts[0])
        completeness = _ratio(sum(int(c) for c in counts[1:]), rows * len(names))
        validity = _ratio(rows, rows + resource.rejected_rows)
        keys = [i["name"] for i in resource.items if i.get("key")] or names
        uniqueness = _ratio(datastore.count_distinct(session, table, keys), rows)
    timeliness = 0.0 if late.late else 1.0
    parts = [p for p in (completeness, validity, uniqueness) if p is not None]
    score = round((sum(parts) + timeliness) / (len(parts) + 1), 4) if parts else None
    return QualityOut(
        resource=resource.name,
        department_code=resource.department.code,
        rows=rows,
        completeness=completeness,
        validity=validity,
        uniqueness=uniqueness,
        timeliness=timeliness,
        late=late.late,
        due_at=late.due_at,
        score=score,
    )


def all_quality(session: Session, department_id: int | None = None) -> list[QualityOut]:
    query = select(CatalogResource).order_by(CatalogResource.name)
    if department_id is not None:
        query = query.where(CatalogResource.department_id == department_id)
    now = utcnow()
    return [resource_quality(session, r, now) for r in session.scalars(query)]


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None


def by_department(scores: list[QualityOut]) -> list[DepartmentQualityOut]:
    groups: dict[str, list[QualityOut]] = defaultdict(list)
    for score in scores:
        groups[score.department_code].append(score)
    return [
        DepartmentQualityOut(
            department_code=code,
            resources=len(items),
            completeness=_mean([i.completeness for i in items]),
            validity=_mean([i.validity for i in items]),
            uniqueness=_mean([i.uniqueness for i in items]),
            timeliness=round(sum(i.timeliness for i in items) / len(items), 4),
            late=sum(1 for i in items if i.late),
            score=_mean([i.score for i in items]),
        )
        for code, items in sorted(groups.items())
    ]
