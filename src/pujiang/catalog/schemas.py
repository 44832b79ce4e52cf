"""Request and response models of the catalog, sharing and open-data routes.

Every field is checked here, at the edge; a bad value answers 422 naming the field (the
kernel's validation handler does the naming). Rules that need the database (does the
department exist? is the related resource known?) are checked in the service.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator

from pujiang.catalog.vocab import (
    ITEM_TYPE_ALIASES,
    THEMES,
    BaseRegistry,
    ItemType,
    Masking,
    OpenType,
    PublishRule,
    ResourceFormat,
    ShareType,
    UpdateCycle,
)
from pujiang.platform.schemas import WriteModel

# 类 (1 digit: 1 基础, 2 主题, 3 部门) 项 (2) 目 (3) 细目 (0–6), "/", 顺序码 (1–12 digits).
CODE_RE = re.compile(r"^[1-3]\d{2}\d{3}\d{0,6}/\d{1,12}$")
CODE_HELP = "类(1位)项(2位)目(3位)细目(0–6位)/顺序码, e.g. 305001001/000001"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{1,99}$"
# Column names become SQL identifiers (quoted): letters, digits, underscore, CJK; no leading _.
ITEM_NAME_RE = re.compile(r"^[A-Za-z\u4e00-\u9fff][A-Za-z0-9_\u4e00-\u9fff]{0,29}$")


def _item_type(value: Any) -> Any:
    if isinstance(value, str):
        return ITEM_TYPE_ALIASES.get(value.strip(), value.strip())
    return value


class DataItem(WriteModel):
    """One data item (信息项): a column of the resource's data."""

    name: str = Field(min_length=1, max_length=30, examples=["线路名称"])
    type: Annotated[ItemType, BeforeValidator(_item_type)] = Field(
        description="string / integer / number / date / datetime / boolean (或 字符型 整型 …)"
    )
    description: str = Field("", max_length=500)
    personal: bool = Field(False, description="个人信息 / personal data")
    quasi_identifier: bool = Field(False, description="准标识符，参与 k-匿名检查")
    key: bool = Field(False, description="主键的一部分，用于唯一性评分")
    publish_rule: PublishRule | None = Field(
        None,
        description="开放时的处理：keep / mask / generalise / suppress（个人信息默认 suppress）",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ITEM_NAME_RE.match(value) or len(value.encode()) > 63:
            raise ValueError(
                "信息项名称须以字母或汉字开头，仅含字母、数字、下划线、汉字，最多 30 字 / "
                "an item name starts with a letter or CJK character and holds only letters, "
                "digits, '_' and CJK characters (at most 30)"
            )
        return value

    @model_validator(mode="after")
    def _rule(self) -> DataItem:
        if self.publish_rule is None:
            self.publish_rule = PublishRule.SUPPRESS if self.personal else PublishRule.KEEP
        elif self.personal and self.publish_rule is PublishRule.KEEP:
            raise ValueError(
                f"信息项 {self.name} 是个人信息，开放时不能原样保留（publish_rule 须为 mask、"
                f"generalise 或 suppress）/ item {self.name} is personal: publish_rule must be "
                "mask, generalise or suppress"
            )
        return self


class ResourceIn(WriteModel):
    name: str = Field(pattern=NAME_PATTERN, examples=["bus-arrivals"])
    code: str = Field(examples=["305001001/000001"], description=CODE_HELP)
    title: str = Field(min_length=2, max_length=200, examples=["公交线路实时到站"])
    summary: str = Field(min_length=2, max_length=4000)
    department_code: str = Field(min_length=2, max_length=64, description="信息资源提供方")
    format: ResourceFormat
    items: list[DataItem] = Field(min_length=1, max_length=200)
    share_type: ShareType
    share_conditions: str = Field("", max_length=2000)
    share_basis: str = Field("", max_length=2000, description="共享依据（法律法规、政策）")
    open_type: OpenType
    open_conditions: str = Field("", max_length=2000)
    update_cycle: UpdateCycle
    released_on: date
    related_codes: list[str] = Field(default_factory=list, max_length=50)
    base_registry: BaseRegistry | None = None
    theme: str
    tags: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        default_factory=list, max_length=20
    )
    min_k: int = Field(5, ge=2, le=1000, description="开放前 k-匿名的最小 k")
    live_view: str | None = Field(None, max_length=64, description="实时视图提供者名称")

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not CODE_RE.match(value):
            raise ValueError(f"资源代码格式应为 {CODE_HELP} / the code must look like {CODE_HELP}")
        return value

    @field_validator("related_codes")
    @classmethod
    def _related(cls, values: list[str]) -> list[str]:
        for value in values:
            if not CODE_RE.match(value):
                raise ValueError(
                    f"关联资源代码 {value} 格式不对 / related code {value}: {CODE_HELP}"
                )
        return values

    @field_validator("theme")
    @classmethod
    def _theme(cls, value: str) -> str:
        if value not in THEMES:
            raise ValueError(f"主题须为 / theme must be one of: {'、'.join(THEMES)}")
        return value

    @field_validator("released_on")
    @classmethod
    def _released(cls, value: date) -> date:
        if value.year < 1990:
            raise ValueError("发布日期早于 1990 年 / release date before 1990")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ResourceIn:
        names = [item.name for item in self.items]
        duplicate = sorted({n for n in names if names.count(n) > 1})
        if duplicate:
            raise ValueError(
                f"items: 信息项名称重复 / duplicate item names: {', '.join(duplicate)}"
            )
        if self.share_type is ShareType.CONDITIONAL and not self.share_conditions:
            raise ValueError(
                "share_conditions: 有条件共享须写明共享条件 / conditional sharing needs conditions"
            )
        if self.share_type is not ShareType.UNCONDITIONAL and not self.share_basis:
            raise ValueError(
                "share_basis: 有条件共享和不予共享须写明依据 / conditional or no sharing needs "
                "its legal basis"
            )
        if self.open_type is OpenType.CONDITIONAL and not self.open_conditions:
            raise ValueError(
                "open_conditions: 有条件开放须写明开放条件 / conditional opening needs conditions"
            )
        if self.share_type is ShareType.NONE and self.open_type is not OpenType.NONE:
            raise ValueError(
                "open_type: 不予共享的资源不能向社会开放 / a resource not shared with government "
                "cannot be open to the public"
            )
        if self.code.startswith("1") and self.base_registry is None:
            raise ValueError(
                "base_registry: 基础信息资源（代码以 1 开头）须注明所属基础库 / a base resource "
                "(code starting with 1) must name its base registry"
            )
        return self


class DataItemOut(BaseModel):
    name: str
    type: str
    description: str
    personal: bool
    quasi_identifier: bool
    key: bool
    publish_rule: str


class ResourceOut(BaseModel):
    uid: str
    name: str
    code: str
    title: str
    summary: str
    department_code: str
    department_name: str
    format: str
    items: list[DataItemOut]
    share_type: str
    share_conditions: str
    share_basis: str
    open_type: str
    open_conditions: str
    update_cycle: str
    released_on: date
    related_codes: list[str]
    base_registry: str | None
    theme: str
    tags: list[str]
    min_k: int
    live_view: str | None
    row_count: int
    rejected_rows: int
    data_updated_at: datetime | None
    opened: bool
    opened_at: datetime | None
    created_at: datetime
    updated_at: datetime


class FacetCount(BaseModel):
    value: str
    count: int


class SearchOut(BaseModel):
    total: int
    items: list[ResourceOut]
    facets: dict[str, list[FacetCount]]


class BadCell(BaseModel):
    column: str
    value: str
    reason: str


class BadRow(BaseModel):
    row: int = Field(description="文件中的行号（含表头，从 1 开始）/ line in the file, header = 1")
    errors: list[BadCell]


class ColumnReport(BaseModel):
    name: str
    declared: str
    inferred: str


class UploadOut(BaseModel):
    stored: bool
    encoding: str
    rows_read: int
    rows_stored: int
    bad_rows: list[BadRow]
    columns: list[ColumnReport]
    message: str


class DataPage(BaseModel):
    total: int
    fields: list[dict[str, str]]
    records: list[dict[str, Any]]


# -- sharing ------------------------------------------------------------------------------------


class ShareRequestIn(WriteModel):
    resource: str = Field(pattern=NAME_PATTERN, description="资源名称 / the resource's name")
    consumer_department_code: str | None = Field(
        None, description="申请部门；缺省为申请人所在部门 / defaults to the caller's department"
    )
    purpose: str = Field(min_length=5, max_length=2000)
    fields: list[str] = Field(min_length=1, max_length=200)


class ApproveIn(WriteModel):
    expires_at: datetime
    masking: dict[str, Masking] = Field(
        default_factory=dict, description="字段 → none / mask / hash；个人信息默认 mask"
    )
    reason: str = Field("", max_length=2000)


class RefuseIn(WriteModel):
    reason: str = Field(min_length=2, max_length=2000, description="拒绝理由 / why")


class ShareRequestOut(BaseModel):
    id: int
    resource: str
    resource_title: str
    provider_department_code: str
    consumer_department_code: str
    requested_by: str
    purpose: str
    fields: list[str]
    status: str
    requested_at: datetime
    due_on: date
    overdue: bool
    decided_at: datetime | None
    decided_by: str | None
    reason: str
    masking: dict[str, str]
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool


class ExchangeQueryIn(WriteModel):
    filters: dict[str, Any] = Field(default_factory=dict)
    limit: int = Field(100, ge=1, le=10000)
    offset: int = Field(0, ge=0)


class ExchangeLogOut(BaseModel):
    id: int
    occurred_at: datetime
    caller: str
    consumer: str
    resource: str
    grant_id: int | None
    status: int
    rows: int
    request_hash: str
    response_hash: str
    hash: str


class ChainOut(BaseModel):
    ok: bool
    checked: int
    head_id: int
    head_hash: str
    first_bad_id: int | None
    reason: str


# -- open data ----------------------------------------------------------------------------------


class PublishOut(BaseModel):
    resource: str
    published_id: str
    rows: int
    k: int | None
    columns: dict[str, str]


class OpenApplicationIn(WriteModel):
    resource: str = Field(pattern=NAME_PATTERN)
    organisation: str = Field(min_length=2, max_length=200)
    contact: str = Field(min_length=3, max_length=200)
    purpose: str = Field(min_length=5, max_length=2000)


class ReviewIn(WriteModel):
    approve: bool
    reason: str = Field("", max_length=2000)
    rate_per_minute: int = Field(60, ge=1, le=10000)
    expires_at: datetime | None = None

    @model_validator(mode="after")
    def _reason(self) -> ReviewIn:
        if not self.approve and len(self.reason) < 2:
            raise ValueError("reason: 拒绝须写明理由 / a refusal needs a reason")
        return self


class AgreeIn(WriteModel):
    accept: bool = Field(description="接受数据使用协议 / accept the data-use agreement")


class OpenApplicationOut(BaseModel):
    id: int
    resource: str
    applicant: str
    organisation: str
    purpose: str
    status: str
    created_at: datetime
    reviewed_by: str | None
    reason: str
    agreement: str
    agreed_at: datetime | None
    rate_per_minute: int
    expires_at: datetime | None
    api_key: str | None = Field(
        None, description="仅在签署协议时返回一次 / shown once, when the agreement is signed"
    )


# -- quality ------------------------------------------------------------------------------------


class QualityOut(BaseModel):
    resource: str
    department_code: str
    rows: int
    completeness: float | None
    validity: float | None
    uniqueness: float | None
    timeliness: float
    late: bool
    due_at: datetime | None
    score: float | None


class DepartmentQualityOut(BaseModel):
    department_code: str
    resources: int
    completeness: float | None
    validity: float | None
    uniqueness: float | None
    timeliness: float
    late: int
    score: float | None
