"""NGSI-LD subscriptions: which changes fire which subscription, and delivery of notifications.

Three parts, each doing one job:

- **Store** (`create`, `replace`, `delete`, `get`, `page`): rows of `context_subscriptions`,
  holding the document as the client wrote it and the *compiled* form matching reads (expanded
  names; built by `ngsild_subscriptions.compile_subscription`).
- **Matcher** (`Matcher.on_entity_changed`, a handler of `context.entity.changed` on the bus):
  decides which subscriptions an entity change fires (entity selectors, `watchedAttributes`,
  `notificationTrigger`, `q`, `geoQ`, `scopeQ`, `isActive`, `expiresAt`, `throttling`),
  renders the entity as the subscription asked (attributes, format, compacted with the
  subscription's @context) and writes one outbox row per notification in one short
  transaction of its own. That is all the request that made the change pays for.
- **Dispatcher**: a worker thread running an asyncio loop. It claims due outbox rows (a lease,
  `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several nodes may run one each), groups them per
  endpoint and per subscription, and sends each group as one notification. Every endpoint has
  its own lane with a circuit breaker: after a failure the endpoint is set aside for a backoff
  period while other endpoints go on. A row is deleted only after the endpoint accepted it;
  a failed one is retried with exponential backoff and kept as `dead` after `max_attempts`.
  The worker also emits periodic (`timeInterval`) notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from pujiang.context import ngsild_join, ngsild_scope
from pujiang.context.jsonld import (
    CORE_CONTEXT_URL,
    DEFAULT_VOCAB,
    NGSI_LD,
    ActiveContext,
    ContextNotAvailable,
    ContextProcessor,
    InvalidContext,
    Renderer,
)
from pujiang.context.ngsild_geo import GeoQuery, parse_geoquery
from pujiang.context.ngsild_projection import Projection
from pujiang.context.ngsild_q import QExpr, evaluate, parse_q
from pujiang.context.notify import Outgoing, SendError, Senders, endpoint_key
from pujiang.context.subscription_models import NotificationOutbox, Subscription
from pujiang.platform.db import Database, utcnow

log = logging.getLogger("pujiang.context.subscriptions")

CHANGED_TOPIC = "context.entity.changed"
JSONLD_EXTRA = "context.jsonld"
LOCATION = NGSI_LD + "location"
__all__ = ["CORE_CONTEXT_URL", "DEFAULT_VOCAB"]
JSONLD_CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
NULL = "urn:ngsi-ld:null"

TRIGGERS = (
    "entityCreated",
    "entityUpdated",
    "entityDeleted",
    "attributeCreated",
    "attributeUpdated",
    "attributeDeleted",
)
DEFAULT_TRIGGERS = ("attributeCreated", "attributeUpdated")
ENTITY_TRIGGERS = frozenset({"entityCreated", "entityUpdated", "entityDeleted"})
FORMATS = ("normalized", "keyValues", "concise")
# "simplified" is the v1.8 name of keyValues (Table 5.2.14-1); documents keep what was written.
FORMAT_ALIASES = {"simplified": "keyValues"}
ENTITY_MEMBERS = frozenset(
    {"id", "type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt"}
)
# Per attribute type: the member holding the value, the member holding the value before the
# change (showChanges, clause 4.5.2 ff.) and the NGSI-LD Null of the value (clause 4.5.0), which
# stands for a deleted attribute in notifications.
VALUE_MEMBERS: dict[str, tuple[str, str, Any]] = {
    "Property": ("value", "previousValue", NULL),
    "GeoProperty": ("value", "previousValue", NULL),
    "Relationship": ("object", "previousObject", NULL),
    "LanguageProperty": ("languageMap", "previousLanguageMap", {"@none": NULL}),
    "ListProperty": ("valueList", "previousValueList", [NULL]),
    "ListRelationship": ("objectList", "previousObjectList", [NULL]),
    "JsonProperty": ("json", "previousJson", NULL),
    "VocabProperty": ("vocab", "previousVocab", NULL),
}


# -- names: expansion and compaction --------------------------------------------------------------

_processor: ContextProcessor | None = None
_processor_lock = threading.Lock()


def default_processor() -> ContextProcessor:
    """A processor for inline and core contexts, used when the app gives none.

    The app's own processor (which also resolves contexts stored through /jsonldContexts) is
    taken from `AppContext.extras[JSONLD_EXTRA]` when the broker core puts it there.
    """
    global _processor
    with _processor_lock:
        if _processor is None:
            _processor = ContextProcessor()
        return _processor


def terms_for(ld_context: Any, processor: ContextProcessor | None = None) -> ActiveContext:
    """The active context (expand/compact) of a subscription; raises ContextNotAvailable or
    InvalidContext when its @context cannot be used."""
    return (processor or default_processor()).active(ld_context)


def _terms_or_core(ld_context: Any, processor: ContextProcessor | None) -> ActiveContext:
    processor = processor or default_processor()
    try:
        return processor.active(ld_context)
    except (ContextNotAvailable, InvalidContext) as exc:
        log.warning("subscription @context unusable (%s); compacting with the core context", exc)
        return processor.core


# -- entity selection -----------------------------------------------------------------------------


def parse_type_selection(text: str, expand: Callable[[str], str]) -> list[list[str]]:
    """An NGSI-LD type selection (`A`, `A,B`, `A|B`, `A;B`, `(A;B)|C`) as OR-of-ANDs, expanded.

    `,` and `|` are OR, `;` is AND and binds tighter; parentheses group. ValueError if bad.
    """
    tokens = re.findall(r"[(),|;]|[^(),|;\s]+|\s+", text)
    tokens = [t for t in tokens if not t.isspace()]
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        token: str = tokens[position]
        position += 1
        return token

    def disjunction() -> list[list[str]]:
        result = conjunction()
        while peek() in {",", "|"}:
            take()
            result = result + conjunction()
        return result

    def conjunction() -> list[list[str]]:
        result = atom()
        while peek() == ";":
            take()
            right = atom()
            result = [a + b for a in result for b in right]
        return result

    def atom() -> list[list[str]]:
        token = peek()
        if token is None:
            raise ValueError(f"the type selection {text!r} ends too early")
        if token == "(":  # noqa: S105 - a parenthesis, not a password
            take()
            inner = disjunction()
            if peek() != ")":
                raise ValueError(f"the type selection {text!r} misses a closing parenthesis")
            take()
            return inner
        if token in {")", ",", "|", ";"}:
            raise ValueError(f"the type selection {text!r} has {token!r} where a type belongs")
        return [[expand(take())]]

    if not text.strip():
        raise ValueError("an entity type may not be empty")
    result = disjunction()
    if peek() is not None:
        raise ValueError(f"the type selection {text!r} has an unexpected {peek()!r}")
    return result


@dataclass
class _Selector:
    id: str | None
    pattern: re.Pattern[str] | None
    types: list[list[str]]

    def matches(self, entity_id: str, entity_types: set[str]) -> bool:
        if self.id is not None and self.id != entity_id:
            return False
        if self.id is None and self.pattern is not None and not self.pattern.search(entity_id):
            return False
        return any(all(t in entity_types for t in group) for group in self.types)


def _instances(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return [value] if isinstance(value, dict) else []


def attribute_names(entity: dict[str, Any] | None) -> set[str]:
    if not entity:
        return set()
    return {k for k in entity if k not in ENTITY_MEMBERS}


# -- the compiled subscription --------------------------------------------------------------------


@dataclass
class Compiled:
    """What matching needs of one subscription, built once per version of its row."""

    pk: int
    sub_id: str
    tenant: str
    doc: dict[str, Any]
    terms: ActiveContext
    selectors: list[_Selector]
    watched: frozenset[str] | None
    triggers: frozenset[str]
    q: QExpr | None
    geo: GeoQuery | None
    attributes: frozenset[str] | None
    format: str
    sys_attrs: bool
    show_changes: bool
    # notification.pick/omit (clause 4.21), attribute names expanded: what `data` keeps.
    projection: Projection = field(default_factory=Projection)
    # The subscription's `datasetId` (Table 5.2.12-1): the attribute instances notified, by
    # datasetId ("@none": the default instance); None: every instance.
    datasets: frozenset[str] | None = None
    # notification.join/joinLevel (clause 4.5.23): "flat", "inline" or None (no join).
    join: str | None = None
    join_level: int = ngsild_join.DEFAULT_LEVEL
    # The @context notifications are compacted with: `jsonldContext` (Table 5.2.12-1) when
    # given, else `terms` (the one the subscription was written with).
    notify_terms: ActiveContext | None = None
    # scopeQ (clause 4.19), tested on the entity's scopes as they are after the change.
    scope: ngsild_scope.ScopeExpr | None = None

    @property
    def shown_terms(self) -> ActiveContext:
        return self.notify_terms if self.notify_terms is not None else self.terms

    @classmethod
    def build(cls, row: Any, processor: ContextProcessor | None = None) -> Compiled:
        doc: dict[str, Any] = row.compiled
        terms = _terms_or_core(row.ld_context, processor)
        selectors = [
            _Selector(
                id=s.get("id"),
                pattern=re.compile(s["idPattern"]) if s.get("idPattern") else None,
                types=s["types"],
            )
            for s in doc.get("entities") or []
        ]
        watched = doc.get("watchedAttributes")
        attributes = doc.get("attributes")
        return cls(
            pk=row.pk,
            sub_id=row.sub_id,
            tenant=row.tenant,
            doc=doc,
            terms=terms,
            selectors=selectors,
            watched=frozenset(watched) if watched else None,
            triggers=frozenset(doc.get("triggers") or DEFAULT_TRIGGERS),
            q=compile_q(doc["q"], terms) if doc.get("q") else None,
            geo=compile_geo(doc["geoQ"]) if doc.get("geoQ") else None,
            attributes=frozenset(attributes) if attributes else None,
            format=FORMAT_ALIASES.get(doc.get("format") or "", doc.get("format") or "normalized"),
            sys_attrs=bool(doc.get("sysAttrs")),
            show_changes=bool(doc.get("showChanges")),
            projection=Projection(
                frozenset(doc["pick"]) if doc.get("pick") else None,
                frozenset(doc.get("omit") or ()),
            ),
            datasets=frozenset(doc["datasetId"]) if doc.get("datasetId") else None,
            join=doc.get("join"),
            notify_terms=(
                _terms_or_core(doc["jsonldContext"], processor)
                if doc.get("jsonldContext")
                else None
            ),
            join_level=int(doc.get("joinLevel") or ngsild_join.DEFAULT_LEVEL),
            scope=ngsild_scope.parse_scope_q(doc["scopeQ"]) if doc.get("scopeQ") else None,
        )

    def keeps_instance(self, instance: dict[str, Any]) -> bool:
        """Whether notifications carry this attribute instance (the `datasetId` member)."""
        return self.datasets is None or (_dataset(instance) or "@none") in self.datasets

    def instances(self, value: Any) -> list[dict[str, Any]]:
        """The instances of an attribute that notifications carry."""
        return [i for i in _instances(value) if self.keeps_instance(i)]

    def shows(self, member: str) -> bool:
        """Whether notifications carry this entity member or attribute (expanded name)."""
        chosen = self.attributes
        if chosen is not None and member not in ENTITY_MEMBERS and member not in chosen:
            return False
        return self.projection.keeps(member)

    def selects(self, entity: dict[str, Any]) -> bool:
        if not self.selectors:
            return True
        types = set(entity.get("type") or [])
        return any(s.matches(str(entity.get("id")), types) for s in self.selectors)

    def filters_pass(self, entity: dict[str, Any]) -> bool:
        if self.q is not None and not _evaluate_q(self.q, entity):
            return False
        if self.scope is not None and not ngsild_scope.matches_entity(self.scope, entity):
            return False
        return self.geo is None or self.geo.matches_entity(entity)

    def fired_by(self, changes: dict[str, set[str]], entity: dict[str, Any]) -> str | None:
        """The first trigger of this subscription the change fires, honouring watchedAttributes."""
        for trigger in TRIGGERS:
            if trigger not in self.triggers or trigger not in changes:
                continue
            if self.watched is None:
                return trigger
            involved = changes[trigger]
            if trigger in {"entityCreated", "entityDeleted"}:
                involved = involved | attribute_names(entity)
            if involved & self.watched:
                return trigger
        return None


def compile_q(text: str, terms: ActiveContext) -> QExpr:
    """parse_q of `context/ngsild_q.py`, names expanded with this subscription's @context.

    Raises ValueError (QSyntaxError) naming the fault.
    """
    return parse_q(text).map_names(terms.expand)


def _evaluate_q(expr: QExpr, entity: dict[str, Any]) -> bool:
    try:
        return evaluate(expr, entity)
    except Exception:
        log.warning("q evaluation failed on %s", entity.get("id"), exc_info=True)
        return False


def compile_geo(geo: dict[str, Any]) -> GeoQuery:
    """parse_geoquery of `context/ngsild_geo.py` (geoproperty already expanded); ValueError."""
    return parse_geoquery(
        geo["georel"], geo["geometry"], geo["coordinates"], geo.get("geoproperty") or LOCATION
    )


def _dataset(instance: dict[str, Any]) -> str:
    return str(instance.get("datasetId") or "")


def _lost_instances(name: str, entity: dict[str, Any], previous: dict[str, Any]) -> bool:
    """Whether an attribute still present lost some of its instances (datasetIds)."""
    kept = {_dataset(i) for i in _instances(entity.get(name))}
    return any(_dataset(i) not in kept for i in _instances(previous.get(name)))


def _changed_instances(name: str, entity: dict[str, Any], previous: dict[str, Any]) -> bool:
    before = {_dataset(i): i for i in _instances(previous.get(name))}
    return any(before.get(_dataset(i)) != i for i in _instances(entity.get(name)))


def event_changes(event: dict[str, Any]) -> dict[str, set[str]]:
    """trigger -> the attributes (expanded) involved, for one `context.entity.changed` event.

    Deleting an entity deletes its attributes too, so it fires `attributeDeleted` as well as
    `entityDeleted`; an attribute that lost one of its instances (an NGSI-LD Null for one
    datasetId, say) counts as deleted, and as updated too when another instance changed."""
    operation = event.get("operation")
    entity, previous = event.get("entity"), event.get("previous")
    now_names, before_names = attribute_names(entity), attribute_names(previous)
    named = set(event.get("attributes") or [])
    if operation == "create":
        return {"entityCreated": now_names, "attributeCreated": now_names}
    if operation == "delete":
        return {"entityDeleted": before_names, "attributeDeleted": before_names}
    if operation == "delete_attrs":
        return {"attributeDeleted": named, "entityUpdated": named}
    changes: dict[str, set[str]] = {}
    now, before = entity or {}, previous or {}
    created = {a for a in named if a in now_names and a not in before_names}
    kept = {a for a in named if a in now_names and a in before_names}
    thinned = {a for a in kept if _lost_instances(a, now, before)}
    updated = (kept - thinned) | {a for a in thinned if _changed_instances(a, now, before)}
    deleted = {a for a in named if a not in now_names} | thinned
    if operation == "replace":
        deleted |= before_names - now_names
    if created:
        changes["attributeCreated"] = created
    if updated:
        changes["attributeUpdated"] = updated
    if deleted:
        changes["attributeDeleted"] = deleted
    # A change of the scope or the types alone updates the entity but no attribute: it fires
    # entityUpdated for a subscription that watches no attributes.
    reshaped = now.get("scope") != before.get("scope") or now.get("type") != before.get("type")
    if created or updated or deleted or named or reshaped:
        changes["entityUpdated"] = created | updated | deleted | named
    return changes


# -- rendering entities as the subscription asks --------------------------------------------------
#
# Current attributes are rendered by the broker's own `jsonld.Renderer` (the representation GET
# gives); this module adds what only notifications carry (clause 5.8.6): deleted attributes as
# their type's NGSI-LD Null, the `previous*` members of showChanges, `deletedAt`, and the
# subscription's attribute selection and pick/omit.


def _members(kind: Any) -> tuple[str, str, Any]:
    return VALUE_MEMBERS.get(str(kind or "Property"), VALUE_MEMBERS["Property"])


def _shown(kind: Any, value: Any, terms: ActiveContext) -> Any:
    """A value as notifications show it: a VocabProperty's IRIs compacted."""
    if kind != "VocabProperty":
        return value
    if isinstance(value, list):
        return [terms.compact(v) if isinstance(v, str) else v for v in value]
    return terms.compact(value) if isinstance(value, str) else value


def _renderer(compiled: Compiled) -> Renderer:
    fmt = {"keyValues": "simplified"}.get(compiled.format, compiled.format)
    return Renderer(compiled.shown_terms, fmt=fmt, sys_attrs=compiled.sys_attrs)


def _header(entity: dict[str, Any], compiled: Compiled) -> dict[str, Any]:
    terms = compiled.shown_terms
    out: dict[str, Any] = {}
    if compiled.shows("id"):
        out["id"] = entity.get("id")
    if compiled.shows("type"):
        types = [terms.compact(t) for t in entity.get("type") or []]
        out["type"] = types[0] if len(types) == 1 else types
    scope = entity.get("scope")
    if scope and compiled.shows("scope"):
        out["scope"] = scope[0] if isinstance(scope, list) and len(scope) == 1 else scope
    if compiled.sys_attrs:
        for member in ("createdAt", "modifiedAt"):
            if member in entity and compiled.shows(member):
                out[member] = entity[member]
    return out


def _concise_null(item: dict[str, Any]) -> Any:
    """A deleted instance in the concise representation: without `type` where its member tells
    it (a GeoProperty's Null does not), a bare Null for a plain Property."""
    kind = item.get("type")
    if kind == "GeoProperty":
        return item
    out = {k: v for k, v in item.items() if k != "type"}
    if kind == "Property" and set(out) == {"value"}:
        return out["value"]
    return out


def _null_instance(
    old: dict[str, Any], compiled: Compiled, at: str | None, *, with_dataset: bool
) -> Any:
    """A deleted instance: its type, the NGSI-LD Null in the type's own value member, and only
    what is asked for besides (clause 5.8.6): the datasetId, the previous value (showChanges),
    createdAt/modifiedAt/deletedAt (sysAttrs)."""
    kind = old.get("type") or "Property"
    member, previous_member, null = _members(kind)
    item: dict[str, Any] = {"type": kind, member: orjson.loads(orjson.dumps(null))}
    if with_dataset and old.get("datasetId"):
        item["datasetId"] = old["datasetId"]
    if compiled.show_changes and member in old:
        item[previous_member] = _shown(kind, old[member], compiled.shown_terms)
    if compiled.sys_attrs:
        for stamp in ("createdAt", "modifiedAt"):
            if stamp in old:
                item[stamp] = old[stamp]
        if at:
            item["deletedAt"] = at
    return _concise_null(item) if compiled.format == "concise" else item


def _gone_attribute(instances: list[dict[str, Any]], compiled: Compiled, at: str | None) -> Any:
    """A deleted attribute: one Null (the datasetId only when a single instance with one was
    deleted), or with showChanges one per instance so that each previous value is told."""
    if compiled.format == "keyValues":
        return NULL
    if not instances:
        instances = [{"type": "Property"}]
    if len(instances) > 1 and compiled.show_changes:
        return [_null_instance(i, compiled, at, with_dataset=True) for i in instances]
    main = next((i for i in instances if "datasetId" not in i), instances[0])
    return _null_instance(main, compiled, at, with_dataset=len(instances) == 1)


def _with_previous(
    item: Any, instance: dict[str, Any], before: dict[str, Any] | None, compiled: Compiled
) -> Any:
    """showChanges: the value before the change beside the current one, where it changed."""
    if before is None:
        return item
    kind = instance.get("type") or "Property"
    member, previous_member, _null = _members(kind)
    if member not in before or before[member] == instance.get(member):
        return item
    if not isinstance(item, dict) or member not in item:
        item = {"value": item}  # a concise bare value (a GeoProperty's: the geometry itself)
    item[previous_member] = _shown(kind, before[member], compiled.shown_terms)
    return item


def _simplified(
    instances: list[dict[str, Any]], gone: list[dict[str, Any]], renderer: Renderer
) -> Any:
    if not gone:
        return renderer.attribute(instances)
    dataset: dict[str, Any] = {}
    for instance in instances:
        plain = {k: v for k, v in instance.items() if k != "datasetId"}
        dataset[_dataset(instance) or "@none"] = renderer.attribute([plain])
    for instance in gone:
        dataset[_dataset(instance) or "@none"] = NULL
    return {"dataset": dataset}


def _attribute(
    instances: list[dict[str, Any]],
    gone: list[dict[str, Any]],
    before: list[dict[str, Any]],
    compiled: Compiled,
    renderer: Renderer,
    at: str | None,
) -> Any:
    if compiled.format == "keyValues":
        return _simplified(instances, gone, renderer)
    before_by_dataset = {_dataset(i): i for i in before} if compiled.show_changes else {}
    items: list[Any] = []
    for instance in instances:
        item = renderer.instance(instance)
        if compiled.show_changes:
            item = _with_previous(
                item, instance, before_by_dataset.get(_dataset(instance)), compiled
            )
        items.append(item)
    items += [_null_instance(i, compiled, at, with_dataset=True) for i in gone]
    return items[0] if len(items) == 1 else items


def render_entity(
    entity: dict[str, Any],
    compiled: Compiled,
    *,
    previous: dict[str, Any] | None = None,
    deleted: Iterable[str] = (),
    at: str | None = None,
) -> dict[str, Any]:
    """An entity of the internal form as this subscription wants it in `data`; the attributes
    in `deleted` (expanded) are shown as deleted: wholly gone, or the instances they lost."""
    before = previous or {}
    gone_names = set(deleted)
    renderer = _renderer(compiled)
    terms = compiled.shown_terms
    out = _header(entity, compiled)
    for name in entity:
        if name in ENTITY_MEMBERS or not compiled.shows(name):
            continue
        instances = compiled.instances(entity[name])
        lost: list[dict[str, Any]] = []
        if name in gone_names:
            kept = {_dataset(i) for i in _instances(entity[name])}
            lost = [i for i in compiled.instances(before.get(name)) if _dataset(i) not in kept]
        if not instances and not lost:
            continue
        if not instances:  # only instances of other datasets are left: the chosen are gone
            out[terms.compact(name)] = _gone_attribute(lost, compiled, at)
            continue
        out[terms.compact(name)] = _attribute(
            instances, lost, compiled.instances(before.get(name)), compiled, renderer, at
        )
    in_order = [n for n in before if n in gone_names] + sorted(gone_names - set(before))
    for name in in_order:
        if name in entity or name in ENTITY_MEMBERS or not compiled.shows(name):
            continue
        old = compiled.instances(before.get(name))
        if old or compiled.datasets is None:
            out[terms.compact(name)] = _gone_attribute(old, compiled, at)
    return out


def render_deleted_entity(
    previous: dict[str, Any],
    compiled: Compiled,
    at: str,
    attributes: Iterable[str] | None = None,
) -> dict[str, Any]:
    """A deleted entity (clause 5.8.6): `id`, `type`, `deletedAt` (with sysAttrs also
    `createdAt`/`modifiedAt`) and, as deleted attributes, those named in `attributes` (an
    `attributeDeleted` notification) or, with showChanges, all of them with their values
    before the deletion."""
    out = _header(previous, compiled)
    out["deletedAt"] = at
    if attributes is None:
        attributes = attribute_names(previous) if compiled.show_changes else ()
    wanted = set(attributes)
    for name in previous:
        if name not in wanted or name in ENTITY_MEMBERS or not compiled.shows(name):
            continue
        instances = compiled.instances(previous[name])
        if instances or compiled.datasets is None:
            out[compiled.shown_terms.compact(name)] = _gone_attribute(instances, compiled, at)
    return out


# Linked Entity retrieval in notifications (notification.join, clause 4.5.23): the rendering and
# the reading of linked entities are ngsild_join's, as for GET /entities.
LinkedFetch = Callable[[str], ngsild_join.Fetch]  # tenant -> how to read its entities by id


def _joined_instances(shown: Any, joined: Any) -> Any:
    """`shown` (an attribute as notified) with the `entity`/`entityList` members the joined
    rendering gave its instances (same order; deleted instances come after and get none)."""
    links = ("entity", "entityList")
    if isinstance(shown, dict) and isinstance(joined, dict):
        shown.update({k: joined[k] for k in links if k in joined})
    elif isinstance(shown, list) and isinstance(joined, list):
        for item, other in zip(shown, joined, strict=False):
            if isinstance(item, dict) and isinstance(other, dict):
                item.update({k: other[k] for k in links if k in other})
    return shown


def join_linked(
    entity: dict[str, Any],
    rendered: dict[str, Any],
    compiled: Compiled,
    fetch: ngsild_join.Fetch,
    *,
    deleted: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """The `data` items for one notified entity with `notification.join`: inline, its shown
    Relationships carry the linked entities; flat, they follow it. Only the Relationships
    (and instances) the notification shows are followed."""
    if compiled.join is None:
        return [rendered]
    shown = {
        name: value if name in ENTITY_MEMBERS else compiled.instances(value)
        for name, value in entity.items()
        if name in ENTITY_MEMBERS or compiled.shows(name)
    }
    plan = ngsild_join.Plan(compiled.join, compiled.join_level)
    (joined,), appended = ngsild_join.render([shown], _renderer(compiled), plan, fetch)
    if compiled.join == "flat":
        return [rendered, *appended]
    gone = {compiled.shown_terms.compact(n) for n in deleted}
    for key, value in joined.items():
        if key not in rendered or key in gone or key in ("id", "type", "scope"):
            continue
        if compiled.format == "keyValues":
            rendered[key] = value  # the simplified form puts the entity in place of its id
        else:
            rendered[key] = _joined_instances(rendered[key], value)
    return [rendered]


# -- store ----------------------------------------------------------------------------------------


def status_of(row: Subscription, now: datetime | None = None) -> str:
    now = now or utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active" if row.is_active else "paused"


def get(session: Session, tenant: str, sub_id: str) -> Subscription | None:
    return session.scalars(
        select(Subscription).where(Subscription.tenant == tenant, Subscription.sub_id == sub_id)
    ).one_or_none()


def page(session: Session, tenant: str, limit: int, offset: int) -> tuple[list[Subscription], int]:
    rows = session.scalars(
        select(Subscription)
        .where(Subscription.tenant == tenant)
        .order_by(Subscription.pk)
        .limit(limit)
        .offset(offset)
    ).all()
    total = session.scalar(
        select(func.count()).select_from(Subscription).where(Subscription.tenant == tenant)
    )
    return list(rows), int(total or 0)


def _columns(
    body: dict[str, Any], compiled: dict[str, Any], ld_context: Any, now: datetime
) -> dict[str, Any]:
    expires = body.get("expiresAt")
    interval = compiled.get("timeInterval")
    return {
        "body": body,
        "compiled": compiled,
        "ld_context": ld_context,
        "is_active": bool(body.get("isActive", True)),
        "expires_at": _parse_time(expires) if expires else None,
        "throttling": compiled.get("throttling"),
        "time_interval": interval,
        "endpoint_uri": compiled["endpoint"]["uri"],
        "next_periodic_at": now if interval else None,
        "modified_at": now,
    }


def create(
    session: Session,
    tenant: str,
    body: dict[str, Any],
    compiled: dict[str, Any],
    ld_context: Any,
    actor: str,
) -> Subscription:
    now = utcnow()
    row = Subscription(
        tenant=tenant,
        sub_id=body["id"],
        created_by=actor,
        created_at=now,
        times_sent=0,
        times_failed=0,
        **_columns(body, compiled, ld_context, now),
    )
    session.add(row)
    session.flush()
    return row


def replace(
    session: Session,
    row: Subscription,
    body: dict[str, Any],
    compiled: dict[str, Any],
    ld_context: Any,
) -> None:
    now = utcnow()
    columns = _columns(body, compiled, ld_context, now)
    if columns["time_interval"] == row.time_interval and row.next_periodic_at is not None:
        columns["next_periodic_at"] = row.next_periodic_at
    for name, value in columns.items():
        setattr(row, name, value)
    session.flush()


def remove(session: Session, row: Subscription) -> None:
    session.execute(delete(NotificationOutbox).where(NotificationOutbox.subscription_pk == row.pk))
    session.delete(row)
    session.flush()


def pending_count(session: Session, sub_pk: int | None = None) -> int:
    query = select(func.count()).select_from(NotificationOutbox).where(~NotificationOutbox.dead)
    if sub_pk is not None:
        query = query.where(NotificationOutbox.subscription_pk == sub_pk)
    return int(session.scalar(query) or 0)


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- matcher --------------------------------------------------------------------------------------


class Matcher:
    """The bus handler: entity change -> outbox rows, in one short transaction."""

    def __init__(
        self,
        db: Database,
        wake: Callable[[], None] | None = None,
        processor: ContextProcessor | None = None,
        linked: LinkedFetch | None = None,
    ) -> None:
        self.db = db
        self.wake = wake or (lambda: None)
        self.processor = processor
        self.linked = linked
        self._compiled: dict[tuple[int, datetime], Compiled] = {}
        self._lock = threading.Lock()
        self._active_cache: tuple[tuple[str, str], list[Any]] | None = None
        self.matched = 0

    def compiled(self, row: Any) -> Compiled | None:
        key = (row.pk, row.modified_at)
        with self._lock:
            found = self._compiled.get(key)
        if found is not None:
            return found
        try:
            found = Compiled.build(row, self.processor)
        except Exception:
            log.exception("subscription %s cannot be compiled; it is skipped", row.sub_id)
            return None
        with self._lock:
            if len(self._compiled) > 10_000:
                self._compiled.clear()
            self._compiled[key] = found
        return found

    def on_entity_changed(self, _topic: str, event: dict[str, Any]) -> None:
        tenant = event.get("tenant") or ""
        entity, previous = event.get("entity"), event.get("previous")
        subject = entity if entity is not None else previous
        if not subject or "id" not in subject:
            return
        now = utcnow()
        at = str(event.get("at") or iso(now))
        rows = self._active(tenant, at, now)
        if not rows:
            return  # no subscription can fire: the change needs no more looking at
        changes = event_changes(event)
        if not changes:
            return
        fired: list[tuple[Any, Compiled, str]] = []
        for row in rows:
            compiled = self.compiled(row)
            if compiled is None or not compiled.selects(subject):
                continue
            trigger = compiled.fired_by(changes, subject)
            if trigger is not None and compiled.filters_pass(subject):
                fired.append((row, compiled, trigger))
        if not fired:
            return
        queued = 0
        # A write session (throttles are claimed, rows queued) only for a change that fires.
        with self.db.write_session() as session:
            outbox: list[dict[str, Any]] = []
            for row, compiled, trigger in fired:
                if row.throttling and not self._take_throttle(session, row, now):
                    continue
                data = self._data(compiled, trigger, event, changes, at, tenant)
                outbox.append(
                    {
                        "tenant": tenant,
                        "subscription_pk": row.pk,
                        "endpoint_key": endpoint_key(row.endpoint_uri),
                        "trigger": trigger,
                        "data": orjson.dumps(data).decode(),
                        "attempts": 0,
                        "next_attempt_at": now,
                        "dead": False,
                        "created_at": now,
                    }
                )
            if outbox:
                session.execute(insert(NotificationOutbox), outbox)
                queued = len(outbox)
        if queued:
            self.matched += queued
            self.wake()

    def _active(self, tenant: str, at: str, now: datetime) -> list[Any]:
        """The tenant's active subscriptions, read once per commit: every change of one
        commit carries the same `at`, so a batch of 5,000 updates reads them once, not 5,000
        times. (Throttling is claimed in the database, so reused rows cannot over-fire.)"""
        key = (tenant, at)
        cached = self._active_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        with self.db.session() as session:
            rows = session.execute(
                select(
                    Subscription.pk,
                    Subscription.sub_id,
                    Subscription.tenant,
                    Subscription.compiled,
                    Subscription.ld_context,
                    Subscription.modified_at,
                    Subscription.throttling,
                    Subscription.last_fired_at,
                    Subscription.endpoint_uri,
                ).where(
                    Subscription.tenant == tenant,
                    Subscription.is_active,
                    Subscription.time_interval.is_(None),
                    or_(Subscription.expires_at.is_(None), Subscription.expires_at > now),
                )
            ).all()
        self._active_cache = (key, list(rows))
        return list(rows)

    def _take_throttle(self, session: Session, row: Any, now: datetime) -> bool:
        """Claim the subscription's throttling window atomically; False while it is closed."""
        threshold = now - timedelta(seconds=float(row.throttling))
        result = session.execute(
            update(Subscription)
            .where(
                Subscription.pk == row.pk,
                or_(Subscription.last_fired_at.is_(None), Subscription.last_fired_at <= threshold),
            )
            .values(last_fired_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    def _data(
        self,
        compiled: Compiled,
        trigger: str,
        event: dict[str, Any],
        changes: dict[str, set[str]],
        at: str,
        tenant: str = "",
    ) -> list[dict[str, Any]]:
        """The notification's `data`: the entity (a deleted one is not joined), and with
        notification.join its linked entities."""
        entity, previous = event.get("entity"), event.get("previous")
        if entity is None:  # the entity was deleted
            before = previous or {"id": event.get("id"), "type": event.get("type") or []}
            if trigger == "entityDeleted":
                return [render_deleted_entity(before, compiled, at)]
            # attributeDeleted: the deleted attributes that fired it (the watched ones).
            gone = changes.get("attributeDeleted", set())
            if compiled.watched is not None:
                gone = gone & compiled.watched
            return [render_deleted_entity(before, compiled, at, gone)]
        deleted = changes.get("attributeDeleted", set()) if trigger != "entityCreated" else set()
        rendered = render_entity(entity, compiled, previous=previous, deleted=deleted, at=at)
        if compiled.join is None or self.linked is None:
            return [rendered]
        return join_linked(entity, rendered, compiled, self.linked(tenant), deleted=deleted)


# -- notifications: payload and headers -----------------------------------------------------------


def notification_body(sub_id: str, data: list[Any], accept: str, ld_context: Any) -> dict[str, Any]:
    """The Notification (clause 5.2.15). With endpoint accept application/ld+json it is JSON-LD:
    the notification and each entity of `data` carry `@context` (`ld_context`: the
    subscription's `jsonldContext`, else the @context it was written with, one URL as a plain
    string), so that an entity taken out of the notification can still be expanded."""
    body: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
        "type": "Notification",
        "subscriptionId": sub_id,
        "notifiedAt": iso(utcnow()),
        "data": data,
    }
    if accept == "application/ld+json":
        context = _plain_context(ld_context)
        body["data"] = [
            {**item, "@context": context} if isinstance(item, dict) else item for item in data
        ]
        body["@context"] = context
    return body


def _plain_context(ld_context: Any) -> Any:
    """The @context to send: the core URL when none was given, one URL (beside the core one,
    which every @context ends with anyway) as a string, anything else as written."""
    if not ld_context:
        return CORE_CONTEXT_URL
    if isinstance(ld_context, list) and all(isinstance(c, str) for c in ld_context):
        urls = [c for c in ld_context if c != CORE_CONTEXT_URL]
        if len(urls) <= 1:
            return urls[0] if urls else CORE_CONTEXT_URL
    return ld_context


def context_link(compiled: dict[str, Any], ld_context: Any) -> str:
    """The @context URL a JSON notification's Link header names."""
    if compiled.get("jsonldContext"):
        return str(compiled["jsonldContext"])
    if isinstance(ld_context, str):
        return ld_context
    if isinstance(ld_context, list):
        urls = [c for c in ld_context if isinstance(c, str) and c != CORE_CONTEXT_URL]
        if len(urls) == 1 and len(ld_context) <= 2:
            return urls[0]
    return CORE_CONTEXT_URL


def notification_headers(compiled: dict[str, Any], ld_context: Any, tenant: str) -> dict[str, str]:
    endpoint = compiled["endpoint"]
    accept = endpoint.get("accept") or "application/json"
    headers: dict[str, str] = {"Content-Type": accept}
    if accept == "application/json":
        headers["Link"] = (
            f'<{context_link(compiled, ld_context)}>; rel="{JSONLD_CONTEXT_REL}"; '
            'type="application/ld+json"'
        )
    if tenant:
        headers["NGSILD-Tenant"] = tenant
    for key, value in (endpoint.get("receiverInfo") or {}).items():
        headers[key] = value
    return headers


def build_outgoing(
    sub_id: str, compiled: dict[str, Any], ld_context: Any, tenant: str, data: list[Any]
) -> Outgoing:
    endpoint = compiled["endpoint"]
    accept = endpoint.get("accept") or "application/json"
    return Outgoing(
        uri=endpoint["uri"],
        body=notification_body(sub_id, data, accept, compiled.get("jsonldContext") or ld_context),
        headers=notification_headers(compiled, ld_context, tenant),
        notifier_info=dict(endpoint.get("notifierInfo") or {}),
    )


# -- dispatcher -----------------------------------------------------------------------------------


@dataclass
class DeliveryConfig:
    """How the delivery worker behaves. `max_attempts` counts sends of one notification."""

    max_attempts: int = 8
    backoff_base: float = 1.0  # seconds before the first retry; doubles every attempt
    backoff_max: float = 300.0
    timeout: float = 10.0  # per send (HTTP request, MQTT connect/acknowledgement)
    poll_interval: float = 1.0  # how often to look for due rows without being woken
    claim_batch: int = 500  # rows claimed per look
    max_per_notification: int = 100  # outbox rows merged into one notification's data
    per_endpoint_concurrency: int = 4  # subscriptions sent at once to one endpoint
    lease_seconds: float = 120.0  # a claimed row returns to the pool after this
    jitter: float = 0.2  # backoff is multiplied by a random factor in [1 - jitter, 1]

    @classmethod
    def from_settings(cls, settings: Any) -> DeliveryConfig:
        """The operator's choices (`context_notify_*` settings); the rest as defaulted here."""
        return cls(
            max_attempts=settings.context_notify_max_attempts,
            backoff_base=settings.context_notify_backoff_base,
            backoff_max=settings.context_notify_backoff_max,
            timeout=settings.context_notify_timeout,
            per_endpoint_concurrency=settings.context_notify_per_endpoint,
        )


EntitySource = Callable[[Session, str, dict[str, Any]], list[dict[str, Any]]]


@dataclass
class _Circuit:
    failures: int = 0
    open_until: float = 0.0


@dataclass
class _Claimed:
    rows: list[Any]
    subs: dict[int, Any]


@dataclass
class DeliveryStats:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    rows_delivered: int = 0
    deferred: int = 0


class Dispatcher:
    """Delivers outbox rows off the request path, in a thread of its own with an asyncio loop."""

    def __init__(
        self,
        db: Database,
        config: DeliveryConfig | None = None,
        *,
        entity_source: EntitySource | None = None,
        processor: ContextProcessor | None = None,
        linked: LinkedFetch | None = None,
    ) -> None:
        self.db = db
        self.processor = processor
        self.linked = linked
        self.config = config or DeliveryConfig()
        self.entity_source = entity_source
        self.stats = DeliveryStats()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._busy: set[str] = set()
        self._held: set[int] = set()
        self._circuits: dict[str, _Circuit] = defaultdict(_Circuit)
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = threading.Event()
        self._senders: Senders | None = None

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> Dispatcher:
        if self._thread is not None:
            return self
        self._stopping = False
        self._started.clear()
        self._thread = threading.Thread(target=self._run, name="pujiang-notify", daemon=True)
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self.wake()
        thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        loop, event = self._loop, self._wake
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:  # pragma: no cover - the loop logs its own failures
            log.exception("the notification worker stopped on an error")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._senders = Senders(self.config.timeout)
        self._started.set()
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    await self._tick()
                except Exception:
                    log.exception("notification worker tick failed; retrying")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._sleep_for())
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.config.timeout + 1)
        for task in list(self._tasks):
            task.cancel()
        held = list(self._held)
        if held:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._release, held, None)
        if self._senders is not None:
            await self._senders.aclose()
        self._loop = None
        self._wake = None

    def _sleep_for(self) -> float:
        now = _monotonic()
        waits = [c.open_until - now for c in self._circuits.values() if c.open_until > now]
        return max(0.01, min([self.config.poll_interval, *waits]))

    # one look at the outbox -----------------------------------------------------------------

    async def _tick(self) -> None:
        now = _monotonic()
        open_keys = {k for k, c in self._circuits.items() if c.open_until > now}
        claimed = await asyncio.to_thread(self._claim, self._busy | open_keys)
        groups: dict[str, dict[int, list[Any]]] = defaultdict(lambda: defaultdict(list))
        for row in claimed.rows:
            groups[row.endpoint_key][row.subscription_pk].append(row)
        for key, per_sub in groups.items():
            self._busy.add(key)
            task = asyncio.create_task(self._deliver_endpoint(key, per_sub, claimed.subs))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self.entity_source is not None:
            await asyncio.to_thread(self._periodic)

    def _claim(self, excluded: set[str]) -> _Claimed:
        now = utcnow()
        lease = now + timedelta(seconds=self.config.lease_seconds)
        outbox = NotificationOutbox
        free = or_(outbox.claimed_until.is_(None), outbox.claimed_until < now)
        due = and_(~outbox.dead, outbox.next_attempt_at <= now, free)
        if excluded:
            due = and_(due, outbox.endpoint_key.not_in(sorted(excluded)))
        candidates = (
            select(outbox.id)
            .where(due)
            .order_by(outbox.id)
            .limit(self.config.claim_batch)
            .with_for_update(skip_locked=True)
        )
        # A read first: on SQLite an UPDATE takes the one write lock even when it matches
        # nothing, and an idle outbox is polled every second beside busy ingest.
        with self.db.session() as session:
            if session.execute(select(outbox.id).where(due).limit(1)).first() is None:
                return _Claimed(rows=[], subs={})
        with self.db.write_session() as session:
            rows = session.execute(
                update(outbox)
                .where(outbox.id.in_(candidates.scalar_subquery()), free)
                .values(claimed_until=lease)
                .returning(
                    outbox.id,
                    outbox.tenant,
                    outbox.subscription_pk,
                    outbox.endpoint_key,
                    outbox.data,
                    outbox.attempts,
                )
                .execution_options(synchronize_session=False)
            ).all()
            rows = sorted(rows, key=lambda r: r.id)
            pks = {r.subscription_pk for r in rows}
            subs = {}
            if pks:
                subs = {
                    s.pk: s
                    for s in session.execute(
                        select(
                            Subscription.pk,
                            Subscription.sub_id,
                            Subscription.tenant,
                            Subscription.compiled,
                            Subscription.ld_context,
                            Subscription.is_active,
                            Subscription.expires_at,
                        ).where(Subscription.pk.in_(pks))
                    ).all()
                }
        self._held.update(r.id for r in rows)
        return _Claimed(rows=list(rows), subs=subs)

    # one endpoint's lane --------------------------------------------------------------------

    async def _deliver_endpoint(
        self, key: str, per_sub: dict[int, list[Any]], subs: dict[int, Any]
    ) -> None:
        limit = asyncio.Semaphore(self.config.per_endpoint_concurrency)

        async def one_subscription(pk: int, rows: list[Any]) -> None:
            async with limit:
                size = self.config.max_per_notification
                for start in range(0, len(rows), size):
                    await self._deliver_batch(key, subs.get(pk), rows[start : start + size])

        try:
            await asyncio.gather(*(one_subscription(pk, rows) for pk, rows in per_sub.items()))
        except Exception:
            log.exception("delivery to %s failed unexpectedly", key)
        finally:
            self._busy.discard(key)
            self.wake()

    async def _deliver_batch(self, key: str, sub: Any, rows: list[Any]) -> None:
        ids = [r.id for r in rows]
        if sub is None or not sub.is_active or (sub.expires_at and sub.expires_at <= utcnow()):
            # Paused, expired or deleted since the change: the notification is not due any more.
            await asyncio.to_thread(self._drop, ids)
            return
        circuit = self._circuits[key]
        if circuit.open_until > _monotonic():
            await asyncio.to_thread(self._defer, ids, circuit.open_until - _monotonic())
            return
        data: list[Any] = []
        for row in rows:
            data.extend(orjson.loads(row.data))
        message = build_outgoing(sub.sub_id, sub.compiled, sub.ld_context, sub.tenant, data)
        if self._senders is None:  # pragma: no cover - only while shutting down
            return
        try:
            await self._senders.send(message)
        except SendError as exc:
            await self._failed(key, sub.pk, rows, str(exc))
        except Exception as exc:  # a sender bug must not kill the lane
            log.exception("sending to %s raised", key)
            await self._failed(key, sub.pk, rows, f"{type(exc).__name__}: {exc}")
        else:
            circuit.failures = 0
            circuit.open_until = 0.0
            await asyncio.to_thread(self._succeeded, sub.pk, ids)

    def backoff(self, attempts: int) -> float:
        base = self.config.backoff_base * (2 ** max(0, attempts - 1))
        delay = float(min(self.config.backoff_max, base))
        return delay * (1 - random.random() * self.config.jitter)  # noqa: S311 - not crypto

    async def _failed(self, key: str, sub_pk: int, rows: list[Any], error: str) -> None:
        circuit = self._circuits[key]
        circuit.failures += 1
        circuit.open_until = _monotonic() + self.backoff(circuit.failures)
        log.info("notification to %s failed (%s); endpoint set aside", key, error)
        await asyncio.to_thread(self._record_failure, sub_pk, rows, error[:500])

    # database steps (run in worker threads) -------------------------------------------------

    def _succeeded(self, sub_pk: int, ids: list[int]) -> None:
        now = utcnow()
        with self.db.session() as session:
            session.execute(delete(NotificationOutbox).where(NotificationOutbox.id.in_(ids)))
            session.execute(
                update(Subscription)
                .where(Subscription.pk == sub_pk)
                .values(
                    times_sent=Subscription.times_sent + 1,
                    last_notification=now,
                    last_success=now,
                )
            )
        self._held.difference_update(ids)
        self.stats.sent += 1
        self.stats.rows_delivered += len(ids)

    def _record_failure(self, sub_pk: int, rows: list[Any], error: str) -> None:
        now = utcnow()
        dead_ids, retry = [], []
        for row in rows:
            attempts = row.attempts + 1
            if attempts >= self.config.max_attempts:
                dead_ids.append(row.id)
            else:
                retry.append((row.id, attempts))
        with self.db.session() as session:
            if dead_ids:
                session.execute(
                    update(NotificationOutbox)
                    .where(NotificationOutbox.id.in_(dead_ids))
                    .values(
                        dead=True,
                        attempts=NotificationOutbox.attempts + 1,
                        claimed_until=None,
                        last_error=error,
                    )
                )
            for row_id, attempts in retry:
                session.execute(
                    update(NotificationOutbox)
                    .where(NotificationOutbox.id == row_id)
                    .values(
                        attempts=attempts,
                        next_attempt_at=now + timedelta(seconds=self.backoff(attempts)),
                        claimed_until=None,
                        last_error=error,
                    )
                )
            session.execute(
                update(Subscription)
                .where(Subscription.pk == sub_pk)
                .values(
                    times_sent=Subscription.times_sent + 1,
                    times_failed=Subscription.times_failed + 1,
                    last_notification=now,
                    last_failure=now,
                )
            )
        self._held.difference_update(r.id for r in rows)
        self.stats.failed += 1
        self.stats.dead += len(dead_ids)

    def _defer(self, ids: list[int], seconds: float) -> None:
        self._release(ids, utcnow() + timedelta(seconds=max(0.0, seconds)))
        self.stats.deferred += len(ids)

    def _release(self, ids: list[int], next_attempt_at: datetime | None) -> None:
        values: dict[str, Any] = {"claimed_until": None}
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        with self.db.session() as session:
            session.execute(
                update(NotificationOutbox).where(NotificationOutbox.id.in_(ids)).values(**values)
            )
        self._held.difference_update(ids)

    def _drop(self, ids: list[int]) -> None:
        with self.db.session() as session:
            session.execute(delete(NotificationOutbox).where(NotificationOutbox.id.in_(ids)))
        self._held.difference_update(ids)

    # periodic notifications (timeInterval) --------------------------------------------------

    def _periodic(self) -> None:
        if self.entity_source is None:
            return
        now = utcnow()
        with self.db.session() as session:
            due = session.scalars(
                select(Subscription).where(
                    Subscription.time_interval.is_not(None),
                    Subscription.is_active,
                    Subscription.next_periodic_at <= now,
                    or_(Subscription.expires_at.is_(None), Subscription.expires_at > now),
                )
            ).all()
            woke = False
            for sub in due:
                interval = timedelta(seconds=float(sub.time_interval or 0))
                taken = session.execute(
                    update(Subscription)
                    .where(
                        Subscription.pk == sub.pk,
                        Subscription.next_periodic_at == sub.next_periodic_at,
                    )
                    .values(next_periodic_at=now + interval)
                    .execution_options(synchronize_session=False)
                )
                if not getattr(taken, "rowcount", 0):
                    continue
                compiled = Compiled.build(sub, self.processor)
                entities = [
                    e
                    for e in self.entity_source(session, sub.tenant, sub.compiled)
                    if compiled.selects(e) and compiled.filters_pass(e)
                ]
                if not entities:
                    continue
                data = [render_entity(e, compiled) for e in entities]
                if compiled.join is not None and self.linked is not None:
                    fetch = self.linked(sub.tenant)
                    data = [
                        item
                        for e, shown in zip(entities, data, strict=True)
                        for item in join_linked(e, shown, compiled, fetch)
                    ]
                session.add(
                    NotificationOutbox(
                        tenant=sub.tenant,
                        subscription_pk=sub.pk,
                        endpoint_key=endpoint_key(sub.endpoint_uri),
                        trigger="timeInterval",
                        data=orjson.dumps(data).decode(),
                        attempts=0,
                        next_attempt_at=now,
                        dead=False,
                        created_at=now,
                    )
                )
                woke = True
        if woke:
            self.wake()


def _monotonic() -> float:
    loop = asyncio.get_running_loop()
    return loop.time()


# -- wiring into the app --------------------------------------------------------------------------

_EXTRA = "context.subscriptions"


@dataclass
class Runtime:
    """What `install` puts into `AppContext.extras["context.subscriptions"]`."""

    matcher: Matcher
    dispatcher: Dispatcher
    handlers: list[Any] = field(default_factory=list)


def install(
    context: Any,
    config: DeliveryConfig | None = None,
    *,
    entity_source: EntitySource | None = None,
) -> Runtime:
    """Register the matcher on `context.entity.changed` (once per AppContext); returns the runtime.

    Does not start delivery: call `start_delivery(context)` (the app lifespan does).
    """
    runtime: Runtime | None = context.extras.get(_EXTRA)
    if runtime is not None:
        return runtime
    from pujiang.context.ngsild import processor_of  # the app's processor (stored contexts)

    processor = processor_of(context)
    linked = broker_linked(context)
    if config is None and getattr(context, "settings", None) is not None:
        config = DeliveryConfig.from_settings(context.settings)
    dispatcher = Dispatcher(
        context.db,
        config,
        entity_source=entity_source or broker_entity_source(context),
        processor=processor,
        linked=linked,
    )
    matcher = Matcher(context.db, dispatcher.wake, processor, linked)
    context.bus.subscribe(CHANGED_TOPIC, matcher.on_entity_changed)
    runtime = Runtime(matcher=matcher, dispatcher=dispatcher)
    context.extras[_EXTRA] = runtime
    return runtime


def start_delivery(context: Any, config: DeliveryConfig | None = None) -> Dispatcher:
    """Install if needed and start the delivery worker; idempotent."""
    return install(context, config).dispatcher.start()


def stop_delivery(context: Any) -> None:
    runtime: Runtime | None = context.extras.get(_EXTRA)
    if runtime is not None:
        runtime.dispatcher.stop()


@contextlib.contextmanager
def delivery(context: Any, config: DeliveryConfig | None = None) -> Iterator[Dispatcher]:
    """`with delivery(context):` runs the worker for the block (app lifespan, tests)."""
    dispatcher = start_delivery(context, config)
    try:
        yield dispatcher
    finally:
        dispatcher.stop()


def broker_linked(context: Any) -> LinkedFetch:
    """notification.join reads linked entities through the broker's query by ids."""
    from pujiang.context.ngsild import broker_of

    broker = broker_of(context)
    return lambda tenant: ngsild_join.broker_fetch(broker, tenant)


def broker_entity_source(context: Any) -> EntitySource:
    """Periodic notifications read the current entities through the broker core's query."""
    from pujiang.context.ngsild import broker_of
    from pujiang.context.queries import MAX_LIMIT, Query

    broker = broker_of(context)

    def source(_session: Session, tenant: str, compiled: dict[str, Any]) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for selector in compiled.get("entities") or [None]:
            types = [frozenset(g) for g in selector["types"]] if selector else None
            ids = [selector["id"]] if selector and selector.get("id") else None
            offset = 0
            while True:
                try:
                    page, _total = broker.query(
                        tenant, Query(types=types, ids=ids, limit=MAX_LIMIT, offset=offset)
                    )
                except Exception:  # an unknown tenant has no entities yet
                    log.debug("periodic query failed for tenant %r", tenant, exc_info=True)
                    break
                for item in page:
                    found[str(item["id"])] = item
                if len(page) < MAX_LIMIT:
                    break
                offset += MAX_LIMIT
        return list(found.values())

    return source
