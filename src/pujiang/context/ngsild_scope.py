"""The NGSI-LD scope query language (ETSI GS CIM 009 v1.8, clause 4.19): parse and evaluate
`scopeQ` against an entity's `scope` member (clause 4.18).

Pure: no database, no HTTP. Entry points::

    expr = parse_scope_q("(/Madrid/Districts;/CompanyA)|/CompanyB")
    matches(expr, ["/Madrid/Districts", "/CompanyA"])   # True
    matches_entity(expr, entity)                        # the internal form's "scope" list
    prefilter(expr)                                     # literal texts for a SQL prefilter
    str(expr)                                           # back to scopeQ text

Grammar: the spec's ABNF, read as an expression (the liberties are listed below)::

    scopesQ = or
    or      = and *(orOp and)                  ; orOp = "|" / ","
    and     = primary *(";" primary)           ; ";" binds tighter than "|" and ","
    primary = "(" or ")" / scope               ; parentheses nest
    scope   = "/#"                             ; any scope at all
    scope  =/ "/" level *("/" level) ["/#"]    ; "#": this scope and every scope below it
    level   = "+"                              ; exactly one level, whatever it is
    level  =/ (letter / digit) *(letter / digit / "_")

Semantics (clause 4.19): an entity matches a scope when one of its scopes does; `;` needs every
operand to match, `|` and `,` any. A scope matches level by level and only a scope of the same
depth, unless it ends in `/#`; `+` stands for one non-empty level. An entity without a scope
matches nothing, not even `/#`.

Liberties beyond the ABNF, each unambiguous: `;` without parentheses (the ETSI conformance
tests use `/A;/B`), nested parentheses, `/#` inside a conjunction, blanks around operators and
parentheses, and a level that starts with a digit (the ABNF asks for a letter; scopes such as
`/310101` are stored by the broker, so they can be asked for).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pujiang.context.ngsild_q import excerpt

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "ScopeAnd",
    "ScopeExpr",
    "ScopeFilter",
    "ScopeOr",
    "ScopePattern",
    "ScopeQSyntaxError",
    "matches",
    "matches_entity",
    "parse_scope_q",
    "prefilter",
]

MAX_LENGTH = 16_384
MAX_DEPTH = 64
_OR = "|,"
_AND = ";"
_ENDS = "|,;() \t\r\n"  # what may follow a complete scope


class ScopeQSyntaxError(ValueError):
    """A scopeQ that is not the scope query language; `position` is a 0-based index into it."""

    def __init__(self, reason: str, position: int, text: str = "") -> None:
        self.reason = reason
        self.position = position
        self.text = text
        super().__init__(f"{reason} (scopeQ position {position}{excerpt(text, position)})")


# --------------------------------------------------------------------------------------------
# the expression


@dataclass(frozen=True)
class ScopePattern:
    """One scope of a query: its levels (`+` a one-level wildcard) and whether a trailing `#`
    takes in the whole tree below. `/#` is no levels with `subtree`."""

    levels: tuple[str, ...]
    subtree: bool = False

    def matches(self, scope: Any) -> bool:
        """Whether one entity scope (a string like `/Madrid/Gardens`) is selected."""
        if not isinstance(scope, str) or not scope.startswith("/"):
            return False
        if not self.levels:
            return self.subtree
        parts = scope[1:].split("/")
        wanted = len(self.levels)
        if len(parts) < wanted or (len(parts) > wanted and not self.subtree):
            return False
        for want, got in zip(self.levels, parts, strict=False):
            if want == "+":
                if not got:
                    return False
            elif want != got:
                return False
        return True

    def literal_prefix(self) -> str:
        """The text every matching scope starts with: the levels before the first `+`."""
        literal: list[str] = []
        for level in self.levels:
            if level == "+":
                return "/" + "".join(f"{name}/" for name in literal)
            literal.append(level)
        return "/" + "/".join(literal)

    def __str__(self) -> str:
        if not self.levels:
            return "/#"
        return "/" + "/".join(self.levels) + ("/#" if self.subtree else "")


@dataclass(frozen=True)
class ScopeAnd:
    items: tuple[ScopeExpr, ...]

    def __str__(self) -> str:
        return "(" + ";".join(_operand(i) for i in self.items) + ")"


@dataclass(frozen=True)
class ScopeOr:
    items: tuple[ScopeExpr, ...]

    def __str__(self) -> str:
        return "|".join(str(i) for i in self.items)


ScopeExpr = ScopePattern | ScopeAnd | ScopeOr
# A prefilter: a literal prefix some scope must start with ("/" says only "has a scope"), or an
# and/or of prefilters.
ScopeFilter = str | tuple[Literal["and", "or"], tuple["ScopeFilter", ...]]


def _operand(expr: ScopeExpr) -> str:
    return f"({expr})" if isinstance(expr, ScopeOr) else str(expr)


# --------------------------------------------------------------------------------------------
# evaluation


def matches(expr: ScopeExpr, scopes: Iterable[Any]) -> bool:
    """Whether an entity holding these scopes is selected by `expr`."""
    held = [s for s in scopes if isinstance(s, str)]
    return _matches(expr, held)


def _matches(expr: ScopeExpr, scopes: list[str]) -> bool:
    if isinstance(expr, ScopePattern):
        return any(expr.matches(s) for s in scopes)
    if isinstance(expr, ScopeAnd):
        return all(_matches(i, scopes) for i in expr.items)
    return any(_matches(i, scopes) for i in expr.items)


def matches_entity(expr: ScopeExpr, entity: dict[str, Any]) -> bool:
    """`matches` on an entity's `scope` member (a list in the internal form, or one string)."""
    scope = entity.get("scope")
    if scope is None:
        return False
    return matches(expr, [scope] if isinstance(scope, str) else scope)


def prefilter(expr: ScopeExpr) -> ScopeFilter:
    """A necessary condition on the entity's scopes for a database prefilter: every matching
    entity holds a scope starting with each literal prefix the and/or tree names."""
    if isinstance(expr, ScopePattern):
        return expr.literal_prefix()
    kind: Literal["and", "or"] = "and" if isinstance(expr, ScopeAnd) else "or"
    return (kind, tuple(prefilter(i) for i in expr.items))


# --------------------------------------------------------------------------------------------
# parsing


def _level_start(ch: str) -> bool:
    return ch.isalpha() or unicodedata.category(ch).startswith("N")


def _level_char(ch: str) -> bool:
    return _level_start(ch) or ch == "_"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

    def fail(self, reason: str, position: int | None = None) -> ScopeQSyntaxError:
        return ScopeQSyntaxError(reason, self.pos if position is None else position, self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def blanks(self) -> None:
        while self.peek() and self.peek() in " \t\r\n":
            self.pos += 1

    def disjunction(self) -> ScopeExpr:
        items = [self.conjunction()]
        while True:
            self.blanks()
            if not self.peek() or self.peek() not in _OR:
                break
            self.pos += 1
            items.append(self.conjunction())
        return _flat(ScopeOr, items)

    def conjunction(self) -> ScopeExpr:
        items = [self.primary()]
        while True:
            self.blanks()
            if self.peek() != _AND:
                break
            self.pos += 1
            items.append(self.primary())
        return _flat(ScopeAnd, items)

    def primary(self) -> ScopeExpr:
        self.blanks()
        ch = self.peek()
        if ch == "(":
            opened = self.pos
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail(f"parentheses nest deeper than {MAX_DEPTH}")
            self.pos += 1
            inner = self.disjunction()
            self.blanks()
            if self.peek() != ")":
                raise self.fail(
                    f"missing ')' to close the '(' at position {opened}"
                    + (f", found {self.peek()!r}" if self.peek() else "")
                )
            self.pos += 1
            self.depth -= 1
            return inner
        if ch == "/":
            return self.scope()
        if not ch:
            raise self.fail("a scope is missing at the end: a scope starts with '/'")
        if ch == ")":
            raise self.fail("unexpected ')': no scope inside the parentheses or before it")
        if ch in _OR or ch == _AND:
            raise self.fail(f"operator {ch!r} has no scope before it")
        raise self.fail(f"a scope starts with '/', not {ch!r}")

    def scope(self) -> ScopePattern:
        self.pos += 1  # "/"
        if self.peek() == "#":
            self.pos += 1
            self.after_hash()
            return ScopePattern((), subtree=True)
        levels: list[str] = []
        while True:
            levels.append(self.level())
            ch = self.peek()
            if ch != "/":
                if ch and ch not in _ENDS:
                    raise self.bad_char(ch)
                return ScopePattern(tuple(levels))
            self.pos += 1
            if self.peek() == "#":
                self.pos += 1
                self.after_hash()
                return ScopePattern(tuple(levels), subtree=True)

    def after_hash(self) -> None:
        ch = self.peek()
        if ch and ch not in _ENDS:
            raise self.fail("'#' must be the last level of a scope (e.g. /Madrid/#)")

    def level(self) -> str:
        ch = self.peek()
        if ch == "+":
            self.pos += 1
            if self.peek() and self.peek() not in _ENDS and self.peek() != "/":
                raise self.fail("'+' stands for a whole level: write /a/+/b, not /a/+b")
            return "+"
        if not ch or ch in _ENDS:
            raise self.fail("a scope level is missing after '/'")
        if ch == "/":
            raise self.fail("empty scope level ('//')")
        if not _level_start(ch):
            raise self.bad_char(ch, start=True)
        start = self.pos
        while self.peek() and _level_char(self.peek()):
            self.pos += 1
        return self.text[start : self.pos]

    def bad_char(self, ch: str, *, start: bool = False) -> ScopeQSyntaxError:
        if ch == "#":
            return self.fail("'#' must follow '/' and end the scope (e.g. /Madrid/#)")
        if ch == "*":
            return self.fail("'*' is no wildcard here: use '+' for one level, '/#' for a subtree")
        if start and ch == "_":
            return self.fail("a scope level starts with a letter or a digit, not '_'")
        return self.fail(f"{ch!r} is not allowed in a scope level (letters, digits and '_' only)")


def _flat(kind: type[ScopeAnd] | type[ScopeOr], items: list[ScopeExpr]) -> ScopeExpr:
    if len(items) == 1:
        return items[0]
    flat: list[ScopeExpr] = []
    for item in items:
        flat.extend(item.items if isinstance(item, kind) else (item,))
    return kind(tuple(flat))


def parse_scope_q(text: Any) -> ScopeExpr:
    """Parse a scopeQ; ScopeQSyntaxError (a ValueError) names the fault and its position."""
    if not isinstance(text, str):
        raise ScopeQSyntaxError(f"scopeQ must be a string, not {type(text).__name__}", 0)
    if len(text) > MAX_LENGTH:
        raise ScopeQSyntaxError(f"scopeQ is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    if not text.strip():
        raise ScopeQSyntaxError("scopeQ is empty: give a scope such as /Madrid or /Madrid/#", 0)
    parser = _Parser(text)
    expr = parser.disjunction()
    parser.blanks()
    if parser.pos < len(text):
        ch = parser.peek()
        if ch == ")":
            raise parser.fail("unexpected ')' without a matching '('")
        raise parser.fail(f"unexpected {ch!r}: join scopes with ';' (and), '|' or ',' (or)")
    return expr
