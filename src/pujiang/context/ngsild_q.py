"""The NGSI-LD query language (ETSI GS CIM 009 v1.8, clause 4.9): parse, evaluate, prefilter.

Pure: no database, no HTTP. Three entry points::

    expr = parse_q('speed>50;(brandName=="Mercedes"|isParked==urn:ngsi-ld:Parking:1)')
    expr = expr.map_names(expand)          # short names -> IRIs with the request's @context
    evaluate(expr, entity)                 # on the internal entity form (docs/context.md)
    sql_prefilter(expr)                    # index-table conditions that narrow candidates

Grammar (the spec's ABNF, with the liberties listed in docs/context.md)::

    query    = or
    or       = and *("|" and)
    and      = primary *(";" primary)              ; ";" binds tighter than "|"
    primary  = "(" or ")" / term                   ; parentheses nest freely
    term     = "!" path                            ; non-existence
    term    =/ path [op operand]                   ; existence, or a comparison
    path     = name *("." name) ["[" member *("." member) "]"]
    op       = "==" / "!=" / ">=" / ">" / "<=" / "<" / "~=" / "!~="
    operand  = value / value ".." value / value 1*("," value) / regexp

A value is a JSON number, a JSON string in double quotes, ``true``/``false``, an ISO 8601
dateTime, date or time, or (after ``==``/``!=`` only) an unquoted URI. Blanks are allowed
around operators, logical operators, commas and parentheses.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, Literal
from urllib.parse import unquote

__all__ = [
    "META_ATTRIBUTES",
    "And",
    "Compare",
    "Exists",
    "Or",
    "Path",
    "Pattern",
    "Prefilter",
    "QExpr",
    "QRange",
    "QSyntaxError",
    "QValue",
    "QValueList",
    "evaluate",
    "parse_q",
    "parse_url_q",
    "sql_prefilter",
]

MAX_LENGTH = 16_384
MAX_DEPTH = 64

# Names that, in a dotted path, address a member of the attribute instance itself rather than a
# sub-attribute. They are never expanded by `map_names` and always end a path.
META_ATTRIBUTES = frozenset(
    {"observedAt", "createdAt", "modifiedAt", "deletedAt", "unitCode", "datasetId", "instanceId"}
)
_TIME_META = frozenset({"observedAt", "createdAt", "modifiedAt", "deletedAt"})
# A first path segment naming an entity's own timestamp (short or as the core context expands it).
_ENTITY_TIMESTAMPS = {
    "createdAt": "createdAt",
    "modifiedAt": "modifiedAt",
    "https://uri.etsi.org/ngsi-ld/createdAt": "createdAt",
    "https://uri.etsi.org/ngsi-ld/modifiedAt": "modifiedAt",
}

Kind = Literal["number", "string", "boolean", "datetime", "date", "time", "uri"]
COMPARABLE: frozenset[str] = frozenset({"number", "string", "datetime", "date", "time"})
ORDER_OPS = frozenset({">", ">=", "<", "<="})
EQUALITY_OPS = frozenset({"==", "!="})


class QSyntaxError(ValueError):
    """A q string that is not NGSI-LD query language; `position` is a 0-based index into it."""

    def __init__(self, reason: str, position: int, text: str = "") -> None:
        self.reason = reason
        self.position = position
        self.text = text
        super().__init__(f"{reason} (q position {position}{excerpt(text, position)})")


def excerpt(text: str, position: int) -> str:
    """The text around `position`, marked, for an error message naming where it went wrong."""
    if not text:
        return ""
    start = max(0, position - 20)
    before = ("…" if start else "") + text[start:position]
    after = text[position : position + 20] + ("…" if len(text) > position + 20 else "")
    return f": {before}⟨here⟩{after}"


# --------------------------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class QValue:
    """One literal. `value` is int|float, str, bool, datetime (aware, UTC), date, or
    seconds-of-day (float, UTC) for times; `text` is how it was written (kept for rendering)."""

    kind: Kind
    value: Any
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        if self.text:
            return self.text
        if self.kind == "string":
            return json.dumps(self.value, ensure_ascii=False)
        if self.kind == "boolean":
            return "true" if self.value else "false"
        return str(self.value)

    @classmethod
    def of(cls, value: Any) -> QValue:
        """A value from a Python object (for building expressions in code and tests)."""
        if isinstance(value, bool):
            return cls("boolean", value, "true" if value else "false")
        if isinstance(value, int | float):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError("numbers in q must be finite")
            return cls("number", value, json.dumps(value))
        if isinstance(value, datetime):
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
            return cls("datetime", value, value.isoformat().replace("+00:00", "Z"))
        if isinstance(value, date):
            return cls("date", value, value.isoformat())
        if isinstance(value, str):
            return cls("string", value, json.dumps(value, ensure_ascii=False))
        raise TypeError(f"no q value for {type(value).__name__}")

    @classmethod
    def uri(cls, value: str) -> QValue:
        return cls("uri", value, value)


@dataclass(frozen=True)
class QRange:
    low: QValue
    high: QValue

    def __str__(self) -> str:
        return f"{self.low}..{self.high}"


@dataclass(frozen=True)
class QValueList:
    items: tuple[QValue, ...]

    def __str__(self) -> str:
        return ",".join(str(v) for v in self.items)


Operand = QValue | QRange | QValueList


# --------------------------------------------------------------------------------------------
# expressions


@dataclass(frozen=True)
class Path:
    """`attr` (first segment), `sub` (dotted sub-attributes, possibly ending in a meta-attribute)
    and `trail` (members inside a compound value, or a language tag / `*` for a
    LanguageProperty; None when there are no brackets)."""

    attr: str
    sub: tuple[str, ...] = ()
    trail: tuple[str, ...] | None = None

    def __str__(self) -> str:
        text = ".".join((self.attr, *self.sub))
        if self.trail is not None:
            text += "[" + ".".join(self.trail) + "]"
        return text

    def map_names(self, fn: Callable[[str], str]) -> Path:
        sub = tuple(s if s in META_ATTRIBUTES else fn(s) for s in self.sub)
        return Path(fn(self.attr), sub, self.trail)

    @property
    def meta(self) -> str | None:
        """The meta-attribute this path ends in, if any."""
        return self.sub[-1] if self.sub and self.sub[-1] in META_ATTRIBUTES else None


class QExpr:
    """A parsed q. Immutable; `str(expr)` renders it back to q syntax."""

    def attribute_names(self) -> set[str]:
        """The first path segment of every term."""
        return {p.attr for p in self.paths()}

    def paths(self) -> Iterator[Path]:
        raise NotImplementedError

    def map_names(self, fn: Callable[[str], str]) -> QExpr:
        """The same expression with attribute and sub-attribute names passed through `fn`
        (meta-attributes and bracketed members are left as written)."""
        raise NotImplementedError

    def matches(self, entity: dict[str, Any]) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class Exists(QExpr):
    path: Path
    negated: bool = False

    def __str__(self) -> str:
        return ("!" if self.negated else "") + str(self.path)

    def paths(self) -> Iterator[Path]:
        yield self.path

    def map_names(self, fn: Callable[[str], str]) -> Exists:
        return Exists(self.path.map_names(fn), self.negated)

    def matches(self, entity: dict[str, Any]) -> bool:
        found = any(True for _ in _targets(entity, self.path))
        return found != self.negated


@dataclass(frozen=True)
class Compare(QExpr):
    path: Path
    op: str
    operand: Operand

    def __str__(self) -> str:
        return f"{self.path}{self.op}{self.operand}"

    def paths(self) -> Iterator[Path]:
        yield self.path

    def map_names(self, fn: Callable[[str], str]) -> Compare:
        return Compare(self.path.map_names(fn), self.op, self.operand)

    def matches(self, entity: dict[str, Any]) -> bool:
        for element, target in _targets(entity, self.path):
            if element == "relationship" and self.op not in EQUALITY_OPS:
                continue
            if _compare(self.op, self.operand, target):
                return True
        return False


@dataclass(frozen=True)
class Pattern(QExpr):
    path: Path
    regex: str
    negated: bool = False
    compiled: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        op = "!~=" if self.negated else "~="
        return f"{self.path}{op}{json.dumps(self.regex, ensure_ascii=False)}"

    def paths(self) -> Iterator[Path]:
        yield self.path

    def map_names(self, fn: Callable[[str], str]) -> Pattern:
        return Pattern(self.path.map_names(fn), self.regex, self.negated, self.compiled)

    def matches(self, entity: dict[str, Any]) -> bool:
        compiled = self.compiled or re.compile(self.regex)
        for element, target in _targets(entity, self.path):
            if element == "relationship":
                continue
            values = target if isinstance(target, list) else [target]
            strings = [_unwrap(v) for v in values]
            if not strings or not all(isinstance(s, str) for s in strings):
                continue
            hit = any(compiled.search(s) is not None for s in strings)
            if hit != self.negated:
                return True
        return False


@dataclass(frozen=True)
class And(QExpr):
    terms: tuple[QExpr, ...]

    def __str__(self) -> str:
        return ";".join(f"({t})" if isinstance(t, Or) else str(t) for t in self.terms)

    def paths(self) -> Iterator[Path]:
        for t in self.terms:
            yield from t.paths()

    def map_names(self, fn: Callable[[str], str]) -> And:
        return And(tuple(t.map_names(fn) for t in self.terms))

    def matches(self, entity: dict[str, Any]) -> bool:
        return all(t.matches(entity) for t in self.terms)


@dataclass(frozen=True)
class Or(QExpr):
    terms: tuple[QExpr, ...]

    def __str__(self) -> str:
        return "|".join(str(t) for t in self.terms)

    def paths(self) -> Iterator[Path]:
        for t in self.terms:
            yield from t.paths()

    def map_names(self, fn: Callable[[str], str]) -> Or:
        return Or(tuple(t.map_names(fn) for t in self.terms))

    def matches(self, entity: dict[str, Any]) -> bool:
        return any(t.matches(entity) for t in self.terms)


def evaluate(expr: QExpr, entity: dict[str, Any]) -> bool:
    """Whether `entity` (internal form: expanded names, attributes as lists of instances)
    satisfies `expr` (whose names must already be expanded the same way)."""
    return expr.matches(entity)


# --------------------------------------------------------------------------------------------
# parser

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_ZONE = r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)"
_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?"
    rf"({_ZONE})?"
)
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_TIME = re.compile(rf"([0-9]{{2}}):([0-9]{{2}})(?::([0-9]{{2}})(?:\.([0-9]+))?)?({_ZONE})?")
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_BLANKS = " \t\r\n"
# Where an unquoted value ends.
_VALUE_END = frozenset(',;|)"' + _BLANKS)
_OPERATORS = ("!~=", "==", "!=", ">=", "<=", "~=", ">", "<")
_UNQUOTED_HINT = "put text in double quotes, e.g. {example}"


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch).startswith("L")


def _is_term_char(ch: str) -> bool:
    return ch == "_" or unicodedata.category(ch)[0] in "LN"


def _zone(text: str | None) -> timezone:
    if not text or text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError("bad zone offset")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _fraction(text: str | None) -> int:
    return int((text or "0")[:6].ljust(6, "0"))


def parse_datetime(text: str) -> datetime | None:
    """An ISO 8601 dateTime as an aware UTC datetime (no zone means UTC), or None."""
    m = _DATETIME.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        value = datetime(
            int(y), int(mo), int(d), int(h), int(mi), int(s or 0), _fraction(frac), _zone(zone)
        )
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def parse_date(text: str) -> date | None:
    m = _DATE.fullmatch(text)
    if m is None:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def parse_time(text: str) -> float | None:
    """An ISO 8601 time as seconds after midnight UTC (no zone means UTC), or None."""
    m = _TIME.fullmatch(text)
    if m is None:
        return None
    h, mi, s, frac, zone = m.groups()
    try:
        local = time(int(h), int(mi), int(s or 0), _fraction(frac))
        offset = _zone(zone).utcoffset(None)
    except ValueError:
        return None
    seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    return (seconds - offset.total_seconds()) % 86400


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

    # helpers -------------------------------------------------------------------------------
    def error(self, reason: str, position: int | None = None) -> QSyntaxError:
        return QSyntaxError(reason, self.pos if position is None else position, self.text)

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def skip_blanks(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _BLANKS:
            self.pos += 1

    def describe_here(self) -> str:
        return "the end" if self.at_end() else repr(self.text[self.pos])

    # grammar -------------------------------------------------------------------------------
    def parse(self) -> QExpr:
        if len(self.text) > MAX_LENGTH:
            raise self.error(f"q is longer than {MAX_LENGTH} characters", MAX_LENGTH)
        self.skip_blanks()
        if self.at_end():
            raise self.error("q is empty: give at least one attribute name")
        expr = self.parse_or()
        self.skip_blanks()
        if not self.at_end():
            if self.peek() == ")":
                raise self.error("')' has no matching '('")
            raise self.error(f"expected ';', '|' or the end of q, found {self.describe_here()}")
        return expr

    def parse_or(self) -> QExpr:
        terms = [self.parse_and()]
        self.skip_blanks()
        while self.peek() == "|":
            self.pos += 1
            self.skip_blanks()
            terms.append(self.parse_and())
            self.skip_blanks()
        return terms[0] if len(terms) == 1 else Or(tuple(_flatten(terms, Or)))

    def parse_and(self) -> QExpr:
        terms = [self.parse_primary()]
        self.skip_blanks()
        while self.peek() == ";":
            self.pos += 1
            self.skip_blanks()
            terms.append(self.parse_primary())
            self.skip_blanks()
        return terms[0] if len(terms) == 1 else And(tuple(_flatten(terms, And)))

    def parse_primary(self) -> QExpr:
        self.skip_blanks()
        if self.at_end():
            before = self.text[self.pos - 1] if self.pos else ""
            what = f"after {before!r}" if before in ";|(" and before else "here"
            raise self.error(f"expected a query term {what}, found the end of q")
        ch = self.peek()
        if ch == "(":
            opened = self.pos
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"parentheses nest deeper than {MAX_DEPTH} levels")
            self.pos += 1
            self.skip_blanks()
            if self.peek() == ")":
                raise self.error("empty parentheses: put a query term inside")
            expr = self.parse_or()
            self.skip_blanks()
            if self.peek() != ")":
                raise self.error(
                    f"expected ')' to close the '(' at position {opened}, "
                    f"found {self.describe_here()}"
                )
            self.pos += 1
            self.depth -= 1
            return expr
        if ch == "!":
            start = self.pos
            self.pos += 1
            self.skip_blanks()
            if self.peek() == "(":
                raise self.error("'!' negates one attribute name only, not a group", start)
            path = self.parse_path()
            self.skip_blanks()
            if any(self.text.startswith(op, self.pos) for op in _OPERATORS):
                raise self.error(
                    f"'!{path}' tests that the attribute is absent and takes no operator; "
                    f"to compare, write {path}!=value",
                )
            return Exists(path, negated=True)
        if ch in ";|":
            raise self.error(f"expected a query term before {ch!r}")
        if ch == ")":
            raise self.error("expected a query term before ')'")
        path = self.parse_path()
        self.skip_blanks()
        op = self.parse_operator()
        if op is None:
            return Exists(path)
        self.skip_blanks()
        if op in ("~=", "!~="):
            regex, compiled = self.parse_regex(op)
            return Pattern(path, regex, op == "!~=", compiled)
        return Compare(path, op, self.parse_operand(op))

    def parse_name(self, what: str) -> str:
        start = self.pos
        text = self.text
        if self.at_end() or not _is_letter(text[self.pos]):
            found = self.describe_here()
            if not self.at_end() and text[self.pos].isdigit():
                raise self.error(f"{what} must start with a letter, found {found}")
            raise self.error(f"expected {what}, found {found}")
        self.pos += 1
        while self.pos < len(text) and _is_term_char(text[self.pos]):
            self.pos += 1
        # A compact IRI prefix:name (clause 4.6.2) is one name.
        if (
            self.pos + 1 < len(text)
            and text[self.pos] == ":"
            and _is_letter(text[self.pos + 1])
            and ":" not in text[start : self.pos]
        ):
            self.pos += 2
            while self.pos < len(text) and _is_term_char(text[self.pos]):
                self.pos += 1
        return text[start : self.pos]

    def parse_path(self) -> Path:
        attr = self.parse_name("an attribute name")
        sub: list[str] = []
        while self.peek() == ".":
            self.pos += 1
            if sub and sub[-1] in META_ATTRIBUTES:
                raise self.error(
                    f"{sub[-1]} is a meta-attribute and must end the path", self.pos - 1
                )
            sub.append(self.parse_name("a sub-attribute name after '.'"))
        if sub and sub[-1] in META_ATTRIBUTES and self.peek() == "[":
            raise self.error(f"{sub[-1]} is a meta-attribute and takes no [...] member path")
        trail: tuple[str, ...] | None = None
        if self.peek() == "[":
            opened = self.pos
            self.pos += 1
            trail = self.parse_trail(opened)
        if self.peek() == "{":
            raise self.error(
                "linked-entity queries (attr{...}) are not supported: query the related "
                "entities directly"
            )
        if self.peek() in ("[", "."):
            raise self.error(
                "nothing may follow the [...] member path; write attr.sub[member.member]"
            )
        return Path(attr, tuple(sub), trail)

    def parse_trail(self, opened: int) -> tuple[str, ...]:
        members: list[str] = []
        text = self.text
        while True:
            start = self.pos
            if self.peek() == "*":
                self.pos += 1
            else:
                while self.pos < len(text) and (
                    _is_term_char(text[self.pos]) or text[self.pos] in "-:@"
                ):
                    self.pos += 1
            if self.pos == start:
                raise self.error(
                    f"expected a member name inside '[...]', found {self.describe_here()}"
                )
            members.append(text[start : self.pos])
            if self.peek() == ".":
                self.pos += 1
                continue
            if self.peek() == "]":
                self.pos += 1
                return tuple(members)
            if self.at_end():
                raise self.error(f"expected ']' to close the '[' at position {opened}")
            raise self.error(
                f"expected '.' or ']' in the member path, found {self.describe_here()}"
            )

    def parse_operator(self) -> str | None:
        for op in _OPERATORS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        if self.at_end() or self.peek() in ";|)":
            return None
        ch = self.peek()
        if ch == "=":
            raise self.error("'=' is not an operator: use '==' to test equality")
        if ch in "!~<>":
            raise self.error(
                f"unknown operator starting with {ch!r}: use ==, !=, >, >=, <, <=, ~= or !~="
            )
        raise self.error(
            f"expected an operator (==, !=, >, >=, <, <=, ~=, !~=), ';', '|' or ')' after "
            f"the attribute path, found {self.describe_here()}"
        )

    def parse_regex(self, op: str) -> tuple[str, re.Pattern[str]]:
        start = self.pos
        if self.peek() == '"':
            regex = self.parse_quoted()
        else:
            # Unquoted: up to ';', '|' or an unbalanced ')', so groups and alternation inside
            # (...) or [...] stay part of the pattern. Quoting is recommended.
            depth = 0
            text = self.text
            escaped = False
            while self.pos < len(text):
                ch = text[self.pos]
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch in "([":
                    depth += 1
                elif ch in ")]":
                    if depth == 0 and ch == ")":
                        break
                    depth = max(0, depth - 1)
                elif ch in ";|" and depth == 0:
                    break
                self.pos += 1
            regex = text[start : self.pos].rstrip(_BLANKS)
        if not regex:
            raise self.error(f"expected a regular expression after {op!r}", start)
        try:
            compiled = re.compile(regex)
        except (re.error, RecursionError, OverflowError, ValueError) as exc:
            raise self.error(f"invalid regular expression: {exc}", start) from None
        return regex, compiled

    def parse_quoted(self) -> str:
        start = self.pos
        text = self.text
        self.pos += 1
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "\\":
                self.pos += 2
                continue
            if ch == '"':
                self.pos += 1
                try:
                    value = json.loads(text[start : self.pos])
                except ValueError as exc:
                    reason = getattr(exc, "msg", str(exc))
                    where = start + getattr(exc, "pos", 0)
                    raise self.error(f"invalid string: {reason}", where) from None
                if not isinstance(value, str):  # pragma: no cover - json.loads of "..."
                    raise self.error("invalid string", start)
                return value
            if ord(ch) < 0x20:
                raise self.error("control character inside a string: escape it", self.pos)
            self.pos += 1
        raise self.error("string has no closing '\"'", start)

    def parse_operand(self, op: str) -> Operand:
        first_at = self.pos
        first = self.parse_value(op)
        self.skip_blanks()
        if self.text.startswith("..", self.pos):
            if op not in EQUALITY_OPS:
                raise self.error(
                    f"a range (low..high) goes with == or != only, not {op!r}; "
                    f"write attr>=low;attr<=high"
                )
            self.pos += 2
            self.skip_blanks()
            high_at = self.pos
            high = self.parse_value(op)
            for bound, at in ((first, first_at), (high, high_at)):
                if bound.kind not in COMPARABLE:
                    raise self.error(
                        f"range bounds must be numbers, strings, dates or times, not {bound}", at
                    )
            if first.kind != high.kind:
                raise self.error(
                    f"range bounds must be of one type: {first} is a {first.kind}, "
                    f"{high} is a {high.kind}",
                    high_at,
                )
            return QRange(first, high)
        if self.peek() == ",":
            if op not in EQUALITY_OPS:
                raise self.error(f"a list of values goes with == or != only, not {op!r}")
            items = [first]
            while self.peek() == ",":
                self.pos += 1
                self.skip_blanks()
                items.append(self.parse_value(op))
                self.skip_blanks()
            return QValueList(tuple(items))
        if op in ORDER_OPS and first.kind not in COMPARABLE:
            raise self.error(
                f"{op!r} compares numbers, strings, dates and times; {first} is a {first.kind} "
                "and goes with == or != only",
                first_at,
            )
        return first

    def parse_value(self, op: str) -> QValue:
        start = self.pos
        text = self.text
        if self.at_end() or text[self.pos] in ",;|)=<>!~":
            raise self.error(f"expected a value after {op!r}, found {self.describe_here()}")
        if text[self.pos] == '"':
            value = self.parse_quoted()
            return QValue("string", value, text[start : self.pos])
        for kind, pattern in (
            ("datetime", _DATETIME),
            ("date", _DATE),
            ("time", _TIME),
            ("number", _NUMBER),
        ):
            m = pattern.match(text, self.pos)
            if m is None or not self._value_ends(m.end()):
                continue
            raw = m.group(0)
            self.pos = m.end()
            return self._literal(kind, raw, start)
        for word, flag in (("true", True), ("false", False)):
            if text.startswith(word, self.pos) and self._value_ends(self.pos + len(word)):
                self.pos += len(word)
                return QValue("boolean", flag, word)
        end = self.pos
        while end < len(text) and text[end] not in _VALUE_END:
            end += 1
        raw = text[start:end]
        if _URI_SCHEME.match(raw) and len(raw) > raw.index(":") + 1:
            self.pos = end
            return QValue("uri", raw, raw)
        raise self.error(self._why_not_a_value(raw), start)

    def _value_ends(self, at: int) -> bool:
        text = self.text
        return (
            at >= len(text)
            or text[at] in _VALUE_END
            or text[at] in "=<>!~"
            or (text.startswith("..", at))
        )

    def _literal(self, kind: str, raw: str, start: int) -> QValue:
        if kind == "number":
            try:
                number: int | float = int(raw) if _is_integer(raw) else float(raw)
            except ValueError:
                raise self.error(f"number {raw[:20]}… has too many digits", start) from None
            if isinstance(number, float) and not math.isfinite(number):
                raise self.error(f"number {raw} is out of range", start)
            return QValue("number", number, raw)
        if kind == "datetime":
            dt = parse_datetime(raw)
            if dt is None:
                raise self.error(f"{raw} is not a valid date and time", start)
            return QValue("datetime", dt, raw)
        if kind == "date":
            d = parse_date(raw)
            if d is None:
                raise self.error(f"{raw} is not a valid date", start)
            return QValue("date", d, raw)
        t = parse_time(raw)
        if t is None:
            raise self.error(f"{raw} is not a valid time", start)
        return QValue("time", t, raw)

    def _why_not_a_value(self, raw: str) -> str:
        if not raw:
            return f"expected a value, found {self.describe_here()}"
        if raw[0].isdigit() or raw[0] == "-":
            if re.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):
                return f"{raw!r} is not a valid date or dateTime (use 2026-11-24T08:00:00Z)"
            return f"{raw!r} is not a valid number (JSON numbers: 12, -3.5, 1e3)"
        example = json.dumps(raw)
        return (
            f"unquoted text {raw!r} is not a number, date, time, true/false or URI; "
            + _UNQUOTED_HINT.format(example=example)
        )


def _is_integer(raw: str) -> bool:
    return not any(c in raw for c in ".eE")


def _flatten(terms: list[QExpr], kind: type[And] | type[Or]) -> Iterator[QExpr]:
    for t in terms:
        if isinstance(t, kind):
            yield from t.terms
        else:
            yield t


def parse_q(text: str) -> QExpr:
    """Parse an NGSI-LD q (already URL-decoded). Raises QSyntaxError with the fault's position."""
    if not isinstance(text, str):
        raise QSyntaxError("q must be a string", 0)
    return _Parser(text).parse()


_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def parse_url_q(text: str) -> QExpr:
    """Parse a q taken from a URL query string, which the HTTP layer has decoded once (RFC 3986:
    `%22`, `%3B`, `%20`, `%C3%A9` arrive as `"`, `;`, a blank, `é`).

    A q that parses is taken as it is: a `%` left in a quoted string, a regular expression or an
    unquoted URI is literal, so a stored value `"50%25"` or a URI holding `%20` stays findable.
    A q that does not parse but still holds percent-escapes was encoded twice by its client
    (`%2522`, `%253B`, `%2520` on the wire): it is decoded once more (UTF-8) and parsed again.
    If that fails too, the error reported is the one of the q as received."""
    try:
        return parse_q(text)
    except QSyntaxError as first:
        if not isinstance(text, str) or not _ESCAPE.search(text):
            raise
        try:
            decoded = unquote(text, errors="strict")
        except UnicodeDecodeError:
            raise first from None
        try:
            return parse_q(decoded)
        except QSyntaxError:
            raise first from None


# --------------------------------------------------------------------------------------------
# evaluation

_MISSING = object()


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _unwrap(value: Any) -> Any:
    """A JSON-LD value object {"@value": v, "@type": t} -> v."""
    if isinstance(value, dict) and "@value" in value:
        return value["@value"]
    return value


def _element_kind(instance: dict[str, Any]) -> str:
    kind = instance.get("type")
    if isinstance(kind, list):
        kind = kind[0] if kind else None
    if isinstance(kind, str):
        kind = kind.rsplit("/", 1)[-1]
    if kind in ("Relationship", "ListRelationship"):
        return "relationship"
    if kind is None and "object" in instance and "value" not in instance:
        return "relationship"
    return "property"


def _instance_value(instance: dict[str, Any]) -> Any:
    """The target value of one attribute instance, per its type (clause 4.9)."""
    kind = instance.get("type")
    if isinstance(kind, str):
        kind = kind.rsplit("/", 1)[-1]
    if kind == "Relationship" or (kind is None and "object" in instance):
        return instance.get("object", _MISSING)
    if kind == "ListRelationship":
        objects = instance.get("objectList", _MISSING)
        if isinstance(objects, list):
            return [o.get("object") if isinstance(o, dict) else o for o in objects]
        return objects
    if kind == "LanguageProperty":
        return instance.get("languageMap", _MISSING)
    if kind == "ListProperty":
        return instance.get("valueList", _MISSING)
    if kind == "VocabProperty":
        return instance.get("vocab", _MISSING)
    if kind == "JsonProperty":
        return instance.get("json", _MISSING)
    return instance.get("value", _MISSING)


def _language_values(language_map: Any, tag: str | None) -> list[Any] | object:
    if not isinstance(language_map, dict):
        return _MISSING
    if tag is None or tag == "*":
        items = list(language_map.values())
    elif tag in language_map:
        items = [language_map[tag]]
    else:
        return _MISSING
    values: list[Any] = []
    for item in items:
        values.extend(_as_list(item))
    return values


def _member(value: Any, members: tuple[str, ...]) -> Any:
    for name in members:
        value = _unwrap(value)
        if not isinstance(value, dict) or name not in value:
            return _MISSING
        value = value[name]
    return value


def _targets(entity: dict[str, Any], path: Path) -> Iterator[tuple[str, Any]]:
    """(element kind, target value) for every instance where the path's target exists."""
    top = entity.get(path.attr, _MISSING)
    stamp = _ENTITY_TIMESTAMPS.get(path.attr)
    if stamp and (top is _MISSING or isinstance(top, str)):
        # The entity's own createdAt/modifiedAt (not an attribute of that name).
        if not path.sub and path.trail is None and isinstance(entity.get(stamp), str):
            yield "meta", entity[stamp]
        return
    if top is _MISSING:
        return
    instances = [i for i in _as_list(top) if isinstance(i, dict)]
    meta = path.meta
    for name in path.sub[:-1] if meta else path.sub:
        instances = [
            sub for i in instances for sub in _as_list(i.get(name)) if isinstance(sub, dict)
        ]
    for instance in instances:
        if meta:
            if instance.get(meta) is not None:
                yield "meta", instance[meta]
            continue
        target = _instance_value(instance)
        if target is _MISSING:
            continue
        kind = instance.get("type")
        if isinstance(kind, str) and kind.rsplit("/", 1)[-1] == "LanguageProperty":
            if path.trail is not None and len(path.trail) > 1:
                continue
            target = _language_values(target, path.trail[0] if path.trail else None)
            if target is _MISSING:
                continue
            yield "property", target
            continue
        if path.trail is not None:
            target = _member(target, path.trail)
            if target is _MISSING:
                continue
        yield _element_kind(instance), target


def _typed(qv: QValue, target: Any) -> Any:
    """The target as a value of the query value's type, or _MISSING when the types differ."""
    target = _unwrap(target)
    kind = qv.kind
    if kind == "number":
        if isinstance(target, int | float) and not isinstance(target, bool):
            return target
        return _MISSING
    if kind == "boolean":
        return target if isinstance(target, bool) else _MISSING
    if not isinstance(target, str):
        return _MISSING
    if kind in ("string", "uri"):
        return target
    parsed: Any
    if kind == "datetime":
        parsed = parse_datetime(target)
    elif kind == "date":
        parsed = parse_date(target)
    else:
        parsed = parse_time(target)
    return _MISSING if parsed is None else parsed


def _equal(qv: QValue, target: Any) -> bool:
    value = _typed(qv, target)
    return value is not _MISSING and bool(value == qv.value)


def _order(qv: QValue, target: Any) -> int | None:
    value = _typed(qv, target)
    if value is _MISSING or qv.kind not in COMPARABLE:
        return None
    if value == qv.value:
        return 0
    return 1 if value > qv.value else -1


def _in_range(rng: QRange, target: Any) -> bool:
    low, high = _order(rng.low, target), _order(rng.high, target)
    return low is not None and high is not None and low >= 0 and high <= 0


def _scalar_equal(operand: Operand, target: Any) -> bool:
    if isinstance(operand, QValue):
        return _equal(operand, target)
    if isinstance(operand, QValueList):
        return any(_equal(v, target) for v in operand.items)
    return _in_range(operand, target)


def _equals(operand: Operand, target: Any) -> bool:
    """clause 4.9 equality: identical, or included in an array target."""
    if isinstance(target, list):
        return any(_scalar_equal(operand, t) for t in target)
    return _scalar_equal(operand, target)


def _compare(op: str, operand: Operand, target: Any) -> bool:
    if op == "==":
        return _equals(operand, target)
    if op == "!=":
        return not _equals(operand, target)
    if not isinstance(operand, QValue) or isinstance(target, list):
        return False
    sign = _order(operand, target)
    if sign is None:
        return False
    if op == ">":
        return sign > 0
    if op == ">=":
        return sign >= 0
    if op == "<":
        return sign < 0
    return sign <= 0


# --------------------------------------------------------------------------------------------
# SQL prefilter


@dataclass(frozen=True)
class Prefilter:
    """A condition on one attribute's indexed values that every matching entity satisfies.

    `op` is one of "==" (the value is any of `values`), ">", ">=", "<", "<=" (one value) or
    "between" (`values` = (low, high), both included). `kind` says which index column to use
    (`num` or `txt` of `context_attrs`).

    Applying it keeps every match only if the core keeps, for the named attribute, each instance
    row whose scalar target value (clause 4.9: a Property's number or string value, a
    Relationship's object, a VocabProperty's vocab) satisfies the condition, **and** each
    instance row that holds no single scalar (an array value, a ListProperty, a LanguageProperty,
    an object value, a Relationship with several objects): those are decided by `evaluate` only.
    Booleans must not be indexed as numbers; strings compare by code point (PostgreSQL:
    COLLATE "C"; SQLite's default BINARY already does), and a string cut to the column width
    must be kept whenever its prefix could satisfy the condition. `evaluate` is always applied
    to the candidates afterwards, so a prefilter may be skipped at will.
    """

    attribute: str
    op: str
    values: tuple[float | int | str, ...]
    kind: Literal["number", "string"]


def _prefilter(term: QExpr) -> Prefilter | None:
    if not isinstance(term, Compare) or term.path.sub or term.path.trail is not None:
        return None
    if term.path.attr in _ENTITY_TIMESTAMPS or term.op == "!=":
        return None
    operand = term.operand
    if isinstance(operand, QValue):
        if operand.kind not in ("number", "string"):
            return None
        kind: Literal["number", "string"] = "number" if operand.kind == "number" else "string"
        return Prefilter(term.path.attr, term.op, (operand.value,), kind)
    if isinstance(operand, QValueList):
        kinds = {v.kind for v in operand.items}
        if kinds == {"number"}:
            return Prefilter(term.path.attr, "==", tuple(v.value for v in operand.items), "number")
        if kinds == {"string"}:
            return Prefilter(term.path.attr, "==", tuple(v.value for v in operand.items), "string")
        return None
    if operand.low.kind in ("number", "string"):
        kind = "number" if operand.low.kind == "number" else "string"
        return Prefilter(term.path.attr, "between", (operand.low.value, operand.high.value), kind)
    return None


def sql_prefilter(expr: QExpr) -> list[Prefilter]:
    """Index conditions implied by the top-level conjunction of `expr` (maybe none)."""
    terms: Iterable[QExpr] = expr.terms if isinstance(expr, And) else (expr,)
    found = [_prefilter(t) for t in terms]
    return [p for p in found if p is not None]
