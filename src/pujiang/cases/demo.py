"""The demo city's cases: a month of the simulated flow, loaded in one go by `load_demo`."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from pujiang.cases import service
from pujiang.cases.locate import locate
from pujiang.cases.models import Case, CaseCategory, CaseEvent
from pujiang.cases.simulate import ClassInfo, DistrictInfo, World, simulate
from pujiang.city.reference import districts
from pujiang.platform.db import utcnow
from pujiang.platform.models import Department

DEMO_SEED = 20250929
DEMO_CASES = 600
DEMO_DAYS = 30


def build_world(session: Session) -> World:
    """The catalogue and departments as the simulation needs them."""
    service.load_catalogue(session)
    departments = {d.code: d.id for d in session.scalars(select(Department))}
    city_center = service.center_for(session, None).id
    classes = [
        ClassInfo(
            row.id,
            row.code,
            {**row.time_limits},
            str((row.dispatch_rule or {}).get("department") or "{district}-CGZF"),
        )
        for row in session.scalars(select(CaseCategory).where(CaseCategory.active.is_(True)))
    ]
    places = [
        DistrictInfo(
            d.code,
            d.centroid[0],
            d.centroid[1],
            float(d.population),
            departments.get(f"{d.code}-CYZX", city_center),
            departments.get(f"{d.code}-CGZF", departments.get("CGZF", city_center)),
        )
        for d in districts()
    ]
    return World(classes, places, departments, city_center)


def load_demo_cases(
    context: Any,
    *,
    seed: int = DEMO_SEED,
    count: int = DEMO_CASES,
    days: int = DEMO_DAYS,
    now: datetime | None = None,
) -> int:
    """Load the demo's cases once (a second call adds nothing); returns how many were added."""
    now = now or utcnow()
    with context.db.session() as session:
        if session.scalars(select(Case.id).where(Case.reporter_principal.like("demo:%"))).first():
            return 0
        world = build_world(session)
        rng = random.Random(seed)  # noqa: S311 - a repeatable simulation, not a secret
        rows, histories = [], []
        start, stall_after = now - timedelta(days=days), now - timedelta(days=3)
        flow = simulate(rng, world, start, now, count, now=now, stall_after=stall_after)
        for row, history in flow:
            place = locate(context, row["lon"], row["lat"])
            if place.inside:  # the city model knows better than the simulation's guess
                row.update(
                    district_code=place.district_code or row["district_code"],
                    street_code=place.street_code,
                    community_code=place.community_code,
                    grid_code=place.grid_code,
                    place_name=place.name[:255],
                )
            rows.append(row)
            histories.append(history)
        ids = session.scalars(
            insert(Case).returning(Case.id, sort_by_parameter_order=True), rows
        ).all()
        events = [
            {**e, "case_id": case_id} for case_id, h in zip(ids, histories, strict=True) for e in h
        ]
        if events:
            session.execute(insert(CaseEvent), events)
        return len(rows)
