"""Tables of this module: the case catalogue, cases, their history, files and the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from pujiang.platform.db import Base, BigIntPK, UtcDateTime, utcnow


class CaseCategory(Base):
    """One minor class of the catalogue (GB/T 30428 部件/事件 小类) with its standards."""

    __tablename__ = "case_categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    # "C0101" = component, major 01, minor 01; "E0203" = event, major 02, minor 03.
    code: Mapped[str] = mapped_column(String(16), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # component | event
    major_code: Mapped[str] = mapped_column(String(2))
    major_name: Mapped[str] = mapped_column(String(64))
    minor_code: Mapped[str] = mapped_column(String(2))
    name: Mapped[str] = mapped_column(String(128))
    name_en: Mapped[str] = mapped_column(String(128), default="")
    register_standard: Mapped[str] = mapped_column(Text, default="")  # 立案标准
    close_standard: Mapped[str] = mapped_column(Text, default="")  # 结案标准
    # Working hours per stage: register, dispatch, handle, verify, close.
    time_limits: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    # {"department": "{district}-CGZF", "level": "district", "by_district": {"310101": "..."}}
    dispatch_rule: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Open311 service-definition attributes (extra questions a reporter answers).
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    keywords: Mapped[str] = mapped_column(String(255), default="")
    # A new case of this class this close to an open one, this soon after it, may be a duplicate.
    duplicate_radius_m: Mapped[float] = mapped_column(Float, default=50.0)
    duplicate_window_hours: Mapped[float] = mapped_column(Float, default=24.0)
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Case(Base):
    """A reported problem on its way through the grid-management workflow."""

    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_department_state", "department_id", "state", "id"),
        Index("ix_cases_center_state", "center_id", "state", "id"),
        Index("ix_cases_escalated_state", "escalated_to_id", "state", "id"),
        Index("ix_cases_state_deadline", "state", "stage_deadline"),
        Index("ix_cases_category_created", "category_id", "created_at"),
        Index("ix_cases_created", "created_at"),
        Index("ix_cases_updated", "updated_at"),
        # Partial: nearly every row is NULL here, which would talk the planner out of the index.
        Index(
            "ix_cases_external_ref",
            "external_ref",
            sqlite_where=text("external_ref IS NOT NULL"),
            postgresql_where=text("external_ref IS NOT NULL"),
        ),
        Index(
            "ix_cases_duplicate_of",
            "duplicate_of_id",
            sqlite_where=text("duplicate_of_id IS NOT NULL"),
            postgresql_where=text("duplicate_of_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # What a reporter is given to follow the case; not guessable from the id.
    tracking_id: Mapped[str] = mapped_column(String(16), unique=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("case_categories.id"))
    source: Mapped[str] = mapped_column(String(16))  # patrol|hotline|open311|sensor|leader
    request_type: Mapped[str | None] = mapped_column(String(16))  # 12345: consult|help|...
    state: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    address: Mapped[str] = mapped_column(String(255), default="")
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    district_code: Mapped[str | None] = mapped_column(String(6), index=True)
    street_code: Mapped[str | None] = mapped_column(String(9), index=True)
    community_code: Mapped[str | None] = mapped_column(String(12))
    grid_code: Mapped[str | None] = mapped_column(String(15))
    place_name: Mapped[str] = mapped_column(String(255), default="")
    # Owner: the department handling it (before dispatch, the coordinating center).
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    # The operations center that coordinates it (registers, dispatches, verifies, closes).
    center_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    # A higher-level center that took over supervision after the case ran late.
    escalated_to_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    level: Mapped[str] = mapped_column(String(16), default="district")
    escalation_level: Mapped[int] = mapped_column(default=0)
    # Deadline of the current stage, and whether it has been missed.
    stage_deadline: Mapped[datetime | None] = mapped_column(UtcDateTime())
    overdue: Mapped[bool] = mapped_column(default=False)
    overdue_count: Mapped[int] = mapped_column(default=0)
    handle_deadline: Mapped[datetime | None] = mapped_column(UtcDateTime())
    extension_pending_hours: Mapped[float | None] = mapped_column(Float)
    extension_count: Mapped[int] = mapped_column(default=0)
    rework_count: Mapped[int] = mapped_column(default=0)
    return_count: Mapped[int] = mapped_column(default=0)
    duplicate_of_id: Mapped[int | None] = mapped_column(BigIntPK, ForeignKey("cases.id"))
    duplicate_candidates: Mapped[list[int]] = mapped_column(JSON, default=list)
    reporter_name: Mapped[str | None] = mapped_column(String(64))
    reporter_phone: Mapped[str | None] = mapped_column(String(32))
    reporter_email: Mapped[str | None] = mapped_column(String(255))
    reporter_principal: Mapped[str | None] = mapped_column(String(96))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    external_ref: Mapped[str | None] = mapped_column(String(128))
    result: Mapped[str] = mapped_column(Text, default="")
    evaluation_score: Mapped[int | None] = mapped_column()
    evaluation_note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    registered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    dispatched_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    handled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Closed with no stage deadline missed (按期结案); handled by handle_deadline (按期处置).
    closed_on_time: Mapped[bool | None] = mapped_column()
    handled_on_time: Mapped[bool | None] = mapped_column()


class CaseEvent(Base):
    """One step in a case's history; `public` steps are what reporters and Open311 see."""

    __tablename__ = "case_events"
    __table_args__ = (
        Index("ix_case_events_case", "case_id", "id"),
        Index("ix_case_events_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    case_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("cases.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(96))
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    public: Mapped[bool] = mapped_column(default=True)


class CaseFile(Base):
    """A photo or document attached to a case at one stage (report, feedback, verify)."""

    __tablename__ = "case_files"
    __table_args__ = (Index("ix_case_files_case", "case_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    case_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("cases.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(255))
    thumbnail_key: Mapped[str | None] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column()
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255), default="")
    # A file known only by its address (Open311 media_url); nothing is fetched.
    url: Mapped[str | None] = mapped_column(String(1024))
    created_by: Mapped[str] = mapped_column(String(96))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class CaseMessage(Base):
    """The outbox: status messages to reporters, sent by a pluggable sender."""

    __tablename__ = "case_outbox"
    __table_args__ = (Index("ix_case_outbox_pending", "sent_at", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    case_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("cases.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))  # email | sms
    recipient: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
