"""JSON-LD for the broker: the core @context, user contexts, term expansion and compaction.

This is the part of JSON-LD NGSI-LD needs, not a general processor: a context (URL, object or
list of both) becomes an `ActiveContext` mapping short names to IRIs and back. The core @context
(v1.8, shipped in `data/`) is always in force and its terms cannot be redefined; a user context
may set `@vocab`, otherwise unknown names fall into the default vocabulary
`https://uri.etsi.org/ngsi-ld/default-context/`.

Remote contexts are never fetched: a URL resolves to the shipped core (only the core URLs ETSI
publishes, `is_core_url`), to a context stored through `/jsonldContexts` (hosted or cached), or
not at all (`ContextNotAvailable`, 504 LdContextNotAvailable). An @context value is checked for
JSON-LD syntax (`check_context`) before any of its URLs is looked up.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import orjson

NGSI_LD = "https://uri.etsi.org/ngsi-ld/"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
CORE_FILE = "ngsi-ld-core-context-v1.8.jsonld"
MAX_DEPTH = 8  # nested context references followed before giving up (cycles, abuse)
CACHE_SIZE = 256
STAMP_SECONDS = 2.0  # how stale another process's change of the @context store may be

_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
# The core @context URLs ETSI publishes: the unversioned one and those of v1.3 to v1.9. Each
# names the shipped v1.8 core; any other URL (`...core-context-non-existing.jsonld`) is an
# ordinary remote context, resolved like every other.
_CORE_URL = re.compile(
    r"^https?://uri\.etsi\.org/ngsi-ld/v1/ngsi-ld-core-context(?:-v1\.[3-9])?\.jsonld$"
)

# A resolver maps a context URL to the value of its document's "@context" (None: unknown).
Resolver = Callable[[str], Any]
# Receives the uses of stored contexts counted since the last call: {url: (uses, last use)}.
UsesSink = Callable[[dict[str, tuple[int, datetime]]], None]
_log = logging.getLogger(__name__)
FLUSH_USES = 1000  # uses held in memory before they are handed to the sink ...
FLUSH_SECONDS = 30.0  # ... or seconds since the last hand-over, whichever comes first


class ContextNotAvailable(Exception):
    """A referenced @context URL cannot be resolved: not stored, and not fetched (`reason`
    says why when a download was refused or failed)."""

    def __init__(self, url: str, reason: str | None = None) -> None:
        super().__init__(url)
        self.url = url
        self.reason = reason


class InvalidContext(ValueError):
    """An @context that is not a URL, an object or a list of those, or one that is malformed."""


def is_absolute_iri(text: str) -> bool:
    return bool(_ABSOLUTE.match(text))


def is_context_reference(text: str) -> bool:
    """An absolute URL, or an absolute-path reference (`/ngsi-ld/v1/jsonldContexts/{id}`, as
    `Location` gives a hosted @context), which JSON-LD resolves against the request's own URL:
    the resolver then finds it only among the contexts this broker hosts."""
    return is_absolute_iri(text) or (text.startswith("/") and not text.startswith("//"))


def is_core_url(url: str) -> bool:
    return bool(_CORE_URL.match(url))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


# Keywords a context object may hold (JSON-LD 1.1 context processing) and the JSON types each
# takes; `@version` must moreover be 1.1. Other `@`-names are ignored, as JSON-LD does.
_CONTEXT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "@base": ("string", "null"),
    "@vocab": ("string", "null"),
    "@language": ("string", "null"),
    "@direction": ("string", "null"),
    "@import": ("string",),
    "@propagate": ("boolean",),
    "@protected": ("boolean",),
    "@version": ("number",),
    "@type": ("object",),
}
# Members of an expanded term definition and the JSON types each takes.
_TERM_MEMBERS: dict[str, tuple[str, ...]] = {
    "@id": ("string", "null"),
    "@reverse": ("string",),
    "@type": ("string",),
    "@language": ("string", "null"),
    "@direction": ("string", "null"),
    "@container": ("string", "array", "null"),
    "@index": ("string",),
    "@nest": ("string",),
    "@prefix": ("boolean",),
    "@protected": ("boolean",),
}


def check_context(value: Any, _depth: int = 0) -> None:
    """Raise `InvalidContext` unless `value` is a syntactically valid @context: null, an absolute
    URL, a context object, or an array of those (JSON-LD 1.1 "invalid local context", "invalid
    term definition", ...). Referenced URLs are not looked up here."""
    if _depth > MAX_DEPTH:
        raise InvalidContext("@context 嵌套过深 / @context nests too deeply (more than 8 levels)")
    if isinstance(value, list):
        for position, item in enumerate(value):
            if isinstance(item, list):
                raise InvalidContext(
                    f"@context 第 {position + 1} 项是数组，数组不能嵌套 / item {position + 1} of "
                    "the @context array is itself an array"
                )
            _check_local_context(item, f"@context[{position}]", _depth)
        return
    _check_local_context(value, "@context", _depth)


def _check_local_context(value: Any, where: str, depth: int) -> None:
    if value is None:
        return
    if isinstance(value, str):
        if not is_context_reference(value):
            raise InvalidContext(
                f"{where} 的 {value!r} 不是绝对 URL / {where}: {value!r} is not an absolute URL"
            )
        return
    if not isinstance(value, dict):
        kind = _json_type(value)
        raise InvalidContext(
            f"{where} 必须是 URL、对象或 null，不能是 {kind} / {where} must be a URL, an object "
            f"or null, not a {kind}"
        )
    for term, definition in value.items():
        if term == "":
            raise InvalidContext(f"{where} 含空的术语名 / {where} defines an empty term")
        kind = _json_type(definition)
        if term.startswith("@"):
            allowed = _CONTEXT_KEYWORDS.get(term)
            if allowed is not None and (
                kind not in allowed or (term == "@version" and definition != 1.1)
            ):
                wanted = "1.1" if term == "@version" else " / ".join(allowed)
                raise InvalidContext(
                    f"{where} 中 {term} 的值无效（应为 {wanted}）/ {where}: invalid {term} value "
                    f"{definition!r} (expected {wanted})"
                )
            continue
        if kind in ("string", "null"):
            continue
        if kind != "object":
            raise InvalidContext(
                f"{where} 中术语 {term} 的定义必须是字符串、对象或 null，不能是 {kind} / {where}: "
                f"the definition of term {term!r} must be a string, an object or null, not a "
                f"{kind}"
            )
        for member, member_value in definition.items():
            if member == "@context":
                check_context(member_value, depth + 1)
                continue
            allowed = _TERM_MEMBERS.get(member)
            if allowed is not None and _json_type(member_value) not in allowed:
                raise InvalidContext(
                    f"{where} 中术语 {term} 的 {member} 无效 / {where}: invalid {member} in the "
                    f"definition of term {term!r}"
                )


@cache
def core_document() -> dict[str, Any]:
    """The shipped core @context document (`{"@context": {...}}`)."""
    raw = resources.files("pujiang.context").joinpath("data", CORE_FILE).read_bytes()
    document: dict[str, Any] = orjson.loads(raw)
    return document


@dataclass
class ActiveContext:
    """Short names <-> IRIs for one request. Build with `ContextProcessor.active(...)`."""

    terms: dict[str, str]
    vocab: str
    protected: frozenset[str]
    reverse: dict[str, str] = field(default_factory=dict)
    prefixes: list[tuple[str, str]] = field(default_factory=list)
    _expanded: dict[str, str] = field(default_factory=dict, repr=False)
    _compacted: dict[str, str] = field(default_factory=dict, repr=False)

    def expand(self, term: str) -> str:
        """A short name, compact IRI (`prefix:suffix`) or IRI as the full IRI."""
        hit = self._expanded.get(term)
        if hit is not None:
            return hit
        iri = self._expand(term)
        if len(self._expanded) < 4096:
            self._expanded[term] = iri
        return iri

    def _expand(self, term: str) -> str:
        mapped = self.terms.get(term)
        if mapped is not None:
            return mapped
        prefix, colon, suffix = term.partition(":")
        if colon:
            if not suffix.startswith("//") and prefix in self.terms:
                return self.terms[prefix] + suffix
            return term  # an absolute IRI (urn:, https:, ...)
        return self.vocab + term

    def compact(self, iri: str) -> str:
        """An IRI as the shortest name this context gives it (the IRI itself if none)."""
        hit = self._compacted.get(iri)
        if hit is not None:
            return hit
        name = self._compact(iri)
        if len(self._compacted) < 4096:
            self._compacted[iri] = name
        return name

    def _compact(self, iri: str) -> str:
        term = self.reverse.get(iri)
        if term is not None:
            return term
        if iri.startswith(self.vocab):
            rest = iri[len(self.vocab) :]
            if rest and ":" not in rest and rest not in self.terms:
                return rest
        for prefix, base in self.prefixes:
            if iri.startswith(base) and len(iri) > len(base):
                return f"{prefix}:{iri[len(base) :]}"
        return iri


class ContextProcessor:
    """Builds active contexts from @context values, caching them; thread-safe.

    `resolver` looks URLs up in stored contexts; the core URL never reaches it.

    Every use of a stored context counts (its `numberOfHits`), whether the active context was
    built (the resolver read the store) or served from the cache: each cache entry remembers the
    URLs its build resolved, and each `active()` call that returns it counts one use of each.
    Uses are held in memory and handed to `on_uses` (which writes them to the store in one
    transaction) every `FLUSH_USES` uses or `FLUSH_SECONDS` seconds, at the next use, and
    whenever `flush_uses()` is called (before the counts are read). A process that stops loses
    at most that many uses; a count never costs a database write per request.

    Another process's changes to the store (a context deleted, added or reloaded through
    another server worker) are noticed through `stamp`, read at most every `stamp_seconds`:
    when it differs from the last one read, the cache is emptied.
    """

    def __init__(
        self,
        resolver: Resolver | None = None,
        *,
        on_uses: UsesSink | None = None,
        flush_every: int = FLUSH_USES,
        flush_seconds: float = FLUSH_SECONDS,
        stamp: Callable[[], object] | None = None,
        stamp_seconds: float = STAMP_SECONDS,
    ) -> None:
        self.resolver = resolver
        self.stamp = stamp
        self.stamp_seconds = stamp_seconds
        self._stamp: object = None
        self._stamp_read_at = -float("inf")
        # key -> (active context, the stored-context URLs its build resolved)
        self._cache: OrderedDict[str, tuple[ActiveContext, tuple[str, ...]]] = OrderedDict()
        self._lock = threading.Lock()
        self._core = self._build_core()
        self.core_loaded_at = datetime.now(UTC)  # `createdAt` of the core's /jsonldContexts entry
        self.on_uses = on_uses
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self._uses: dict[str, tuple[int, datetime]] = {}
        self._pending = 0
        self._flushed_at = time.monotonic()

    @property
    def core(self) -> ActiveContext:
        return self._core

    def clear(self) -> None:
        """Forget cached contexts (a stored context changed)."""
        with self._lock:
            self._cache.clear()

    def reload_core(self) -> None:
        """Load the core @context again from the copy shipped with Pujiang (never from the
        network) and forget every cached active context."""
        core_document.cache_clear()
        _core_definitions.cache_clear()
        core = self._build_core()
        with self._lock:
            self._core = core
            self._cache.clear()
            self.core_loaded_at = datetime.now(UTC)

    def active(self, value: Any) -> ActiveContext:
        """The active context for an @context value (None: the core context alone)."""
        if isinstance(value, list) and all(isinstance(v, str) and is_core_url(v) for v in value):
            return self._core
        if value is None or (isinstance(value, str) and is_core_url(value)):
            return self._core
        try:
            key = orjson.dumps(value).decode()
        except TypeError as exc:
            raise InvalidContext(str(exc)) from exc
        self._check_stamp()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if hit is not None:
            self._count(hit[1])
            return hit[0]
        check_context(value)  # syntax first: a bad item is 400 even beside an unknown URL
        # Before a build, whatever the time: the cache is then checked against a stamp at
        # least as old as what it holds (a context added and deleted again between two timed
        # looks leaves the stamp as it was).
        self._check_stamp(force=True)
        used: list[str] = []
        built = self._build(value, used)
        with self._lock:
            self._cache[key] = (built, tuple(used))
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        self._count(used)
        return built

    def _check_stamp(self, force: bool = False) -> None:
        if self.stamp is None:
            return
        if not force and time.monotonic() - self._stamp_read_at < self.stamp_seconds:
            return
        self._stamp_read_at = time.monotonic()
        current = self.stamp()
        with self._lock:
            if current != self._stamp:
                self._stamp = current
                self._cache.clear()

    # -- counting uses of stored contexts ----------------------------------------------------

    def _count(self, urls: tuple[str, ...] | list[str]) -> None:
        if not urls:
            return
        now = datetime.now(UTC)
        with self._lock:
            for url in urls:
                uses, _ = self._uses.get(url, (0, now))
                self._uses[url] = (uses + 1, now)
            self._pending += len(urls)
            due = (
                self._pending >= self.flush_every
                or time.monotonic() - self._flushed_at >= self.flush_seconds
            )
        if due:
            self.flush_uses()

    def take_uses(self) -> dict[str, tuple[int, datetime]]:
        """The uses counted since the last call, {url: (uses, last use)}; forgets them."""
        with self._lock:
            taken, self._uses, self._pending = self._uses, {}, 0
            self._flushed_at = time.monotonic()
        return taken

    def flush_uses(self) -> None:
        """Hand the counted uses to `on_uses`. If it fails (a busy database, say) they are
        kept for the next try and the request that triggered it goes on: a count is never worth
        a failed request."""
        if self.on_uses is None:
            return
        taken = self.take_uses()
        if not taken:
            return
        try:
            self.on_uses(taken)
        except Exception:
            _log.warning("could not record @context uses; kept for the next flush", exc_info=True)
            with self._lock:  # kept, but not toward the next threshold: no retry per request
                for url, (uses, last) in taken.items():
                    held, held_last = self._uses.get(url, (0, last))
                    self._uses[url] = (held + uses, max(last, held_last))

    # -- building --------------------------------------------------------------------------

    def _build_core(self) -> ActiveContext:
        definitions: dict[str, Any] = {}
        vocab = [DEFAULT_VOCAB]
        self._collect(core_document()["@context"], definitions, vocab, 0)
        terms = _resolve_terms(definitions, vocab[0])
        context = ActiveContext(terms=terms, vocab=vocab[0], protected=frozenset(terms))
        _index(context, terms, {})
        return context

    def _build(self, value: Any, used: list[str] | None = None) -> ActiveContext:
        definitions: dict[str, Any] = {}
        vocab = [DEFAULT_VOCAB]
        self._collect(value, definitions, vocab, 0, used)
        core = self._core
        # Core terms are protected: a user context cannot redefine them.
        user = {k: v for k, v in definitions.items() if k not in core.protected}
        merged_defs = {**dict(_core_definitions().items()), **user}
        terms = _resolve_terms(merged_defs, vocab[0])
        context = ActiveContext(terms=terms, vocab=vocab[0], protected=core.protected)
        user_terms = {k: terms[k] for k in user if k in terms}
        _index(context, {k: v for k, v in terms.items() if k not in user_terms}, user_terms)
        return context

    def _collect(
        self,
        value: Any,
        out: dict[str, Any],
        vocab: list[str],
        depth: int,
        used: list[str] | None = None,
    ) -> None:
        """Gather term definitions; `used` collects the URLs the resolver found."""
        if depth > MAX_DEPTH:
            raise InvalidContext("@context nests too deeply (more than 8 levels)")
        if value is None:
            return
        if isinstance(value, list):
            for item in value:
                self._collect(item, out, vocab, depth + 1, used)
            return
        if isinstance(value, str):
            if is_core_url(value):
                return  # always in force
            if not is_context_reference(value):
                raise InvalidContext(f"@context reference {value!r} is not an absolute URL")
            resolved = self.resolver(value) if self.resolver is not None else None
            if resolved is None:
                raise ContextNotAvailable(value)
            if used is not None:
                used.append(value)
            self._collect(resolved, out, vocab, depth + 1, used)
            return
        if not isinstance(value, dict):
            raise InvalidContext("@context must be a URL, an object or a list of them")
        for key, definition in value.items():
            if key == "@vocab":
                if isinstance(definition, str) and definition:
                    vocab[0] = definition
                continue
            if key == "@import" and isinstance(definition, str):
                self._collect(definition, out, vocab, depth + 1, used)
                continue
            if key.startswith("@"):
                continue  # @version, @protected, @base, @language ...
            out[key] = definition


@cache
def _core_definitions() -> dict[str, Any]:
    definitions: dict[str, Any] = {}
    for key, value in core_document()["@context"].items():
        if not key.startswith("@"):
            definitions[key] = value
    return definitions


def _resolve_terms(definitions: dict[str, Any], vocab: str) -> dict[str, str]:
    """Every term's full IRI; compact IRIs use prefixes defined anywhere in the context."""
    raw: dict[str, str] = {}
    for term, definition in definitions.items():
        target = definition.get("@id") if isinstance(definition, dict) else definition
        if target is None and isinstance(definition, dict) and "@reverse" not in definition:
            target = term  # {"@type": ...} alone: the term keeps its own name
        if isinstance(target, str):
            raw[term] = target
    resolved: dict[str, str] = {}

    def resolve(term: str, seen: frozenset[str]) -> str:
        if term in resolved:
            return resolved[term]
        target = raw[term]
        if target.startswith("@"):
            iri = target  # keyword alias (id -> @id)
        else:
            prefix, colon, suffix = target.partition(":")
            if colon and not suffix.startswith("//") and prefix in raw and prefix not in seen:
                iri = resolve(prefix, seen | {prefix}) + suffix
            elif colon:
                iri = target
            elif target in raw and target != term and target not in seen:
                iri = resolve(target, seen | {target})
            else:
                iri = vocab + target
        resolved[term] = iri
        return iri

    for term in raw:
        resolve(term, frozenset({term}))
    return resolved


def _index(context: ActiveContext, core_terms: dict[str, str], user_terms: dict[str, str]) -> None:
    """Fill the IRI -> term map (user terms win) and the prefix list used by `compact`."""
    reverse: dict[str, str] = {}
    for terms in (core_terms, user_terms):
        for term, iri in terms.items():
            if iri.startswith("@"):
                continue
            current = reverse.get(iri)
            if terms is user_terms or current is None or len(term) < len(current):
                reverse[iri] = term
    context.reverse = reverse
    prefixes = [
        (term, iri)
        for term, iri in {**core_terms, **user_terms}.items()
        if iri.endswith(("/", "#", ":")) and not iri.startswith("@")
    ]
    # Longest base first, so the most specific prefix compacts an IRI.
    context.prefixes = sorted(prefixes, key=lambda p: -len(p[1]))


# -- NGSI-LD documents: expansion to the internal form, compaction to the three formats ----------

GEOJSON_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
)
ATTRIBUTE_KINDS = frozenset(
    {
        "Property",
        "Relationship",
        "GeoProperty",
        "LanguageProperty",
        "ListProperty",
        "ListRelationship",
        "JsonProperty",
        "VocabProperty",
    }
)
_FORBIDDEN_NAME = re.compile(r"[<>\"'=;()\s]")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+$")
_GEO_ATTRS = frozenset(
    {NGSI_LD + "location", NGSI_LD + "observationSpace", NGSI_LD + "operationSpace"}
)
_ENTITY_INPUT_KEYS = frozenset({"@context", "id", "type", "scope", "createdAt", "modifiedAt"})
_META = ("datasetId", "observedAt", "unitCode")


def is_uri(text: Any) -> bool:
    return isinstance(text, str) and bool(_URI.match(text))


def check_name(name: str) -> None:
    from pujiang.context.errors import BadData

    if not name or _FORBIDDEN_NAME.search(name):
        raise BadData(
            f"名称 {name!r} 无效：不能为空，也不能含空白或 < > \" ' = ; ( ) / "
            f"invalid name {name!r}: "
            "it must not be empty nor contain whitespace or < > \" ' = ; ( )"
        )


def _bad(message: str) -> Exception:
    from pujiang.context.errors import BadData

    return BadData(message)


def _check_time(value: Any, where: str) -> None:
    from pujiang.context.entity_form import parse_time

    if parse_time(value) is None:
        raise _bad(
            f"{where} 不是 ISO 8601 时间：{value!r} / {where} is not an ISO 8601 date-time: "
            f"{value!r}"
        )


def _check_geometry(value: Any, where: str) -> None:
    if not isinstance(value, dict) or value.get("type") not in GEOJSON_TYPES:
        raise _bad(
            f"{where} 的值必须是 GeoJSON 几何对象（Point、Polygon 等）/ the value of {where} must "
            "be a GeoJSON geometry (Point, LineString, Polygon, Multi*)"
        )
    try:
        import shapely.geometry

        geometry = shapely.geometry.shape(value)
        if geometry.is_empty:
            raise ValueError("empty geometry")
        if value["type"] == "Point":
            x, y = value["coordinates"][:2]
            if not (-180 <= x <= 180 and -90 <= y <= 90):
                raise ValueError(f"coordinates [{x}, {y}] are outside WGS84 (lon, lat)")
    except Exception as exc:
        raise _bad(
            f"{where} 的 GeoJSON 几何无效：{exc} / invalid GeoJSON geometry in {where}: {exc}"
        ) from exc


def infer_kind(raw: dict[str, Any]) -> str:
    """The attribute type of a concise (typeless) attribute, per the concise representation."""
    if "object" in raw:
        return "Relationship"
    if "languageMap" in raw:
        return "LanguageProperty"
    if "objectList" in raw:
        return "ListRelationship"
    if "valueList" in raw:
        return "ListProperty"
    if "json" in raw:
        return "JsonProperty"
    if "vocab" in raw:
        return "VocabProperty"
    value = raw.get("value")
    if isinstance(value, dict) and value.get("type") in GEOJSON_TYPES and "coordinates" in value:
        return "GeoProperty"
    return "Property"


def expand_instance(
    name: str, raw: Any, ctx: ActiveContext, *, sub: bool = False, allow_null: bool = False
) -> dict[str, Any]:
    """One attribute instance in the internal form; raises BadData naming the fault."""
    where = (
        f"属性 {name} / attribute {name}" if not sub else f"子属性 {name} / sub-attribute {name}"
    )
    if not isinstance(raw, dict):
        if raw is None:
            raise _bad(f"{where} 的值不能为 null / {where} must not be null")
        if isinstance(raw, list):
            return {"type": "Property", "value": raw}
        return {"type": "Property", "value": raw}
    if raw.get("type") in GEOJSON_TYPES and "coordinates" in raw:
        _check_geometry(raw, where)
        return {"type": "GeoProperty", "value": raw}
    kind = raw.get("type") or infer_kind(raw)
    if kind not in ATTRIBUTE_KINDS:
        raise _bad(
            f"{where} 的类型 {kind!r} 未知（应为 Property、Relationship、GeoProperty、"
            f"LanguageProperty 等）/ {where} has unknown type {kind!r}"
        )
    instance: dict[str, Any] = {"type": kind}
    null = "urn:ngsi-ld:null"
    if kind in ("Property", "GeoProperty", "JsonProperty") or kind == "VocabProperty":
        member = {"JsonProperty": "json", "VocabProperty": "vocab"}.get(kind, "value")
        if member not in raw or raw[member] is None:
            raise _bad(f"{where} 缺少 {member} / {where} has no {member!r}")
        value = raw[member]
        if kind == "GeoProperty" and not (allow_null and value == null):
            if isinstance(value, str):
                raise _bad(f"{where} 的值必须是 GeoJSON 对象 / {where} must hold a GeoJSON object")
            _check_geometry(value, where)
        if kind == "VocabProperty" and not (allow_null and value == null):
            if isinstance(value, str):
                value = ctx.expand(value)
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                value = [ctx.expand(v) for v in value]
            else:
                raise _bad(f"{where} 的 vocab 必须是字符串 / {where}: vocab must be strings")
        instance[member] = value
    elif kind == "Relationship":
        target = raw.get("object")
        targets = target if isinstance(target, list) else [target]
        if not (allow_null and target == null) and not all(is_uri(t) for t in targets):
            raise _bad(
                f"{where} 的 object 必须是 URI：{target!r} / the object of {where} must be a URI"
            )
        instance["object"] = target
        if "objectType" in raw:
            object_type = raw["objectType"]
            instance["objectType"] = (
                ctx.expand(object_type) if isinstance(object_type, str) else object_type
            )
    elif kind == "LanguageProperty":
        language_map = raw.get("languageMap")
        ok = isinstance(language_map, dict) and all(
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))
            for v in language_map.values()
        )
        if not ok and not (allow_null and language_map == null):
            raise _bad(
                f"{where} 的 languageMap 必须是 语言→字符串 的对象 / the languageMap of {where} "
                "must map language tags to strings"
            )
        instance["languageMap"] = language_map
    elif kind == "ListProperty":
        if not isinstance(raw.get("valueList"), list):
            raise _bad(f"{where} 的 valueList 必须是数组 / valueList of {where} must be an array")
        instance["valueList"] = raw["valueList"]
    elif kind == "ListRelationship":
        objects = raw.get("objectList")
        if not isinstance(objects, list):
            raise _bad(f"{where} 的 objectList 必须是数组 / objectList of {where} must be an array")
        instance["objectList"] = objects
    for key in _META:
        if key not in raw:
            continue
        value = raw[key]
        if key == "datasetId":
            if sub:
                raise _bad(f"{where} 不能有 datasetId / {where} cannot have a datasetId")
            if not is_uri(value):
                raise _bad(f"{where} 的 datasetId 必须是 URI：{value!r} / datasetId must be a URI")
        elif key == "observedAt":
            _check_time(value, f"{where} observedAt")
        elif not isinstance(value, str):
            raise _bad(f"{where} 的 unitCode 必须是字符串 / unitCode of {where} must be a string")
        instance[key] = value
    handled = {"type", "value", "object", "objectType", "languageMap", "valueList", "objectList"}
    handled |= {"json", "vocab", "createdAt", "modifiedAt", "deletedAt", "instanceId", *_META}
    for key, value in raw.items():
        if key in handled:
            continue
        if key.startswith("@"):
            raise _bad(f"{where} 中不允许出现 {key} / {key} is not allowed in {where}")
        check_name(key)
        instance[ctx.expand(key)] = expand_instance(
            key, value, ctx, sub=True, allow_null=allow_null
        )
    return instance


def expand_attribute(
    name: str, raw: Any, ctx: ActiveContext, *, allow_null: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """A payload attribute (one instance or a list of them) as (expanded name, instances)."""
    check_name(name)
    iri = ctx.expand(name)
    items = (
        raw if isinstance(raw, list) and raw and all(isinstance(i, dict) for i in raw) else [raw]
    )
    instances = [expand_instance(name, item, ctx, allow_null=allow_null) for item in items]
    seen: set[str] = set()
    for instance in instances:
        dataset = str(instance.get("datasetId") or "")
        if dataset in seen:
            raise _bad(
                f"属性 {name} 有两个 datasetId 相同（{dataset or '默认'}）的实例 / attribute "
                f"{name} has two instances with the same datasetId ({dataset or 'default'})"
            )
        seen.add(dataset)
        if iri in _GEO_ATTRS and instance["type"] != "GeoProperty":
            raise _bad(f"{name} 必须是 GeoProperty / {name} must be a GeoProperty")
    return iri, instances


def expand_types(raw: Any, ctx: ActiveContext, *, required: bool) -> list[str]:
    if raw is None:
        if required:
            raise _bad("实体缺少 type / the entity has no type")
        return []
    names = raw if isinstance(raw, list) else [raw]
    if not names or not all(isinstance(n, str) for n in names):
        raise _bad("type 必须是字符串或字符串数组 / type must be a string or an array of strings")
    for n in names:
        check_name(n)
    expanded = [ctx.expand(n) for n in names]
    for name, iri in zip(names, expanded, strict=True):
        if iri.startswith("@"):  # "type" itself: the core context maps it to @type
            raise _bad(
                f"实体类型 {name!r} 展开为 JSON-LD 关键字 {iri}，不能作类型 / the entity type "
                f"{name!r} expands to the JSON-LD keyword {iri} and cannot name a type"
            )
    return list(dict.fromkeys(expanded))


def expand_entity(
    raw: Any,
    ctx: ActiveContext,
    *,
    require_id: bool = True,
    require_type: bool = True,
    allow_null: bool = False,
) -> dict[str, Any]:
    """A payload entity (normalized or concise) as the internal form."""
    if not isinstance(raw, dict):
        raise _bad("实体必须是 JSON 对象 / an entity must be a JSON object")
    entity: dict[str, Any] = {}
    if "id" in raw or require_id:
        entity_id = raw.get("id")
        if not is_uri(entity_id):
            raise _bad(
                f"实体 id 必须是 URI（如 urn:ngsi-ld:Type:1）：{entity_id!r} / the entity id must "
                f"be a URI such as urn:ngsi-ld:Type:1, not {entity_id!r}"
            )
        entity["id"] = entity_id
    entity["type"] = expand_types(raw.get("type"), ctx, required=require_type)
    if "scope" in raw:
        scope = raw["scope"]
        scopes = scope if isinstance(scope, list) else [scope]
        if allow_null and scopes == ["urn:ngsi-ld:null"]:
            entity["scope"] = scopes  # a merge deletes the entity's scope
        elif not all(isinstance(s, str) and s.startswith("/") for s in scopes):
            raise _bad("scope 必须是以 / 开头的字符串 / scope must be strings starting with /")
        else:
            entity["scope"] = scopes
    for key, value in raw.items():
        if key in _ENTITY_INPUT_KEYS:
            continue
        if key.startswith("@"):
            raise _bad(f"实体中不允许出现 {key} / {key} is not allowed in an entity")
        iri, instances = expand_attribute(key, value, ctx, allow_null=allow_null)
        entity[iri] = instances
    return entity


# Output ---------------------------------------------------------------------------------------

# Which member holds an attribute instance's value, by attribute type.
VALUE_MEMBER = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
    "JsonProperty": "json",
    "VocabProperty": "vocab",
}


def instance_value(instance: dict[str, Any]) -> Any:
    """The value an attribute instance carries, whatever its type (`object`, `languageMap` …)."""
    return instance.get(VALUE_MEMBER.get(instance.get("type", "Property"), "value"))


_SYSTEM = frozenset({"createdAt", "modifiedAt", "deletedAt"})
_PLAIN_META = frozenset({"datasetId", "observedAt", "unitCode", "objectType", "instanceId", "lang"})


def pick_language(language_map: dict[str, Any], lang: str) -> tuple[str, Any] | None:
    """The best entry of a languageMap for a `lang` parameter (`zh,en;q=0.5`, `*`)."""
    if not language_map:
        return None
    wanted: list[tuple[float, int, str]] = []
    for position, part in enumerate(lang.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag.strip():
            wanted.append((-q, position, tag.strip().lower()))
    for _, _, tag in sorted(wanted):
        if tag == "*":
            break
        for key, value in language_map.items():
            if key.lower() == tag or key.lower().split("-")[0] == tag:
                return key, value
    if "@none" in language_map:
        return "@none", language_map["@none"]
    key = next(iter(language_map))
    return key, language_map[key]


class Renderer:
    """Compacts internal-form entities to one of the NGSI-LD representations."""

    def __init__(
        self,
        ctx: ActiveContext,
        *,
        fmt: str = "normalized",
        sys_attrs: bool = False,
        lang: str | None = None,
        pick: set[str] | None = None,
        omit: set[str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.fmt = fmt
        self.sys_attrs = sys_attrs
        self.lang = lang
        # pick/omit (clause 4.21): entity members (id, type, scope, createdAt, modifiedAt) and
        # attribute names expanded to IRIs, as `ngsild_projection.Projection.map_names` gives.
        self.pick = pick
        self.omit = omit or set()

    def _wanted(self, member: str) -> bool:
        if self.pick is not None and member not in self.pick:
            return False
        return member not in self.omit

    def entity(self, entity: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._wanted("id"):
            out["id"] = entity["id"]
        if self._wanted("type"):
            types = [self.ctx.compact(t) for t in entity.get("type", [])]
            out["type"] = types[0] if len(types) == 1 else types
        if "scope" in entity and self._wanted("scope"):
            scope = entity["scope"]
            out["scope"] = scope[0] if len(scope) == 1 else scope
        if self.sys_attrs and self.fmt != "simplified":
            for key in ("createdAt", "modifiedAt"):
                if key in entity and self._wanted(key):
                    out[key] = entity[key]
        for name, instances in entity.items():
            if name in ENTITY_MEMBERS or not self._wanted(name):
                continue
            out[self.ctx.compact(name)] = self.attribute(instances)
        return out

    def attribute(self, instances: list[dict[str, Any]]) -> Any:
        if self.fmt == "simplified":
            if len(instances) == 1 and "datasetId" not in instances[0]:
                return self._simple(instances[0])
            dataset = {str(i.get("datasetId") or "@none"): self._simple(i) for i in instances}
            return {"dataset": dataset}
        rendered = [self.instance(i) for i in instances]
        return rendered[0] if len(rendered) == 1 else rendered

    def _simple(self, instance: dict[str, Any]) -> Any:
        kind = instance.get("type", "Property")
        if kind == "LanguageProperty":
            language_map = instance.get("languageMap") or {}
            if self.lang:
                chosen = pick_language(language_map, self.lang)
                return chosen[1] if chosen else None
            return {"languageMap": language_map}
        if kind == "VocabProperty":
            return {"vocab": self._vocab(instance.get("vocab"))}
        if kind == "JsonProperty":
            return {"json": instance.get("json")}
        return instance.get(VALUE_MEMBER.get(kind, "value"))

    def _vocab(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.ctx.compact(value)
        if isinstance(value, list):
            return [self.ctx.compact(v) if isinstance(v, str) else v for v in value]
        return value

    def instance(self, instance: dict[str, Any], *, sub: bool = False) -> Any:
        kind = instance.get("type", "Property")
        out: dict[str, Any] = {"type": kind}
        for key, value in instance.items():
            if key == "type":
                continue
            if key in _SYSTEM:
                if self.sys_attrs:
                    out[key] = value
                continue
            if key == "vocab":
                out[key] = self._vocab(value)
            elif key == "objectType":
                out[key] = self.ctx.compact(value) if isinstance(value, str) else value
            elif key in VALUE_MEMBER.values() or key in _PLAIN_META:
                out[key] = value
            else:
                out[self.ctx.compact(key)] = self.instance(value, sub=True)
        if kind == "LanguageProperty" and self.lang:
            chosen = pick_language(out.pop("languageMap", {}) or {}, self.lang)
            out["type"] = "Property"
            out["value"] = chosen[1] if chosen else None
            if chosen and chosen[0] != "@none":
                out["lang"] = chosen[0]
            kind = "Property"
        if self.fmt == "concise":
            return self._concise(kind, out)
        return out

    @staticmethod
    def _concise(kind: str, out: dict[str, Any]) -> Any:
        out.pop("type", None)
        if kind in ("Property", "GeoProperty") and set(out) == {"value"}:
            value = out["value"]
            if kind == "GeoProperty" or not isinstance(value, dict):
                return value
        return out


ENTITY_MEMBERS = frozenset({"id", "type", "scope", "createdAt", "modifiedAt", "deletedAt"})
