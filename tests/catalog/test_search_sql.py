"""Search counts facets and ranks in SQL; here it is checked against a plain Python reference.

The reference reads every resource and its index terms and applies the documented rules:
all query terms present (one-character queries: substring of title or summary), score the sum
of the terms' weights, facets ignoring their own filter, ties broken by release then id.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pujiang.catalog import search
from pujiang.catalog.models import CatalogResource, CatalogTerm
from pujiang.platform.deps import AppContext
from pujiang.platform.models import Department

SUBJECTS = ("公交线路实时到站", "空气质量监测", "河道断面水质", "城管执法案件", "公交GPS轨迹")
SUFFIXES = ("统计", "明细", "月报", "API")
THEMES = ("交通出行", "生态环保", "公共服务")
FORMATS = ("电子表格", "数据库", "服务接口")
OPEN_TYPES = ("无条件开放", "有条件开放", "非开放")
TAGS = ("公交", "bus", "水质", "执法")


def _fill(session: Session, count: int) -> dict[int, str]:
    rng = random.Random(11)
    departments = list(session.execute(select(Department.id, Department.name)))[:5]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for n in range(count):
        department_id, department_name = rng.choice(departments)
        title = f"{rng.choice(SUBJECTS)}{rng.choice(SUFFIXES)}"
        resource = CatalogResource(
            uid=str(uuid.uuid4()),
            name=f"dataset-{n}",
            code=f"305009{n:03d}/{n:06d}",
            title=title,
            summary=f"{department_name}的{title}",
            department_id=department_id,
            format=rng.choice(FORMATS),
            share_type="无条件共享",
            open_type=rng.choice(OPEN_TYPES),
            update_cycle="月",
            released_on=date(2023, 1 + n % 4, 1 + n % 3),  # many ties on purpose
            theme=rng.choice(THEMES),
            tags=rng.sample(TAGS, rng.randint(0, 2)),
            related_codes=[],
            items=[{"name": "名称", "type": "string", "description": ""}],
            created_by="test",
            updated_at=start + timedelta(hours=n % 7),
            opened_at=start if n % 3 else None,
        )
        session.add(resource)
        session.flush()
        search.index_resource(session, resource, department_name)
    return dict(session.execute(select(Department.id, Department.code)).all())


def _reference(session: Session, codes: dict[int, str], query: search.SearchQuery) -> Any:
    terms = search.terms_of(query.q)
    singles = search.single_chars(query.q)
    index: dict[int, dict[str, int]] = {}
    for term, resource_id, weight in session.execute(
        select(CatalogTerm.term, CatalogTerm.resource_id, CatalogTerm.weight)
    ):
        index.setdefault(resource_id, {})[term] = weight
    rows = []
    for r in session.scalars(select(CatalogResource)):
        held = index.get(r.id, {})
        if not terms <= set(held):
            continue
        if any(c not in r.title and c not in r.summary for c in singles):
            continue
        if query.opened_only and r.opened_at is None:
            continue
        if query.visible_department_ids is not None and (
            r.department_id not in query.visible_department_ids
        ):
            continue
        if not all(t in r.tags for t in query.tags):
            continue
        score = sum(held[t] for t in terms) + search.W_TEXT * len(singles)
        values = {
            "department": codes[r.department_id],
            "theme": r.theme,
            "format": r.format,
            "open_type": r.open_type,
        }
        rows.append((r, score, values))
    wanted = {
        "department": query.department,
        "theme": query.theme,
        "format": query.format,
        "open_type": query.open_type,
    }

    def kept(skip: str | None = None) -> list[Any]:
        return [
            row
            for row in rows
            if all(v is None or k == skip or row[2][k] == v for k, v in wanted.items())
        ]

    facets = {}
    for name in query.facets:
        counts = Counter(row[2][name] for row in kept(skip=name))
        facets[name] = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    hits = kept()
    if query.sort == "title":
        hits.sort(key=lambda row: row[0].id)
        hits.sort(key=lambda row: row[0].title, reverse=query.descending)
    elif query.sort in ("released", "modified"):
        column = "released_on" if query.sort == "released" else "updated_at"
        hits.sort(key=lambda row: (getattr(row[0], column), row[0].id), reverse=query.descending)
    else:
        hits.sort(
            key=lambda row: (row[1], row[0].released_on, -row[0].id), reverse=query.descending
        )
    page = hits[query.offset : query.offset + query.limit]
    return len(hits), [row[0].id for row in page], facets


def test_sql_search_matches_the_reference(context: AppContext) -> None:
    with context.db.session() as session:
        codes = _fill(session, 240)
    some_department = sorted(codes)[1]
    queries = [
        search.SearchQuery(),
        search.SearchQuery(q="公交"),
        search.SearchQuery(q="公交 GPS", limit=7, offset=3),
        search.SearchQuery(q="执法", theme="公共服务", format="数据库"),
        search.SearchQuery(q="水", open_type="非开放"),
        search.SearchQuery(q="水 统计"),
        search.SearchQuery(q="api", department=codes[some_department], descending=False),
        search.SearchQuery(department="NO-SUCH"),
        search.SearchQuery(tags=["公交"], sort="title"),
        search.SearchQuery(tags=["公交", "bus"], sort="title", descending=False),
        search.SearchQuery(q="监测", sort="released", limit=50),
        search.SearchQuery(q="线路", sort="released", descending=False, offset=5),
        search.SearchQuery(sort="modified", opened_only=True, limit=30),
        search.SearchQuery(q="月报", visible_department_ids={some_department}),
        search.SearchQuery(q="公交", facets=("theme",), offset=1000),
        search.SearchQuery(q="公交", facets=(), limit=0),
        search.SearchQuery(q="地铁"),
    ]
    with context.db.session() as session:
        for query in queries:
            got = search.search(session, query)
            total, ids, facets = _reference(session, codes, query)
            assert (got.total, got.ids, got.facets) == (total, ids, facets), query
            assert got.total > 0 or query.q == "地铁" or query.department == "NO-SUCH"
