"""Entity projection: the `pick` and `omit` parameters (ETSI GS CIM 009 v1.8, clause 4.21, the
Attribute Projection Language; clauses 5.7.1-5.7.4 and the Query data type, clause 5.2.23).

Pure: no HTTP, no database. `parse_projection(pick, omit, attrs_given=...)` validates both
parameters and returns a `Projection` of names as written; `Projection.map_names(expand)` turns
attribute names into IRIs (the entity members `id`, `type`, `scope`, `createdAt`, `modifiedAt`
stay as they are), and `Projection.keeps(member)` decides what a reply shows. Every fault is a
`ProjectionError` (a `ValueError`) whose message is 中文 / English; the adapter answers it with
400 BadRequestData, the type the conformance tests of clause 4.21 expect.

Grammar (clause 4.21): `ProjectionTerm = AttrName *1("{" ProjectionTerm "}") *(orOp
ProjectionTerm)`, `orOp` = `,` or `|`. A term in braces selects attributes of a Linked Entity
(clause 4.5.23); `_names` refuses such a term (clauses 5.7.3.4, 5.7.4.4: the temporal API and
notifications offer no `join`). Entity retrieval and queries with `join` take the braces off
first (`ngsild_join.plan`) and pass on only the entity's own terms.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ENTITY_MEMBERS",
    "Projection",
    "ProjectionError",
    "Term",
    "parse_projection",
    "parse_terms",
]

# Members of an entity that are not attributes. `createdAt`/`modifiedAt` are shown with
# options=sysAttrs and may be picked or omitted like `id`, `type` and `scope`.
ENTITY_MEMBERS = frozenset({"id", "type", "scope", "createdAt", "modifiedAt"})
MAX_LENGTH = 16_384
MAX_DEPTH = 64
_SEPARATORS = ",|"
# Characters no member name may hold (besides the grammar's own , | { }): those refused in
# attribute names (clause 4.6.2) and the q language's operators.
_FORBIDDEN = set("<>\"'=;()[]&!~")


class ProjectionError(ValueError):
    """A bad pick/omit (or a bad combination); the message is 中文 / English."""


class ProjectionSyntaxError(ProjectionError):
    """A pick/omit that does not follow clause 4.21; `.position` is 0-based in the text."""

    def __init__(self, parameter: str, text: str, position: int, zh: str, en: str) -> None:
        self.parameter = parameter
        self.position = position
        self.reason = en
        before, after = text[max(0, position - 24) : position], text[position : position + 24]
        super().__init__(
            f"{parameter} 无效：{zh}（位置 {position}）/ invalid {parameter}: {en} "
            f"({parameter} position {position}: {before}⟨here⟩{after})"
        )


@dataclass(frozen=True)
class Term:
    """One projected member; `linked` holds the terms of a Linked Entity selection `a{b,c}`."""

    name: str
    linked: tuple[Term, ...] = ()


def _is_blank(ch: str) -> bool:
    return ch.isspace()


def _describe(text: str, pos: int) -> str:
    return repr(text[pos]) if pos < len(text) else "the end of the text"


class _Parser:
    def __init__(self, text: str, parameter: str) -> None:
        self.text = text
        self.parameter = parameter
        self.pos = 0

    def error(self, zh: str, en: str, position: int | None = None) -> ProjectionSyntaxError:
        where = self.pos if position is None else position
        return ProjectionSyntaxError(self.parameter, self.text, where, zh, en)

    def skip_blanks(self) -> None:
        while self.pos < len(self.text) and _is_blank(self.text[self.pos]):
            self.pos += 1

    def peek(self) -> str:
        self.skip_blanks()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def terms(self, depth: int, after: str | None) -> tuple[Term, ...]:
        terms = [self.term(depth, after)]
        while self.peek() and self.peek() in _SEPARATORS:
            separator = self.text[self.pos]
            self.pos += 1
            terms.append(self.term(depth, separator))
        return tuple(terms)

    def term(self, depth: int, after: str | None) -> Term:
        name = self.name(after)
        if self.peek() != "{":
            return Term(name)
        if depth >= MAX_DEPTH:
            raise self.error(f"'{{' 嵌套超过 {MAX_DEPTH} 层", f"more than {MAX_DEPTH} nested '{{'")
        opened = self.pos
        self.pos += 1
        if self.peek() == "}":
            raise self.error(
                f"{name}{{}} 为空：花括号中至少要有一个属性名",
                f"{name}{{}} is empty: braces need at least one attribute name",
            )
        linked = self.terms(depth + 1, "{")
        if self.peek() != "}":
            found = _describe(self.text, self.pos)
            raise self.error(
                f"位置 {opened} 的 '{{' 没有闭合（遇到 {found}）",
                f"the '{{' at position {opened} is not closed (found {found})",
            )
        self.pos += 1
        return Term(name, linked)

    def name(self, after: str | None) -> str:
        self.skip_blanks()
        text, start = self.text, self.pos
        if start >= len(text) or text[start] in _SEPARATORS + "{}":
            found = _describe(text, start)
            if after is None:
                raise self.error(
                    f"开头应是成员名，却是 {found}", f"expected a member name, found {found}"
                )
            raise self.error(
                f"'{after}' 之后应是成员名，却是 {found}",
                f"expected a member name after '{after}', found {found}",
            )
        if not unicodedata.category(text[start]).startswith("L"):
            raise self.error(
                f"成员名必须以字母开头，却是 {text[start]!r}",
                f"a member name must start with a letter, found {text[start]!r}",
            )
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in _SEPARATORS or ch in "{}" or _is_blank(ch):
                break
            if ch in _FORBIDDEN or unicodedata.category(ch).startswith("C"):
                hint_zh = "；用 ',' 或 '|' 分隔多个名称" if ch == ";" else ""
                hint_en = "; separate names with ',' or '|'" if ch == ";" else ""
                raise self.error(
                    f"成员名中不能有 {ch!r}{hint_zh}",
                    f"{ch!r} is not allowed in a member name{hint_en}",
                )
            self.pos += 1
        return text[start : self.pos]

    def parse(self) -> tuple[Term, ...]:
        if not self.text.strip():
            raise self.error(
                "不能为空：请列出要保留或去掉的成员（id、type、scope 或属性名）",
                "it is empty: list the members to keep or remove (id, type, scope or "
                "attribute names)",
            )
        terms = self.terms(0, None)
        if self.peek():
            ch = self.text[self.pos]
            if ch == "}":
                raise self.error("多余的 '}'", "'}' without a matching '{'")
            raise self.error(
                f"名称之后应是 ',' 或 '|'，却是 {ch!r}",
                f"expected ',' or '|' after a name, found {ch!r}",
            )
        return terms


def parse_terms(text: str, parameter: str = "pick") -> tuple[Term, ...]:
    """One pick/omit text (clause 4.21) as terms; ProjectionSyntaxError naming the fault."""
    if len(text) > MAX_LENGTH:
        raise ProjectionError(
            f"{parameter} 超过 {MAX_LENGTH} 个字符 / {parameter} is longer than {MAX_LENGTH} "
            "characters"
        )
    return _Parser(text, parameter).parse()


def _names(value: Any, parameter: str) -> frozenset[str] | None:
    """The member names of one parameter: a query-string text, or (Query data type, clause
    5.2.23) a non-empty array of such texts."""
    if value is None:
        return None
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        texts = value
    else:
        raise ProjectionError(
            f"{parameter} 必须是字符串或非空字符串数组 / {parameter} must be a string or a "
            "non-empty array of strings"
        )
    names: list[str] = []
    for text in texts:
        for term in parse_terms(text, parameter):
            if term.linked:
                raise ProjectionError(
                    f"{parameter} 无效：{term.name}{{...}} 要求关联实体检索（join），"
                    "本代理不支持 / "
                    f"invalid {parameter}: {term.name}{{...}} asks for Linked Entity retrieval "
                    "(join), which this broker does not offer"
                )
            names.append(term.name)
    return frozenset(names)


@dataclass(frozen=True)
class Projection:
    """What a reply keeps of each entity: `pick` (None: everything) minus `omit`. Names are
    entity members (`ENTITY_MEMBERS`) and attribute names, as written or, after `map_names`,
    as IRIs."""

    pick: frozenset[str] | None = None
    omit: frozenset[str] = frozenset()

    @property
    def is_identity(self) -> bool:
        return self.pick is None and not self.omit

    def keeps(self, member: str) -> bool:
        if self.pick is not None and member not in self.pick:
            return False
        return member not in self.omit

    def map_names(self, expand: Callable[[str], str]) -> Projection:
        def mapped(names: Iterable[str]) -> frozenset[str]:
            return frozenset(n if n in ENTITY_MEMBERS else expand(n) for n in names)

        return Projection(None if self.pick is None else mapped(self.pick), mapped(self.omit))

    def attributes(self) -> tuple[list[str] | None, list[str]]:
        """(attributes to keep or None for all, attributes to leave out), sorted: the
        attribute part of the projection, for narrowing what is read."""
        keep = None if self.pick is None else sorted(self.pick - ENTITY_MEMBERS)
        return keep, sorted(self.omit - ENTITY_MEMBERS)


def parse_projection(pick: Any, omit: Any, *, attrs_given: bool = False) -> Projection:
    """Validate `pick` and `omit` together (clause 4.21): each well formed; not combined with
    `attrs` (its deprecated synonym, clause 6.4.3.2); no member both picked and omitted. Names
    are left as written (see `Projection.map_names`)."""
    picked = _names(pick, "pick")
    omitted = _names(omit, "omit")
    if attrs_given and (picked is not None or omitted is not None):
        both = "pick" if picked is not None else "omit"
        raise ProjectionError(
            f"attrs 不能与 {both} 同时使用（attrs 是 pick 的旧写法）/ attrs cannot be combined "
            f"with {both} (attrs is the deprecated form of pick)"
        )
    if picked is not None and omitted:
        clash = sorted(picked & omitted)
        if clash:
            names = ", ".join(clash)
            raise ProjectionError(
                f"{names} 不能同时出现在 pick 和 omit 中 / {names} cannot be both picked and "
                "omitted"
            )
    return Projection(picked, omitted or frozenset())
