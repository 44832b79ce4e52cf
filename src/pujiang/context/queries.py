"""Reads: retrieve, query and discovery. A query narrows candidates in SQL (type, id,
attribute index, spatial index) and tests the exact conditions (`q`, geometry, idPattern,
scope) in Python on the few rows left."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import orjson
from sqlalchemy import ColumnElement, and_, func, or_, select, text, true, union_all
from sqlalchemy.orm import Session

from pujiang.context import ngsild_scope
from pujiang.context.entity_form import DEFAULT_TENANT, Entity
from pujiang.context.errors import NotFound, TooManyResults
from pujiang.context.models import PG_ENVELOPE, TXT_LEN
from pujiang.context.store import _A, _E, _G, _T, BrokerStore

MAX_LIMIT = 1000
CHUNK = 256  # candidate rows read per round when conditions are tested in Python


# -- the query-language and geo interfaces (ngsild_q.py / ngsild_geo.py) ------------------------


class GeoQueryLike(Protocol):
    geoproperty: str

    def matches(self, geojson: dict[str, Any]) -> bool: ...

    def bbox(self) -> tuple[float, float, float, float] | None: ...


Prefilter = Sequence[Any]  # ngsild_q.Prefilter: attribute, op, values, kind


@dataclass(frozen=True)
class Selector:
    """One of several entity selectors (`entities` of a POST query, clause 5.2.33): an entity
    matches when it has one of `ids` (if given), matches `id_pattern` (if given) and its types
    satisfy `types` (a disjunction of conjunctions, if given)."""

    types: list[frozenset[str]] | None = None
    ids: list[str] | None = None
    id_pattern: str | None = None

    def matches(self, entity: Entity) -> bool:
        if self.ids is not None and entity["id"] not in self.ids:
            return False
        if self.id_pattern is not None and not re.fullmatch(self.id_pattern, entity["id"]):
            return False
        if self.types:
            held = set(entity["type"])
            return any(conjunction <= held for conjunction in self.types)
        return True


@dataclass
class Query:
    """An entity query on expanded names. `types` is a disjunction of conjunctions. `selectors`
    (two or more) select entities matching any of them, in place of `types`/`ids`/`id_pattern`."""

    types: list[frozenset[str]] | None = None
    ids: list[str] | None = None
    id_pattern: str | None = None
    selectors: list[Selector] | None = None
    attrs: list[str] | None = None
    q: Any = None
    q_evaluate: Callable[[Any, Entity], bool] | None = None
    prefilter: Prefilter | None = None
    geo: GeoQueryLike | None = None
    scope: ngsild_scope.ScopeExpr | None = None
    limit: int = 20
    offset: int = 0
    count: bool = False


class QueriesMixin(BrokerStore):
    """`ContextBroker`'s reads and discovery."""

    # -- reads ---------------------------------------------------------------------------------

    def retrieve(self, tenant: str, entity_id: str) -> Entity:
        self.require_tenant(tenant)
        with self.db.session() as session:
            row = session.execute(
                select(_E.c.doc).where(_E.c.tenant == tenant, _E.c.entity_id == entity_id)
            ).first()
        if row is None:
            raise NotFound(f"实体 {entity_id} 不存在 / entity {entity_id} not found", id=entity_id)
        entity: Entity = orjson.loads(row[0])
        return entity

    def query(self, tenant: str, query: Query) -> tuple[list[Entity], int | None]:
        """Matching entities in insertion order, one page; the total when `count` is set."""
        self.require_tenant(tenant)
        if query.limit > MAX_LIMIT:
            raise TooManyResults(
                f"limit 不能超过 {MAX_LIMIT} / limit must not exceed {MAX_LIMIT}",
                maximum=MAX_LIMIT,
            )
        conditions = self._conditions(tenant, query)
        exact_in_sql = (
            query.q is None
            and query.geo is None
            and query.id_pattern is None
            and query.scope is None
            and not any(s.id_pattern for s in query.selectors or ())
        )
        with self._session() as session:
            if exact_in_sql:
                return self._page_sql(session, conditions, query)
            return self._page_filtered(session, conditions, query)

    def _page_sql(
        self, session: Session, conditions: list[ColumnElement[bool]], query: Query
    ) -> tuple[list[Entity], int | None]:
        total = None
        if query.count:
            total = session.execute(
                select(func.count()).select_from(_E).where(*conditions)
            ).scalar()
        entities: list[Entity] = []
        if query.limit > 0:
            rows = session.execute(
                select(_E.c.doc)
                .where(*conditions)
                .order_by(_E.c.pk)
                .limit(query.limit)
                .offset(query.offset)
            )
            entities = [orjson.loads(doc) for (doc,) in rows]
        return entities, (int(total) if total is not None else None)

    def _page_filtered(
        self, session: Session, conditions: list[ColumnElement[bool]], query: Query
    ) -> tuple[list[Entity], int | None]:
        pattern = re.compile(query.id_pattern) if query.id_pattern else None
        matched = 0
        page: list[Entity] = []
        last = 0
        while True:
            rows = session.execute(
                select(_E.c.pk, _E.c.doc)
                .where(*conditions, _E.c.pk > last)
                .order_by(_E.c.pk)
                .limit(CHUNK)
            ).all()
            for pk, doc in rows:
                last = pk
                entity: Entity = orjson.loads(doc)
                if pattern is not None and not pattern.fullmatch(entity["id"]):
                    continue
                if query.selectors and not any(s.matches(entity) for s in query.selectors):
                    continue
                if query.geo is not None and not geo_matches(entity, query.geo):
                    continue
                if query.scope is not None and not ngsild_scope.matches_entity(query.scope, entity):
                    continue
                if (
                    query.q is not None
                    and query.q_evaluate is not None
                    and not query.q_evaluate(query.q, entity)
                ):
                    continue
                if query.offset <= matched < query.offset + query.limit:
                    page.append(entity)
                matched += 1
                if not query.count and matched >= query.offset + query.limit:
                    return page, None
            if len(rows) < CHUNK:
                break
        return page, (matched if query.count else None)

    def _conditions(self, tenant: str, query: Query) -> list[ColumnElement[bool]]:
        """SQL narrowing a query. Selective conditions (attribute index, spatial index) are
        `pk IN (...)` lists that drive the scan; types are correlated EXISTS probes, so a
        type-only query walks entities in pk order and stops at the page's end."""
        drivers: list[ColumnElement[bool]] = []
        probes: list[ColumnElement[bool]] = []
        if query.types:
            probes.append(_type_probe(tenant, query.types))
        drivers += _id_drivers(tenant, query.ids, query.id_pattern)
        if query.selectors:
            probes.append(_any_selector(tenant, query.selectors))
            if all(s.ids for s in query.selectors):  # their ids drive the scan by the id index
                every_id = sorted({i for s in query.selectors for i in s.ids or ()})
                drivers += _id_drivers(tenant, every_id, None)
        if query.attrs:
            drivers.append(
                _E.c.pk.in_(
                    select(_A.c.entity_pk).where(_A.c.tenant == tenant, _A.c.attr.in_(query.attrs))
                )
            )
        for condition in query.prefilter or ():
            attr = getattr(condition, "attribute", None)
            clause = _prefilter_clause(condition)
            if clause is None or not isinstance(attr, str):
                continue
            matching = select(_A.c.entity_pk).where(
                _A.c.tenant == tenant, _A.c.attr == attr, clause
            )
            # Rows no index value decides (arrays, objects...) stay candidates for `evaluate`.
            # Only the compared column is tested for NULL, so both halves of the UNION are range
            # scans of one index (a superset: rows of the other scalar kind come along).
            column = _A.c.num if getattr(condition, "kind", "") == "number" else _A.c.txt
            undecided = select(_A.c.entity_pk).where(
                _A.c.tenant == tenant, _A.c.attr == attr, column.is_(None)
            )
            drivers.append(_E.c.pk.in_(union_all(matching, undecided)))
        if query.geo is not None:
            drivers.append(_E.c.pk.in_(self.geo_candidates(tenant, query.geo)))
        if query.scope is not None:
            probes.append(scope_clause(query.scope))
        # Every driver is already limited to the tenant; naming the tenant again would make
        # SQLite walk the (tenant, entity_id) index over the whole tenant instead.
        tenant_clause = [] if drivers else [_E.c.tenant == tenant]
        return tenant_clause + drivers + probes

    def geo_candidates(self, tenant: str, geo: GeoQueryLike) -> Any:
        """`SELECT entity_pk` of the entities whose `geoproperty` bbox meets the query's box
        (every located entity when the box cannot narrow): the candidates `geo.matches` tests."""
        box = geo.bbox()
        base = select(_G.c.entity_pk).where(_G.c.tenant == tenant, _G.c.attr == geo.geoproperty)
        if box is None:
            return base  # cannot be narrowed (disjoint, minDistance): every located entity
        minx, miny, maxx, maxy = box
        params = {"qminx": minx, "qminy": miny, "qmaxx": maxx, "qmaxy": maxy}
        if self.postgres:
            overlap = text(
                f"{PG_ENVELOPE} OPERATOR(postgis.&&) "
                "postgis.st_makeenvelope(:qminx, :qminy, :qmaxx, :qmaxy, 4326)"
            ).bindparams(**params)
            return base.where(overlap)
        rtree = text(
            "context_geo.id IN (SELECT id FROM context_geo_rtree WHERE minx <= :qmaxx "
            "AND maxx >= :qminx AND miny <= :qmaxy AND maxy >= :qminy)"
        ).bindparams(**params)
        return base.where(rtree)

    # -- discovery -----------------------------------------------------------------------------

    def entity_types(self, tenant: str) -> list[str]:
        self.require_tenant(tenant)
        with self.db.session() as session:
            rows = session.scalars(
                select(_T.c.type).where(_T.c.tenant == tenant).distinct().order_by(_T.c.type)
            )
            return list(rows)

    def type_details(self, tenant: str, type_name: str | None = None) -> list[dict[str, Any]]:
        """Per type: entity count and its attributes with their kinds."""
        self.require_tenant(tenant)
        with self.db.session() as session:
            counts_q = select(_T.c.type, func.count()).where(_T.c.tenant == tenant)
            if type_name is not None:
                counts_q = counts_q.where(_T.c.type == type_name)
            counts: dict[str, int] = dict(session.execute(counts_q.group_by(_T.c.type)).all())
            attrs_q = (
                select(_T.c.type, _A.c.attr, _A.c.kind)
                .join(_A, _A.c.entity_pk == _T.c.entity_pk)
                .where(_T.c.tenant == tenant)
                .distinct()
            )
            if type_name is not None:
                attrs_q = attrs_q.where(_T.c.type == type_name)
            details: dict[str, dict[str, set[str]]] = {t: {} for t in counts}
            for t, attr, kind in session.execute(attrs_q):
                details.setdefault(t, {}).setdefault(attr, set()).add(kind)
        return [
            {
                "type": t,
                "count": int(counts[t]),
                "attributes": {a: sorted(k) for a, k in sorted(details.get(t, {}).items())},
            }
            for t in sorted(counts)
        ]

    def attribute_details(self, tenant: str, attr: str | None = None) -> list[dict[str, Any]]:
        """Per attribute: how many instances, their kinds and the entity types holding it."""
        self.require_tenant(tenant)
        with self.db.session() as session:
            q = select(_A.c.attr, _A.c.kind, func.count()).where(_A.c.tenant == tenant)
            if attr is not None:
                q = q.where(_A.c.attr == attr)
            found: dict[str, dict[str, Any]] = {}
            for name, kind, n in session.execute(q.group_by(_A.c.attr, _A.c.kind)):
                item = found.setdefault(
                    name, {"attr": name, "count": 0, "kinds": set(), "types": set()}
                )
                item["count"] += int(n)
                item["kinds"].add(kind)
            tq = (
                select(_A.c.attr, _T.c.type)
                .join(_T, _T.c.entity_pk == _A.c.entity_pk)
                .where(_A.c.tenant == tenant)
                .distinct()
            )
            if attr is not None:
                tq = tq.where(_A.c.attr == attr)
            for name, t in session.execute(tq):
                if name in found:
                    found[name]["types"].add(t)
        return [
            {**v, "kinds": sorted(v["kinds"]), "types": sorted(v["types"])}
            for _, v in sorted(found.items())
        ]

    def count_entities(self, tenant: str = DEFAULT_TENANT) -> int:
        with self.db.session() as session:
            return int(
                session.execute(
                    select(func.count()).select_from(_E).where(_E.c.tenant == tenant)
                ).scalar()
                or 0
            )


def geo_matches(entity: Entity, geo: GeoQueryLike) -> bool:
    """Whether any instance of the entity's `geo.geoproperty` satisfies the geo-query."""
    for instance in entity.get(geo.geoproperty, ()):
        value = instance.get("value")
        if isinstance(value, dict) and geo.matches(value):
            return True
    return False


def scope_clause(expr: ngsild_scope.ScopeExpr) -> ColumnElement[bool]:
    """SQL on `context_entities.doc` that every entity `expr` selects satisfies: a superset, the
    exact test is `ngsild_scope.matches_entity`. Documents are orjson text, so a scoped entity
    holds `"scope":[` and each of its scopes appears as `"/level/...` (scope levels hold no
    character JSON escapes); `ngsild_scope.prefilter` says which literal prefixes must appear."""

    def build(condition: ngsild_scope.ScopeFilter) -> ColumnElement[bool]:
        if isinstance(condition, str):
            if condition == "/":
                return true()
            return _E.c.doc.contains('"' + condition, autoescape=True)
        parts = [build(c) for c in condition[1]]
        return and_(*parts) if condition[0] == "and" else or_(*parts)

    return and_(
        _E.c.doc.contains('"scope":[', autoescape=True), build(ngsild_scope.prefilter(expr))
    )


def _type_probe(tenant: str, types: list[frozenset[str]]) -> ColumnElement[bool]:
    """Correlated EXISTS probes of a type expression (a disjunction of conjunctions)."""
    alternatives = [
        and_(
            *[
                select(_T.c.entity_pk)
                .where(_T.c.tenant == tenant, _T.c.type == t, _T.c.entity_pk == _E.c.pk)
                .exists()
                for t in sorted(conjunction)
            ]
        )
        for conjunction in types
    ]
    return or_(*alternatives) if len(alternatives) > 1 else alternatives[0]


def _id_drivers(
    tenant: str, ids: list[str] | None, id_pattern: str | None
) -> list[ColumnElement[bool]]:
    """`pk IN (...)` by the (tenant, entity_id) index: listed ids, an idPattern's literal
    prefix (the pattern itself is tested in Python)."""
    by_id = select(_E.c.pk).where(_E.c.tenant == tenant)
    drivers: list[ColumnElement[bool]] = []
    if ids:
        drivers.append(_E.c.pk.in_(by_id.where(_E.c.entity_id.in_(ids))))
    prefix = literal_prefix(id_pattern) if id_pattern else ""
    if prefix:
        drivers.append(
            _E.c.pk.in_(
                by_id.where(_E.c.entity_id >= prefix, _E.c.entity_id < prefix + "\U0010ffff")
            )
        )
    return drivers


def _any_selector(tenant: str, selectors: list[Selector]) -> ColumnElement[bool]:
    """Any of several selectors, tested on each candidate (the idPatterns only by their
    prefixes here: `Selector.matches` decides)."""
    alternatives: list[ColumnElement[bool]] = []
    for selector in selectors:
        parts = _id_drivers(tenant, selector.ids, selector.id_pattern)
        if selector.types:
            parts.append(_type_probe(tenant, selector.types))
        alternatives.append(and_(*parts) if parts else true())
    return or_(*alternatives)


_REGEX_META = set(".^$*+?{}[]\\|()")


def literal_prefix(pattern: str) -> str:
    """The literal text every match of an idPattern must start with ('' if none)."""
    if "|" in pattern:
        return ""  # alternatives: no common prefix worth computing
    body = pattern.removeprefix("^")
    prefix: list[str] = []
    for i, ch in enumerate(body):
        if ch in _REGEX_META:
            break
        if i + 1 < len(body) and body[i + 1] in "*?{":
            break  # this character may be repeated zero times
        prefix.append(ch)
    return "".join(prefix)


def _prefilter_clause(condition: Any) -> ColumnElement[bool] | None:
    """SQL over `context_attrs` for one ngsild_q.Prefilter: the rows whose value satisfies it
    (the caller adds the rows holding no single scalar, which only `evaluate` can decide)."""
    op = getattr(condition, "op", None)
    values = tuple(getattr(condition, "values", ()))
    kind = getattr(condition, "kind", None)
    if not values or kind not in ("number", "string"):
        return None
    if kind == "number":
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return None
        column = _A.c.num
        nums = [float(v) for v in values]
        clause = _compare(column, op, nums, nums)
    else:
        if not all(isinstance(v, str) for v in values):
            return None
        column = _A.c.txt
        # A stored string is cut to TXT_LEN: compare with cut operands where the cut could
        # change the outcome, so every possible match stays a candidate.
        cut = [str(v)[:TXT_LEN] for v in values]
        clause = _compare(column, op, cut, [str(v) for v in values])
    return cast("ColumnElement[bool] | None", clause)


def _compare(column: Any, op: Any, cut: list[Any], full: list[Any]) -> Any:
    """`cut` are the operands as stored (strings cut to TXT_LEN), `full` as given."""
    strings = isinstance(cut[0], str)
    if op == "==":
        return column.in_(cut) if len(cut) > 1 else column == cut[0]
    if op == ">":
        return column >= cut[0] if strings else column > cut[0]
    if op == ">=":
        return column >= cut[0]
    if op == "<":
        return column < full[0]
    if op == "<=":
        return column <= full[0]
    if op == "between" and len(cut) == 2:
        return and_(column >= cut[0], column <= full[1])
    return None
