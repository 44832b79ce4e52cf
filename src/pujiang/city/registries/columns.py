"""The columns each registry accepts in an import file, under Chinese or English headers."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Kind(enum.StrEnum):
    PERSONS = "persons"
    ENTITIES = "entities"
    ADDRESSES = "addresses"

    @property
    def titles(self) -> tuple[str, str]:
        """The registry's name in Chinese and English."""
        return KIND_TITLES[self]


KIND_TITLES: dict[Kind, tuple[str, str]] = {
    Kind.PERSONS: ("人口基础库", "population registry"),
    Kind.ENTITIES: ("法人基础库", "legal entity registry"),
    Kind.ADDRESSES: ("地址与建筑物基础库", "address and building registry"),
}


@dataclass(frozen=True)
class Column:
    field: str
    zh: str  # the header we write in templates and documentation
    en: str
    aliases: tuple[str, ...] = ()
    required: bool = False


_LON = Column("lon", "经度", "longitude", ("lng", "long", "x", "坐标x"))
_LAT = Column("lat", "纬度", "latitude", ("y", "坐标y"))
_COMMUNITY = Column(
    "community_code",
    "社区代码",
    "community code",
    ("居村代码", "居委会代码", "社区编码", "所属社区代码", "居委代码", "村居代码", "community"),
)

COLUMNS: dict[Kind, tuple[Column, ...]] = {
    Kind.PERSONS: (
        Column(
            "id_number",
            "身份证号",
            "ID number",
            ("身份证号码", "公民身份号码", "身份证", "证件号码", "idnumber", "idno", "idcard"),
            required=True,
        ),
        Column("name", "姓名", "name", ("名字", "fullname"), required=True),
        Column("sex", "性别", "sex", ("gender",)),
        Column(
            "birth_date",
            "出生日期",
            "birth date",
            ("出生年月日", "生日", "birthday", "dateofbirth", "dob"),
        ),
        Column(
            "phone",
            "手机号",
            "phone",
            ("手机号码", "手机", "联系电话", "电话", "电话号码", "mobile", "mobilephone", "tel"),
        ),
        Column(
            "household_address",
            "户籍地址",
            "household address",
            ("户籍地", "户籍所在地", "户口所在地", "户籍地址详址", "hukouaddress"),
        ),
        Column(
            "residence_address",
            "居住地址",
            "residence address",
            ("现居住地址", "现住址", "居住地", "实际居住地址", "现居地址", "address"),
        ),
        Column("lon", "居住地经度", "residence longitude", ("经度", *_LON.aliases, "longitude")),
        Column("lat", "居住地纬度", "residence latitude", ("纬度", *_LAT.aliases, "latitude")),
        _COMMUNITY,
    ),
    Kind.ENTITIES: (
        Column(
            "credit_code",
            "统一社会信用代码",
            "credit code",
            ("信用代码", "社会信用代码", "统一代码", "uscc", "unifiedsocialcreditcode"),
            required=True,
        ),
        Column(
            "name",
            "名称",
            "name",
            ("企业名称", "单位名称", "机构名称", "法人名称", "主体名称", "组织名称"),
            required=True,
        ),
        Column(
            "entity_type",
            "类型",
            "entity type",
            ("企业类型", "主体类型", "法人类型", "机构类型", "单位类型", "type"),
        ),
        Column(
            "registered_address",
            "注册地址",
            "registered address",
            ("住所", "登记地址", "注册地", "经营场所", "地址", "address"),
        ),
        Column(
            "legal_representative",
            "法定代表人",
            "legal representative",
            ("法人代表", "法定代表人姓名", "负责人", "经营者", "representative"),
        ),
        Column(
            "status", "登记状态", "status", ("经营状态", "状态", "企业状态", "registrationstatus")
        ),
        Column(
            "established_on",
            "成立日期",
            "established on",
            ("成立时间", "注册日期", "establisheddate", "founded", "establishmentdate"),
        ),
        _LON,
        _LAT,
        _COMMUNITY,
    ),
    Kind.ADDRESSES: (
        Column(
            "address",
            "标准地址",
            "address",
            ("地址", "标准地址名称", "地址名称", "详细地址", "standardaddress"),
            required=True,
        ),
        Column(
            "building_name",
            "建筑物名称",
            "building name",
            ("建筑名称", "楼宇名称", "建筑物", "楼宇", "building"),
        ),
        Column(_LON.field, _LON.zh, _LON.en, _LON.aliases, required=True),
        Column(_LAT.field, _LAT.zh, _LAT.en, _LAT.aliases, required=True),
        Column(
            "grid_code",
            "单元网格代码",
            "grid code",
            ("单元网格", "网格代码", "网格编码", "单元网格编码", "grid"),
        ),
        _COMMUNITY,
    ),
}

# Full-width ASCII and the ideographic space, as typed on Chinese input methods.
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
# Remarks users put in headers: 身份证号（必填）, 姓名*, phone (mobile).
_REMARK = re.compile(r"[(\[【].*?[)\]】]|\*")
_SEPARATORS = re.compile(r"[\s_\-./:：]+")


def header_key(text: str) -> str:
    """A header reduced to what identifies it: no remarks, spaces, case or full-width forms."""
    folded = text.translate(_FULLWIDTH)
    folded = _REMARK.sub("", folded.lstrip("\ufeff"))
    return _SEPARATORS.sub("", folded).lower()


def header_index(kind: Kind) -> dict[str, Column]:
    """Every accepted spelling of every column of `kind`, keyed by header_key."""
    index: dict[str, Column] = {}
    for column in COLUMNS[kind]:
        for name in (column.field, column.zh, column.en, *column.aliases):
            index.setdefault(header_key(name), column)
    return index
