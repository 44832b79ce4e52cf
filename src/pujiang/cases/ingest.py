"""Cases from sensor alerts: `alerts` publishes `alert.raised` on the bus, we open a case.

The payload is the alerts module's; we read only what we need and tolerate what is missing:
`id` (to open one case per alert), `lon`/`lat` (WGS84), `message` or `title`, and optionally
`case_category` (a catalogue code) or a `kind` we map below. One alert, one case: a repeated
delivery of the same alert id is ignored.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from pujiang.cases import service
from pujiang.cases.models import Case
from pujiang.cases.service import NewCase, Source
from pujiang.platform.errors import Problem

log = logging.getLogger("pujiang.cases")

TOPIC = "alert.raised"
DEFAULT_CATEGORY = "E0607"  # 环境监测超标
# Alert kinds a sensor network raises, and the catalogue class each becomes.
KIND_CATEGORIES = {
    "waterlogging": "E0404",
    "flood": "E0404",
    "gas": "E0403",
    "gas_leak": "E0403",
    "water_main": "E0402",
    "manhole": "C0102",
    "manhole_cover": "C0102",
    "road_collapse": "E0401",
    "noise": "E0602",
    "dust": "E0302",
    "fire_hydrant": "C0107",
    "street_light": "C0108",
}


def category_for(payload: dict[str, Any]) -> str:
    explicit = payload.get("case_category")
    if isinstance(explicit, str) and explicit:
        return explicit
    kind = str(payload.get("kind") or payload.get("type") or "").lower()
    return KIND_CATEGORIES.get(kind, DEFAULT_CATEGORY)


def open_case_from_alert(context: Any, payload: dict[str, Any]) -> int | None:
    """Open (once) the case for one alert; returns its id, or None if the alert is unusable."""
    alert_id = str(payload.get("id") or "")
    try:
        lon, lat = float(payload["lon"]), float(payload["lat"])
    except (KeyError, TypeError, ValueError):
        lon = lat = None  # type: ignore[assignment]
    if not alert_id:
        log.warning("alert without an id ignored: %s", payload)
        return None
    ref = f"alert:{alert_id}"[:128]
    with context.db.session() as session:
        existing = session.scalars(select(Case.id).where(Case.external_ref == ref)).first()
        if existing is not None:
            return int(existing)
        text = str(payload.get("message") or payload.get("title") or "")
        new = NewCase(
            category_code=category_for(payload),
            source=Source.SENSOR,
            description=f"物联感知告警 / sensor alert {alert_id}: {text}"[:4000],
            address=str(payload.get("address") or payload.get("entity_id") or "")[:255],
            lon=lon,
            lat=lat,
            attributes={
                k: payload[k] for k in ("severity", "entity_id", "rule", "kind") if k in payload
            },
            external_ref=ref,
        )
        try:
            case = service.create_case(session, context, service.SYSTEM, new)
        except Problem as exc:
            log.warning("alert %s did not open a case: %s", alert_id, exc.detail)
            return None
        return case.id


def subscribe(context: Any) -> None:
    def handle(_topic: str, payload: dict[str, Any]) -> None:
        open_case_from_alert(context, payload)

    context.bus.subscribe(TOPIC, handle)
