"""Reading uploaded CSV and XLSX files against a resource's declared data items.

Encodings are detected by the kernel's `platform/tabular.py` (UTF-8 with or without BOM, GBK,
GB18030), the same way the base registries detect them. Every row is checked
and every bad row is reported with each bad cell; the caller decides whether to store.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pujiang.catalog.datastore import ColumnSpec, infer_type, parse_value
from pujiang.platform.tabular import FileProblem, detect_encoding

MAX_BAD_CELLS_PER_ROW = 20


class FileError(ValueError):
    """The file as a whole cannot be read (format, encoding, header)."""


@dataclass
class Parsed:
    encoding: str
    rows_read: int = 0
    good: list[dict[str, Any]] = field(default_factory=list)
    bad: list[tuple[int, list[tuple[str, str, str]]]] = field(default_factory=list)
    inferred: dict[str, str] = field(default_factory=dict)


def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding name) of a CSV file's bytes, detected as every Pujiang import does."""
    try:
        encoding = detect_encoding(io.BytesIO(data))
    except FileProblem as exc:
        raise FileError(exc.detail) from exc
    # GBK is decoded as its superset GB18030, so a rare character outside GBK still reads.
    codec = "gb18030" if encoding == "gbk" else encoding
    try:
        return data.decode(codec), encoding
    except UnicodeDecodeError as exc:
        raise FileError(
            f"文件中有不是 {encoding} 编码的字节 / bytes that are not valid {encoding}: "
            f"{exc.reason}"
        ) from exc


def _csv_rows(data: bytes) -> tuple[Iterator[list[str]], str]:
    text, encoding = decode(data)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",\t;|")
    except csv.Error:
        dialect = csv.excel
    return csv.reader(io.StringIO(text, newline=""), dialect), encoding


def _xlsx_rows(data: bytes) -> Iterator[list[Any]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged file
        raise FileError(f"不是有效的 XLSX 文件 / not a valid XLSX file: {exc}") from exc
    sheet = book.worksheets[0]
    try:
        for row in sheet.iter_rows(values_only=True):
            yield list(row)
    finally:
        book.close()


def is_xlsx(filename: str, data: bytes) -> bool:
    return filename.lower().endswith((".xlsx", ".xlsm")) or data[:4] == b"PK\x03\x04"


def parse_file(filename: str, data: bytes, columns: Sequence[ColumnSpec]) -> Parsed:
    if not data:
        raise FileError("文件为空 / the file is empty")
    rows: Iterator[list[Any]]
    if is_xlsx(filename, data):
        rows, encoding = _xlsx_rows(data), "xlsx"
    else:
        rows, encoding = _csv_rows(data)
    try:
        header = next(rows)
    except StopIteration:
        raise FileError("文件没有表头 / the file has no header row") from None
    header = ["" if h is None else str(h).strip().lstrip("\ufeff") for h in header]
    declared = {c.name: c for c in columns}
    unknown = [h for h in header if h and h not in declared]
    missing = [name for name in declared if name not in header]
    if unknown or missing:
        parts = []
        if missing:
            parts.append(f"缺少列 / missing columns: {', '.join(missing)}")
        if unknown:
            parts.append(f"未声明的列 / undeclared columns: {', '.join(unknown)}")
        raise FileError(
            "表头与信息项不一致 / the header does not match the data items — " + "; ".join(parts)
        )
    positions = {name: header.index(name) for name in declared}
    parsed = Parsed(encoding)
    raw_columns: dict[str, list[Any]] = {name: [] for name in declared}
    for line, row in enumerate(rows, start=2):
        if not any(cell is not None and str(cell).strip() for cell in row):
            continue  # blank lines are not data
        parsed.rows_read += 1
        record: dict[str, Any] = {}
        errors: list[tuple[str, str, str]] = []
        for name, spec in declared.items():
            position = positions[name]
            raw = row[position] if position < len(row) else None
            if len(raw_columns[name]) < 1000:
                raw_columns[name].append(raw)
            try:
                record[name] = parse_value(spec.type, raw)
            except ValueError as exc:
                if len(errors) < MAX_BAD_CELLS_PER_ROW:
                    errors.append((name, "" if raw is None else str(raw)[:200], str(exc)))
        if len(row) > len(header) and any(str(c).strip() for c in row[len(header) :] if c):
            errors.append(("", "", "本行的列数多于表头 / more cells than the header has"))
        if errors:
            parsed.bad.append((line, errors))
        else:
            parsed.good.append(record)
    parsed.inferred = {name: infer_type(values).value for name, values in raw_columns.items()}
    return parsed
