"""Tables of the data-resource catalog: resources, their search terms, sharing requests, the
exchange log, open-data applications.

A resource's data lives in tables of its own, created at run time (see `datastore.py`): the
source table `ds_<uid>` and, once opened, the published copy named by `published_id`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pujiang.platform.db import Base, BigIntPK, UtcDateTime, utcnow
from pujiang.platform.models import Department


class CatalogResource(Base):
    """One government information resource (政务信息资源) with its core metadata."""

    __tablename__ = "catalog_resources"
    __table_args__ = (
        Index("ix_catalog_resources_department_id", "department_id"),
        Index("ix_catalog_resources_open_type", "open_type"),
        # Covers what search reads for every hit (facets and default ranking).
        Index(
            "ix_catalog_resources_search",
            "id",
            "department_id",
            "theme",
            "format",
            "open_type",
            "released_on",
            "opened_at",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)  # stable id for CKAN and DCAT
    name: Mapped[str] = mapped_column(String(100), unique=True)  # URL name, ASCII
    code: Mapped[str] = mapped_column(String(40), unique=True)  # 类项目细目/顺序码
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    format: Mapped[str] = mapped_column(String(16))
    share_type: Mapped[str] = mapped_column(String(16))
    share_conditions: Mapped[str] = mapped_column(Text, default="")
    share_basis: Mapped[str] = mapped_column(Text, default="")
    open_type: Mapped[str] = mapped_column(String(16))
    open_conditions: Mapped[str] = mapped_column(Text, default="")
    update_cycle: Mapped[str] = mapped_column(String(8))
    released_on: Mapped[date] = mapped_column(Date)
    base_registry: Mapped[str | None] = mapped_column(String(16))
    theme: Mapped[str] = mapped_column(String(32))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    related_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # k-anonymity: the smallest group over the quasi-identifiers an opened dataset may have.
    min_k: Mapped[int] = mapped_column(SmallInteger, default=5)
    live_view: Mapped[str | None] = mapped_column(String(64))
    license_id: Mapped[str] = mapped_column(String(32), default="cc-by-4.0")
    # Data: the source table holds what the provider loaded; the published copy what opened.
    row_count: Mapped[int] = mapped_column(default=0)
    rejected_rows: Mapped[int] = mapped_column(default=0)
    data_updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    published_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    opened_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(96))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    department: Mapped[Department] = relationship(lazy="joined")


class CatalogTerm(Base):
    """Search index: one row per (term, resource). Terms are CJK bigrams and ASCII words."""

    __tablename__ = "catalog_terms"
    __table_args__ = (Index("ix_catalog_terms_resource_id", "resource_id"),)

    term: Mapped[str] = mapped_column(String(32), primary_key=True)
    resource_id: Mapped[int] = mapped_column(
        ForeignKey("catalog_resources.id", ondelete="CASCADE"), primary_key=True
    )
    weight: Mapped[int] = mapped_column(SmallInteger)


class ShareRequest(Base):
    """A department asks for a resource; the provider decides. Approved = a live grant."""

    __tablename__ = "catalog_share_requests"
    __table_args__ = (
        Index("ix_catalog_share_requests_resource_id", "resource_id"),
        Index("ix_catalog_share_requests_consumer_department_id", "consumer_department_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("catalog_resources.id"))
    consumer_department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    requested_by: Mapped[str] = mapped_column(String(96))
    purpose: Mapped[str] = mapped_column(Text)
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    due_on: Mapped[date] = mapped_column(Date)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(96))
    reason: Mapped[str] = mapped_column(Text, default="")
    # The grant, once approved: field -> masking, and when it ends.
    masking: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_by: Mapped[str | None] = mapped_column(String(96))

    resource: Mapped[CatalogResource] = relationship(lazy="joined")
    consumer: Mapped[Department] = relationship(lazy="joined")


class ExchangeLogEntry(Base):
    """One exchange call, hash-chained like the audit log (chain name "exchange")."""

    __tablename__ = "catalog_exchange_log"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())
    request_id: Mapped[str] = mapped_column(String(64), default="")
    caller: Mapped[str] = mapped_column(String(96))
    consumer: Mapped[str] = mapped_column(String(64))  # the caller's department code
    resource: Mapped[str] = mapped_column(String(100))
    grant_id: Mapped[int | None] = mapped_column()
    status: Mapped[int] = mapped_column(SmallInteger)
    rows: Mapped[int] = mapped_column(default=0)
    request_hash: Mapped[str] = mapped_column(String(64))
    response_hash: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class OpenApplication(Base):
    """An application to use a 有条件开放 dataset: review, agreement, then a scoped key."""

    __tablename__ = "catalog_open_applications"
    __table_args__ = (Index("ix_catalog_open_applications_resource_id", "resource_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("catalog_resources.id"))
    applicant: Mapped[str] = mapped_column(String(96))
    organisation: Mapped[str] = mapped_column(String(200))
    contact: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    reviewed_by: Mapped[str | None] = mapped_column(String(96))
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    reason: Mapped[str] = mapped_column(Text, default="")
    agreement: Mapped[str] = mapped_column(Text, default="")
    agreed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The service account created for this application alone; its keys reach this dataset only.
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("principals.id", ondelete="SET NULL"), unique=True
    )
    rate_per_minute: Mapped[int] = mapped_column(default=60)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    resource: Mapped[CatalogResource] = relationship(lazy="joined")
