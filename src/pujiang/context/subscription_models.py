"""Tables of NGSI-LD subscriptions and of the notification outbox.

A subscription row keeps the document as the client wrote it (`body`, returned on GET), the
@context it was written with, and the compiled form matching uses (`compiled`: expanded type
and attribute names). Fields matching filters on, and the status fields the delivery worker
updates, are columns of their own.

The outbox holds one row per notification to deliver: written by the matcher in a short
transaction of its own, taken by the delivery worker (`claimed_until` is a lease, so a crashed
worker's rows come back), deleted only after the endpoint accepted it. A row that failed
`max_attempts` times is kept with `dead = true` for an operator to inspect.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pujiang.platform.db import Base, BigIntPK, UtcDateTime, utcnow


class Subscription(Base):
    __tablename__ = "context_subscriptions"
    __table_args__ = (
        Index("ix_context_subscriptions_tenant_sub_id", "tenant", "sub_id", unique=True),
    )

    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), default="")
    sub_id: Mapped[str] = mapped_column(String(512))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    ld_context: Mapped[Any] = mapped_column(JSON, nullable=True)
    compiled: Mapped[dict[str, Any]] = mapped_column(JSON)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    throttling: Mapped[float | None] = mapped_column(Float)
    time_interval: Mapped[float | None] = mapped_column(Float)
    endpoint_uri: Mapped[str] = mapped_column(String(2048))
    # Throttling and periodic notifications: when the matcher last queued one, when the next
    # periodic one is due.
    last_fired_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    next_periodic_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Status fields of the NGSI-LD NotificationParams, kept by the delivery worker.
    times_sent: Mapped[int] = mapped_column(Integer, default=0)
    times_failed: Mapped[int] = mapped_column(Integer, default=0)
    last_notification: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_success: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_failure: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(96), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class NotificationOutbox(Base):
    __tablename__ = "context_notification_outbox"
    __table_args__ = (Index("ix_context_notification_outbox_due", "dead", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), default="")
    subscription_pk: Mapped[int] = mapped_column(
        ForeignKey("context_subscriptions.pk", ondelete="CASCADE"), index=True
    )
    # Where it goes (scheme://host:port), so one dead endpoint can be set aside as a whole.
    endpoint_key: Mapped[str] = mapped_column(String(512), index=True)
    trigger: Mapped[str] = mapped_column(String(32))
    # The rendered entities of `data`, as JSON text (a list), in the subscription's format.
    data: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    dead: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
