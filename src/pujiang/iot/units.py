"""Unit conversion of measures: what a device sends (`sourceUnit`) to what is stored (`unitCode`).

Units are UN/CEFACT common codes, as NGSI-LD `unitCode` uses them. Only the pairs in the table
below may be provisioned; anything else is refused when the mapping is written, so a typo never
turns into silently wrong data.
"""

from __future__ import annotations

from collections.abc import Callable

Conversion = Callable[[float], float]


def _scale(factor: float) -> Conversion:
    return lambda value: value * factor


def _identity(value: float) -> float:
    return value


# Each family: code -> (to the family's base unit, from the base unit).
_TEMPERATURE: dict[str, tuple[Conversion, Conversion]] = {
    "CEL": (_identity, _identity),
    "FAH": (lambda f: (f - 32.0) * 5.0 / 9.0, lambda c: c * 9.0 / 5.0 + 32.0),
    "KEL": (lambda k: k - 273.15, lambda c: c + 273.15),
}


def _linear(factors: dict[str, float]) -> dict[str, tuple[Conversion, Conversion]]:
    """A family whose units differ only by a factor (to the base unit)."""
    return {code: (_scale(factor), _scale(1.0 / factor)) for code, factor in factors.items()}


_FAMILIES: tuple[dict[str, tuple[Conversion, Conversion]], ...] = (
    _TEMPERATURE,
    _linear({"MTR": 1.0, "CMT": 0.01, "MMT": 0.001}),  # length, base metre
    _linear({"MTS": 1.0, "KMH": 1.0 / 3.6}),  # speed, base metre per second
    _linear({"PAL": 1.0, "HPA": 100.0, "KPA": 1000.0, "BAR": 100000.0, "MPA": 1.0e6}),  # pressure
)


def supported_pairs() -> list[tuple[str, str]]:
    """Every (sourceUnit, unitCode) pair a mapping may name, for docs and error messages."""
    return [
        (source, target)
        for family in _FAMILIES
        for source in family
        for target in family
        if source != target
    ]


def converter(source_unit: str, unit_code: str) -> Conversion:
    """The function turning a value in `source_unit` into `unit_code`; ValueError if unknown."""
    for family in _FAMILIES:
        if source_unit in family and unit_code in family:
            if source_unit == unit_code:
                return _identity
            to_base = family[source_unit][0]
            from_base = family[unit_code][1]
            return lambda value: from_base(to_base(value))
    raise ValueError(
        f"不支持的单位换算 {source_unit} → {unit_code} / "
        f"unsupported unit conversion {source_unit} -> {unit_code}"
    )
