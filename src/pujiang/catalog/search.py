"""Catalog search that works in Chinese without a dictionary.

Text is cut into terms: every pair of neighbouring CJK characters (公交线路 -> 公交, 交线, 线路)
and every ASCII word, lower-cased. A query is cut the same way and matches a resource holding
all of its terms, so 公交 finds 公交线路实时到站 and "公交 GPS" needs both. A one-character
CJK query has no bigram and falls back to a substring match on title and summary.
Terms live in `catalog_terms` (term, resource) with the weight of the best field they occur in;
the score of a match is the sum of its terms' weights.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    JSON,
    String,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from pujiang.catalog.models import CatalogResource, CatalogTerm
from pujiang.platform.models import Department

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[a-z0-9]+")
MAX_TERM = 32

# Where a term occurs decides its weight.
W_TITLE, W_TAG, W_TEXT = 4, 2, 1
FACET_FIELDS = ("department", "theme", "format", "open_type")


def terms_of(text: str) -> set[str]:
    text = text.lower()
    found: set[str] = set()
    for run in _CJK_RUN.findall(text):
        found.update(run[i : i + 2] for i in range(len(run) - 1))
    found.update(word[:MAX_TERM] for word in _WORD.findall(text))
    return found


def single_chars(text: str) -> set[str]:
    """CJK runs of one character (no bigram to look up)."""
    return {run for run in _CJK_RUN.findall(text) if len(run) == 1}


def weighted_terms(resource: CatalogResource, department_name: str) -> dict[str, int]:
    weights: dict[str, int] = {}

    def add(text: str, weight: int) -> None:
        for term in terms_of(text):
            weights[term] = max(weights.get(term, 0), weight)

    add(resource.title, W_TITLE)
    add(" ".join([*resource.tags, resource.theme, resource.base_registry or ""]), W_TAG)
    items = " ".join(f"{i['name']} {i.get('description', '')}" for i in resource.items)
    add(f"{resource.summary} {items} {department_name} {resource.code} {resource.name}", W_TEXT)
    return weights


def index_resource(session: Session, resource: CatalogResource, department_name: str) -> None:
    session.execute(delete(CatalogTerm).where(CatalogTerm.resource_id == resource.id))
    rows = [
        {"term": term, "resource_id": resource.id, "weight": weight}
        for term, weight in weighted_terms(resource, department_name).items()
    ]
    if rows:
        session.execute(insert(CatalogTerm), rows)


@dataclass
class SearchQuery:
    q: str = ""
    department: str | None = None
    theme: str | None = None
    format: str | None = None
    open_type: str | None = None
    tags: Sequence[str] = ()
    opened_only: bool = False
    visible_department_ids: set[int] | None = None  # None: every department
    sort: str = "score"  # score | title | released | modified
    descending: bool = True
    offset: int = 0
    limit: int = 20
    facets: Sequence[str] = FACET_FIELDS


@dataclass
class SearchResult:
    total: int
    ids: list[int]
    facets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


def search(session: Session, query: SearchQuery) -> SearchResult:
    """Hits, facet counts and the page, all in SQL; only the page's ids and the counts come back.

    The hits (terms matched, one-character substrings, visibility, tags) are a CTE, and one
    statement over it counts every requested facet with a GROUP BY (each ignoring its own
    filter), counts the total and reads the sorted page. No row per hit is built in Python,
    so a broad query matching thousands of resources costs what a narrow one does, give or take
    the database's own work.
    """
    terms = sorted(terms_of(query.q))
    singles = single_chars(query.q)
    codes: dict[int, str] = dict(session.execute(select(Department.id, Department.code)).all())
    score: Any = literal(0)
    base = select(
        CatalogResource.id,
        CatalogResource.department_id,
        CatalogResource.theme,
        CatalogResource.format,
        CatalogResource.open_type,
    )
    if len(terms) == 1:  # most queries: one bigram or word, no grouping needed
        matched = (
            select(CatalogTerm.resource_id, CatalogTerm.weight.label("score"))
            .where(CatalogTerm.term == terms[0])
            .subquery()
        )
        base = base.join(matched, matched.c.resource_id == CatalogResource.id)
        score = matched.c.score
    elif terms:
        matched = (
            select(CatalogTerm.resource_id, func.sum(CatalogTerm.weight).label("score"))
            .where(CatalogTerm.term.in_(terms))
            .group_by(CatalogTerm.resource_id)
            .having(func.count() == len(terms))
            .subquery()
        )
        base = base.join(matched, matched.c.resource_id == CatalogResource.id)
        score = matched.c.score
    for char in singles:
        pattern = f"%{char}%"
        base = base.where(
            or_(CatalogResource.title.like(pattern), CatalogResource.summary.like(pattern))
        )
        score = score + W_TEXT
    if query.opened_only:
        base = base.where(CatalogResource.opened_at.is_not(None))
    if query.visible_department_ids is not None:
        base = base.where(CatalogResource.department_id.in_(query.visible_department_ids))
    for tag in query.tags:
        base = base.where(_has_tag(session, tag))
    sort_column: Any = {
        "title": CatalogResource.title,
        "modified": CatalogResource.updated_at,
    }.get(query.sort, CatalogResource.released_on)
    if query.sort == "title" and session.get_bind().dialect.name == "postgresql":
        sort_column = CatalogResource.title.collate("C")  # code point order, as on SQLite
    hits = base.add_columns(score.label("score"), sort_column.label("sort_key")).cte("hits")

    wanted: dict[str, Any] = {
        "department": None
        if query.department is None
        else [i for i, code in codes.items() if code == query.department],
        "theme": query.theme,
        "format": query.format,
        "open_type": query.open_type,
    }

    def conditions(skip: str | None = None) -> list[Any]:
        found: list[Any] = []
        for name, value in wanted.items():
            if value is None or name == skip:
                continue
            column = hits.c[_COLUMN[name]]
            found.append(column.in_(value) if isinstance(value, list) else column == value)
        return found

    # Facet counts ignore their own filter, so a user sees what choosing another value gives.
    facet_names = [name for name in dict.fromkeys(query.facets) if name in FACET_FIELDS]
    parts: list[Any] = [
        select(literal("", String).label("facet"), cast(literal(None), String), func.count())
        .select_from(hits)
        .where(*conditions())
    ]
    for name in facet_names:
        column = hits.c[_COLUMN[name]]
        parts.append(
            select(literal(name, String), cast(column, String), func.count())
            .where(*conditions(skip=name))
            .group_by(column)
        )
    # The page rides in the same statement, numbered so its order survives the UNION.
    page = (
        select(hits.c.id, hits.c.score, hits.c.sort_key)
        .where(*conditions())
        .order_by(*_order(query, hits.c))
        .offset(query.offset)
        .limit(query.limit)
        .subquery("page")
    )
    parts.append(
        select(
            literal(PAGE, String),
            cast(page.c.id, String),
            func.row_number().over(order_by=_order(query, page.c)),
        )
    )
    total = 0
    ranked: list[tuple[int, int]] = []
    counted: dict[str, Counter[str]] = {name: Counter() for name in facet_names}
    for facet, value, count in session.execute(union_all(*parts)):
        if facet == PAGE:
            ranked.append((int(count), int(value)))
        elif not facet:
            total = int(count)
        elif facet == "department":
            counted[facet][codes[int(value)]] += int(count)
        else:
            counted[facet][value] += int(count)
    facets = {
        name: sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        for name, counts in counted.items()
    }
    return SearchResult(total, [row_id for _, row_id in sorted(ranked)], facets)


PAGE = "#"  # marks the page's rows among the facet counts


# Facet name -> column of the hits CTE.
_COLUMN = {"department": "department_id", "theme": "theme", "format": "format",
           "open_type": "open_type"}  # fmt: skip


def _order(query: SearchQuery, columns: Any) -> list[Any]:
    """Relevance, then the newest release first among equals, stable by id; or a column."""
    ident, key, score = columns.id, columns.sort_key, columns.score
    down = query.descending
    if query.sort == "title":
        return [key.desc() if down else key.asc(), ident.asc()]
    if query.sort in ("released", "modified"):
        return [key.desc(), ident.desc()] if down else [key.asc(), ident.asc()]
    if down:
        return [score.desc(), key.desc(), ident.asc()]
    return [score.asc(), key.asc(), ident.desc()]


def _has_tag(session: Session, tag: str) -> Any:
    """`tag` is one of the resource's tags (a JSON list), tested in SQL."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return cast(CatalogResource.tags, JSONB).contains(cast(literal([tag], JSON), JSONB))
    if dialect == "sqlite":
        element = func.json_each(CatalogResource.tags).table_valued("value")
        return exists(select(literal(1)).select_from(element).where(element.c.value == tag))
    tagged = [
        row_id
        for row_id, tags in session.execute(select(CatalogResource.id, CatalogResource.tags))
        if tag in (tags or [])
    ]
    return CatalogResource.id.in_(tagged)


def load(session: Session, ids: Iterable[int]) -> list[CatalogResource]:
    wanted = list(ids)
    query = select(CatalogResource).where(CatalogResource.id.in_(wanted))
    found = {r.id: r for r in session.scalars(query)}
    return [found[i] for i in wanted if i in found]
