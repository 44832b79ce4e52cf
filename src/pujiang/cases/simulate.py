"""A simulated flow of cases, deterministic from a seed: the demo's cases and the benchmark's.

Reports arrive with weekday and office-hour peaks (more 违法建筑 and 乱设摊 than anything else),
from every source, spread over the districts by population. Each then walks the workflow as
far as its age allows, with realistic delays, some rejections, duplicates, extensions,
rework and late handling, so a demo shows cases at every stage. Rows are plain dicts for
executemany; the history rows (`case_events`) are made only when asked for.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pujiang.cases.service import deadline, new_tracking_id
from pujiang.cases.workflow import State
from pujiang.platform.workcal import SHANGHAI

# Relative weights of classes in the flow; others share the rest evenly.
HOT_CLASSES = {
    "E0101": 14.0,  # 违法建筑
    "E0501": 14.0,  # 乱设摊
    "E0502": 8.0,  # 占道经营
    "E0102": 6.0,  # 暴露垃圾
    "E0201": 6.0,  # 非法小广告
    "E0504": 5.0,  # 机动车乱停放
    "E0505": 4.0,  # 非机动车乱停放
    "C0102": 3.0,  # 污水井盖
    "E0601": 3.0,  # 餐饮油烟
    "E0301": 3.0,  # 施工扰民
}
SOURCES = (
    ("patrol", 0.45),
    ("hotline", 0.30),
    ("open311", 0.12),
    ("sensor", 0.08),
    ("leader", 0.05),
)
REQUEST_TYPES = (("complaint", 0.5), ("report", 0.25), ("help", 0.15), ("consult", 0.05),
                 ("suggestion", 0.05))  # fmt: skip
# Share of reports per hour of the day (local time): office-hour peaks, a quiet night.
HOURS = (1, 1, 1, 1, 1, 2, 4, 8, 12, 16, 15, 12, 8, 12, 15, 14, 12, 9, 7, 6, 5, 4, 2, 1)
STALLS = ("register", "dispatch", "accept", "feedback", "verify", "close")
WEEKDAY = (1.0, 1.0, 0.95, 0.95, 0.9, 0.55, 0.5)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙朱马胡郭林何高罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


@dataclass(frozen=True)
class ClassInfo:
    id: int
    code: str
    limits: dict[str, float]
    department: str  # a code template: "{district}-CGZF" or "SW"


@dataclass(frozen=True)
class DistrictInfo:
    code: str
    lon: float
    lat: float
    weight: float
    center_id: int
    bureau_id: int


@dataclass
class World:
    classes: list[ClassInfo]
    districts: list[DistrictInfo]
    departments: dict[str, int]  # code -> id
    city_center_id: int
    weights: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.weights = [HOT_CLASSES.get(c.code, 0.6) for c in self.classes]


def _pick(rng: random.Random, options: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([o for o, _ in options], [w for _, w in options])[0]


def arrival_times(
    rng: random.Random, start: datetime, end: datetime, count: int
) -> Iterator[datetime]:
    """`count` report times in [start, end), with weekday and hour-of-day peaks, in order."""
    days = max(1, math.ceil((end - start).total_seconds() / 86400))
    first = start.astimezone(SHANGHAI).replace(hour=0, minute=0, second=0, microsecond=0)
    day_weights = [WEEKDAY[(first + timedelta(days=d)).weekday()] for d in range(days)]
    total = sum(day_weights)
    emitted = 0
    for d, weight in enumerate(day_weights):
        share = count - emitted if d == days - 1 else round(count * weight / total)
        day = first + timedelta(days=d)
        seconds = sorted(
            rng.choices(range(24), HOURS, k=share)[i] * 3600 + rng.random() * 3600
            for i in range(share)
        )
        for second in seconds:
            moment = day + timedelta(seconds=second)
            if start <= moment < end:
                yield moment
        emitted += share


def _minutes(rng: random.Random, low: float, high: float) -> timedelta:
    return timedelta(minutes=rng.uniform(low, high))


def simulate(
    rng: random.Random,
    world: World,
    start: datetime,
    end: datetime,
    count: int,
    *,
    now: datetime,
    events: bool = True,
    stall_after: datetime | None = None,
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(case row, its history rows) for `count` reports between start and end, seen at `now`.

    Reports made after `stall_after` often wait at some step (a busy desk, a handler away),
    so that recent cases stand at every stage of the workflow.
    """
    district_weights = [d.weight for d in world.districts]
    for created in arrival_times(rng, start, end, count):
        info = rng.choices(world.classes, world.weights)[0]
        district = rng.choices(world.districts, district_weights)[0]
        source = _pick(rng, SOURCES)
        lon = district.lon + rng.gauss(0, 0.02)
        lat = district.lat + rng.gauss(0, 0.015)
        street = f"{district.code}{rng.randint(1, 12):03d}"
        row: dict[str, Any] = {
            "tracking_id": new_tracking_id(),
            "category_id": info.id,
            "source": source,
            "request_type": _pick(rng, REQUEST_TYPES) if source == "hotline" else None,
            "state": State.REPORTED.value,
            "description": "",
            "address": "",
            "lon": round(lon, 6),
            "lat": round(lat, 6),
            "district_code": district.code,
            "street_code": street,
            "community_code": f"{street}{rng.randint(1, 20):03d}",
            "grid_code": None,
            "place_name": "",
            "department_id": district.center_id,
            "center_id": district.center_id,
            "escalated_to_id": None,
            "level": "district",
            "escalation_level": 0,
            "stage_deadline": None,
            "overdue": False,
            "overdue_count": 0,
            "handle_deadline": None,
            "extension_pending_hours": None,
            "extension_count": 0,
            "rework_count": 0,
            "return_count": 0,
            "duplicate_of_id": None,
            "duplicate_candidates": [],
            "reporter_name": None,
            "reporter_phone": None,
            "reporter_email": None,
            "reporter_principal": f"demo:{source}",
            "attributes": {},
            "external_ref": None,
            "result": "",
            "evaluation_score": None,
            "evaluation_note": "",
            "created_at": created,
            "updated_at": created,
            "registered_at": None,
            "dispatched_at": None,
            "accepted_at": None,
            "handled_at": None,
            "verified_at": None,
            "closed_at": None,
            "closed_on_time": None,
            "handled_on_time": None,
        }
        if source in ("hotline", "open311") and rng.random() < 0.8:
            row["reporter_name"] = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
            row["reporter_phone"] = f"1{rng.choice('3589')}{rng.randint(0, 999_999_999):09d}"
        history: list[dict[str, Any]] = []
        stall = None
        if stall_after is not None and created >= stall_after and rng.random() < 0.6:
            stall = rng.choice(STALLS)
        _walk(rng, world, info, district, row, history, now, events, stall)
        yield row, history


def _event(history: list[dict[str, Any]], enabled: bool, at: datetime, action: str,
           before: str | None, after: str, actor: str, note: str = "") -> None:  # fmt: skip
    if enabled:
        history.append({"at": at, "actor": actor, "action": action, "from_state": before,
                        "to_state": after, "note": note, "detail": {},
                        "public": action not in ("accept", "escalate")})  # fmt: skip


def _walk(
    rng: random.Random,
    world: World,
    info: ClassInfo,
    district: DistrictInfo,
    row: dict[str, Any],
    history: list[dict[str, Any]],
    now: datetime,
    events: bool,
    stall: str | None = None,
) -> None:
    _advance(rng, world, info, district, row, history, now, events, stall)
    if row["stage_deadline"] is not None and now > row["stage_deadline"]:
        # What `pujiang cases escalate` would have done: flagged and handed to the city.
        row["overdue"] = True
        row["escalation_level"] = 1
        row["escalated_to_id"] = world.city_center_id
        row["level"] = "city"


def _advance(
    rng: random.Random,
    world: World,
    info: ClassInfo,
    district: DistrictInfo,
    row: dict[str, Any],
    history: list[dict[str, Any]],
    now: datetime,
    events: bool,
    stall: str | None,
) -> None:
    """Move the case along the workflow as far as `now` allows (and no further than `stall`)."""
    t = row["created_at"]
    source = row["source"]
    state = State.REGISTERED if source == "leader" else State.REPORTED
    row["state"] = state.value
    _event(history, events, t, "report", None, state.value, f"demo:{source}")
    limits = info.limits
    row["stage_deadline"] = deadline(t, limits["register"])

    def move(at: datetime, action: str, target: State, stage: str | None, note: str = "") -> bool:
        nonlocal state
        if at > now or action == stall:
            return False
        if row["stage_deadline"] is not None and at > row["stage_deadline"]:
            row["overdue_count"] += 1
        _event(history, events, at, action, state.value, target.value, "demo:staff", note)
        state = target
        row["state"] = target.value
        row["updated_at"] = at
        row["stage_deadline"] = deadline(at, limits[stage]) if stage else None
        return True

    if state is State.REPORTED:
        t += _minutes(rng, 5, 80)
        roll = rng.random()
        if roll < 0.06:
            move(t, "reject", State.REJECTED, None, "不符合立案标准")
            return
        if roll < 0.10:
            if move(t, "merge", State.MERGED, None, "重复上报"):
                row["duplicate_candidates"] = []
            return
        if not move(t, "register", State.REGISTERED, "dispatch"):
            return
        row["registered_at"] = t
    else:
        row["registered_at"] = t
    t += _minutes(rng, 5, 60)
    target = info.department.replace("{district}", district.code)
    department = world.departments.get(target, district.bureau_id)
    if not move(t, "dispatch", State.DISPATCHED, "handle"):
        return
    row["dispatched_at"] = t
    row["department_id"] = department
    row["level"] = "district" if "{district}" in info.department else "city"
    row["handle_deadline"] = row["stage_deadline"]
    t += _minutes(rng, 10, 90)
    if not move(t, "accept", State.HANDLING, None):
        return
    row["stage_deadline"] = row["handle_deadline"]
    row["accepted_at"] = t
    if rng.random() < 0.05:
        hours = limits["handle"]
        row["extension_count"] = 1
        row["handle_deadline"] = deadline(row["handle_deadline"], hours)
        row["stage_deadline"] = row["handle_deadline"]
        _event(history, events, t, "approve-extension", state.value, state.value, "demo:staff")
    # Most cases are handled within the limit; a tail runs late.
    share = rng.lognormvariate(-0.6, 0.6)
    t = deadline(row["accepted_at"], limits["handle"] * share) + _minutes(rng, 0, 20)
    reworks = 1 if rng.random() < 0.08 else 0
    for attempt in range(reworks + 1):
        if not move(t, "feedback", State.HANDLED, "verify", "已处置"):
            return
        if row["handled_at"] is None:
            row["handled_at"] = t
            row["handled_on_time"] = t <= row["handle_deadline"]
        t += _minutes(rng, 30, 240)
        if attempt < reworks:
            if not move(t, "rework", State.HANDLING, "handle", "现场仍有问题"):
                return
            row["rework_count"] += 1
            row["handle_deadline"] = row["stage_deadline"]
            t = deadline(t, limits["handle"] * rng.uniform(0.2, 0.8))
    if not move(t, "verify", State.VERIFIED, "close"):
        return
    row["verified_at"] = t
    t += _minutes(rng, 5, 90)
    if not move(t, "close", State.CLOSED, None):
        return
    row["closed_at"] = t
    row["closed_on_time"] = row["overdue_count"] == 0
    t += timedelta(hours=rng.uniform(2, 48))
    if rng.random() < 0.5 and move(t, "evaluate", State.EVALUATED, None):
        row["evaluation_score"] = rng.choices((5, 4, 3, 2, 1), (50, 30, 12, 5, 3))[0]
