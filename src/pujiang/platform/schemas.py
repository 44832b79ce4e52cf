"""Request and response models of the kernel's own routes, and the bases every module uses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pujiang.platform.models import DepartmentLevel


class WriteModel(BaseModel):
    """Base of every request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int
    refresh_token: str | None = None
    scope: str = ""


class DepartmentIn(WriteModel):
    code: str = Field(min_length=2, max_length=64, examples=["310101-CGZF"])
    name: str = Field(min_length=1, max_length=128, examples=["黄浦区城管执法局"])
    name_en: str = Field("", max_length=128)
    level: DepartmentLevel = DepartmentLevel.CITY
    district_code: str | None = Field(None, pattern=r"^\d{6}$")
    parent_code: str | None = None


class DepartmentOut(ReadModel):
    code: str
    name: str
    name_en: str
    level: str
    district_code: str | None


class UserIn(WriteModel):
    username: str = Field(min_length=3, max_length=64, examples=["wang.handler"])
    password: str = Field(min_length=1, max_length=256)
    display_name: str = Field("", max_length=128)
    department_code: str | None = None
    roles: list[str] = Field(default_factory=list, examples=[["handler"]])


class UserPatch(WriteModel):
    display_name: str | None = Field(None, max_length=128)
    department_code: str | None = None
    roles: list[str] | None = None
    password: str | None = Field(None, min_length=1, max_length=256)


class PrincipalOut(BaseModel):
    username: str
    kind: str
    display_name: str
    department_code: str | None
    roles: list[str]
    is_active: bool
    locked_until: datetime | None = None
    last_login_at: datetime | None = None


class MeOut(BaseModel):
    username: str
    kind: str
    department_code: str | None
    roles: list[str]
    permissions: list[str]


class ServiceAccountIn(WriteModel):
    name: str = Field(min_length=3, max_length=64, examples=["district-huangpu-feed"])
    display_name: str = Field("", max_length=128)
    department_code: str | None = None
    roles: list[str] = Field(default_factory=list)
    key_label: str = Field("", max_length=128)
    key_expires_at: datetime | None = None


class ApiKeyIn(WriteModel):
    label: str = Field("", max_length=128)
    expires_at: datetime | None = None


class ApiKeyOut(BaseModel):
    id: int
    prefix: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class NewApiKeyOut(ApiKeyOut):
    key: str = Field(description="The full key. It is shown only in this reply; store it now.")


class ServiceAccountOut(BaseModel):
    account: PrincipalOut
    api_key: NewApiKeyOut


class GrantIn(WriteModel):
    owner_department_code: str
    grantee_department_code: str
    kind: str = Field(min_length=1, max_length=64, examples=["cases"])
    resource_id: str | None = Field(None, max_length=128)
    can_write: bool = False
    expires_at: datetime | None = None


class GrantOut(BaseModel):
    id: int
    owner_department_code: str
    grantee_department_code: str
    kind: str
    resource_id: str | None
    can_write: bool
    expires_at: datetime | None
    revoked_at: datetime | None
    created_by: str
    created_at: datetime


class AuditEntryOut(ReadModel):
    id: int
    occurred_at: datetime
    request_id: str
    actor: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_after_id: int | None


class AuditVerifyOut(BaseModel):
    ok: bool
    checked: int
    head_id: int
    head_hash: str
    first_bad_id: int | None
    reason: str
