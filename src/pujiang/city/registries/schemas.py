"""Replies of the registry routes. Personal fields arrive already masked unless the caller may
see them; `masked` says which it is."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field


class PersonOut(BaseModel):
    id: int
    id_number: str = Field(examples=["110105********002X"])
    name: str = Field(examples=["张**"])
    sex: str = Field(description="M or F, from the ID number")
    birth_date: date | None = Field(description="Hidden (null) when masked")
    phone: str | None = Field(examples=["138****1234"])
    household_address: str | None
    residence_address: str | None
    residence_lon: float | None = Field(description="WGS84; hidden (null) when masked")
    residence_lat: float | None
    district_code: str | None
    community_code: str | None
    masked: bool
    created_at: datetime
    updated_at: datetime


class EntityOut(BaseModel):
    id: int
    credit_code: str = Field(examples=["91310115MA1K3BTP2B"])
    name: str
    entity_type: str
    registered_address: str | None
    legal_representative: str | None = Field(examples=["王**"])
    status: str = Field(examples=["存续"])
    status_en: str = Field(examples=["existing"])
    established_on: date | None
    lon: float | None
    lat: float | None
    district_code: str | None
    community_code: str | None
    masked: bool
    created_at: datetime
    updated_at: datetime


class AddressOut(BaseModel):
    id: int
    address: str = Field(examples=["上海市黄浦区福州路123号"])
    building_name: str | None
    lon: float
    lat: float
    district_code: str | None
    community_code: str | None
    grid_code: str | None
    created_at: datetime
    updated_at: datetime


class PersonPage(BaseModel):
    items: list[PersonOut]
    next_after_id: int | None = Field(description="Pass as after_id for the next page")
    masked: bool


class EntityPage(BaseModel):
    items: list[EntityOut]
    next_after_id: int | None
    masked: bool


class AddressPage(BaseModel):
    items: list[AddressOut]
    next_after_id: int | None


class RowErrorOut(BaseModel):
    row: int = Field(description="Row number as a spreadsheet shows it (the header is row 1)")
    column: str = Field(description="The column's header as written in the file")
    field: str
    code: str = Field(examples=["id_number.check_digit"])
    message: str = Field(description="In the request's language")
    message_zh: str
    message_en: str


class ImportReportOut(BaseModel):
    kind: str
    source: str
    format: str = Field(examples=["csv"])
    encoding: str | None = Field(examples=["gbk"])
    partial: bool
    header_row: int
    columns: dict[str, str] = Field(description="Field -> the header that supplied it")
    ignored_columns: list[str]
    rows: int = Field(description="Data rows read (blank rows are skipped)")
    bad_rows: int
    inserted: int
    updated: int
    located: int
    unlocated: int
    imported: bool
    seconds: float
    errors: list[RowErrorOut]


class DistrictCounts(BaseModel):
    district_code: str
    name: str
    persons: int
    entities: int
    addresses: int


class RegistryStats(BaseModel):
    persons: int
    entities: int
    addresses: int
    by_district: list[DistrictCounts]
