"""Row checks of each registry: one fast function per registry turning a row of text into
the values to store, or into the reasons the row is bad (see checks.py for the fields).

The persons check is the hot path of a million-row import: the common case is one chain of
string tests, and only a row that fails it takes `explain`, which checks every field on its
own with the kernel's validators and says what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from pujiang.city.levels import Level
from pujiang.city.registries.checks import (
    ID_CHECK,
    MISSING,
    SEX_VALUES,
    STATUS_ALIASES,
    STATUSES,
    USCC_TYPES,
    Checker,
    Env,
    Layout,
    RowError,
    clean_text,
    date_digits,
    excel_number,
    identifier_error,
    normalise_address,
    phone_field,
    point_field,
    real_date,
    required_text,
    row_error,
    segments_ok,
    text_field,
    unit_code,
)
from pujiang.city.registries.columns import Kind
from pujiang.platform.identifiers import IdentifierError, validate_id_number, validate_uscc

# -- population -------------------------------------------------------------------------------

PERSON_COLUMNS = (
    "id_number", "name", "sex", "birth_date", "phone", "household_address",
    "residence_address", "residence_lon", "residence_lat", "district_code", "community_code",
    "created_at", "updated_at",
)  # fmt: skip


def person_checker(layout: Layout, env: Env) -> Checker:
    at = layout.at
    i_id, i_name, i_sex, i_birth, i_phone = (
        at("id_number"),
        at("name"),
        at("sex"),
        at("birth_date"),
        at("phone"),
    )
    i_home, i_live, i_lon, i_lat, i_community = (
        at("household_address"),
        at("residence_address"),
        at("lon"),
        at("lat"),
        at("community_code"),
    )
    id_column = layout.header("id_number")
    now = env.stamp
    birth_value = env.birth_value
    check_chars = ID_CHECK
    district_codes = env.district_codes
    sex_words = {"M": "男", "F": "女"}

    def check(row: int, cells: list[str], errors: list[RowError]) -> list[Any] | None:
        """The common case in one expression chain; anything unusual goes to `explain`."""
        number = cells[i_id]
        name = cells[i_name].strip()
        if not (
            len(number) == 18
            and number.isascii()
            and number[:17].isdigit()
            and check_chars[(1 - 2 * int(number[:17], 13)) % 11] == number[17]
            and 0 < len(name) <= 64
            and name.isprintable()
        ):
            return explain(row, cells, errors)
        birth = birth_value(number[6:14])
        sex = "M" if number[16] in "13579" else "F"
        claimed, born, phone = cells[i_sex], cells[i_birth], cells[i_phone]
        home, live = cells[i_home].strip(), cells[i_live].strip()
        community, lon_text, lat_text = cells[i_community], cells[i_lon], cells[i_lat]
        if not (
            birth is not None
            and (not claimed or claimed == sex_words[sex] or claimed == sex)
            and (
                not born
                or (
                    len(born) == 10
                    and born[4] == born[7] == "-"
                    and born.replace("-", "") == number[6:14]
                )
            )
            and (
                not phone
                or (
                    len(phone) == 11
                    and phone.isascii()
                    and phone.isdigit()
                    and phone[0] == "1"
                    and phone[1] > "2"
                )
            )
            and len(home) <= 255
            and len(live) <= 255
            and home.isprintable()
            and live.isprintable()
            and (
                not community
                or (
                    len(community) == 12
                    and community[:6] in district_codes
                    and segments_ok(community)
                )
            )
        ):
            return explain(row, cells, errors)
        lon = lat = None
        if lon_text or lat_text:
            try:
                lon, lat = float(lon_text), float(lat_text)
            except ValueError:
                return explain(row, cells, errors)
            if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
                return explain(row, cells, errors)
        return [
            number,
            name,
            sex,
            birth,
            phone or None,
            home or None,
            live or None,
            lon,
            lat,
            community[:6] if community else None,
            community or None,
            now,
            now,
        ]

    def explain(row: int, cells: list[str], errors: list[RowError]) -> list[Any] | None:
        """Every field checked on its own, with the kernel's validators: normalises what it
        can (full-width digits, a lower-case x, 1990/1/2, +86 phones) and says what it cannot."""
        found: list[RowError] = []
        number = cells[i_id].strip()
        head = number[:17]
        birth: Any = None
        if (
            len(number) == 18
            and head.isdigit()
            and number.isascii()
            and check_chars[(1 - 2 * int(head, 13)) % 11] == number[17].upper()
        ):
            number = head + number[17].upper()
            birth = birth_value(number[6:14])
        if birth is None:
            number, birth = _slow_id_number(cells[i_id], row, id_column, env, found)
        name = required_text(cells[i_name], row, "name", layout.header("name"), 64, found)
        sex = ""
        if number:
            sex = "M" if number[16] in "13579" else "F"
            if cells[i_sex]:
                _check_sex(cells[i_sex], sex, row, layout, found)
            if cells[i_birth]:
                _check_birth(cells[i_birth], number[6:14], row, layout, found)
        phone = phone_field(cells[i_phone], row, layout, found) if cells[i_phone] else None
        home = text_field(
            cells[i_home], row, "household_address", layout.header("household_address"), 255, found
        )
        live = text_field(
            cells[i_live], row, "residence_address", layout.header("residence_address"), 255, found
        )
        point = point_field(cells[i_lon], cells[i_lat], row, layout, found)
        community = None
        if cells[i_community]:
            community = unit_code(
                cells[i_community], Level.COMMUNITY, row, "community_code", layout, env, found
            )
        if found:
            errors.extend(found)
            return None
        lon, lat = point if point else (None, None)
        return [
            number,
            name,
            sex,
            birth,
            phone,
            home,
            live,
            lon,
            lat,
            community[:6] if community else None,
            community,
            now,
            now,
        ]

    return Checker(PERSON_COLUMNS, check, (7, 8), (9, 10, None))


def _slow_id_number(
    raw: str, row: int, column: str, env: Env, found: list[RowError]
) -> tuple[str, Any]:
    """Validate with the kernel (full-width digits, stray spaces) and explain any failure."""
    if not raw.strip():
        found.append(row_error(row, "id_number", column, "registry.row.required"))
        return "", None
    mistake = excel_number(raw, row, "id_number", column)
    if mistake:
        found.append(mistake)
        return "", None
    try:
        info = validate_id_number(raw, today=_date_of(env.today))
    except IdentifierError as exc:
        found.append(identifier_error(row, "id_number", column, exc))
        return "", None
    return info.number, env.birth_value(info.number[6:14])


def _date_of(digits: str) -> date:
    return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))


def _check_sex(raw: str, sex: str, row: int, layout: Layout, found: list[RowError]) -> None:
    value = raw.strip()
    claimed = SEX_VALUES.get(value.lower(), MISSING)
    column = layout.header("sex")
    if claimed is MISSING:
        found.append(row_error(row, "sex", column, "registry.row.sex_unknown", value=value[:20]))
    elif claimed is not None and claimed != sex:
        found.append(
            row_error(
                row,
                "sex",
                column,
                "registry.row.sex_mismatch",
                value=value[:20],
                expected_zh="男" if sex == "M" else "女",
                expected_en="male" if sex == "M" else "female",
            )
        )


def _check_birth(raw: str, expected: str, row: int, layout: Layout, found: list[RowError]) -> None:
    digits = date_digits(raw)
    column = layout.header("birth_date")
    if digits == expected:
        return
    if digits is None or real_date(digits) is None:
        found.append(
            row_error(row, "birth_date", column, "registry.row.date_format", value=raw.strip()[:30])
        )
        return
    found.append(
        row_error(
            row,
            "birth_date",
            column,
            "registry.row.birth_mismatch",
            value=f"{digits[:4]}-{digits[4:6]}-{digits[6:]}",
            expected=f"{expected[:4]}-{expected[4:6]}-{expected[6:]}",
        )
    )


# -- legal entities ---------------------------------------------------------------------------

ENTITY_COLUMNS = (
    "credit_code", "name", "entity_type", "registered_address", "legal_representative",
    "status", "established_on", "lon", "lat", "district_code", "community_code",
    "created_at", "updated_at",
)  # fmt: skip


def entity_checker(layout: Layout, env: Env) -> Checker:
    at = layout.at
    i_code, i_name, i_type, i_address, i_rep = (
        at("credit_code"),
        at("name"),
        at("entity_type"),
        at("registered_address"),
        at("legal_representative"),
    )
    i_status, i_established, i_lon, i_lat, i_community = (
        at("status"),
        at("established_on"),
        at("lon"),
        at("lat"),
        at("community_code"),
    )
    now = env.stamp

    def check(row: int, cells: list[str], errors: list[RowError]) -> list[Any] | None:
        found: list[RowError] = []
        code = _credit_code(cells[i_code], row, layout.header("credit_code"), found)
        name = required_text(cells[i_name], row, "name", layout.header("name"), 255, found)
        kind = text_field(
            cells[i_type], row, "entity_type", layout.header("entity_type"), 64, found
        )
        if kind is None and code:
            kind = USCC_TYPES.get(code[:2], "其他")
        address = text_field(
            cells[i_address],
            row,
            "registered_address",
            layout.header("registered_address"),
            255,
            found,
        )
        representative = text_field(
            cells[i_rep],
            row,
            "legal_representative",
            layout.header("legal_representative"),
            64,
            found,
        )
        status = _status(cells[i_status], row, layout, found)
        established = None
        if cells[i_established].strip():
            established = real_date(date_digits(cells[i_established]))
            if established is None:
                column = layout.header("established_on")
                value = cells[i_established].strip()[:30]
                found.append(
                    row_error(
                        row, "established_on", column, "registry.row.date_format", value=value
                    )
                )
        point = point_field(cells[i_lon], cells[i_lat], row, layout, found)
        community = None
        if cells[i_community]:
            community = unit_code(
                cells[i_community], Level.COMMUNITY, row, "community_code", layout, env, found
            )
        if found or code is None:
            errors.extend(found)
            return None
        lon, lat = point if point else (None, None)
        # Without a place, the registering authority's district (credit code positions 3-8).
        district = (
            community[:6] if community else code[2:8] if code[2:8] in env.district_codes else None
        )
        values = [
            code,
            name,
            kind,
            address,
            representative,
            status,
            env.date_value(established) if established else None,
            lon,
            lat,
            district,
            community,
            now,
            now,
        ]
        return values

    return Checker(ENTITY_COLUMNS, check, (7, 8), (9, 10, None))


def _credit_code(raw: str, row: int, column: str, found: list[RowError]) -> str | None:
    if not raw.strip():
        found.append(row_error(row, "credit_code", column, "registry.row.required"))
        return None
    mistake = excel_number(raw, row, "credit_code", column)
    if mistake:
        found.append(mistake)
        return None
    try:
        return validate_uscc(raw).code
    except IdentifierError as exc:
        found.append(identifier_error(row, "credit_code", column, exc))
        return None


def _status(raw: str, row: int, layout: Layout, found: list[RowError]) -> str:
    value = raw.strip()
    if not value:
        return "存续"
    status = STATUS_ALIASES.get(clean_text(value).lower().replace(" ", "").replace("_", ""))
    if status is None:
        allowed = "、".join(STATUSES)
        found.append(
            row_error(
                row,
                "status",
                layout.header("status"),
                "registry.row.status",
                value=value[:20],
                allowed=allowed,
            )
        )
        return ""
    return status


# -- addresses and buildings ------------------------------------------------------------------

ADDRESS_COLUMNS = (
    "address", "building_name", "lon", "lat", "district_code", "community_code", "grid_code",
    "created_at", "updated_at",
)  # fmt: skip


def address_checker(layout: Layout, env: Env) -> Checker:
    at = layout.at
    i_address, i_building, i_lon, i_lat, i_grid, i_community = (
        at("address"),
        at("building_name"),
        at("lon"),
        at("lat"),
        at("grid_code"),
        at("community_code"),
    )
    now = env.stamp

    def check(row: int, cells: list[str], errors: list[RowError]) -> list[Any] | None:
        found: list[RowError] = []
        address = required_text(
            normalise_address(cells[i_address]),
            row,
            "address",
            layout.header("address"),
            255,
            found,
        )
        building = text_field(
            cells[i_building], row, "building_name", layout.header("building_name"), 128, found
        )
        point = point_field(cells[i_lon], cells[i_lat], row, layout, found)
        if point is None and not found:
            found.append(row_error(row, "lon", layout.header("lon"), "registry.row.required"))
        grid = community = None
        if cells[i_grid]:
            grid = unit_code(cells[i_grid], Level.GRID, row, "grid_code", layout, env, found)
        if cells[i_community]:
            community = unit_code(
                cells[i_community], Level.COMMUNITY, row, "community_code", layout, env, found
            )
        if grid and community and grid[:12] != community:
            found.append(
                row_error(
                    row,
                    "grid_code",
                    layout.header("grid_code"),
                    "registry.row.grid_community",
                    grid=grid,
                    community=community,
                )
            )
        if found or point is None:
            errors.extend(found)
            return None
        community = community or (grid[:12] if grid else None)
        district = community[:6] if community else None
        return [address, building, point[0], point[1], district, community, grid, now, now]

    return Checker(ADDRESS_COLUMNS, check, (2, 3), (4, 5, 6))


CHECKERS: dict[Kind, Callable[[Layout, Env], Checker]] = {
    Kind.PERSONS: person_checker,
    Kind.ENTITIES: entity_checker,
    Kind.ADDRESSES: address_checker,
}
