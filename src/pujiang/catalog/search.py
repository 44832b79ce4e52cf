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
from operator import itemgetter
from typing import Any

from sqlalchemy import String, cast, delete, func, insert, literal, or_, select
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
    """One query for the hits (terms matched in SQL), then facets and ranking in memory."""
    terms = sorted(terms_of(query.q))
    singles = single_chars(query.q)
    score: Any = literal(0)
    # Only narrow columns, all in one covering index, and dates as ISO text: the hit list may
    # be the whole catalog, and building rows is what costs.
    sort_column: Any = {
        "title": CatalogResource.title,
        "modified": cast(CatalogResource.updated_at, String),
    }.get(query.sort, cast(CatalogResource.released_on, String))
    statement = select(
        CatalogResource.id,
        CatalogResource.department_id,
        CatalogResource.theme,
        CatalogResource.format,
        CatalogResource.open_type,
        sort_column,
    )
    if terms:
        matched = (
            select(CatalogTerm.resource_id, func.sum(CatalogTerm.weight).label("score"))
            .where(CatalogTerm.term.in_(terms))
            .group_by(CatalogTerm.resource_id)
            .having(func.count() == len(terms))
            .subquery()
        )
        statement = statement.join(matched, matched.c.resource_id == CatalogResource.id)
        score = matched.c.score
    for char in singles:
        pattern = f"%{char}%"
        statement = statement.where(
            or_(CatalogResource.title.like(pattern), CatalogResource.summary.like(pattern))
        )
        score = score + W_TEXT
    if query.opened_only:
        statement = statement.where(CatalogResource.opened_at.is_not(None))
    if query.visible_department_ids is not None:
        statement = statement.where(CatalogResource.department_id.in_(query.visible_department_ids))
    codes = dict(session.execute(select(Department.id, Department.code)).tuples().all())
    rows = [
        (r[0], codes[r[1]], *r[2:])
        for r in session.connection().execute(statement.add_columns(score))
    ]
    if query.tags:
        # Tags are a JSON list; few queries filter on them, so they are checked here.
        tagged = {
            row_id
            for row_id, tags in session.execute(select(CatalogResource.id, CatalogResource.tags))
            if all(t in (tags or []) for t in query.tags)
        }
        rows = [r for r in rows if r[0] in tagged]
    wanted = {
        "department": query.department,
        "theme": query.theme,
        "format": query.format,
        "open_type": query.open_type,
    }
    active = [(1 + FACET_FIELDS.index(k), v) for k, v in wanted.items() if v is not None]

    def filtered(skip: int | None = None) -> list[Any]:
        checks = [(p, v) for p, v in active if p != skip]
        if not checks:
            return rows
        return [r for r in rows if all(r[p] == v for p, v in checks)]

    # Facet counts ignore their own filter, so a user sees what choosing another value gives.
    facets: dict[str, list[tuple[str, int]]] = {}
    for name in query.facets:
        if name not in FACET_FIELDS:
            continue
        position = 1 + FACET_FIELDS.index(name)
        counts = Counter(map(itemgetter(position), filtered(skip=position)))
        facets[name] = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    hits = filtered()
    hits = sorted(hits, key=lambda r: _sort_key(r, query), reverse=query.descending)
    page = hits[query.offset : query.offset + query.limit]
    return SearchResult(len(hits), [int(r[0]) for r in page], facets)


def _sort_key(row: Any, query: SearchQuery) -> Any:
    # row: id, department, theme, format, open type, sort column, score.
    if query.sort == "title":
        return row[5]
    if query.sort in ("released", "modified"):
        return (row[5], row[0])
    # Relevance, then the newest release first among equals; stable by id.
    return (row[6], row[5], -row[0])


def load(session: Session, ids: Iterable[int]) -> list[CatalogResource]:
    wanted = list(ids)
    query = select(CatalogResource).where(CatalogResource.id.in_(wanted))
    found = {r.id: r for r in session.scalars(query)}
    return [found[i] for i in wanted if i in found]
