"""Working time across official holidays and make-up working days."""

from __future__ import annotations

from datetime import date, datetime

from pujiang.platform.bus import InProcessBus
from pujiang.platform.workcal import SHANGHAI, china_calendar


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)  # type: ignore[misc]


def test_holidays_and_makeup_days() -> None:
    cal = china_calendar()
    assert not cal.is_working_day(date(2025, 10, 8))  # 国庆中秋 holiday, a Wednesday
    assert cal.is_working_day(date(2025, 10, 11))  # a Saturday worked in exchange
    assert cal.is_working_day(date(2026, 2, 14))  # Saturday before the Spring Festival
    assert not cal.is_working_day(date(2026, 2, 23))  # a Monday inside the festival
    assert cal.is_working_day(date(2025, 10, 9))
    assert not cal.is_working_day(date(2025, 10, 12))  # an ordinary Sunday


def test_working_hours_skip_a_holiday() -> None:
    cal = china_calendar()
    # Tuesday 30 Sep 2025, 16:00 + 4 working hours: one hour that day, then 1–8 Oct are off,
    # 9 Oct (Thursday) 09:00–12:00 gives the other three.
    assert cal.add_working_hours(at(2025, 9, 30, 16), 4) == at(2025, 10, 9, 12)


def test_working_hours_use_a_makeup_saturday() -> None:
    cal = china_calendar()
    # Friday 10 Oct 2025, 16:30 + 2 h: 0.5 h that day, then Saturday 11 Oct is a working day.
    assert cal.add_working_hours(at(2025, 10, 10, 16, 30), 2) == at(2025, 10, 11, 10, 30)


def test_lunch_break_and_between() -> None:
    cal = china_calendar()
    assert cal.add_working_hours(at(2025, 3, 3, 11), 2) == at(2025, 3, 3, 14)
    assert cal.working_hours_between(at(2025, 3, 3, 11), at(2025, 3, 3, 14)) == 2
    assert cal.working_hours_between(at(2025, 9, 30, 16), at(2025, 10, 9, 12)) == 4
    assert cal.working_hours_between(at(2025, 10, 9, 12), at(2025, 9, 30, 16)) == -4


def test_working_days() -> None:
    cal = china_calendar()
    # Ten working days from Friday 26 Sep 2025 cross the holiday and the make-up days:
    # 28 Sep (Sun, worked), 29, 30, 9 Oct, 10, 11 (Sat, worked), 13, 14, 15, 16.
    assert cal.add_working_days(date(2025, 9, 26), 10) == date(2025, 10, 16)


def test_bus_delivers_by_pattern_and_survives_a_bad_handler() -> None:
    bus = InProcessBus()
    seen: list[str] = []
    bus.subscribe("alert.*", lambda topic, payload: seen.append(f"{topic}:{payload['id']}"))

    def broken(topic: str, payload: dict[str, object]) -> None:
        raise RuntimeError("boom")

    bus.subscribe("alert.raised", broken)
    bus.publish("alert.raised", {"id": 1})
    bus.publish("case.closed", {"id": 2})
    assert seen == ["alert.raised:1"]
    assert bus.failed == 1
