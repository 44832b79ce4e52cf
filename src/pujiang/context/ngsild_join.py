"""Linked Entity Retrieval (ETSI GS CIM 009 v1.8, clause 4.5.23): the `join`, `joinLevel` and
`containedBy` parameters of Retrieve Entity and Query Entities (clauses 5.7.1, 5.7.2) and the
same members of the Query data type (POST /entityOperations/query).

- `join=inline`: each shown Relationship whose target is held here gets an `entity` member with
  the target (an array of targets for a Relationship with several objects; `entityList` for a
  ListRelationship); in the simplified (keyValues) form the target replaces the object URI.
- `join=flat`: the targets are appended to the reply array, each once.
- `join=@none` (or no `join`): no Linked Entity retrieval.
- `joinLevel` (a positive integer, default 1): how many hops to follow; the targets' own
  Relationships are followed on the next hop, and so on.
- `containedBy`: entity ids already encountered (clause 4.5.23), never joined again. A target
  already on the path (inline) or already in the reply (flat) is not joined again either, so a
  loop stops.

Only Relationships that the reply shows are followed (`pick`, `omit`, `attrs` apply first). A
`pick`/`omit` term `rel{...}` (clause 4.21) selects members of the entities linked through `rel`;
nesting deeper than `joinLevel`, or such a term without `join`, is 400 BadRequestData (clause
5.7.1.4). Entity-level `pick`/`omit` apply to the requested entities only; a linked entity is
projected only by the braces of its Relationship. A Relationship with `objectType` joins only a
target of that type; targets that are missing or not readable are left out (the Relationship
stays as stored).

The functions work on the internal (expanded) entity form and take a `Fetch` callback that
reads entities by id (the caller's tenant and read rights); `broker_fetch` builds it from the
broker's query by ids.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pujiang.context import jsonld, ngsild_projection
from pujiang.context.errors import BadData, TooManyResults
from pujiang.context.jsonld import Renderer
from pujiang.context.queries import MAX_LIMIT, Query
from pujiang.context.service import ContextBroker

__all__ = [
    "DEFAULT_LEVEL",
    "JOIN_MODES",
    "MAX_LINKED",
    "Fetch",
    "Plan",
    "Shape",
    "broker_fetch",
    "parse_join",
    "plan",
    "render",
]

Entity = dict[str, Any]
Fetch = Callable[[Sequence[str]], Mapping[str, Entity]]

JOIN_MODES = ("flat", "inline", "@none")
DEFAULT_LEVEL = 1
# Linked entities (flat) or inlined targets (inline) one reply may hold: joining is bounded by
# this, not by joinLevel, since loops stop on their own.
MAX_LINKED = 5 * MAX_LIMIT
_ID_CHUNK = 500
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Shape:
    """The projection of linked entities (clause 4.21 `rel{...}` terms), names expanded:
    `pick` (None: every member) minus `omit`, and per Relationship name the Shape of the entities
    it links to."""

    pick: frozenset[str] | None = None
    omit: frozenset[str] = frozenset()
    links: Mapping[str, Shape] = field(default_factory=dict)

    def keeps(self, member: str) -> bool:
        if self.pick is not None and member not in self.pick:
            return False
        return member not in self.omit

    def linked(self, relationship: str) -> Shape:
        return self.links.get(relationship, _ANY)

    def depth(self) -> int:
        """How many hops of Linked Entities the projection reaches into."""
        return 1 + max(s.depth() for s in self.links.values()) if self.links else 0


_ANY = Shape()


@dataclass(frozen=True)
class Plan:
    """A request's Linked Entity retrieval. `mode` is "inline", "flat" or None (no join);
    `pick`/`omit` are what the caller passes on as the requested entities' own projection (the
    `rel{...}` parts taken out); `links` holds those parts per expanded Relationship name."""

    mode: str | None = None
    level: int = DEFAULT_LEVEL
    contained_by: frozenset[str] = frozenset()
    pick: Any = None
    omit: Any = None
    links: Mapping[str, Shape] = field(default_factory=dict)


# -- parameters ---------------------------------------------------------------------------------


def parse_join(
    join: Any, join_level: Any = None, contained_by: Any = None, *, body: bool = False
) -> tuple[str | None, int, frozenset[str]]:
    """(`join` mode or None, `joinLevel`, `containedBy` ids) from query-string texts or, with
    `body`, members of a Query (where `joinLevel` is a JSON number); BadRequestData for a value
    the spec does not allow."""
    if join is not None and (not isinstance(join, str) or join not in JOIN_MODES):
        raise BadData(
            f"join 只能是 flat、inline 或 @none，不是 {join!r} / join must be flat, inline or "
            f"@none, not {join!r}"
        )
    level = DEFAULT_LEVEL
    if join_level is not None:
        if not body and isinstance(join_level, str) and _DIGITS.fullmatch(join_level.strip()):
            level = int(join_level)
        elif isinstance(join_level, int) and not isinstance(join_level, bool):
            level = join_level
        else:
            level = 0
        if level < 1:
            raise BadData(
                f"joinLevel 必须是正整数，不是 {join_level!r} / joinLevel must be a positive "
                f"integer, not {join_level!r}"
            )
    ids: list[Any]
    if contained_by is None:
        ids = []
    elif isinstance(contained_by, str):
        ids = [i.strip() for i in contained_by.split(",")]
    elif isinstance(contained_by, list):
        ids = contained_by
    else:
        ids = [contained_by]
    bad = [i for i in ids if not isinstance(i, str) or not jsonld.is_uri(i)]
    if bad or (contained_by is not None and not ids):
        raise BadData(
            f"containedBy 必须是以逗号分隔的实体 id（URI），不是 {contained_by!r} / containedBy "
            f"must be entity ids (URIs) separated by commas, not {contained_by!r}"
        )
    mode = None if join in (None, "@none") else join
    return mode, level, frozenset(ids)


def _terms(value: Any, parameter: str) -> tuple[ngsild_projection.Term, ...] | None:
    """The terms of a pick/omit (text or array of texts); None when absent or malformed (the
    projection module then reports the fault)."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return None
    terms: list[ngsild_projection.Term] = []
    try:
        for text in texts:
            terms.extend(ngsild_projection.parse_terms(text, parameter))
    except ngsild_projection.ProjectionError:
        return None
    return tuple(terms)


def _member(name: str, expand: Callable[[str], str]) -> str:
    return name if name in ngsild_projection.ENTITY_MEMBERS else expand(name)


def _shape(
    picked: Sequence[ngsild_projection.Term] | None,
    omitted: Sequence[ngsild_projection.Term],
    expand: Callable[[str], str],
) -> Shape:
    pick = None if picked is None else frozenset(_member(t.name, expand) for t in picked)
    omit = frozenset(_member(t.name, expand) for t in omitted if not t.linked)
    if pick is not None and pick & omit:
        names = ", ".join(sorted(pick & omit))
        raise BadData(
            f"{names} 不能在关联实体中同时被 pick 和 omit / {names} cannot be both picked and "
            "omitted for a linked entity"
        )
    return Shape(pick, omit, _links(picked or (), omitted, expand, pick_given=picked is not None))


def _links(
    picked: Sequence[ngsild_projection.Term],
    omitted: Sequence[ngsild_projection.Term],
    expand: Callable[[str], str],
    *,
    pick_given: bool,
) -> dict[str, Shape]:
    """Per Relationship named with braces, the Shape of its targets."""
    inner_pick: dict[str, list[ngsild_projection.Term]] = {}
    inner_omit: dict[str, list[ngsild_projection.Term]] = {}
    for term in picked if pick_given else ():
        if term.linked:
            inner_pick.setdefault(_member(term.name, expand), []).extend(term.linked)
    for term in omitted:
        if term.linked:
            inner_omit.setdefault(_member(term.name, expand), []).extend(term.linked)
    return {
        name: _shape(inner_pick.get(name), inner_omit.get(name, []), expand)
        for name in [*inner_pick, *(n for n in inner_omit if n not in inner_pick)]
    }


def plan(
    join: Any,
    join_level: Any,
    contained_by: Any,
    pick: Any,
    omit: Any,
    expand: Callable[[str], str],
    *,
    body: bool = False,
) -> Plan:
    """Check `join`/`joinLevel`/`containedBy` (`body`: members of a Query) and split
    `pick`/`omit` into the requested entities' own projection and that of their linked
    entities (clause 4.21 braces)."""
    mode, level, contained = parse_join(join, join_level, contained_by, body=body)
    picked = _terms(pick, "pick") if pick is not None else None
    omitted = _terms(omit, "omit") if omit is not None else None
    nested = any(t.linked for t in (*(picked or ()), *(omitted or ())))
    if not nested:  # nothing to split: pick/omit go on as given (and are checked there)
        return Plan(mode, level, contained, pick, omit)
    links = _links(picked or (), omitted or (), expand, pick_given=picked is not None)
    hops = Shape(links=links).depth()
    if mode is None:
        raise BadData(
            "pick/omit 中的 属性{...} 选择关联实体的成员（关联实体检索），需要 join=inline 或 "
            "join=flat / an attribute{...} term of pick/omit selects members of linked entities "
            "(Linked Entity retrieval) and needs join=inline or join=flat"
        )
    if hops > level:
        raise BadData(
            f"pick/omit 选择到第 {hops} 层关联实体，超过 joinLevel={level} / pick/omit select "
            f"members of linked entities {hops} hops deep, beyond joinLevel={level}"
        )
    own_pick = None if picked is None else ",".join(t.name for t in picked)
    own_omit = ",".join(t.name for t in omitted or () if not t.linked) or None
    return Plan(mode, level, contained, own_pick, own_omit, links)


# -- retrieval ----------------------------------------------------------------------------------


def broker_fetch(broker: ContextBroker, tenant: str) -> Fetch:
    """A `Fetch` reading entities of `tenant` by id through the broker's query (one query per
    500 ids). Reads need no other right than the request's own (`context.read`, per tenant);
    the platform has no per-type read permissions to apply here."""

    def fetch(ids: Sequence[str]) -> Mapping[str, Entity]:
        found: dict[str, Entity] = {}
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = list(ids[start : start + _ID_CHUNK])
            entities, _ = broker.query(tenant, Query(ids=chunk, limit=len(chunk)))
            found.update((e["id"], e) for e in entities)
        return found

    return fetch


def _targets(instance: dict[str, Any]) -> list[str | None]:
    """The target ids of a Relationship or ListRelationship instance, in order (None for an
    item that is not an id); [] for other attribute types."""
    kind = instance.get("type")
    if kind == "Relationship":
        target = instance.get("object")
        items = target if isinstance(target, list) else [target]
    elif kind == "ListRelationship":
        listed = instance.get("objectList")
        items = [
            i.get("object") if isinstance(i, dict) else i
            for i in (listed if isinstance(listed, list) else [])
        ]
    else:
        return []
    return [i if isinstance(i, str) else None for i in items]


def _of_type(instance: dict[str, Any], target: Entity) -> bool:
    """A Relationship's `objectType` (expanded), when given, names the target's type."""
    wanted = instance.get("objectType")
    if wanted is None:
        return True
    names = {wanted} if isinstance(wanted, str) else set(wanted if isinstance(wanted, list) else ())
    return bool(names & set(target.get("type") or ()))


@dataclass(eq=False)
class _Node:
    """An entity of the reply: a requested one or a linked one, with what it links to."""

    entity: Entity
    shape: Shape  # how it is projected (requested entities: only `links` is used)
    keeps: Callable[[str], bool]  # which of its attributes the reply shows
    path: frozenset[str]  # ids from the requested entity down to this one
    # (Relationship name, instance index) -> one node per target (None: not joined)
    found: dict[tuple[str, int], list[_Node | None]] = field(default_factory=dict)

    def relationships(self) -> Iterator[tuple[str, int, dict[str, Any], list[str | None]]]:
        for name, instances in self.entity.items():
            if name in jsonld.ENTITY_MEMBERS or not isinstance(instances, list):
                continue
            if not self.keeps(name):
                continue
            for index, instance in enumerate(instances):
                if isinstance(instance, dict):
                    targets = _targets(instance)
                    if targets:
                        yield name, index, instance, targets


class _Linker:
    """Reads linked entities in bulk, once per id, and counts what the reply takes."""

    def __init__(self, fetch: Fetch, limit: int | None = None) -> None:
        self.fetch = fetch
        self.limit = MAX_LINKED if limit is None else limit
        self.cache: dict[str, Entity | None] = {}
        self.taken = 0

    def load(self, ids: Iterator[str]) -> None:
        missing = [i for i in dict.fromkeys(ids) if i not in self.cache]
        if missing:
            found = self.fetch(missing)
            for entity_id in missing:
                self.cache[entity_id] = found.get(entity_id)

    def target(self, entity_id: str, instance: dict[str, Any]) -> Entity | None:
        entity = self.cache.get(entity_id)
        if entity is None or not _of_type(instance, entity):
            return None
        self.taken += 1
        if self.taken > self.limit:
            raise TooManyResults(
                f"关联实体超过 {self.limit} 个，请减小 joinLevel 或 limit / more than "
                f"{self.limit} linked entities: lower joinLevel or limit"
            )
        return entity


def _child(node: _Node, name: str, target: Entity) -> _Node:
    shape = node.shape.linked(name)
    return _Node(target, shape, shape.keeps, node.path | {target["id"]})


def _inline(roots: list[_Node], level: int, linker: _Linker, skip: frozenset[str]) -> None:
    """Fills `found` hop by hop: a target already on the node's path or in `skip` is not
    joined again (loops stop), but two requested entities may link the same target."""
    frontier = roots
    for _ in range(level):
        if not frontier:
            break
        linker.load(
            t
            for node in frontier
            for _, _, _, targets in node.relationships()
            for t in targets
            if t is not None and t not in node.path and t not in skip
        )
        following: list[_Node] = []
        for node in frontier:
            for name, index, instance, targets in node.relationships():
                joined: list[_Node | None] = []
                for t in targets:
                    entity = None
                    if t is not None and t not in node.path and t not in skip:
                        entity = linker.target(t, instance)
                    joined.append(None if entity is None else _child(node, name, entity))
                if any(j is not None for j in joined):
                    node.found[(name, index)] = joined
                    following.extend(j for j in joined if j is not None)
        frontier = following


def _flat(roots: list[_Node], level: int, linker: _Linker, skip: frozenset[str]) -> list[_Node]:
    """The linked entities to append, each once, in the order they are reached hop by hop."""
    seen = {root.entity["id"] for root in roots} | skip
    appended: list[_Node] = []
    frontier = roots
    for _ in range(level):
        if not frontier:
            break
        linker.load(
            t
            for node in frontier
            for _, _, _, targets in node.relationships()
            for t in targets
            if t is not None and t not in seen
        )
        following: list[_Node] = []
        for node in frontier:
            for name, _, instance, targets in node.relationships():
                for t in targets:
                    if t is None or t in seen:
                        continue
                    entity = linker.target(t, instance)
                    if entity is None:
                        continue
                    seen.add(t)
                    child = _child(node, name, entity)
                    appended.append(child)
                    following.append(child)
        frontier = following
    return appended


# -- rendering ----------------------------------------------------------------------------------


def _renderer_for(base: Renderer, shape: Shape) -> Renderer:
    return Renderer(
        base.ctx,
        fmt=base.fmt,
        sys_attrs=base.sys_attrs,
        lang=base.lang,
        pick=None if shape.pick is None else set(shape.pick),
        omit=set(shape.omit),
    )


def _substitute(value: Any, rendered: list[dict[str, Any] | None]) -> Any:
    """Simplified form: the object URI(s) replaced by the joined entities (kept where none)."""
    if isinstance(value, list):
        out = []
        for position, item in enumerate(value):
            entity = rendered[position] if position < len(rendered) else None
            out.append(item if entity is None else entity)
        return out
    return rendered[0] if rendered and rendered[0] is not None else value


def _attach(
    shown: Any,
    instances: list[dict[str, Any]],
    index: int,
    rendered: list[dict[str, Any] | None],
    fmt: str,
) -> Any:
    """The rendered attribute `shown` with the joined entities of its instance `index`."""
    instance = instances[index]
    if fmt == "simplified":
        if len(instances) == 1 and "datasetId" not in instance:
            return _substitute(shown, rendered)
        datasets = shown.get("dataset") if isinstance(shown, dict) else None
        key = str(instance.get("datasetId") or "@none")
        if isinstance(datasets, dict) and key in datasets:
            datasets[key] = _substitute(datasets[key], rendered)
        return shown
    target = shown if len(instances) == 1 else shown[index] if isinstance(shown, list) else None
    joined = [r for r in rendered if r is not None]
    if not isinstance(target, dict) or not joined:
        return shown
    if instance.get("type") == "ListRelationship":
        target["entityList"] = joined
    elif isinstance(instance.get("object"), list):
        target["entity"] = joined
    else:
        target["entity"] = joined[0]
    return shown


def _render_inline(node: _Node, renderer: Renderer) -> dict[str, Any]:
    out = renderer.entity(node.entity)
    for (name, index), children in node.found.items():
        key = renderer.ctx.compact(name)
        if key not in out:
            continue
        rendered: list[dict[str, Any] | None] = []
        for child in children:
            shown = None
            if child is not None:
                shown = _render_inline(child, _renderer_for(renderer, child.shape))
            rendered.append(shown or None)  # a linked entity with nothing left is not joined
        out[key] = _attach(out[key], node.entity[name], index, rendered, renderer.fmt)
    return out


def _shown_by(renderer: Renderer) -> Callable[[str], bool]:
    pick, omit = renderer.pick, renderer.omit

    def keeps(member: str) -> bool:
        return (pick is None or member in pick) and member not in omit

    return keeps


def render(
    entities: Sequence[Entity], renderer: Renderer, plan: Plan, fetch: Fetch
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The requested `entities` rendered with `renderer`, joined per `plan`, and (join=flat)
    the linked entities to append after them, rendered alike with their own projection."""
    if plan.mode is None:
        return [renderer.entity(e) for e in entities], []
    keeps = _shown_by(renderer)
    roots = [
        _Node(e, Shape(links=plan.links), keeps, frozenset({e["id"]}) | plan.contained_by)
        for e in entities
    ]
    linker = _Linker(fetch)
    if plan.mode == "inline":
        _inline(roots, plan.level, linker, plan.contained_by)
        return [_render_inline(root, renderer) for root in roots], []
    appended = _flat(roots, plan.level, linker, plan.contained_by)
    linked = [_renderer_for(renderer, node.shape).entity(node.entity) for node in appended]
    return [renderer.entity(e) for e in entities], [e for e in linked if e]
