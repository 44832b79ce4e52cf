"""Helpers for the registry tests: files in any encoding, a fake locator, signed-in roles."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pujiang.city.registries.locate import Place

STANDARDS = Path(__file__).parents[4] / "shared" / "reference" / "standards.json"


def csv_bytes(rows: Sequence[Sequence[object]], encoding: str = "utf-8") -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode(encoding)


def standards() -> dict[str, Any]:
    if not STANDARDS.is_file():
        pytest.skip(f"reference file {STANDARDS} not found")
    data: dict[str, Any] = json.loads(STANDARDS.read_text("utf-8"))
    return data


# Points west of 121.0 E lie outside the fake city; the rest are in one community of 黄浦区.
FAKE_PLACE = Place("310101", "310101002001", "310101002001007")


def fake_locator(calls: list[list[tuple[float, float]]] | None = None) -> Callable[..., Any]:
    def locate(lons: Sequence[float], lats: Sequence[float]) -> list[Place | None]:
        if calls is not None:
            calls.append(list(zip(lons, lats, strict=True)))
        return [FAKE_PLACE if lon >= 121.0 else None for lon in lons]

    return locate


@pytest.fixture
def steward(login: Callable[..., dict[str, str]]) -> dict[str, str]:
    return login("chen.steward", "data_steward", department="DSJ")


@pytest.fixture
def handler(login: Callable[..., dict[str, str]]) -> dict[str, str]:
    return login("zhang.handler", "handler", department="310101-CGZF")
