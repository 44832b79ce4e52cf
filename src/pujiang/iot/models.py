"""Tables of device ingest: service groups, devices (with their counters) and commands.

The provisioning documents follow the FIWARE IoT Agent JSON convention; their lists
(attribute mappings, static attributes, commands) are kept as JSON columns in that form.
Counters and `last_seen` are written by the ingest path in batches (see `service.py`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pujiang.platform.db import Base, BigIntPK, UtcDateTime, utcnow

TENANT_LEN = 64


class IotService(Base):
    """A service group: one API key, the entity type and defaults its devices share."""

    __tablename__ = "iot_services"
    __table_args__ = (Index("ix_iot_services_apikey", "apikey", unique=True),)

    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(TENANT_LEN), default="")  # fiware-service
    subservice: Mapped[str] = mapped_column(String(128), default="/")  # fiware-servicepath
    apikey: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(128), default="/iot/json")
    entity_type: Mapped[str] = mapped_column(String(256))
    # An @context URL the entity type and attribute names are expanded with (None: core).
    ld_context: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    static_attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    commands: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    explicit_attrs: Mapped[bool] = mapped_column(Boolean, default=False)
    expected_interval: Mapped[int | None] = mapped_column(Integer, nullable=True)  # seconds
    description: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class IotDevice(Base):
    """A provisioned device: which entity it feeds and how its measures map to attributes."""

    __tablename__ = "iot_devices"
    __table_args__ = (
        Index("ix_iot_devices_apikey_device", "apikey", "device_id", unique=True),
        Index("ix_iot_devices_tenant_device", "tenant", "device_id", unique=True),
        Index("ix_iot_devices_liveness", "online", "offline_after"),
    )

    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(TENANT_LEN), default="")
    subservice: Mapped[str] = mapped_column(String(128), default="/")
    device_id: Mapped[str] = mapped_column(String(128))
    apikey: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(512))
    entity_type: Mapped[str] = mapped_column(String(256))
    protocol: Mapped[str] = mapped_column(String(32), default="IoTA-JSON")
    transport: Mapped[str] = mapped_column(String(8), default="MQTT")  # MQTT | HTTP
    endpoint: Mapped[str | None] = mapped_column(String(2048), nullable=True)  # HTTP commands
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    static_attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    commands: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    explicit_attrs: Mapped[bool] = mapped_column(Boolean, default=False)
    expected_interval: Mapped[int | None] = mapped_column(Integer, nullable=True)  # seconds
    # Offline after this many expected intervals without a message.
    missed_intervals: Mapped[int] = mapped_column(Integer, default=3)
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # last_seen + missed_intervals × expected_interval, written with last_seen: liveness finds
    # the devices gone silent with one indexed comparison. None: nothing expected of it.
    offline_after: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    online: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # None: never heard
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    stored: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    duplicates: Mapped[int] = mapped_column(BigInteger, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class IotCommand(Base):
    """One command sent to a device, from request to the device's acknowledgement."""

    __tablename__ = "iot_commands"
    __table_args__ = (Index("ix_iot_commands_device_status", "device_pk", "status"),)

    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(TENANT_LEN), default="")
    device_pk: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("iot_devices.pk", ondelete="CASCADE"),
    )
    name: Mapped[str] = mapped_column(String(128))
    payload: Mapped[Any] = mapped_column(JSON, nullable=True)
    # PENDING (queued) -> DELIVERED (sent to the device) -> OK | ERROR; EXPIRED when unanswered.
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    info: Mapped[str | None] = mapped_column(Text, nullable=True)
    requested_by: Mapped[str] = mapped_column(String(96), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
