"""Reading uploaded tables into numbered rows of text: CSV (UTF-8 with or without BOM, GBK,
GB18030) and XLSX. The format is told by the file's first bytes, not by its name. Every module
that imports spreadsheets (base registries, catalog uploads) reads them through here.

Rows are numbered as a spreadsheet shows them (the first line is row 1), so an error report
points at the row a user sees when opening the file in Excel or WPS.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import IO, Any

import charset_normalizer

from pujiang.platform.errors import Problem
from pujiang.platform.i18n import register

# Bytes read to decide the encoding. Detection starts at the first non-ASCII byte: a file whose
# first megabyte is ASCII (headers in English, digits) says nothing about its encoding yet.
_SAMPLE_BYTES = 1 << 20
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls / .et
# A float cell this large has lost digits: Excel keeps 15 significant digits.
_EXACT_FLOAT_LIMIT = 2.0**53
EXCEL_NUMBER_MARK = "\x00excel-number:"

ENCODING_LABELS = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8 (BOM)", "gbk": "GBK", "gb18030": "GB18030"}

register(
    {
        "file.empty": ("文件为空", "The file is empty"),
        "file.xls": (
            "不支持旧版 Excel（.xls）文件，请另存为 .xlsx 或 CSV 后再导入",
            "Legacy Excel (.xls) files are not supported: save the sheet as .xlsx or CSV",
        ),
        "file.format": (
            "无法识别的文件格式：请上传 CSV 或 XLSX 文件",
            "Unrecognised file format: upload a CSV or an XLSX file",
        ),
        "file.xlsx_broken": (
            "XLSX 文件无法打开：{reason}",
            "The XLSX file cannot be opened: {reason}",
        ),
        "file.encoding": (
            "无法识别文件编码（疑似 {guess}）：请将文件保存为 UTF-8、GBK 或 GB18030 编码",
            "Cannot read the file's encoding (it looks like {guess}): save it as UTF-8, GBK "
            "or GB18030",
        ),
        "file.decode": (
            "第 {row} 行附近有不是 {encoding} 编码的字节：文件可能混用了多种编码",
            "Bytes near row {row} are not valid {encoding}: the file may mix encodings",
        ),
        "file.csv": (
            "第 {row} 行 CSV 格式错误：{reason}",
            "Row {row} is not well-formed CSV: {reason}",
        ),
    }
)


class FileProblem(Problem):
    """The file as a whole cannot be read; nothing in it was imported."""

    def __init__(self, message_key: str, status: int = 422, **params: Any) -> None:
        problem = Problem.of(status, "import-file-invalid", message_key, **params)
        super().__init__(problem.status, problem.slug, problem.detail)
        self.message_key = message_key


@dataclass
class Table:
    """An opened import file: how it was read, and its rows (header included) as text."""

    format: str  # "csv" | "xlsx" | "rows" (rows handed over by code, e.g. the demo)
    encoding: str | None
    rows: Iterator[tuple[int, list[str]]]


def open_table(stream: IO[bytes]) -> Table:
    """Open a CSV or XLSX file from a seekable binary stream."""
    head = stream.read(8)
    stream.seek(0)
    if not head:
        raise FileProblem("file.empty")
    if head.startswith(_ZIP_MAGIC):
        return Table("xlsx", None, _xlsx_rows(stream))
    if head.startswith(_OLE_MAGIC):
        raise FileProblem("file.xls", status=415)
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileProblem("file.format", status=415)
    encoding = detect_encoding(stream)
    stream.seek(0)
    return Table("csv", encoding, _csv_rows(stream, encoding))


def rows_table(rows: Iterator[list[str]]) -> Table:
    """Rows made by code (header first), numbered like a file's."""
    return Table("rows", None, ((number, row) for number, row in enumerate(rows, start=1)))


# -- encodings ----------------------------------------------------------------------------------


def detect_encoding(stream: IO[bytes]) -> str:
    """One of utf-8-sig, utf-8, gbk, gb18030 (utf-16 when it has a BOM); FileProblem otherwise.

    UTF-8 is tried first: GBK text is almost never valid UTF-8, while UTF-8 text often is
    valid GBK. Strict decoding decides; charset-normalizer only names a foreign encoding in
    the error message.
    """
    first = stream.read(_SAMPLE_BYTES)
    if first.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    chunk = first
    while chunk.isascii():
        chunk = stream.read(_SAMPLE_BYTES)
        if not chunk:
            return "utf-8"  # pure ASCII: any of ours reads it
    sample = chunk + stream.read(4096)
    cut = sample.rfind(b"\n")
    # ASCII newlines never occur inside a UTF-8, GBK or GB18030 multi-byte character.
    if cut > 0 and len(sample) >= _SAMPLE_BYTES:
        sample = sample[: cut + 1]
    for encoding in ("utf-8", "gbk", "gb18030"):
        if _decodes(sample, encoding):
            return encoding
    best = charset_normalizer.from_bytes(sample[:65536]).best()
    raise FileProblem("file.encoding", guess=best.encoding if best else "?")


def _decodes(sample: bytes, encoding: str) -> bool:
    try:
        codecs.getincrementaldecoder(encoding)().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _csv_rows(stream: IO[bytes], encoding: str) -> Iterator[tuple[int, list[str]]]:
    # GBK is read as GB18030: its superset, identical on every GBK byte pair, so a rare
    # character only GB18030 encodes does not break a file detected as GBK.
    codec = "gb18030" if encoding == "gbk" else encoding
    text = io.TextIOWrapper(stream, encoding=codec, errors="strict", newline="")
    number = 0
    try:
        first_line = text.readline()
        delimiter = "\t" if first_line.count("\t") > first_line.count(",") else ","
        lines = itertools.chain((first_line,), text)
        for number, row in enumerate(csv.reader(lines, delimiter=delimiter), start=1):
            yield number, row
    except UnicodeDecodeError:
        raise FileProblem(
            "file.decode", row=number + 1, encoding=ENCODING_LABELS.get(encoding, encoding)
        ) from None
    except csv.Error as exc:
        raise FileProblem("file.csv", row=number + 1, reason=str(exc)) from None
    finally:
        # Hand the stream back open: it belongs to the caller (an upload, an open file).
        with contextlib.suppress(ValueError):
            text.detach()


# -- XLSX -----------------------------------------------------------------------------------


def _xlsx_rows(stream: IO[bytes]) -> Iterator[tuple[int, list[str]]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(stream, read_only=True, data_only=True)
    except Exception as exc:
        raise FileProblem("file.xlsx_broken", reason=str(exc)[:200]) from None
    try:
        sheet = book.active if book.active is not None else book.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [cell_text(value) for value in values]
    finally:
        book.close()


def cell_text(value: object) -> str:
    """A spreadsheet cell as the text a user typed; long numbers Excel has rounded are marked."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            if abs(value) >= _EXACT_FLOAT_LIMIT:
                # An 18-digit ID number typed into a number cell: its last digits are gone.
                return f"{EXCEL_NUMBER_MARK}{value:.15g}"
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
