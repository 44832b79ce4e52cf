"""Read-only SQL over published tables, for CKAN's datastore_search_sql.

Two fences, each enough on its own for the cases it covers:

1. A tokenizer-level check here: one SELECT/WITH statement; no comments, no write or session
   keywords; every table after FROM/JOIN is a published table or a CTE of the query; only
   whitelisted functions; no system-catalogue names.
2. The database itself: on SQLite a separate read-only connection whose authorizer allows
   reading only those tables and calling only those functions, with a progress handler as the
   clock; on PostgreSQL a READ ONLY transaction with statement_timeout, after EXPLAIN has
   listed every relation the plan touches.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.engine import make_url

from pujiang.catalog.datastore import jsonable
from pujiang.platform.db import Database

ROWS_MAX = 32000
TIME_LIMIT_SECONDS = 5.0

FUNCTIONS = frozenset(
    {
        "count", "sum", "avg", "min", "max", "total", "group_concat", "string_agg",
        "lower", "upper", "length", "char_length", "trim", "ltrim", "rtrim", "substr",
        "substring", "replace", "instr", "strpos", "round", "abs", "floor", "ceil", "ceiling",
        "coalesce", "nullif", "ifnull", "cast", "extract", "date", "datetime", "strftime",
        "date_trunc", "to_char", "row_number", "rank", "dense_rank", "ntile", "lag", "lead",
        "first_value", "last_value", "greatest", "least", "concat", "like", "glob",
    }
)  # fmt: skip
# Keywords that may stand before "(" without being a function call.
_PAREN_KEYWORDS = frozenset(
    {
        "in", "exists", "as", "from", "join", "on", "and", "or", "not", "where", "having",
        "select", "over", "any", "all", "some", "values", "using", "when", "then", "else",
        "case", "union", "intersect", "except", "distinct", "filter", "by", "with", "is",
        "between", "like", "limit", "offset", "end",
    }
)  # fmt: skip
_FORBIDDEN = frozenset(
    {
        "insert", "update", "delete", "drop", "alter", "create", "replace_into", "grant",
        "revoke", "truncate", "copy", "attach", "detach", "pragma", "vacuum", "reindex",
        "analyze", "set", "reset", "lock", "call", "do", "execute", "exec", "prepare",
        "deallocate", "listen", "notify", "unlisten", "into", "load", "commit", "rollback",
        "begin", "savepoint", "release", "for", "returning", "merge", "conflict", "show",
        "checkpoint", "cluster", "discard", "refresh", "security", "import",
    }
)  # fmt: skip
_FROM_ENDS = frozenset(
    {"where", "group", "having", "order", "limit", "offset", "union", "intersect", "except",
     "window", "on", "using"}
)  # fmt: skip
_JOINS = frozenset({"from", "join"})
_SYSTEM_PREFIXES = ("pg_", "sqlite_", "information_schema")

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    |(?P<comment>--|/\*)
    |(?P<string>'(?:[^']|'')*')
    |(?P<quoted>"(?:[^"]|"")+")
    |(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    |(?P<word>[A-Za-z_\u4e00-\u9fff][A-Za-z0-9_\u4e00-\u9fff]*)
    |(?P<op><>|!=|<=|>=|\|\||::|[-+*/%=<>(),.;])
    """,
    re.VERBOSE,
)


class SqlRefused(ValueError):
    """The statement is not allowed; the message says why (zh / en)."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str

    @property
    def ident(self) -> str | None:
        """The identifier this token names (quoted or bare), lower-cased if bare."""
        if self.kind == "word":
            return self.text.lower()
        if self.kind == "quoted":
            return self.text[1:-1].replace('""', '"')
        return None


def tokenize(sql: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(sql):
        match = _TOKEN.match(sql, position)
        if match is None:
            raise SqlRefused(
                f"无法解析的字符 / cannot parse near: {sql[position : position + 20]!r}"
            )
        kind = match.lastgroup or ""
        if kind == "comment":
            raise SqlRefused("不允许注释 / comments are not allowed")
        if kind != "space":
            tokens.append(Token(kind, match.group()))
        position = match.end()
    return tokens


def _closing(tokens: list[Token], start: int) -> int:
    """Index of the ")" matching the "(" at `start` (len(tokens) if unbalanced)."""
    depth = 0
    for i in range(start, len(tokens)):
        depth += {"(": 1, ")": -1}.get(tokens[i].text, 0)
        if depth == 0:
            return i
    return len(tokens)


def _cte_names(tokens: list[Token]) -> set[str]:
    """Names a WITH clause defines: `name AS (` or `name(cols) AS (`."""
    names: set[str] = set()
    for i, token in enumerate(tokens[:-1]):
        if token.kind not in {"word", "quoted"}:
            continue
        after = i + 1
        if tokens[after].text == "(":
            after = _closing(tokens, after) + 1
        if (
            after + 1 < len(tokens)
            and tokens[after].ident == "as"
            and tokens[after + 1].text == "("
            and token.ident is not None
        ):
            names.add(token.ident)
    return names


_CTE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check(
    sql: str, tables: Iterable[str], other_tables: Iterable[str] = ()
) -> tuple[list[str], set[str]]:
    """Raise SqlRefused unless `sql` is a single read of `tables`.

    Returns the tables it reads and the names of its CTEs (which the database sees as reads
    too). CTE names are plain lower-case words that cannot shadow a table of ours.
    """
    allowed = set(tables)
    blocked = {t.lower() for t in other_tables}
    tokens = tokenize(sql.strip())
    while tokens and tokens[-1].text == ";":
        tokens.pop()
    if not tokens:
        raise SqlRefused("SQL 为空 / the SQL is empty")
    if tokens[0].ident not in {"select", "with"}:
        raise SqlRefused("只允许 SELECT 查询 / only SELECT statements are allowed")
    ctes = _cte_names(tokens)
    for name in ctes:
        if not _CTE_NAME.match(name) or name.startswith("ds_") or name in blocked:
            raise SqlRefused(f"WITH 名称 {name} 不允许 / WITH name {name} is not allowed")
    read: list[str] = []
    depth = 0
    from_depths: set[int] = set()
    expect_table = False
    for i, token in enumerate(tokens):
        ident = token.ident
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if token.text == ";":
            raise SqlRefused("只允许一条语句 / only one statement is allowed")
        if token.kind == "word" and ident in _FORBIDDEN:
            raise SqlRefused(f"不允许 {token.text.upper()} / {token.text.upper()} is not allowed")
        if ident is not None and (
            ident.lower().startswith(_SYSTEM_PREFIXES) or ident.lower() in blocked
        ):
            raise SqlRefused(f"不允许访问 {ident} / {ident} is not accessible")
        if expect_table:
            expect_table = False
            if token.text == "(":
                depth += 1
                continue
            if ident is None or (ident not in allowed and ident not in ctes):
                raise SqlRefused(
                    f"只能查询已开放的数据表（resource_id）：{token.text} 不是 / only published "
                    f"tables (resource ids) may be queried: {token.text} is not one"
                )
            if nxt is not None and nxt.text == ".":
                raise SqlRefused("不允许带模式名的表 / schema-qualified names are not allowed")
            if ident in allowed:
                read.append(ident)
            continue
        if token.kind in {"word", "quoted"} and nxt is not None and nxt.text == "(":
            if token.kind == "word" and ident in _PAREN_KEYWORDS:
                pass
            elif ident in ctes and token.kind in {"word", "quoted"}:
                pass  # WITH name(col, …) AS (…)
            elif token.kind == "word" and ident in FUNCTIONS:
                pass
            else:
                raise SqlRefused(
                    f"不允许的函数 {token.text} / function {token.text} is not allowed"
                )
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            from_depths.discard(depth)
            depth -= 1
            if depth < 0:
                raise SqlRefused("括号不匹配 / unbalanced parentheses")
        elif ident in _JOINS and token.kind == "word":
            from_depths.add(depth)
            expect_table = True
        elif token.text == "," and depth in from_depths:
            expect_table = True
        elif token.kind == "word" and ident in _FROM_ENDS:
            from_depths.discard(depth)
    if depth != 0:
        raise SqlRefused("括号不匹配 / unbalanced parentheses")
    if expect_table:
        raise SqlRefused("FROM 之后缺少表名 / a table name is missing after FROM")
    return read, ctes


@dataclass
class SqlResult:
    fields: list[dict[str, str]]
    records: list[dict[str, Any]]
    truncated: bool


def _ckan_type(values: Iterable[Any]) -> str:
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool):
            return "bool"
        if isinstance(value, int):
            return "int"
        if isinstance(value, float):
            return "float"
        if isinstance(value, datetime):
            return "timestamp"
        if isinstance(value, date):
            return "date"
        return "text"
    return "text"


def _result(names: list[str], rows: list[tuple[Any, ...]], truncated: bool) -> SqlResult:
    fields = [
        {"id": name, "type": _ckan_type(row[i] for row in rows)} for i, name in enumerate(names)
    ]
    records = [{n: jsonable(v) for n, v in zip(names, row, strict=True)} for row in rows]
    return SqlResult(fields, records, truncated)


_SQLITE_READ, _SQLITE_SELECT, _SQLITE_FUNCTION, _SQLITE_RECURSIVE = 20, 21, 31, 33


def _run_sqlite(
    database: Database, sql: str, allowed: set[str], limit: int, seconds: float
) -> SqlResult:
    path = make_url(database.url).database
    if not path or path == ":memory:":
        raise SqlRefused("内存数据库不支持 SQL 查询 / SQL is unavailable on an in-memory database")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        connection.execute("PRAGMA query_only = 1")

        def authorize(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
            if action in (_SQLITE_SELECT, _SQLITE_RECURSIVE):
                return sqlite3.SQLITE_OK
            if action == _SQLITE_READ and arg1 in allowed:
                return sqlite3.SQLITE_OK
            if action == _SQLITE_FUNCTION and (arg2 or "").lower() in FUNCTIONS:
                return sqlite3.SQLITE_OK
            return sqlite3.SQLITE_DENY

        deadline = time.monotonic() + seconds
        connection.set_authorizer(authorize)
        connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10000)
        try:
            cursor = connection.execute(sql)
            rows = cursor.fetchmany(limit + 1)
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise SqlRefused(
                    f"查询超过 {seconds:g} 秒的时限 / the query ran past its {seconds:g} s limit"
                ) from None
            raise SqlRefused(f"查询无效 / invalid query: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise SqlRefused(f"查询被拒绝 / query refused: {exc}") from None
        names = [d[0] for d in cursor.description or ()]
    finally:
        connection.close()
    return _result(names, rows[:limit], len(rows) > limit)


def _relations(plan: Any) -> Iterable[tuple[str, str]]:
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            yield str(plan.get("Schema", "")), str(plan["Relation Name"])
        if plan.get("Node Type") == "Function Scan":
            yield "", f"function {plan.get('Function Name', '')}"
        for value in plan.values():
            yield from _relations(value)
    elif isinstance(plan, list):
        for value in plan:
            yield from _relations(value)


def _run_postgres(
    database: Database, sql: str, allowed: set[str], limit: int, seconds: float
) -> SqlResult:
    import psycopg

    with database.engine.connect() as connection:
        raw: Any = connection.connection.dbapi_connection
        cursor = raw.cursor()
        try:
            cursor.execute("SET TRANSACTION READ ONLY")
            cursor.execute(f"SET LOCAL statement_timeout = {int(seconds * 1000)}")
            cursor.execute(f"EXPLAIN (FORMAT JSON, VERBOSE) {sql}")
            plan = cursor.fetchone()[0]
            for schema, relation in _relations(plan):
                if relation not in allowed or schema not in {"", "public"}:
                    raise SqlRefused(f"不允许访问 {relation} / {relation} is not accessible")
            cursor.execute(sql)
            rows = cursor.fetchmany(limit + 1)
            names = [d.name for d in cursor.description or ()]
        except psycopg.errors.QueryCanceled:
            raise SqlRefused(
                f"查询超过 {seconds:g} 秒的时限 / the query ran past its {seconds:g} s limit"
            ) from None
        except psycopg.Error as exc:
            raise SqlRefused(f"查询无效 / invalid query: {str(exc).splitlines()[0]}") from None
        finally:
            cursor.close()
            connection.rollback()
    return _result(names, rows[:limit], len(rows) > limit)


def run(
    database: Database,
    sql: str,
    tables: Iterable[str],
    *,
    other_tables: Iterable[str] = (),
    limit: int = ROWS_MAX,
    seconds: float = TIME_LIMIT_SECONDS,
) -> SqlResult:
    allowed = set(tables)
    _, ctes = check(sql, allowed, other_tables)
    allowed |= ctes
    statement = sql.strip().rstrip(";").strip()
    if database.is_sqlite:
        return _run_sqlite(database, statement, allowed, limit, seconds)
    return _run_postgres(database, statement, allowed, limit, seconds)
