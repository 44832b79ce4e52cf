"""Controlled vocabularies of the catalog, as the national catalog guide (政务信息资源目录编制指南)
names them. Values are stored in Chinese, exactly as the guide writes them."""

from __future__ import annotations

import enum
from datetime import timedelta


class ResourceFormat(enum.StrEnum):
    SPREADSHEET = "电子表格"
    DATABASE = "数据库"
    SERVICE = "服务接口"
    DOCUMENT = "电子文件"
    IMAGE = "图形图像"
    STREAMING = "流媒体"
    OTHER = "其他"


class ShareType(enum.StrEnum):
    UNCONDITIONAL = "无条件共享"
    CONDITIONAL = "有条件共享"
    NONE = "不予共享"


class OpenType(enum.StrEnum):
    UNCONDITIONAL = "无条件开放"
    CONDITIONAL = "有条件开放"
    NONE = "非开放"


class UpdateCycle(enum.StrEnum):
    REALTIME = "实时"
    DAILY = "日"
    WEEKLY = "周"
    MONTHLY = "月"
    QUARTERLY = "季"
    HALF_YEARLY = "半年"
    YEARLY = "年"


# How old data may be before it is late for its cycle. "实时" allows an hour of lag.
CYCLE_PERIOD: dict[UpdateCycle, timedelta] = {
    UpdateCycle.REALTIME: timedelta(hours=1),
    UpdateCycle.DAILY: timedelta(days=1),
    UpdateCycle.WEEKLY: timedelta(days=7),
    UpdateCycle.MONTHLY: timedelta(days=31),
    UpdateCycle.QUARTERLY: timedelta(days=92),
    UpdateCycle.HALF_YEARLY: timedelta(days=183),
    UpdateCycle.YEARLY: timedelta(days=366),
}


class BaseRegistry(enum.StrEnum):
    POPULATION = "人口"
    LEGAL_ENTITY = "法人"
    SPATIAL = "空间地理"
    CREDIT = "社会信用"
    LICENCE = "电子证照"


# The guide's theme list ("包括但不限于"), plus the themes the plan's systems need.
THEMES: tuple[str, ...] = (
    "公共服务",
    "健康保障",
    "社会保障",
    "食品药品安全",
    "安全生产",
    "价格监管",
    "能源安全",
    "信用体系",
    "城乡建设",
    "社区治理",
    "生态环保",
    "应急维稳",
    "交通出行",
    "经济发展",
    "教育文化",
    "气象服务",
    "城市管理",
)


class ItemType(enum.StrEnum):
    """Data item types; the guide's Chinese names are accepted as aliases."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    DATE = "date"
    DATETIME = "datetime"
    BOOLEAN = "boolean"


ITEM_TYPE_ALIASES: dict[str, ItemType] = {
    "字符型": ItemType.STRING,
    "字符串": ItemType.STRING,
    "整型": ItemType.INTEGER,
    "整数": ItemType.INTEGER,
    "数值型": ItemType.NUMBER,
    "数值": ItemType.NUMBER,
    "日期型": ItemType.DATE,
    "日期": ItemType.DATE,
    "日期时间型": ItemType.DATETIME,
    "日期时间": ItemType.DATETIME,
    "布尔型": ItemType.BOOLEAN,
    "布尔": ItemType.BOOLEAN,
}


class PublishRule(enum.StrEnum):
    """What happens to a column when a dataset opens."""

    KEEP = "keep"
    MASK = "mask"  # keep the shape, hide most characters (ID numbers, phones, names)
    GENERALISE = "generalise"  # coarsen: ages to decades, dates to months, numbers to bands
    SUPPRESS = "suppress"  # drop the column


class Masking(enum.StrEnum):
    """What a sharing grant does to a field a consumer receives."""

    NONE = "none"
    MASK = "mask"
    HASH = "hash"  # a keyed digest: joinable across calls, not reversible
