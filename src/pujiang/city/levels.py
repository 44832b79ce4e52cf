"""The administrative levels of the city model and their code formats (GB/T 2260 and onwards).

A unit's code begins with its parent's code, so the whole chain of ancestors can be read from
one code: 310101 (district) → 310101002 (street) → 310101002001 (community) →
310101002001017 (unit grid).
"""

from __future__ import annotations

import enum


class Level(enum.StrEnum):
    DISTRICT = "district"
    STREET = "street"
    COMMUNITY = "community"
    GRID = "grid"

    @property
    def code_length(self) -> int:
        return CODE_LENGTHS[self]

    @property
    def parent(self) -> Level | None:
        index = LEVELS.index(self)
        return LEVELS[index - 1] if index > 0 else None

    @property
    def child(self) -> Level | None:
        index = LEVELS.index(self)
        return LEVELS[index + 1] if index + 1 < len(LEVELS) else None

    @property
    def titles(self) -> tuple[str, str]:
        """(Chinese, English) name of the level."""
        return TITLES[self]


# Coarse to fine: the order locate walks in reverse.
LEVELS: tuple[Level, ...] = (Level.DISTRICT, Level.STREET, Level.COMMUNITY, Level.GRID)

CODE_LENGTHS: dict[Level, int] = {
    Level.DISTRICT: 6,  # GB/T 2260 county-level code
    Level.STREET: 9,  # + 3 digits: street (街道 0xx) or town (镇 1xx, 乡 2xx)
    Level.COMMUNITY: 12,  # + 3 digits: residents' committee (居委 0xx-1xx) or village (村 2xx+)
    Level.GRID: 15,  # + 3 digits: sequence of the unit grid within its community
}

TITLES: dict[Level, tuple[str, str]] = {
    Level.DISTRICT: ("区", "district"),
    Level.STREET: ("街镇", "street or town"),
    Level.COMMUNITY: ("居村", "community"),
    Level.GRID: ("单元网格", "unit grid"),
}

CITY_CODE = "310000"  # 上海市, the root every district hangs from


def code_is_valid(level: Level, code: str) -> bool:
    """True if `code` has exactly the digits `level` requires, and no 000 in its own part."""
    if len(code) != level.code_length or not (code.isascii() and code.isdigit()):
        return False
    # 000 (or 00 for a district) is reserved for "the parent as a whole" in these codes.
    own = code[-3:] if level is not Level.DISTRICT else code[-2:]
    return own.strip("0") != ""


def level_of(code: str) -> Level | None:
    """The level a code of this length belongs to, or None."""
    for level in LEVELS:
        if len(code) == level.code_length:
            return level
    return None


def parent_code(code: str) -> str | None:
    """The code of the unit directly above, or None for a district."""
    level = level_of(code)
    if level is None or level.parent is None:
        return None
    return code[: level.parent.code_length]
