"""Working time on the Chinese official calendar: holidays, make-up working days (调休上班),
and office hours in Asia/Shanghai. Case deadlines and sharing deadlines are counted in it.

Years the shipped calendar does not know fall back to Monday–Friday; `WorkCalendar.covers`
tells whether a date is inside the known years so callers can warn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Office hours of Shanghai government bodies: a morning and an afternoon block.
DEFAULT_BLOCKS: tuple[tuple[time, time], ...] = ((time(9), time(12)), (time(13), time(17)))


@dataclass(frozen=True)
class WorkCalendar:
    holidays: frozenset[date] = field(default_factory=frozenset)
    makeup_workdays: frozenset[date] = field(default_factory=frozenset)
    years: frozenset[int] = field(default_factory=frozenset)
    blocks: tuple[tuple[time, time], ...] = DEFAULT_BLOCKS

    @property
    def hours_per_day(self) -> float:
        return sum(_hours(a, b) for a, b in self.blocks)

    def covers(self, day: date) -> bool:
        return day.year in self.years

    def is_working_day(self, day: date) -> bool:
        if day in self.makeup_workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """The moment `hours` of working time after `start` (an aware datetime)."""
        if hours < 0:
            raise ValueError("hours must not be negative")
        local = start.astimezone(SHANGHAI)
        remaining = timedelta(hours=hours)
        day = local.date()
        cursor = local
        while True:
            if self.is_working_day(day):
                for begin, end in self.blocks:
                    block_start = datetime.combine(day, begin, SHANGHAI)
                    block_end = datetime.combine(day, end, SHANGHAI)
                    if cursor >= block_end:
                        continue
                    cursor = max(cursor, block_start)
                    available = block_end - cursor
                    if remaining <= available:
                        return (cursor + remaining).astimezone(start.tzinfo)
                    remaining -= available
                    cursor = block_end
            day += timedelta(days=1)
            cursor = datetime.combine(day, time(0), SHANGHAI)

    def working_hours_between(self, start: datetime, end: datetime) -> float:
        """Working hours from `start` to `end` (negative if end is earlier)."""
        if end < start:
            return -self.working_hours_between(end, start)
        local_start, local_end = start.astimezone(SHANGHAI), end.astimezone(SHANGHAI)
        total = timedelta()
        day = local_start.date()
        while day <= local_end.date():
            if self.is_working_day(day):
                for begin, finish in self.blocks:
                    lo = max(local_start, datetime.combine(day, begin, SHANGHAI))
                    hi = min(local_end, datetime.combine(day, finish, SHANGHAI))
                    if hi > lo:
                        total += hi - lo
            day += timedelta(days=1)
        return total.total_seconds() / 3600

    def add_working_days(self, start: date, days: int) -> date:
        """The date `days` working days after `start` (start itself not counted)."""
        day, left = start, days
        while left > 0:
            day += timedelta(days=1)
            if self.is_working_day(day):
                left -= 1
        return day


def _hours(begin: time, end: time) -> float:
    return (datetime.combine(date.min, end) - datetime.combine(date.min, begin)).seconds / 3600


@cache
def china_calendar() -> WorkCalendar:
    """The shipped calendar of official holidays and make-up working days."""
    raw = json.loads(
        resources.files("pujiang.platform").joinpath("data/cn_workcalendar.json").read_text("utf-8")
    )
    holidays = {date.fromisoformat(d) for days in raw["holidays"].values() for d in days}
    makeup = {date.fromisoformat(d) for days in raw["makeup_workdays"].values() for d in days}
    years = {int(y) for y in raw["holidays"]}
    return WorkCalendar(frozenset(holidays), frozenset(makeup), frozenset(years))
