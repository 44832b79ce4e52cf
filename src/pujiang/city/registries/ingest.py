"""The import pipeline: rows of text in, upserted registry rows out, every bad row reported.

One pass, streaming: rows are checked in a tight loop (checks.py), gathered into batches,
converted to WGS84 and located a batch at a time, then upserted with one executemany per
batch — no ORM object per row. By default a file with any bad row imports nothing: writing
stops at the first bad row, checking goes on to the end so that every bad row is reported, and
`ImportRejected` rolls the caller's transaction back. With `partial=True` the good rows are
written and the bad ones reported.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import Dialect, text
from sqlalchemy.orm import Session

from pujiang.city.registries.checkers import CHECKERS
from pujiang.city.registries.checks import Checker, Env, Layout, RowError, row_error
from pujiang.city.registries.columns import COLUMNS, Kind, header_index, header_key
from pujiang.city.registries.locate import Locator
from pujiang.platform.db import bulk_load, utcnow
from pujiang.platform.errors import Problem
from pujiang.platform.geo import Crs, to_wgs84_many
from pujiang.platform.i18n import EN, current_language, register, translate
from pujiang.platform.tabular import FileProblem, Table, open_table

DEFAULT_BATCH = 20_000
_HEADER_SCAN_ROWS = 5  # a title row or two may sit above the header

TABLES: dict[Kind, str] = {
    Kind.PERSONS: "registry_persons",
    Kind.ENTITIES: "registry_entities",
    Kind.ADDRESSES: "registry_addresses",
}

# On re-import a stored row takes the values of the columns the file has; columns the file
# lacks keep their stored values. Import field -> table columns it sets.
_UPDATES: dict[Kind, dict[str, tuple[str, ...]]] = {
    Kind.PERSONS: {
        "id_number": ("sex", "birth_date"),
        "name": ("name",),
        "phone": ("phone",),
        "household_address": ("household_address",),
        "residence_address": ("residence_address",),
        "lon": ("residence_lon", "residence_lat", "district_code", "community_code"),
        "community_code": ("district_code", "community_code"),
    },
    Kind.ENTITIES: {
        "name": ("name",),
        "entity_type": ("entity_type",),
        "registered_address": ("registered_address",),
        "legal_representative": ("legal_representative",),
        "status": ("status",),
        "established_on": ("established_on",),
        "lon": ("lon", "lat", "district_code", "community_code"),
        "community_code": ("district_code", "community_code"),
    },
    Kind.ADDRESSES: {
        "building_name": ("building_name",),
        "lon": ("lon", "lat", "district_code", "community_code", "grid_code"),
    },
}

register(
    {
        "problem.import-rejected": (
            "导入文件有错误，未导入任何数据",
            "The file has bad rows; nothing was imported",
        ),
        "problem.import-file-invalid": ("导入文件无法读取", "The import file cannot be read"),
        "registry.import_rejected": (
            "{bad} 行有错误（共 {rows} 行），未导入任何数据："
            "请改正后重新导入，或选择只导入正确的行",
            "{bad} of {rows} rows are bad and nothing was imported: fix them and import again, "
            "or choose to import only the good rows",
        ),
        "registry.no_header": (
            "前 {scan} 行中找不到{title}的表头：缺少必填列 {missing}。可用列名：{accepted}",
            "No header of the {title_en} in the first {scan} rows: the required columns "
            "{missing} are missing. Accepted headers: {accepted}",
        ),
        "registry.header_twice": (
            "列“{first}”和“{second}”都表示{label}，请只保留一列",
            "Columns {first!r} and {second!r} both mean {label_en}: keep only one",
        ),
        "registry.no_rows": ("文件只有表头，没有数据行", "The file has a header but no data rows"),
    }
)


@dataclass
class ImportReport:
    kind: Kind
    source: str
    format: str
    encoding: str | None
    partial: bool
    header_row: int = 0
    columns: dict[str, str] = field(default_factory=dict)  # field -> header as written
    ignored_columns: list[str] = field(default_factory=list)
    rows: int = 0  # data rows read (blank rows skipped)
    bad_rows: int = 0
    inserted: int = 0
    updated: int = 0
    located: int = 0
    unlocated: int = 0  # rows with a point but no locator to place it
    imported: bool = False
    seconds: float = 0.0
    errors: list[RowError] = field(default_factory=list)

    @property
    def written(self) -> int:
        return self.inserted + self.updated

    def summary(self) -> dict[str, Any]:
        """The report without its errors, for logs, audit entries and problem replies."""
        return {
            "kind": self.kind.value,
            "source": self.source,
            "format": self.format,
            "encoding": self.encoding,
            "partial": self.partial,
            "rows": self.rows,
            "bad_rows": self.bad_rows,
            "inserted": self.inserted,
            "updated": self.updated,
            "located": self.located,
            "unlocated": self.unlocated,
            "imported": self.imported,
        }


def error_dict(error: RowError) -> dict[str, Any]:
    """A row error as clients get it: both languages, and `message` in the request's."""
    message = error.message_en if current_language.get() == EN else error.message_zh
    return {
        "row": error.row,
        "column": error.column,
        "field": error.field,
        "code": error.code,
        "message": message,
        "message_zh": error.message_zh,
        "message_en": error.message_en,
    }


class ImportRejected(Problem):
    """The file has bad rows and `partial` was not asked for: nothing may be kept.

    Raised inside the caller's transaction, whose rollback discards what was written.
    """

    def __init__(self, report: ImportReport) -> None:
        detail = translate("registry.import_rejected", bad=report.bad_rows, rows=report.rows)
        super().__init__(
            422,
            "import-rejected",
            detail,
            report=report.summary(),
            errors=[error_dict(e) for e in report.errors],
        )
        self.report = report


@dataclass(frozen=True)
class ImportOptions:
    partial: bool = False  # write the good rows of a file that has bad ones
    crs: Crs = Crs.WGS84  # the coordinate system of the file's lon/lat columns
    batch_size: int = DEFAULT_BATCH


def import_file(
    session: Session,
    kind: Kind,
    stream: IO[bytes],
    *,
    source: str = "",
    options: ImportOptions | None = None,
    locator: Locator | None = None,
) -> ImportReport:
    """Import a CSV or XLSX file (a seekable binary stream) into the `kind` registry."""
    return import_table(
        session, kind, open_table(stream), source=source, options=options, locator=locator
    )


def import_table(
    session: Session,
    kind: Kind,
    table: Table,
    *,
    source: str = "",
    options: ImportOptions | None = None,
    locator: Locator | None = None,
) -> ImportReport:
    """Check and upsert every row of `table`; raises ImportRejected (see the module doc)."""
    options = options or ImportOptions()
    started = time.perf_counter()
    report = ImportReport(kind, source, table.format, table.encoding, options.partial)
    rows = iter(table.rows)
    try:
        layout = _read_header(kind, rows, report)
        dialect = session.get_bind().dialect
        checker = CHECKERS[kind](layout, Env(dialect=dialect, now=utcnow()))
        writer = _Writer(session, kind, checker, layout, dialect)
        before = writer.count()
        with bulk_load(session):
            _Pipeline(report, checker, writer, layout, options, locator).run(rows)
    finally:
        # Close the reader now, while its file is still open, not whenever it is collected.
        close = getattr(rows, "close", None)
        if close is not None:
            close()
    report.errors.sort(key=lambda e: e.row)
    report.seconds = round(time.perf_counter() - started, 3)
    if report.rows == 0 and not report.errors:
        raise FileProblem("registry.no_rows")
    if report.errors and not options.partial:
        raise ImportRejected(report)
    report.inserted = writer.count() - before
    report.updated = writer.written - report.inserted
    report.imported = True
    return report


def _read_header(kind: Kind, rows: Iterator[tuple[int, list[str]]], report: ImportReport) -> Layout:
    """Find the header among the first rows and map its columns to fields."""
    index = header_index(kind)
    required = [c for c in COLUMNS[kind] if c.required]
    for number, cells in rows:
        fields: dict[str, int] = {}
        headers: dict[str, str] = {}
        ignored: list[str] = []
        for position, cell in enumerate(cells):
            column = index.get(header_key(cell))
            if column is None:
                if cell.strip():
                    ignored.append(cell.strip())
                continue
            if column.field in fields:
                raise FileProblem(
                    "registry.header_twice",
                    first=headers[column.field],
                    second=cell.strip(),
                    label=column.zh,
                    label_en=column.en,
                )
            fields[column.field] = position
            headers[column.field] = cell.strip().lstrip("\ufeff")
        if all(c.field in fields for c in required):
            report.header_row = number
            report.columns = headers
            report.ignored_columns = ignored
            return Layout(fields, headers)
        if number >= _HEADER_SCAN_ROWS:
            break
    missing = "、".join(c.zh for c in required)
    accepted = "; ".join(f"{c.zh}/{c.en}" for c in COLUMNS[kind])
    zh, en = kind.titles
    raise FileProblem(
        "registry.no_header",
        scan=_HEADER_SCAN_ROWS,
        title=zh,
        title_en=en,
        missing=missing,
        accepted=accepted,
    )


class _Writer:
    """Upserts batches of checked rows: one executemany per batch, or on PostgreSQL one COPY
    into a staging table and one INSERT … SELECT … ON CONFLICT (several times faster there).
    Rows are already in the driver's value forms, so nothing is processed per row."""

    def __init__(
        self, session: Session, kind: Kind, checker: Checker, layout: Layout, dialect: Dialect
    ) -> None:
        self.connection = session.connection()
        self.table = TABLES[kind]
        self.columns = checker.columns
        self.updates = _update_columns(kind, layout)
        self.copy = dialect.name == "postgresql"
        self.stage = f"{self.table}_stage"
        self.staged = False
        self.sql = upsert_sql(dialect, self.table, self.columns, self.updates)
        self.written = 0

    def count(self) -> int:
        statement = text(f"SELECT count(*) FROM {self.table}")  # noqa: S608 - a fixed table name
        return int(self.connection.execute(statement).scalar_one())

    def write(self, rows: Sequence[list[Any]]) -> None:
        if not rows:
            return
        # The driver's own cursor on the session's connection: the same transaction.
        cursor = self.connection.connection.cursor()
        try:
            if self.copy:
                self._copy_upsert(cursor, rows)
            else:
                cursor.executemany(self.sql, rows)
        finally:
            cursor.close()
        self.written += len(rows)

    def _copy_upsert(self, cursor: Any, rows: Sequence[list[Any]]) -> None:
        names = ", ".join(self.columns)
        if not self.staged:
            # Same column types as the table, no constraints; gone when the transaction ends.
            cursor.execute(f"DROP TABLE IF EXISTS {self.stage}")
            cursor.execute(
                f"CREATE TEMP TABLE {self.stage} ON COMMIT DROP AS "  # noqa: S608
                f"SELECT {names} FROM {self.table} WITH NO DATA"
            )
            self.staged = True
        with cursor.copy(f"COPY {self.stage} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(upsert_select_sql(self.table, self.stage, self.columns, self.updates))
        cursor.execute(f"TRUNCATE {self.stage}")


def _update_columns(kind: Kind, layout: Layout) -> list[str]:
    columns: list[str] = []
    for field_name, targets in _UPDATES[kind].items():
        if field_name in layout.positions:
            columns.extend(c for c in targets if c not in columns)
    return [*columns, "updated_at"]


def upsert_sql(dialect: Dialect, table: str, columns: Sequence[str], updates: Sequence[str]) -> str:
    """INSERT … ON CONFLICT (natural key) DO UPDATE, the same on SQLite (3.24+) and PostgreSQL
    but for the driver's parameter marks."""
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
    if mark is None:
        raise NotImplementedError(f"parameter style {dialect.paramstyle} is not supported")
    names = ", ".join(columns)
    marks = ", ".join([mark] * len(columns))
    sets = ", ".join(f"{c} = excluded.{c}" for c in updates)
    return (
        f"INSERT INTO {table} ({names}) VALUES ({marks}) "  # noqa: S608 - fixed identifiers
        f"ON CONFLICT ({columns[0]}) DO UPDATE SET {sets}"
    )


def upsert_select_sql(
    table: str, stage: str, columns: Sequence[str], updates: Sequence[str]
) -> str:
    """The staged rows into `table`, updating rows whose natural key exists (PostgreSQL)."""
    names = ", ".join(columns)
    sets = ", ".join(f"{c} = excluded.{c}" for c in updates)
    return (
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} "  # noqa: S608
        f"ON CONFLICT ({columns[0]}) DO UPDATE SET {sets}"
    )


class _Pipeline:
    def __init__(
        self,
        report: ImportReport,
        checker: Checker,
        writer: _Writer,
        layout: Layout,
        options: ImportOptions,
        locator: Locator | None,
    ) -> None:
        self.report = report
        self.checker = checker
        self.writer = writer
        self.layout = layout
        self.options = options
        self.locator = locator

    def run(self, rows: Iterator[tuple[int, list[str]]]) -> None:
        report, errors = self.report, self.report.errors
        check = self.checker.check
        width = max(self.layout.positions.values()) + 1
        key_at = self.layout.positions[self.checker.key_column]
        key_header = self.layout.header(self.checker.key_column)
        seen: dict[Any, int] = {}
        batch: list[list[Any]] = []
        numbers: list[int] = []  # row numbers of the batch, for errors found when locating
        size = self.options.batch_size
        count = bad = 0
        for number, cells in rows:
            if len(cells) < width:
                cells.extend([""] * (width - len(cells)))
            if not cells[key_at] and not "".join(cells).strip():
                continue  # a blank row
            cells.append("")  # what absent optional columns read
            count += 1
            values = check(number, cells, errors)
            if values is None:
                bad += 1
                continue
            first = seen.setdefault(values[0], number)
            if first != number:
                errors.append(
                    row_error(
                        number,
                        self.checker.key_column,
                        key_header,
                        "registry.row.duplicate",
                        first_row=first,
                    )
                )
                bad += 1
                continue
            batch.append(values)
            numbers.append(number)
            if len(batch) >= size:
                bad += self._flush(batch, numbers)
                batch, numbers = [], []
        bad += self._flush(batch, numbers)
        report.rows, report.bad_rows = count, bad

    def _flush(self, batch: list[list[Any]], numbers: list[int]) -> int:
        """Convert, locate and write one batch; returns how many rows failed to locate."""
        if not batch:
            return 0
        lon_at, lat_at = self.checker.point_slots
        if self.options.crs is not Crs.WGS84:
            _to_wgs84(batch, lon_at, lat_at, self.options.crs)
        failed = self._locate(batch, numbers)
        if failed:
            batch = [values for i, values in enumerate(batch) if i not in failed]
        if self.options.partial or not self.report.errors:
            self.writer.write(batch)
        return len(failed)

    def _locate(self, batch: list[list[Any]], numbers: list[int]) -> set[int]:
        lon_at, lat_at = self.checker.point_slots
        district_at, community_at, grid_at = self.checker.place_slots
        finest = grid_at if grid_at is not None else community_at
        pending = [i for i, v in enumerate(batch) if v[lon_at] is not None and v[finest] is None]
        if not pending:
            return set()
        if self.locator is None:
            self.report.unlocated += len(pending)
            return set()
        places = self.locator(
            [batch[i][lon_at] for i in pending], [batch[i][lat_at] for i in pending]
        )
        if places is None:  # no city loaded: keep the points, locate them later
            self.report.unlocated += len(pending)
            return set()
        failed: set[int] = set()
        located = 0
        for i, place in zip(pending, places, strict=True):
            values = batch[i]
            given = values[community_at]  # an address's community from the file, if any
            if given is not None:
                # The file's code wins; the point only adds a grid that lies inside it.
                grid = place.grid_code if place is not None else None
                if grid_at is not None and grid and grid[:12] == given:
                    values[grid_at] = grid
                    located += 1
                continue
            if place is None or place.community_code is None:
                failed.add(i)
                self.report.errors.append(
                    row_error(
                        numbers[i],
                        "lon",
                        self.layout.header("lon"),
                        "registry.row.outside_city",
                        lon=round(values[lon_at], 6),
                        lat=round(values[lat_at], 6),
                    )
                )
                continue
            values[district_at] = place.district_code or place.community_code[:6]
            values[community_at] = place.community_code
            if grid_at is not None:
                values[grid_at] = place.grid_code
            located += 1
        self.report.located += located
        return failed


def _to_wgs84(batch: list[list[Any]], lon_at: int, lat_at: int, crs: Crs) -> None:
    with_point = [values for values in batch if values[lon_at] is not None]
    if not with_point:
        return
    lons, lats = to_wgs84_many(
        [v[lon_at] for v in with_point], [v[lat_at] for v in with_point], crs
    )
    for values, lon, lat in zip(with_point, lons.tolist(), lats.tolist(), strict=True):
        values[lon_at], values[lat_at] = lon, lat
