"""Request and response models of the cases API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from pujiang.cases.service import RequestType, Source
from pujiang.platform.geo import Crs
from pujiang.platform.identifiers import IdentifierError, normalise_mobile
from pujiang.platform.schemas import WriteModel

# Deliberately loose: one @, a dot in the domain, no spaces. The mail server is the real check.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
StageName = Literal["register", "dispatch", "handle", "verify", "close"]
Level = Literal["street", "district", "city"]
CategoryCode = Field(min_length=5, max_length=5, pattern=r"^[CE]\d{4}$", examples=["E0501"])


class AttributeValue(BaseModel):
    key: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=128)


class Attribute(WriteModel):
    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")
    description: str = Field(min_length=1, max_length=255)
    datatype: Literal[
        "string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"
    ] = "string"
    required: bool = False
    values: list[AttributeValue] = Field(default_factory=list)


class CategoryIn(WriteModel):
    code: str = CategoryCode
    kind: Literal["component", "event"]
    major_name: str = Field(min_length=1, max_length=64, examples=["街面秩序"])
    name: str = Field(min_length=1, max_length=128, examples=["乱设摊"])
    name_en: str = Field("", max_length=128)
    register_standard: str = Field(min_length=1, max_length=2000)
    close_standard: str = Field(min_length=1, max_length=2000)
    time_limits: dict[StageName, float] = Field(default_factory=dict)
    dispatch_rule: DispatchRule = Field(default_factory=lambda: DispatchRule())
    attributes: list[Attribute] = Field(default_factory=list)
    keywords: str = Field("", max_length=255)
    duplicate_radius_m: float = Field(50.0, gt=0, le=5000)
    duplicate_window_hours: float = Field(24.0, gt=0, le=24 * 90)


class DispatchRule(WriteModel):
    department: str = Field(
        "{district}-CGZF",
        min_length=2,
        max_length=64,
        description="Department code; {district} is replaced by the case's district code.",
    )
    level: Level = "district"
    by_district: dict[str, str] = Field(default_factory=dict)


class CategoryPatch(WriteModel):
    name: str | None = Field(None, min_length=1, max_length=128)
    name_en: str | None = Field(None, max_length=128)
    register_standard: str | None = Field(None, min_length=1, max_length=2000)
    close_standard: str | None = Field(None, min_length=1, max_length=2000)
    time_limits: dict[StageName, float] | None = None
    dispatch_rule: DispatchRule | None = None
    attributes: list[Attribute] | None = None
    keywords: str | None = Field(None, max_length=255)
    duplicate_radius_m: float | None = Field(None, gt=0, le=5000)
    duplicate_window_hours: float | None = Field(None, gt=0, le=24 * 90)
    active: bool | None = None


class CategoryOut(BaseModel):
    code: str
    kind: str
    major_code: str
    major_name: str
    minor_code: str
    name: str
    name_en: str
    register_standard: str
    close_standard: str
    time_limits: dict[str, float]
    dispatch_rule: dict[str, Any]
    attributes: list[dict[str, Any]]
    keywords: str
    duplicate_radius_m: float
    duplicate_window_hours: float
    active: bool


class CaseIn(WriteModel):
    category_code: str = CategoryCode
    source: Source = Source.PATROL
    description: str = Field("", max_length=4000)
    address: str = Field("", max_length=255)
    lon: float | None = Field(None, ge=-180, le=180)
    lat: float | None = Field(None, ge=-90, le=90)
    crs: Crs = Crs.WGS84
    request_type: RequestType | None = Field(None, description="12345: 咨询/求助/投诉/举报/建议")
    reporter_name: str | None = Field(None, max_length=64)
    reporter_phone: str | None = Field(None, max_length=32)
    reporter_email: str | None = Field(None, max_length=255, pattern=EMAIL_PATTERN)
    attributes: dict[str, str | float | list[str]] = Field(default_factory=dict)

    @field_validator("reporter_phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if not value:
            return None
        digits = value.replace("-", "").replace(" ", "")
        try:
            return normalise_mobile(digits)
        except IdentifierError:
            # Fixed lines (021-…) are fine for a hotline caller; keep digits only.
            if digits.isdigit() and 7 <= len(digits) <= 12:
                return digits
            raise ValueError("电话号码无效 / not a phone number") from None


class StepIn(WriteModel):
    note: str = Field("", max_length=2000)


class ReasonIn(WriteModel):
    reason: str = Field(min_length=1, max_length=2000)
    note: str = Field("", max_length=2000)


class MergeIn(WriteModel):
    into: int = Field(gt=0, description="The case this one duplicates.")
    note: str = Field("", max_length=2000)


class DispatchIn(WriteModel):
    department_code: str | None = Field(
        None, max_length=64, description="Override the class's rule (manual dispatch)."
    )
    level: Level | None = None
    note: str = Field("", max_length=2000)


class ExtensionIn(WriteModel):
    hours: float = Field(gt=0, le=140, description="Working hours to add to the time limit.")
    reason: str = Field(min_length=1, max_length=2000)


class FeedbackIn(WriteModel):
    result: str = Field(min_length=1, max_length=4000)
    note: str = Field("", max_length=2000)


class EvaluateIn(WriteModel):
    score: int = Field(ge=1, le=5)
    note: str = Field("", max_length=2000)


class FileOut(BaseModel):
    id: int
    stage: str
    media_type: str
    size: int
    filename: str
    url: str
    thumbnail_url: str | None


class EventOut(BaseModel):
    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str
    note: str
    detail: dict[str, Any]


class CaseOut(BaseModel):
    id: int
    tracking_id: str
    category_code: str
    category_name: str
    source: str
    request_type: str | None
    state: str
    state_title: str
    description: str
    address: str
    lon: float | None
    lat: float | None
    district_code: str | None
    street_code: str | None
    community_code: str | None
    grid_code: str | None
    place_name: str
    department_code: str | None
    center_code: str | None
    escalated_to_code: str | None
    level: str
    escalation_level: int
    stage_deadline: datetime | None
    handle_deadline: datetime | None
    overdue: bool
    extension_pending_hours: float | None
    rework_count: int
    extension_count: int
    duplicate_of: int | None
    duplicate_candidates: list[int]
    reporter_name: str | None
    reporter_phone: str | None
    reporter_email: str | None
    result: str
    evaluation_score: int | None
    created_at: datetime
    updated_at: datetime
    allowed_actions: list[str]


class CaseDetail(CaseOut):
    events: list[EventOut]
    files: list[FileOut]


class CasePage(BaseModel):
    items: list[CaseOut]
    next_before_id: int | None


class TrackOut(BaseModel):
    tracking_id: str
    category_name: str
    state: str
    state_title: str
    created_at: datetime
    updated_at: datetime
    merged_into: str | None
    history: list[dict[str, Any]]


class EscalateOut(BaseModel):
    escalated: list[int]


CategoryIn.model_rebuild()
