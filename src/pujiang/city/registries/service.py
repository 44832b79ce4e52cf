"""Reading the registries: search, get one, counts — with personal data masked unless the
caller may see it, and every unmasked read written to the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from pujiang.city.reference import districts
from pujiang.city.registries.checks import (
    STATUS_ALIASES,
    STATUSES,
    clean_text,
    normalise_address,
)
from pujiang.city.registries.models import Address, LegalEntity, Person
from pujiang.city.registries.schemas import (
    AddressOut,
    DistrictCounts,
    EntityOut,
    PersonOut,
    RegistryStats,
)
from pujiang.platform.errors import Problem
from pujiang.platform.i18n import EN, current_language, register, translate
from pujiang.platform.identifiers import (
    IdentifierError,
    mask_id_number,
    mask_name,
    mask_phone,
    validate_id_number,
    validate_uscc,
)
from pujiang.platform.privacy import may_see_personal, record_unmasked_read
from pujiang.platform.security import CurrentPrincipal

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

register(
    {
        "registry.person_not_found": ("人口库中没有编号为 {id} 的记录", "No person with id {id}"),
        "registry.entity_not_found": (
            "法人库中没有编号为 {id} 的记录",
            "No legal entity with id {id}",
        ),
        "registry.address_not_found": ("地址库中没有编号为 {id} 的记录", "No address with id {id}"),
        "registry.bad_status": ("可用的登记状态：{allowed}", "use one of {allowed}"),
        "registry.bad_query": (
            "查询参数 {field} 无效：{reason}",
            "Query parameter {field} is invalid: {reason}",
        ),
    }
)

Row = TypeVar("Row", Person, LegalEntity, Address)


# -- masking --------------------------------------------------------------------------------


def mask_address(value: str | None) -> str | None:
    """Keep the administrative prefix of an address and hide the rest, since a person's address
    is personal data: 上海市黄浦区福州路1号 -> 上海市黄浦区*****. The prefix ends at the first
    区/县/旗 (else 市) among the first 12 characters; without one, a third of the text is kept."""
    if not value:
        return value
    head = value[:12]
    ends = [head.find(mark) for mark in "区县旗"]
    found = [i for i in ends if i >= 0]
    keep = min(found) + 1 if found else head.find("市") + 1 or len(value) // 3
    return value[:keep] + "*" * (len(value) - keep)


def person_out(row: Person, *, reveal: bool) -> PersonOut:
    if reveal:
        return PersonOut(
            id=row.id,
            id_number=row.id_number,
            name=row.name,
            sex=row.sex,
            birth_date=row.birth_date,
            phone=row.phone,
            household_address=row.household_address,
            residence_address=row.residence_address,
            residence_lon=row.residence_lon,
            residence_lat=row.residence_lat,
            district_code=row.district_code,
            community_code=row.community_code,
            masked=False,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
    # The birth date and the exact point would undo the ID number's and the address's masks.
    return PersonOut(
        id=row.id,
        id_number=mask_id_number(row.id_number),
        name=mask_name(row.name),
        sex=row.sex,
        birth_date=None,
        phone=mask_phone(row.phone) if row.phone else None,
        household_address=mask_address(row.household_address),
        residence_address=mask_address(row.residence_address),
        residence_lon=None,
        residence_lat=None,
        district_code=row.district_code,
        community_code=row.community_code,
        masked=True,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def entity_out(row: LegalEntity, *, reveal: bool) -> EntityOut:
    representative = row.legal_representative
    return EntityOut(
        id=row.id,
        credit_code=row.credit_code,
        name=row.name,
        entity_type=row.entity_type,
        registered_address=row.registered_address,
        legal_representative=representative
        if reveal or not representative
        else mask_name(representative),
        status=row.status,
        status_en=STATUSES.get(row.status, row.status),
        established_on=row.established_on,
        lon=row.lon,
        lat=row.lat,
        district_code=row.district_code,
        community_code=row.community_code,
        masked=not reveal,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def address_out(row: Address) -> AddressOut:
    return AddressOut(
        id=row.id,
        address=row.address,
        building_name=row.building_name,
        lon=row.lon,
        lat=row.lat,
        district_code=row.district_code,
        community_code=row.community_code,
        grid_code=row.grid_code,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def reveal_persons(
    session: Session, caller: CurrentPrincipal, rows: Sequence[Person], *, request_id: str = ""
) -> bool:
    """Whether `caller` sees these persons unmasked; if so, the read is audited."""
    reveal = may_see_personal(caller)
    if reveal and rows:
        record_unmasked_read(
            session,
            caller,
            what="registry.persons",
            targets=[f"person:{row.id}" for row in rows],
            request_id=request_id,
        )
    return reveal


def reveal_entities(
    session: Session, caller: CurrentPrincipal, rows: Sequence[LegalEntity], *, request_id: str = ""
) -> bool:
    """Whether `caller` sees legal representatives' names; if any is shown, the read is audited."""
    reveal = may_see_personal(caller)
    shown = [row for row in rows if row.legal_representative]
    if reveal and shown:
        record_unmasked_read(
            session,
            caller,
            what="registry.entities.legal_representative",
            targets=[f"entity:{row.id}" for row in shown],
            request_id=request_id,
        )
    return reveal


# -- queries ----------------------------------------------------------------------------------


def _bad_query(field: str, value: str, reason: str) -> Problem:
    detail = translate("registry.bad_query", field=field, reason=reason)
    errors = [{"field": field, "value": value[:40], "message": detail}]
    return Problem(422, "validation-error", detail, errors=errors)


def _next_prefix(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (code-point order),
    or None when there is none."""
    chars = list(prefix)
    while chars:
        point = ord(chars[-1]) + 1
        if 0xD800 <= point <= 0xDFFF:  # surrogates cannot be stored; skip past them
            point = 0xE000
        if point <= 0x10FFFF:
            chars[-1] = chr(point)
            return "".join(chars)
        chars.pop()
    return None


def starts_with(column: InstrumentedAttribute[str], prefix: str) -> ColumnElement[bool]:
    """`column` begins with `prefix`, as a range the column's B-tree index serves on both
    databases (the columns compare by code point, see models.ordered_text)."""
    upper = _next_prefix(prefix)
    condition = column >= prefix
    return condition if upper is None else condition & (column < upper)


def _page(query: Select[Row], model: type[Row], after_id: int, limit: int) -> Select[Row]:
    return query.where(model.id > after_id).order_by(model.id).limit(min(max(limit, 1), MAX_LIMIT))


def search_persons(
    session: Session,
    *,
    name: str | None = None,
    id_number: str | None = None,
    district_code: str | None = None,
    community_code: str | None = None,
    after_id: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> list[Person]:
    """Persons by name prefix, exact ID number, district or community, in id order."""
    query = select(Person)
    if name and name.strip():
        query = query.where(starts_with(Person.name, name.strip()))
    if id_number:
        try:
            number = validate_id_number(id_number).number
        except IdentifierError as exc:
            message = exc.message_en if current_language.get() == EN else exc.message_zh
            raise _bad_query("id_number", id_number, message) from None
        query = query.where(Person.id_number == number)
    query = _place_filters(query, Person, district_code, community_code)
    return list(session.scalars(_page(query, Person, after_id, limit)))


def search_entities(
    session: Session,
    *,
    name: str | None = None,
    credit_code: str | None = None,
    status: str | None = None,
    district_code: str | None = None,
    community_code: str | None = None,
    after_id: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> list[LegalEntity]:
    """Legal entities by name prefix, exact credit code, status, district or community."""
    query = select(LegalEntity)
    if name and name.strip():
        query = query.where(starts_with(LegalEntity.name, name.strip()))
    if credit_code:
        try:
            code = validate_uscc(credit_code).code
        except IdentifierError as exc:
            message = exc.message_en if current_language.get() == EN else exc.message_zh
            raise _bad_query("credit_code", credit_code, message) from None
        query = query.where(LegalEntity.credit_code == code)
    if status:
        canonical = STATUS_ALIASES.get(clean_text(status).lower().replace(" ", ""))
        if canonical is None:
            reason = translate("registry.bad_status", allowed="、".join(STATUSES))
            raise _bad_query("status", status, reason)
        query = query.where(LegalEntity.status == canonical)
    query = _place_filters(query, LegalEntity, district_code, community_code)
    return list(session.scalars(_page(query, LegalEntity, after_id, limit)))


def search_addresses(
    session: Session,
    *,
    prefix: str | None = None,
    district_code: str | None = None,
    community_code: str | None = None,
    grid_code: str | None = None,
    after_id: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> list[Address]:
    """Addresses by the beginning of their standard text, district, community or unit grid."""
    query = select(Address)
    if prefix and normalise_address(prefix):
        query = query.where(starts_with(Address.address, normalise_address(prefix)))
    if grid_code:
        query = query.where(Address.grid_code == clean_text(grid_code))
    query = _place_filters(query, Address, district_code, community_code)
    return list(session.scalars(_page(query, Address, after_id, limit)))


def _place_filters(
    query: Select[Row], model: type[Row], district: str | None, community: str | None
) -> Select[Row]:
    if district:
        query = query.where(model.district_code == district)
    if community:
        query = query.where(model.community_code == community)
    return query


def _get(session: Session, model: type[Row], row_id: int, message_key: str) -> Row:
    row = session.get(model, row_id)
    if row is None:
        raise Problem.of(404, "not-found", message_key, id=row_id)
    return row


def get_person(session: Session, person_id: int) -> Person:
    return _get(session, Person, person_id, "registry.person_not_found")


def get_entity(session: Session, entity_id: int) -> LegalEntity:
    return _get(session, LegalEntity, entity_id, "registry.entity_not_found")


def get_address(session: Session, address_id: int) -> Address:
    return _get(session, Address, address_id, "registry.address_not_found")


def stats(session: Session) -> RegistryStats:
    """How many rows each registry holds, in total and per district."""
    counts: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    models: tuple[tuple[str, Any], ...] = (
        ("persons", Person),
        ("entities", LegalEntity),
        ("addresses", Address),
    )
    for key, model in models:
        totals[key] = int(session.scalar(select(func.count()).select_from(model)) or 0)
        grouped = session.execute(
            select(model.district_code, func.count()).group_by(model.district_code)
        )
        for district, count in grouped:
            if district:
                counts.setdefault(district, {})[key] = int(count)
    by_district = [
        DistrictCounts(
            district_code=d.code,
            name=d.name if current_language.get() != EN else d.name_en,
            persons=counts.get(d.code, {}).get("persons", 0),
            entities=counts.get(d.code, {}).get("entities", 0),
            addresses=counts.get(d.code, {}).get("addresses", 0),
        )
        for d in districts()
    ]
    return RegistryStats(**totals, by_district=by_district)
