"""Field checks shared by the registries' row checks (checkers.py): what a row error is, the
values one import shares (Env), where each field sits in a row (Layout), and one function per
kind of field that normalises its text or says, in Chinese and English, why it is bad.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Date, Dialect

from pujiang.city.levels import Level, code_is_valid
from pujiang.city.reference import districts
from pujiang.platform.db import UtcDateTime
from pujiang.platform.i18n import EN, ZH, register, translate
from pujiang.platform.identifiers import (
    IdentifierError,
    normalise_mobile,
)
from pujiang.platform.tabular import EXCEL_NUMBER_MARK

register(
    {
        "registry.row.required": ("{column}不能为空", "{column} is required"),
        "registry.row.too_long": (
            "{column}超过 {max} 个字符",
            "{column} is longer than {max} characters",
        ),
        "registry.row.unprintable": (
            "{column}含有不可打印的控制字符",
            "{column} contains control characters",
        ),
        "registry.row.excel_number": (
            "{column}被 Excel 存成了数字，末尾几位已丢失：请把该列设为“文本”格式后重新填写",
            "Excel stored {column} as a number and dropped its last digits: format the "
            "column as text and enter the values again",
        ),
        "registry.row.sex_unknown": (
            "性别“{value}”无法识别：请填写 男/女 或 M/F",
            "Sex {value!r} is not recognised: use 男/女 or M/F",
        ),
        "registry.row.sex_mismatch": (
            "性别“{value}”与身份证号不符：身份证号表明为{expected_zh}",
            "Sex {value!r} disagrees with the ID number, which says {expected_en}",
        ),
        "registry.row.date_format": (
            "{column}“{value}”不是有效日期：请使用 YYYY-MM-DD 格式",
            "{column} {value!r} is not a valid date: use YYYY-MM-DD",
        ),
        "registry.row.birth_mismatch": (
            "出生日期 {value} 与身份证号中的出生日期 {expected} 不符",
            "Birth date {value} disagrees with the birth date {expected} in the ID number",
        ),
        "registry.row.phone": (
            "{column}“{value}”不是有效的手机号或固定电话号码",
            "{column} {value!r} is neither a mobile nor a fixed-line number",
        ),
        "registry.row.coordinate_pair": (
            "经度和纬度须同时填写或同时留空",
            "Give both longitude and latitude, or neither",
        ),
        "registry.row.coordinate_number": (
            "{column}“{value}”不是数字",
            "{column} {value!r} is not a number",
        ),
        "registry.row.coordinate_range": (
            "坐标（{lon}, {lat}）超出经纬度范围（经度 -180～180，纬度 -90～90）",
            "The point ({lon}, {lat}) is out of range (longitude -180..180, latitude -90..90)",
        ),
        "registry.row.outside_city": (
            "坐标（{lon}, {lat}）不在本市任何社区内",
            "The point ({lon}, {lat}) lies in no community of the city",
        ),
        "registry.row.community_code": (
            "{column}“{value}”无效：应为12位数字，前6位为本市区代码",
            "{column} {value!r} is invalid: it must be 12 digits beginning with a district "
            "code of the city",
        ),
        "registry.row.grid_code": (
            "{column}“{value}”无效：应为15位数字，前6位为本市区代码",
            "{column} {value!r} is invalid: it must be 15 digits beginning with a district "
            "code of the city",
        ),
        "registry.row.grid_community": (
            "单元网格代码 {grid} 不属于社区 {community}",
            "Unit grid {grid} does not belong to community {community}",
        ),
        "registry.row.duplicate": (
            "{column}与第 {first_row} 行重复",
            "{column} repeats the value of row {first_row}",
        ),
        "registry.row.status": (
            "登记状态“{value}”无法识别：可用 {allowed}",
            "Status {value!r} is not recognised: use one of {allowed}",
        ),
    }
)

MISSING: Any = object()
CHINA_TZ = timezone(timedelta(hours=8))
ID_CHECK = "0123456789X"  # (1 - 2 * int(first17, 13)) % 11 indexes this (python-stdnum's form)
_FIXED_LINE = re.compile(r"0\d{2,3}-?\d{7,8}(-\d{1,6})?")
_DATE_PARTS = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_WHITESPACE = re.compile(r"\s+")

# GB/T 2261.1 sex codes and the words people write; 0 and 9 mean "not stated".
SEX_VALUES: dict[str, str | None] = {
    "男": "M", "女": "F", "m": "M", "f": "F", "male": "M", "female": "F",
    "1": "M", "2": "F", "0": None, "9": None, "未知": None, "未说明": None,
}  # fmt: skip

# Registration statuses (登记状态) and the English words accepted for them.
STATUSES: dict[str, str] = {
    "存续": "existing",
    "在业": "in business",
    "吊销": "revoked",
    "注销": "deregistered",
    "迁入": "moved in",
    "迁出": "moved out",
    "停业": "suspended",
    "清算": "in liquidation",
}
STATUS_ALIASES = {
    **{zh: zh for zh in STATUSES},
    **{en.replace(" ", ""): zh for zh, en in STATUSES.items()},
    "开业": "在业", "active": "存续", "cancelled": "注销", "canceled": "注销",
    "吊销未注销": "吊销", "吊销，未注销": "吊销", "liquidation": "清算",
}  # fmt: skip

# GB 32100 position 1-2 when a file gives no type (secondary sources, see standards.json).
USCC_TYPES: dict[str, str] = {
    "11": "机关", "12": "事业单位", "13": "中央编办直接管理机构编制的群众团体",
    "19": "其他机构编制单位", "51": "社会团体", "52": "民办非企业单位", "53": "基金会",
    "59": "其他民政登记单位", "91": "企业", "92": "个体工商户", "93": "农民专业合作社",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    field: str
    column: str
    code: str
    message_zh: str
    message_en: str


def row_error(row: int, field: str, column: str, key: str, **params: Any) -> RowError:
    params.setdefault("column", column)
    return RowError(
        row,
        field,
        column,
        key.removeprefix("registry.row."),
        translate(key, ZH, **params),
        translate(key, EN, **params),
    )


@dataclass
class Env:
    """What every row check of one import shares: today's date, the database's value forms."""

    dialect: Dialect
    now: datetime
    today: str = ""  # YYYYMMDD in China
    district_codes: frozenset[str] = frozenset()
    date_value: Callable[[date], Any] = field(init=False)
    stamp: Any = field(init=False)  # `now` as the driver takes it
    _dates: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.today = self.today or self.now.astimezone(CHINA_TZ).strftime("%Y%m%d")
        self.district_codes = self.district_codes or frozenset(d.code for d in districts())
        # Date columns go to the driver in the form it takes (text on SQLite): bind once per
        # distinct date, not once per row.
        processor = Date().dialect_impl(self.dialect).bind_processor(self.dialect)
        self.date_value = processor if processor is not None else _same
        stamp = UtcDateTime().dialect_impl(self.dialect).bind_processor(self.dialect)
        self.stamp = stamp(self.now) if stamp is not None else self.now

    def birth_value(self, digits: str) -> Any:
        """The stored form of a YYYYMMDD birth date in an ID number, None if not a real date
        between 1900-01-01 and today."""
        value = self._dates.get(digits, MISSING)
        if value is MISSING:
            value = None
            if "19000101" <= digits <= self.today:
                try:
                    value = self.date_value(
                        date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
                    )
                except ValueError:
                    value = None
            self._dates[digits] = value
        return value


def _same(value: date) -> Any:
    return value


@dataclass(frozen=True)
class Layout:
    """Where each field is in a row: absent fields point at the empty cell appended to it."""

    positions: dict[str, int]
    headers: dict[str, str]

    def at(self, field_name: str) -> int:
        return self.positions.get(field_name, -1)

    def header(self, field_name: str) -> str:
        return self.headers.get(field_name, field_name)


# A row of text in, the values to store out (the natural key first), or None when the row is
# bad and its reasons were added to the error list.
Check = Callable[[int, list[str], list[RowError]], list[Any] | None]


@dataclass(frozen=True)
class Checker:
    columns: tuple[str, ...]  # the table's columns, in the order of the values a check returns
    check: Check
    point_slots: tuple[int, int]  # where lon and lat are in the values
    # Where a located place goes: district, community and (addresses) grid. A row with a point
    # and an empty finest slot is located after its batch is checked.
    place_slots: tuple[int, int, int | None]

    @property
    def key_column(self) -> str:
        return self.columns[0]


# -- shared field checks --------------------------------------------------------------------


def clean_text(value: str) -> str:
    """Fold full-width letters and digits and trim; used for addresses and codes."""
    return value.translate(_FULLWIDTH).strip()


def text_field(
    raw: str, row: int, field_name: str, column: str, limit: int, errors: list[RowError]
) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if len(value) > limit:
        errors.append(row_error(row, field_name, column, "registry.row.too_long", max=limit))
    elif not value.isprintable():
        errors.append(row_error(row, field_name, column, "registry.row.unprintable"))
    return value


def required_text(
    raw: str, row: int, field_name: str, column: str, limit: int, errors: list[RowError]
) -> str | None:
    value = text_field(raw, row, field_name, column, limit, errors)
    if value is None:
        errors.append(row_error(row, field_name, column, "registry.row.required"))
    return value


def identifier_error(row: int, field_name: str, column: str, exc: IdentifierError) -> RowError:
    return RowError(row, field_name, column, exc.code, exc.message_zh, exc.message_en)


def excel_number(raw: str, row: int, field_name: str, column: str) -> RowError | None:
    if raw.startswith(EXCEL_NUMBER_MARK):
        return row_error(row, field_name, column, "registry.row.excel_number")
    return None


def phone_field(raw: str, row: int, layout: Layout, errors: list[RowError]) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if (
        len(value) == 11
        and value.isascii()
        and value.isdigit()
        and value[0] == "1"
        and value[1] > "2"
    ):
        return value
    try:
        return normalise_mobile(value)
    except IdentifierError:
        pass
    compact = clean_text(value).replace(" ", "")
    if _FIXED_LINE.fullmatch(compact):
        return compact
    column = layout.header("phone")
    mistake = excel_number(value, row, "phone", column)
    errors.append(
        mistake or row_error(row, "phone", column, "registry.row.phone", value=value[:30])
    )
    return None


def date_digits(raw: str) -> str | None:
    """YYYYMMDD from 2024-01-31, 2024/1/31, 20240131 or 2024年1月31日; None if not a date form."""
    value = raw.strip()
    if len(value) == 10 and value[4] in "-/." and value[7] == value[4]:
        digits = value[:4] + value[5:7] + value[8:]
    elif len(value) == 8:
        digits = value
    else:
        match = _DATE_PARTS.fullmatch(clean_text(value))
        if match is None:
            return None
        digits = f"{match[1]}{int(match[2]):02d}{int(match[3]):02d}"
    return digits if digits.isascii() and digits.isdigit() else None


def real_date(digits: str | None) -> date | None:
    if digits is None:
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def point_field(
    lon_raw: str, lat_raw: str, row: int, layout: Layout, errors: list[RowError]
) -> tuple[float, float] | None:
    if not lon_raw and not lat_raw:
        return None
    lon_text, lat_text = lon_raw.strip(), lat_raw.strip()
    if not lon_text or not lat_text:
        if lon_text or lat_text:
            errors.append(
                row_error(row, "lon", layout.header("lon"), "registry.row.coordinate_pair")
            )
        return None
    try:
        lon = float(lon_text)
    except ValueError:
        column = layout.header("lon")
        errors.append(
            row_error(row, "lon", column, "registry.row.coordinate_number", value=lon_text[:30])
        )
        return None
    try:
        lat = float(lat_text)
    except ValueError:
        column = layout.header("lat")
        errors.append(
            row_error(row, "lat", column, "registry.row.coordinate_number", value=lat_text[:30])
        )
        return None
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0) or math.isnan(lon + lat):
        errors.append(
            row_error(
                row, "lon", layout.header("lon"), "registry.row.coordinate_range", lon=lon, lat=lat
            )
        )
        return None
    return lon, lat


def unit_code(
    raw: str, level: Level, row: int, field_name: str, layout: Layout, env: Env,
    errors: list[RowError],
) -> str | None:  # fmt: skip
    value = raw.strip()
    if not value:
        return None
    if (
        len(value) == level.code_length
        and value.isascii()
        and value[:6] in env.district_codes
        and code_is_valid(level, value)
        and segments_ok(value)
    ):
        return value
    column = layout.header(field_name)
    key = "registry.row.grid_code" if level is Level.GRID else "registry.row.community_code"
    errors.append(
        excel_number(value, row, field_name, column)
        or row_error(row, field_name, column, key, value=value[:30])
    )
    return None


def segments_ok(code: str) -> bool:
    """Digits only, and no 000 in the street, community or grid part (000 means "the parent
    as a whole" in these codes)."""
    return code.isdigit() and code.isascii() and "000" not in (code[6:9], code[9:12], code[12:15])


def normalise_address(value: str) -> str:
    """The standard form an address is keyed by: full-width folded, no whitespace."""
    return _WHITESPACE.sub("", clean_text(value))
