"""The seed catalogue of case classes: components (部件) and events (事件) after GB/T 30428.

The classes live in `data/catalogue.json`, written for Pujiang from the structure of the
standard (major/minor classes with registration and closing standards); the wording of each
standard is ours. Codes: "C" or "E", the two-digit major class, the two-digit minor class
("C0101" = 部件·公用设施·上水井盖).

Time limits are working hours on the Chinese calendar (7 per working day: 9–12 and 13–17).
Dispatch rules name a department code; "{district}" is replaced by the case's district code.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

COMPONENT = "component"
EVENT = "event"
KINDS = (COMPONENT, EVENT)

STAGES = ("register", "dispatch", "handle", "verify", "close")
DEFAULT_LIMITS: dict[str, float] = {
    "register": 1.0,
    "dispatch": 1.0,
    "handle": 7.0,
    "verify": 4.0,
    "close": 2.0,
}


@cache
def _raw() -> dict[str, Any]:
    text = resources.files("pujiang.cases").joinpath("data/catalogue.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def majors() -> dict[tuple[str, str], tuple[str, str]]:
    """(kind, major code) -> (name, English name)."""
    return {(m["kind"], m["code"]): (m["name"], m["name_en"]) for m in _raw()["majors"]}


def seed_rows() -> list[dict[str, Any]]:
    """The seed catalogue as plain rows for `case_categories`."""
    names = majors()
    rows = []
    for item in _raw()["classes"]:
        major_name = names[(item["kind"], item["major_code"])][0]
        rows.append(
            {
                **item,
                "major_name": major_name,
                "time_limits": {**DEFAULT_LIMITS, **item["time_limits"]},
                "keywords": f"{major_name},{item['name']}",
                "active": True,
            }
        )
    return rows
