"""Where a resource's data lives: one real table per resource, typed by its data items.

Real tables (not JSON rows) so that filters, sorting and SQL run at database speed and the
open-data SQL endpoint can be confined to exactly the published tables. Tables are built from
the items at run time on a private MetaData, so Alembic never sees them. Every table has an
`_id` column, as CKAN's datastore does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    false,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from pujiang.catalog.vocab import ItemType
from pujiang.platform.db import UtcDateTime

SHANGHAI = ZoneInfo("Asia/Shanghai")
ID_COLUMN = "_id"
BATCH = 2000
MAX_LIMIT = 32000

_SQL_TYPES: dict[ItemType, Any] = {
    ItemType.STRING: Text,
    ItemType.INTEGER: BigInteger,
    ItemType.NUMBER: Float,
    ItemType.DATE: Date,
    ItemType.DATETIME: UtcDateTime,
    ItemType.BOOLEAN: Boolean,
}
# CKAN's datastore type names, used in `fields` of every reply.
CKAN_TYPES: dict[ItemType, str] = {
    ItemType.STRING: "text",
    ItemType.INTEGER: "int",
    ItemType.NUMBER: "float",
    ItemType.DATE: "date",
    ItemType.DATETIME: "timestamp",
    ItemType.BOOLEAN: "bool",
}


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: ItemType


def build_table(name: str, columns: Sequence[ColumnSpec]) -> Table:
    table = Table(
        name,
        MetaData(),
        Column(
            ID_COLUMN,
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
    )
    for spec in columns:
        table.append_column(Column(spec.name, _SQL_TYPES[spec.type](), nullable=True))
    return table


def replace_table(session: Session, table: Table, rows: Iterable[Mapping[str, Any]]) -> int:
    """Drop and recreate `table`, then fill it; returns the number of rows written.

    Runs in the caller's transaction (PostgreSQL and SQLite both roll DDL back), so a failure
    leaves the previous table in place.
    """
    connection = session.connection()
    _open_transaction(connection)
    table.drop(connection, checkfirst=True)
    table.create(connection)
    return append_rows(session, table, rows)


def _open_transaction(connection: Connection) -> None:
    # Python's sqlite3 opens its transaction lazily, before the first INSERT/UPDATE/DELETE;
    # DDL issued earlier commits at once and survives a rollback. A no-op DELETE opens it.
    if connection.dialect.name != "sqlite":
        return
    raw: Any = connection.connection.dbapi_connection
    if not raw.in_transaction:
        connection.exec_driver_sql("DELETE FROM catalog_terms WHERE 0 = 1")


def append_rows(session: Session, table: Table, rows: Iterable[Mapping[str, Any]]) -> int:
    connection = session.connection()
    written, batch = 0, []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            connection.execute(insert(table), batch)
            written, batch = written + len(batch), []
    if batch:
        connection.execute(insert(table), batch)
        written += len(batch)
    return written


def drop_table(session: Session, name: str) -> None:
    connection = session.connection()
    _open_transaction(connection)
    Table(name, MetaData()).drop(connection, checkfirst=True)


# -- values -------------------------------------------------------------------------------------

_INT_RE = re.compile(r"^[+-]?\d+$")
_TRUE = {"true", "1", "yes", "y", "是", "t"}
_FALSE = {"false", "0", "no", "n", "否", "f"}
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y年%m月%d日", "%Y.%m.%d")


def parse_value(kind: ItemType, raw: Any) -> Any:
    """The typed value of a cell (None for an empty one); ValueError says why it is bad."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if kind is ItemType.STRING:
        return raw.strip() if isinstance(raw, str) else _text(raw)
    if kind is ItemType.INTEGER:
        if isinstance(raw, bool):
            raise ValueError("不是整数 / not an integer")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        text = str(raw).strip().replace(",", "")
        if not _INT_RE.match(text):
            raise ValueError("不是整数 / not an integer")
        return int(text)
    if kind is ItemType.NUMBER:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        try:
            value = float(str(raw).strip().replace(",", ""))
        except ValueError:
            raise ValueError("不是数值 / not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("不是有限数值 / not a finite number")
        return value
    if kind is ItemType.DATE:
        if isinstance(raw, datetime):
            return raw.date()
        if isinstance(raw, date):
            return raw
        text = str(raw).strip()
        for pattern in _DATE_FORMATS:
            try:
                return datetime.strptime(text, pattern).date()
            except ValueError:
                continue
        raise ValueError("不是日期（YYYY-MM-DD）/ not a date (YYYY-MM-DD)")
    if kind is ItemType.DATETIME:
        if isinstance(raw, datetime):
            moment = raw
        else:
            text = str(raw).strip().replace("/", "-")
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(
                    "不是日期时间（YYYY-MM-DD HH:MM:SS）/ not a date-time (YYYY-MM-DD HH:MM:SS)"
                ) from None
        # Times without a zone are Beijing time, as government systems write them.
        return (moment if moment.tzinfo else moment.replace(tzinfo=SHANGHAI)).astimezone(UTC)
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("不是布尔值（是/否、true/false）/ not a boolean (是/否, true/false)")


def _text(raw: Any) -> str:
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    if isinstance(raw, datetime | date):
        return raw.isoformat()
    return str(raw)


# Narrowest first: a column is inferred as the first type every non-empty value parses as.
_INFERENCE_ORDER = (
    ItemType.BOOLEAN,
    ItemType.INTEGER,
    ItemType.NUMBER,
    ItemType.DATE,
    ItemType.DATETIME,
)


def infer_type(values: Iterable[Any]) -> ItemType:
    sample = [v for v in values if v is not None and str(v).strip()][:1000]
    if not sample:
        return ItemType.STRING
    for kind in _INFERENCE_ORDER:
        if kind is ItemType.BOOLEAN and any(str(v).strip() in {"0", "1"} for v in sample):
            continue  # 0/1 columns are numbers more often than flags
        try:
            for value in sample:
                parse_value(kind, value)
        except ValueError:
            continue
        return kind
    return ItemType.STRING


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


# -- queries ------------------------------------------------------------------------------------


class QueryError(ValueError):
    """A query naming a field that does not exist or asking for something impossible."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class TableQuery:
    filters: Mapping[str, Any] | None = None
    q: str | Mapping[str, str] | None = None
    fields: Sequence[str] | None = None
    sort: str | None = None
    limit: int = 100
    offset: int = 0
    distinct: bool = False
    include_total: bool = True


@dataclass
class TablePage:
    fields: list[dict[str, str]]
    records: list[dict[str, Any]]
    total: int | None


def _column(table: Table, name: str, what: str) -> Any:
    if name not in table.c:
        known = ", ".join(c.name for c in table.columns)
        raise QueryError(
            what, f"字段 {name} 不存在；可用字段：{known} / no field {name}; fields: {known}"
        )
    return table.c[name]


def _order(table: Table, sort: str) -> list[Any]:
    clauses = []
    for part in sort.split(","):
        words = part.strip().split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in {"asc", "desc"}):
            raise QueryError(
                "sort", f"排序写法应为 “字段 asc|desc” / sort as 'field asc|desc': {part}"
            )
        column = _column(table, words[0].strip('"'), "sort")
        clauses.append(column.desc() if len(words) == 2 and words[1].lower() == "desc" else column)
    return clauses


def run_query(
    session: Session, table: Table, specs: Sequence[ColumnSpec], query: TableQuery
) -> TablePage:
    kinds = {s.name: s.type for s in specs}
    names = list(query.fields) if query.fields else [ID_COLUMN, *kinds]
    selected = [_column(table, n, "fields") for n in names]
    where: list[ColumnElement[bool]] = []
    for name, wanted in (query.filters or {}).items():
        column = _column(table, name, "filters")
        kind = kinds.get(name, ItemType.INTEGER)
        values = wanted if isinstance(wanted, list) else [wanted]
        try:
            parsed = [parse_value(kind, v) for v in values]
        except ValueError as exc:
            raise QueryError("filters", f"{name}: {exc}") from None
        where.append(column.in_(parsed) if len(parsed) > 1 else column == parsed[0])
    if query.q:
        texts = [n for n, k in kinds.items() if k is ItemType.STRING]
        if isinstance(query.q, Mapping):
            for name, text in query.q.items():
                where.append(_column(table, name, "q").contains(str(text), autoescape=True))
        elif texts:
            where.append(or_(*(table.c[n].contains(str(query.q), autoescape=True) for n in texts)))
        else:
            where.append(false())  # nothing textual to match
    statement = select(*selected).where(*where)
    if query.distinct:
        statement = statement.distinct()
    total = None
    if query.include_total:
        counted = statement.with_only_columns(*selected).order_by(None)
        total = int(
            session.execute(select(func.count()).select_from(counted.subquery())).scalar_one()
        )
    order = _order(table, query.sort) if query.sort else []
    if not query.distinct:
        order.append(table.c[ID_COLUMN])
    rows = session.execute(
        statement.order_by(*order).limit(min(query.limit, MAX_LIMIT)).offset(query.offset)
    ).all()
    fields = [{"id": n, "type": "int" if n == ID_COLUMN else CKAN_TYPES[kinds[n]]} for n in names]
    records = [{n: jsonable(v) for n, v in zip(names, row, strict=True)} for row in rows]
    return TablePage(fields, records, total)


def count_distinct(session: Session, table: Table, names: Sequence[str]) -> int:
    inner = select(*(table.c[n] for n in names)).distinct().subquery()
    return int(session.execute(select(func.count()).select_from(inner)).scalar_one())
