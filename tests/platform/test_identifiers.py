"""Tests for pujiang.platform.identifiers against the shared reference facts."""

from __future__ import annotations

import json
import pickle
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pujiang.platform.identifiers import (
    IdentifierError,
    IdNumberInfo,
    UsccInfo,
    id_check_char,
    is_valid_id_number,
    is_valid_uscc,
    make_id_number,
    make_org_code,
    make_uscc,
    mask_id_number,
    mask_name,
    mask_phone,
    normalise_mobile,
    org_code_check_char,
    uscc_check_char,
    validate_id_number,
    validate_uscc,
)

STANDARDS_PATH = Path(__file__).parents[3] / "shared" / "reference" / "standards.json"
_MISSING = f"reference file {STANDARDS_PATH} not found; the shared test oracle is unavailable"


def _load_standards() -> dict[str, Any] | None:
    if not STANDARDS_PATH.is_file():
        return None
    data: dict[str, Any] = json.loads(STANDARDS_PATH.read_text(encoding="utf-8"))
    return data


STANDARDS = _load_standards()


def _ref(*keys: str) -> Any:
    """Look a value up in standards.json, skipping the test if the file is absent."""
    if STANDARDS is None:
        pytest.skip(_MISSING)
    node: Any = STANDARDS
    for key in keys:
        node = node[key]
    return node


def _vectors(section: str, key: str) -> list[Any]:
    """Parametrize values for one list of test vectors (a clear skip if the file is absent)."""
    if STANDARDS is None:
        return [pytest.param(None, marks=pytest.mark.skip(reason=_MISSING))]
    items: list[dict[str, Any]] = STANDARDS[section][key]
    return [pytest.param(item, id=str(item.get("id") or item.get("code"))) for item in items]


# Independent oracles written from the JSON text (not from the module's constants).
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
ORG_VALUES = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def oracle_id_check(first17: str) -> str:
    # python-stdnum's equivalent formula quoted in standards.json.
    c = (1 - 2 * int(first17, 13)) % 11
    return "X" if c == 10 else str(c)


def oracle_org_check(body8: str, weights: list[int]) -> str:
    c9 = 11 - sum(ORG_VALUES.index(ch) * w for ch, w in zip(body8, weights, strict=True)) % 11
    return {10: "X", 11: "0"}.get(c9, str(c9))


# ---------------------------------------------------------------------------
# Resident ID numbers
# ---------------------------------------------------------------------------

# Before the platform's 1900-01-01 floor (see test_reference_id_vectors).
PRE_1900_VECTORS = {"440524188001010014"}


@pytest.mark.parametrize("vector", _vectors("id_number", "test_vectors_verified_by_computation"))
def test_reference_id_vectors(vector: dict[str, Any]) -> None:
    number: str = vector["id"]
    if not vector["valid"]:
        assert not is_valid_id_number(number)
        with pytest.raises(IdentifierError) as info:
            validate_id_number(number)
        assert info.value.code == "id_number.check_digit"
        return
    # The reference marks all of these valid by checksum.
    assert id_check_char(number[:17]) == number[17]
    if number in PRE_1900_VECTORS:
        # standards.json's commonly cited 1880 example conflicts with our
        # required 1900-01-01 floor on birth dates; the floor wins.
        with pytest.raises(IdentifierError) as info:
            validate_id_number(number)
        assert info.value.code == "id_number.birth_date_range"
        return
    parsed = validate_id_number(number)
    assert parsed.number == number
    assert is_valid_id_number(number)


def test_reference_id_weights_match() -> None:
    weights: list[int] = _ref("id_number", "check_algorithm", "weights_pos1_to_17")
    mapping = "10X98765432"
    for k in range(17):
        first17 = "0" * k + "1" + "0" * (16 - k)
        assert id_check_char(first17) == mapping[weights[k] % 11]


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_id_check_char_matches_stdnum_formula(first17: str) -> None:
    assert id_check_char(first17) == oracle_id_check(first17)


def test_validate_id_number_parses_fields() -> None:
    info = validate_id_number("11010519491231002X")
    assert info == IdNumberInfo(
        number="11010519491231002X",
        region_code="110105",
        birth_date=date(1949, 12, 31),
        sex="F",
        sequence="002",
    )
    assert validate_id_number("360426199101010071").sex == "M"


@pytest.mark.parametrize(
    "raw", [" 11010519491231002x ", "11010519491231002x", "１１０１０５１９４９１２３１００２ｘ"]
)
def test_validate_id_number_normalises(raw: str) -> None:
    assert validate_id_number(raw).number == "11010519491231002X"


def test_wrong_check_char_names_expected_and_got() -> None:
    with pytest.raises(IdentifierError) as info:
        validate_id_number("110105194912310021")
    err = info.value
    assert err.code == "id_number.check_digit"
    assert "应为X" in err.message_zh
    assert "实际为1" in err.message_zh
    assert "expected X, got 1" in err.message_en


@pytest.mark.parametrize(
    ("number_first17", "code"),
    [
        ("11010519990230001", "id_number.birth_date"),  # 30 February
        ("11010519991301001", "id_number.birth_date"),  # month 13
        ("11010519990000001", "id_number.birth_date"),
        ("11010518991231001", "id_number.birth_date_range"),  # before 1900
        ("11010599991231001", "id_number.birth_date_range"),  # far future
    ],
)
def test_bad_birth_dates(number_first17: str, code: str) -> None:
    # A correct check character, so only the date can be at fault.
    number = number_first17 + id_check_char(number_first17)
    with pytest.raises(IdentifierError) as info:
        validate_id_number(number)
    assert info.value.code == code
    assert number_first17[6:14] in info.value.message_zh
    assert number_first17[6:14] in info.value.message_en


def test_birth_date_boundaries_relative_to_today() -> None:
    today = date(2024, 6, 1)
    born_today = make_id_number("310101", date(2024, 6, 1), 1, "M")
    assert validate_id_number(born_today, today=today).birth_date == today
    tomorrow = f"310101{today + timedelta(days=1):%Y%m%d}001"
    with pytest.raises(IdentifierError) as info:
        validate_id_number(tomorrow + id_check_char(tomorrow), today=today)
    assert info.value.code == "id_number.birth_date_range"
    assert validate_id_number(make_id_number("310101", date(1900, 1, 1), 2, "F")).sex == "F"


def test_future_birth_date_against_real_clock() -> None:
    first17 = f"310101{date.today() + timedelta(days=3):%Y%m%d}001"
    assert not is_valid_id_number(first17 + id_check_char(first17))


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", "id_number.length"),
        ("11010519491231002", "id_number.length"),  # 17
        ("11010519491231002X1", "id_number.length"),  # 19
        ("110105194912310", "id_number.length"),  # legacy 15-digit format
        ("1101051949123100AX", "id_number.charset"),
        ("X10105194912310021", "id_number.charset"),
        ("11010519491231002Y", "id_number.charset"),
        ("11010519491231002٣", "id_number.charset"),  # Arabic-Indic digit three
    ],
)
def test_malformed_id_numbers(value: str, code: str) -> None:
    with pytest.raises(IdentifierError) as info:
        validate_id_number(value)
    assert info.value.code == code
    assert not is_valid_id_number(value)


def test_length_message_gives_the_length() -> None:
    with pytest.raises(IdentifierError) as info:
        validate_id_number("1234")
    assert "4" in info.value.message_zh
    assert "got 4" in info.value.message_en


def test_is_valid_rejects_non_strings() -> None:
    assert not is_valid_id_number(None)
    assert not is_valid_id_number(11010519491231002)
    assert not is_valid_uscc(None)


def test_identifier_error_shape() -> None:
    err = IdentifierError("id_number.length", "中文信息", "English message")
    assert isinstance(err, ValueError)
    assert str(err) == "中文信息"
    assert (err.code, err.message_zh, err.message_en) == (
        "id_number.length",
        "中文信息",
        "English message",
    )
    clone = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own object
    assert (clone.code, clone.message_zh, clone.message_en) == (
        err.code,
        err.message_zh,
        err.message_en,
    )


def test_make_id_number_adjusts_sequence_parity() -> None:
    male = validate_id_number(make_id_number("310115", date(1990, 5, 17), 124, "M"))
    assert (male.sequence, male.sex) == ("125", "M")
    female = validate_id_number(make_id_number("310115", date(1990, 5, 17), 999, "F"))
    assert (female.sequence, female.sex) == ("998", "F")
    same = validate_id_number(make_id_number("310115", date(1990, 5, 17), 7, "M"))
    assert same.sequence == "007"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("31011", date(1990, 1, 1), 1, "M"), "id_number.region_code"),
        (("31011A", date(1990, 1, 1), 1, "M"), "id_number.region_code"),
        (("310115", date(1990, 1, 1), 1000, "M"), "id_number.sequence"),
        (("310115", date(1990, 1, 1), -1, "M"), "id_number.sequence"),
        (("310115", date(1990, 1, 1), 1, "X"), "id_number.sex"),
        (("310115", date(1899, 12, 31), 1, "M"), "id_number.birth_date_range"),
    ],
)
def test_make_id_number_rejects_bad_parts(args: tuple[Any, ...], code: str) -> None:
    with pytest.raises(IdentifierError) as info:
        make_id_number(*args)
    assert info.value.code == code


regions = st.text(alphabet="0123456789", min_size=6, max_size=6)
birth_dates = st.dates(min_value=date(1900, 1, 1), max_value=date.today())
sexes = st.sampled_from(["M", "F"])


@given(regions, birth_dates, st.integers(0, 999), sexes)
def test_make_id_number_always_validates(region: str, birth: date, sequence: int, sex: str) -> None:
    info = validate_id_number(make_id_number(region, birth, sequence, sex))  # type: ignore[arg-type]
    assert (info.region_code, info.birth_date, info.sex) == (region, birth, sex)
    assert abs(int(info.sequence) - sequence) <= 1


@given(regions, birth_dates, st.integers(0, 999), sexes, st.data())
def test_any_single_char_change_breaks_an_id_number(
    region: str, birth: date, sequence: int, sex: str, data: st.DataObject
) -> None:
    number = make_id_number(region, birth, sequence, sex)  # type: ignore[arg-type]
    pos = data.draw(st.integers(0, 17), label="position")
    replacement = data.draw(
        st.sampled_from([c for c in "0123456789X" if c != number[pos]]), label="replacement"
    )
    mutated = number[:pos] + replacement + number[pos + 1 :]
    assert not is_valid_id_number(mutated)


# ---------------------------------------------------------------------------
# Unified social credit codes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", _vectors("uscc", "test_vectors"))
def test_reference_uscc_vectors(vector: dict[str, Any]) -> None:
    code: str = vector["code"]
    assert is_valid_uscc(code) is vector["valid"]
    if vector["valid"]:
        info = validate_uscc(code)
        assert info.code == code
        assert info.org_code == code[8:17]
    else:
        with pytest.raises(IdentifierError):
            validate_uscc(code)


def test_reference_uscc_worked_example() -> None:
    # standards.json: 91350100M000100Y4? -> check character 3; 'Z' is not in the charset.
    _ref("uscc", "check_digit", "worked_example")
    assert uscc_check_char("91350100M000100Y4") == "3"
    with pytest.raises(IdentifierError) as info:
        validate_uscc("91350100M000100Y4Z")
    assert info.value.code == "uscc.charset"
    assert "18" in info.value.message_zh


def test_reference_uscc_weights_match() -> None:
    weights: list[int] = _ref("uscc", "check_digit", "weights_pos1_to_17")
    for i in range(17):
        first17 = "0" * i + "1" + "0" * (16 - i)
        assert uscc_check_char(first17) == USCC_CHARSET[(31 - weights[i] % 31) % 31]


def test_reference_org_code_weights_match() -> None:
    weights: list[int] = _ref("uscc", "organisation_code_check_GB11714", "weights_pos1_to_8")
    for body in ("60003734", "M000100Y", "MA1K3BTP", "ABCDEFGH", "JKLMNPQR", "TUWXY123"):
        assert org_code_check_char(body) == oracle_org_check(body, weights)


@given(st.text(alphabet=ORG_VALUES, min_size=8, max_size=8))
def test_org_code_check_matches_oracle(body: str) -> None:
    assert org_code_check_char(body) == oracle_org_check(body, [3, 7, 9, 10, 5, 8, 4, 2])


def test_org_code_check_x_and_zero() -> None:
    # S mod 11 == 1 gives 10 -> 'X'; S mod 11 == 0 gives 11 -> '0'.
    assert org_code_check_char("00000001") == "9"  # S = 2 -> 11 - 2 = 9
    assert org_code_check_char("00000000") == "0"  # S = 0 -> 11 -> '0'
    assert org_code_check_char("00000030") == "X"  # S = 3*4 = 12 -> 12 mod 11 = 1 -> X


def test_real_uscc_with_letters_in_org_code() -> None:
    # From the reference vectors: a Pudong enterprise whose org code is MA1K3BTP-2.
    _ref("uscc", "test_vectors")
    info = validate_uscc("91310115MA1K3BTP2B")
    assert info == UsccInfo(
        code="91310115MA1K3BTP2B",
        registration_authority="9",
        entity_type="1",
        region_code="310115",
        org_code="MA1K3BTP2",
    )
    assert info.org_code_display == "MA1K3BTP-2"


def test_constructed_uscc_with_letters_uses_base36_values() -> None:
    # J, K, L... have different values in GB 11714 (base 36) and the USCC table;
    # this body's check differs between the two, so it pins the right table.
    body = "MJKLNPQR"
    usccvalue_check = (
        11
        - sum(
            USCC_CHARSET.index(c) * w for c, w in zip(body, [3, 7, 9, 10, 5, 8, 4, 2], strict=True)
        )
        % 11
    )
    org = make_org_code(body)
    assert org[8] == oracle_org_check(body, [3, 7, 9, 10, 5, 8, 4, 2])
    assert org[8] != {10: "X", 11: "0"}.get(usccvalue_check, str(usccvalue_check))

    code = make_uscc("310104", body, registration_authority="5", entity_type="2")
    info = validate_uscc(code)
    assert (info.registration_authority, info.entity_type, info.region_code) == ("5", "2", "310104")
    assert info.org_code == org


def test_uscc_with_valid_check_char_but_broken_org_code_is_rejected() -> None:
    good = "91310115MA1K3BTP2B"
    broken17 = good[:16] + "3"  # wrong GB 11714 check char for MA1K3BTP
    broken = broken17 + uscc_check_char(broken17)  # ...but a correct 18th char
    with pytest.raises(IdentifierError) as info:
        validate_uscc(broken)
    err = info.value
    assert err.code == "uscc.org_code_check"
    assert "MA1K3BTP-3" in err.message_zh
    assert "MA1K3BTP-3" in err.message_en
    assert "expected 2" in err.message_en


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", "uscc.length"),
        ("91110000600037341", "uscc.length"),
        ("91110000600037341LL", "uscc.length"),
        ("9111000060003734IL", "uscc.charset"),  # I is excluded
        ("O1110000600037341L", "uscc.charset"),
        ("91110000600037341-", "uscc.charset"),
        ("9111A000600037341L", "uscc.region_code"),
        ("91110000600037341N", "uscc.check_char"),
    ],
)
def test_malformed_usccs(value: str, code: str) -> None:
    with pytest.raises(IdentifierError) as info:
        validate_uscc(value)
    assert info.value.code == code


def test_uscc_normalises_case_and_whitespace() -> None:
    assert validate_uscc("  91310115ma1k3btp2b\n").code == "91310115MA1K3BTP2B"


def test_uscc_wrong_check_char_names_expected_and_got() -> None:
    with pytest.raises(IdentifierError) as info:
        validate_uscc("91110000600037341N")
    assert "expected L, got N" in info.value.message_en
    assert "应为L" in info.value.message_zh
    assert "实际为N" in info.value.message_zh


def test_make_uscc_rejects_bad_parts() -> None:
    with pytest.raises(IdentifierError) as info:
        make_uscc("31010A", "MA1K3BTP")
    assert info.value.code == "uscc.region_code"
    with pytest.raises(IdentifierError):
        make_uscc("310101", "MA1K3BTI")  # I is not in the USCC charset
    with pytest.raises(IdentifierError):
        make_org_code("ABC")


uscc_chars = st.sampled_from(USCC_CHARSET)


@given(
    uscc_chars,
    uscc_chars,
    regions,
    st.text(alphabet=USCC_CHARSET, min_size=8, max_size=8),
)
def test_make_uscc_always_validates(authority: str, entity: str, region: str, body: str) -> None:
    code = make_uscc(region, body, registration_authority=authority, entity_type=entity)
    info = validate_uscc(code)
    assert info.org_code[:8] == body
    assert (info.registration_authority, info.entity_type, info.region_code) == (
        authority,
        entity,
        region,
    )


# ---------------------------------------------------------------------------
# Phones
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "13812341234",
        " 138 1234 1234 ",
        "138-1234-1234",
        "+8613812341234",
        "+86 138-1234-1234",
        "8613812341234",
        "0086 13812341234",
        "１３８１２３４１２３４",
    ],
)
def test_normalise_mobile_accepts(raw: str) -> None:
    assert normalise_mobile(raw) == "13812341234"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "12812341234",  # 12x is not a mobile network code
        "1381234123",  # 10 digits
        "138123412345",
        "1381234123a",
        "+1 13812341234",
        "021-62345678",
        "86 13812341234 1",
    ],
)
def test_normalise_mobile_rejects(raw: str) -> None:
    with pytest.raises(IdentifierError) as info:
        normalise_mobile(raw)
    assert info.value.code == "phone.mobile"


# ---------------------------------------------------------------------------
# Masking
# ---------------------------------------------------------------------------


def test_reference_masking_examples() -> None:
    conv = _ref("masking", "conventions")
    src, masked = (s.strip() for s in conv["mobile"]["example"].split("->"))
    assert mask_phone(src) == masked
    src, masked = (s.strip() for s in conv["id_number"][0]["example"].split("->"))
    assert mask_id_number(src) == masked
    src, masked = (s.strip() for s in conv["chinese_name"]["example"].split("->"))
    assert mask_name(src) == masked


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("11010519491231002X", "110105********002X"),
        ("11010519491231002x", "110105********002X"),
        ("110105491231002", "110105******002"),  # legacy 15-digit: birth date hidden
        ("", ""),
        ("1234", "****"),
        ("11010519491231", "**************"),
        (None, ""),
    ],
)
def test_mask_id_number(raw: str | None, masked: str) -> None:
    assert mask_id_number(raw) == masked


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("13812341234", "138****1234"),
        ("18049531999", "180****1999"),
        ("+86 138-1234-1234", "138****1234"),
        ("021-62345678", "021****5678"),
        ("(021) 6234 5678", "021****5678"),
        ("+86 21 6234 5678", "021****5678"),
        ("010-12345678", "010****5678"),
        ("0915-7518479", "0915***8479"),
        ("62345678", "****5678"),
        ("110", "***"),
        ("0211234", "*******"),  # area code + 4 digits: nothing left to hide
        ("call me", "*******"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_phone(raw: str | None, masked: str) -> None:
    assert mask_phone(raw) == masked


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("张三丰", "张**"),
        ("段正淳", "段**"),
        ("李四", "李*"),
        ("王", "*"),
        ("欧阳娜娜", "欧***"),
        (" 张三 ", "张*"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_name(raw: str | None, masked: str) -> None:
    assert mask_name(raw) == masked


@given(st.one_of(st.none(), st.text()))
def test_masking_never_raises(value: str | None) -> None:
    for mask in (mask_id_number, mask_phone, mask_name):
        assert isinstance(mask(value), str)
    name = mask_name(value)
    assert set(name[1:]) <= {"*"}
