"""Chinese identifier kernels: resident ID numbers, credit codes, phones, masking.

Pure functions only (no I/O, no database). Validation failures raise
:class:`IdentifierError`, which carries a stable ``code`` plus Chinese and
English messages so that API layers can localise without parsing text.

Standards implemented:

* GB 11643-1999 公民身份号码 (18 characters, ISO 7064 MOD 11-2 check).
* GB 32100-2015 统一社会信用代码 (18 characters, weighted mod-31 check), including
  the embedded GB 11714 组织机构代码 (positions 9-17, weighted mod-11 check).
* Mobile numbers per the MIIT numbering plan (practical regex ``^1[3-9]\\d{9}$``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Literal

__all__ = [
    "IdNumberInfo",
    "IdentifierError",
    "Sex",
    "UsccInfo",
    "id_check_char",
    "is_valid_id_number",
    "is_valid_uscc",
    "make_id_number",
    "make_org_code",
    "make_uscc",
    "mask_id_number",
    "mask_name",
    "mask_phone",
    "normalise_mobile",
    "org_code_check_char",
    "uscc_check_char",
    "validate_id_number",
    "validate_uscc",
]

Sex = Literal["M", "F"]

# China has had no daylight saving since 1991, so a fixed UTC+8 offset gives the
# correct local date without depending on the system's tz database.
_CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
_EARLIEST_BIRTH_DATE = date(1900, 1, 1)

_DIGITS = "0123456789"

# Users typing on Chinese input methods often produce full-width characters
# (１２３, Ｘ); fold the full-width ASCII block and the ideographic space.
_FULLWIDTH_TO_ASCII = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


class IdentifierError(ValueError):
    """An identifier failed validation.

    ``code`` is a stable slug for programmatic handling (e.g. ``id_number.check_digit``);
    ``str(err)`` is the Chinese message, ``message_en`` its English translation.
    """

    def __init__(self, code: str, message_zh: str, message_en: str) -> None:
        super().__init__(message_zh)
        self.code = code
        self.message_zh = message_zh
        self.message_en = message_en

    def __str__(self) -> str:
        return self.message_zh

    def __reduce__(self) -> tuple[type[IdentifierError], tuple[str, str, str]]:
        # The default exception pickling replays ``args`` (only the zh message),
        # which would not match our three-argument constructor.
        return (type(self), (self.code, self.message_zh, self.message_en))


def _clean(value: str) -> str:
    return value.translate(_FULLWIDTH_TO_ASCII).strip()


def _is_ascii_digits(value: str) -> bool:
    # str.isdigit() alone also accepts e.g. Arabic-Indic or superscript digits.
    return value.isascii() and value.isdigit()


# ---------------------------------------------------------------------------
# GB 11643-1999 resident identity numbers
# ---------------------------------------------------------------------------

# W_k = 2^(17-k) mod 11 for 0-based position k from the left (ISO 7064 MOD 11-2).
_ID_WEIGHTS = tuple(pow(2, 17 - k, 11) for k in range(17))
_ID_CHECK_CHARS = "10X98765432"  # indexed by (weighted sum mod 11)


@dataclass(frozen=True, slots=True)
class IdNumberInfo:
    """A validated 18-character resident ID number and the facts encoded in it."""

    number: str
    region_code: str
    birth_date: date
    sex: Sex
    sequence: str


def id_check_char(first17: str) -> str:
    """Return the GB 11643 check character ('0'-'9' or 'X') for 17 digits."""
    if len(first17) != 17 or not _is_ascii_digits(first17):
        raise IdentifierError(
            "id_number.charset",
            "计算校验码需要17位数字",
            "the check character needs exactly 17 digits",
        )
    total = sum(int(ch) * w for ch, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK_CHARS[total % 11]


def _today_in_china() -> date:
    return datetime.now(_CHINA_TZ).date()


def validate_id_number(value: str, *, today: date | None = None) -> IdNumberInfo:
    """Validate and parse an 18-character resident ID number.

    The input is normalised first (surrounding whitespace stripped, full-width
    characters folded, a lower-case 'x' check character upper-cased). ``today``
    defaults to the current date in China and only exists to make tests
    deterministic. The 15-digit 1989 format is rejected: it has no check
    character and all such numbers were reissued as 18-character ones.
    """
    number = _clean(value).upper()
    if len(number) != 18:
        raise IdentifierError(
            "id_number.length",
            f"身份证号码应为18位，实际为{len(number)}位",
            f"an ID number must have 18 characters, got {len(number)}",
        )
    for pos, ch in enumerate(number[:17], start=1):
        if ch not in _DIGITS:
            raise IdentifierError(
                "id_number.charset",
                f"身份证号码前17位必须为数字，第{pos}位为“{ch}”",
                f"the first 17 characters of an ID number must be digits; position {pos} is {ch!r}",
            )
    last = number[17]
    if last not in _DIGITS and last != "X":
        raise IdentifierError(
            "id_number.charset",
            f"身份证号码第18位必须为数字或X，实际为“{last}”",
            f"the 18th character of an ID number must be a digit or X, got {last!r}",
        )

    raw_date = number[6:14]
    try:
        birth = date(int(raw_date[:4]), int(raw_date[4:6]), int(raw_date[6:]))
    except ValueError:
        raise IdentifierError(
            "id_number.birth_date",
            f"身份证号码中的出生日期{raw_date}不是有效日期",
            f"the birth date {raw_date} in the ID number is not a real date",
        ) from None
    if today is None:
        today = _today_in_china()
    if birth > today:
        raise IdentifierError(
            "id_number.birth_date_range",
            f"身份证号码中的出生日期{raw_date}晚于今天",
            f"the birth date {raw_date} in the ID number is in the future",
        )
    if birth < _EARLIEST_BIRTH_DATE:
        raise IdentifierError(
            "id_number.birth_date_range",
            f"身份证号码中的出生日期{raw_date}早于1900年1月1日",
            f"the birth date {raw_date} in the ID number is before 1900-01-01",
        )

    expected = id_check_char(number[:17])
    if last != expected:
        raise IdentifierError(
            "id_number.check_digit",
            f"身份证号码校验码错误：应为{expected}，实际为{last}",
            f"wrong ID number check character: expected {expected}, got {last}",
        )
    return IdNumberInfo(
        number=number,
        region_code=number[:6],
        birth_date=birth,
        # GB 11643: an odd sequence code is assigned to men, an even one to women.
        sex="M" if int(number[16]) % 2 == 1 else "F",
        sequence=number[14:17],
    )


def is_valid_id_number(value: object, *, today: date | None = None) -> bool:
    """True if ``value`` is a string that :func:`validate_id_number` accepts."""
    if not isinstance(value, str):
        return False
    try:
        validate_id_number(value, today=today)
    except IdentifierError:
        return False
    return True


def make_id_number(region_code: str, birth_date: date, sequence3: int, sex: Sex) -> str:
    """Build a valid ID number (for synthetic data).

    ``sequence3`` (0-999) is the 顺序码. If its parity disagrees with ``sex`` its
    lowest bit is flipped (e.g. 124 -> 125 for a man), so callers can draw the
    sequence and the sex independently and still get a consistent number.
    """
    if len(region_code) != 6 or not _is_ascii_digits(region_code):
        raise IdentifierError(
            "id_number.region_code",
            f"地址码必须为6位数字，实际为“{region_code}”",
            f"the region code must be 6 digits, got {region_code!r}",
        )
    if not 0 <= sequence3 <= 999:
        raise IdentifierError(
            "id_number.sequence",
            f"顺序码必须在0到999之间，实际为{sequence3}",
            f"the sequence code must be between 0 and 999, got {sequence3}",
        )
    if sex not in ("M", "F"):
        raise IdentifierError(
            "id_number.sex",
            f"性别必须为M或F，实际为{sex!r}",
            f"sex must be 'M' or 'F', got {sex!r}",
        )
    want_odd = sex == "M"
    if (sequence3 % 2 == 1) != want_odd:
        sequence3 ^= 1
    first17 = f"{region_code}{birth_date:%Y%m%d}{sequence3:03d}"
    number = first17 + id_check_char(first17)
    # Re-validate so an out-of-range birth date is reported the same way as on input.
    return validate_id_number(number).number


# ---------------------------------------------------------------------------
# GB 32100-2015 unified social credit codes and GB 11714 organisation codes
# ---------------------------------------------------------------------------

# 31 characters: digits and upper-case letters without I, O, Z, S, V.
_USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUES = {ch: i for i, ch in enumerate(_USCC_CHARSET)}
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # W_i = 3^(i-1) mod 31

# GB 11714 values letters as base-36 digits (A=10 ... Z=35) over all 26 letters,
# which is NOT the USCC value table; the reference checked this on 200 real codes.
_ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


@dataclass(frozen=True, slots=True)
class UsccInfo:
    """A validated unified social credit code and its parts."""

    code: str
    registration_authority: str  # position 1, 登记管理部门代码
    entity_type: str  # position 2, 机构类别代码
    region_code: str  # positions 3-8, GB/T 2260 code of the registering authority
    org_code: str  # positions 9-17, GB 11714 organisation code incl. its check char

    @property
    def org_code_display(self) -> str:
        """The organisation code in its printed form ``XXXXXXXX-X``."""
        return f"{self.org_code[:8]}-{self.org_code[8]}"


def uscc_check_char(first17: str) -> str:
    """Return the GB 32100 check character for the first 17 characters."""
    if len(first17) != 17 or any(ch not in _USCC_VALUES for ch in first17):
        raise IdentifierError(
            "uscc.charset",
            "计算校验码需要17个合法字符（数字及除I、O、Z、S、V外的大写字母）",
            "the check character needs 17 valid characters (digits and upper-case "
            "letters other than I, O, Z, S, V)",
        )
    total = sum(_USCC_VALUES[ch] * w for ch, w in zip(first17, _USCC_WEIGHTS, strict=True))
    # C18 = 31 - (S mod 31), where a result of 31 is written as 0.
    return _USCC_CHARSET[(31 - total % 31) % 31]


def org_code_check_char(body8: str) -> str:
    """Return the GB 11714 check character ('0'-'9' or 'X') for an 8-character body."""
    if len(body8) != 8 or any(ch not in _ORG_ALPHABET for ch in body8):
        raise IdentifierError(
            "org_code.charset",
            f"组织机构代码本体必须为8位数字或大写字母，实际为“{body8}”",
            f"an organisation code body must be 8 digits or upper-case letters, got {body8!r}",
        )
    total = sum(_ORG_ALPHABET.index(ch) * w for ch, w in zip(body8, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11  # 10 is written X, 11 is written 0
    return "X" if check == 10 else "0" if check == 11 else str(check)


def make_org_code(body8: str) -> str:
    """Append the GB 11714 check character to an 8-character body."""
    return body8 + org_code_check_char(body8)


def validate_uscc(value: str) -> UsccInfo:
    """Validate and parse a unified social credit code.

    Checks the character set, that positions 3-8 are digits, the 18th check
    character and the GB 11714 check of the embedded organisation code.
    Surrounding whitespace is stripped and lower-case letters are upper-cased.
    """
    code = _clean(value).upper()
    if len(code) != 18:
        raise IdentifierError(
            "uscc.length",
            f"统一社会信用代码应为18位，实际为{len(code)}位",
            f"a unified social credit code must have 18 characters, got {len(code)}",
        )
    for pos, ch in enumerate(code, start=1):
        if ch not in _USCC_VALUES:
            raise IdentifierError(
                "uscc.charset",
                f"统一社会信用代码第{pos}位“{ch}”不是合法字符（不使用I、O、Z、S、V）",
                f"position {pos} of the unified social credit code is {ch!r}, which is "
                "not allowed (digits and upper-case letters except I, O, Z, S, V)",
            )
    region = code[2:8]
    if not _is_ascii_digits(region):
        raise IdentifierError(
            "uscc.region_code",
            f"统一社会信用代码第3-8位行政区划码必须为数字，实际为“{region}”",
            f"positions 3-8 (region code) of the unified social credit code must be "
            f"digits, got {region!r}",
        )
    expected = uscc_check_char(code[:17])
    if code[17] != expected:
        raise IdentifierError(
            "uscc.check_char",
            f"统一社会信用代码校验码错误：应为{expected}，实际为{code[17]}",
            f"wrong unified social credit code check character: expected {expected}, "
            f"got {code[17]}",
        )
    org = code[8:17]
    org_expected = org_code_check_char(org[:8])
    if org[8] != org_expected:
        raise IdentifierError(
            "uscc.org_code_check",
            f"统一社会信用代码中的组织机构代码{org[:8]}-{org[8]}校验码错误：应为{org_expected}",
            f"the organisation code {org[:8]}-{org[8]} embedded in the unified social "
            f"credit code has a wrong check character: expected {org_expected}",
        )
    return UsccInfo(
        code=code,
        registration_authority=code[0],
        entity_type=code[1],
        region_code=region,
        org_code=org,
    )


def is_valid_uscc(value: object) -> bool:
    """True if ``value`` is a string that :func:`validate_uscc` accepts."""
    if not isinstance(value, str):
        return False
    try:
        validate_uscc(value)
    except IdentifierError:
        return False
    return True


def make_uscc(
    region_code: str,
    org_body8: str,
    *,
    registration_authority: str = "9",
    entity_type: str = "1",
) -> str:
    """Build a valid unified social credit code (for synthetic data).

    Defaults give ``91…``, an enterprise registered with market regulation.
    ``org_body8`` must use the USCC character set (no I, O, Z, S, V) because the
    organisation code is embedded in the credit code.
    """
    first17 = registration_authority + entity_type + region_code + make_org_code(org_body8)
    code = first17 + uscc_check_char(first17)
    # Re-validate so bad parts (e.g. a letter in the region code) fail loudly here.
    return validate_uscc(code).code


# ---------------------------------------------------------------------------
# Phone numbers
# ---------------------------------------------------------------------------

_MOBILE_RE = re.compile(r"1[3-9]\d{9}", re.ASCII)
_PHONE_SEPARATORS = str.maketrans("", "", " -\t")


def _strip_country_code(digits: str) -> tuple[str, bool]:
    """Drop a leading +86 / 0086 / 86 country code; report whether one was found."""
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix):
            return digits[len(prefix) :], True
    # A bare "86" is only a country code when 11 digits follow: no domestic
    # number starts with 86 and has 13 digits.
    if digits.startswith("86") and len(digits) == 13:
        return digits[2:], True
    return digits, False


def normalise_mobile(value: str) -> str:
    """Return the bare 11-digit mobile number, or raise :class:`IdentifierError`.

    Accepts an optional +86 / 0086 / 86 prefix, spaces and dashes.
    """
    compact = _clean(value).translate(_PHONE_SEPARATORS)
    number, _ = _strip_country_code(compact)
    if not _MOBILE_RE.fullmatch(number):
        raise IdentifierError(
            "phone.mobile",
            "手机号码格式错误：应为以13-19开头的11位数字（可带+86前缀）",
            "not a mobile number: expected 11 digits starting with 13-19 "
            "(an optional +86 prefix is allowed)",
        )
    return number


# ---------------------------------------------------------------------------
# Display masking. These never raise: anything unexpected is masked in full.
# ---------------------------------------------------------------------------


def mask_id_number(value: str | None) -> str:
    """Mask an ID number for display, hiding the birth date.

    18 characters: keep the first 6 (address code) and last 4, e.g.
    ``110105********002X``. Legacy 15-digit numbers: keep the first 6 and the last
    3 (the 6-digit birth date is masked). Anything else is masked in full.
    """
    text = _clean(value or "").upper()
    if len(text) == 18:
        return text[:6] + "*" * 8 + text[-4:]
    if len(text) == 15:
        return text[:6] + "*" * 6 + text[-3:]
    return "*" * len(text)


def mask_phone(value: str | None) -> str:
    """Mask a phone number for display.

    Mobile numbers become ``138****1234`` (country code and separators dropped).
    Fixed lines keep the area code and the last 4 digits, separators dropped:
    ``021-62345678`` -> ``021****5678``, ``0915-7518479`` -> ``0915***8479``. The area
    code is 3 digits for 010/02X and 4 digits for other numbers starting with 0;
    numbers without an area code keep only their last 4 digits. We chose this over
    hutool's "first 4 + last 2" because it keeps the city visible for every area
    code length. Input that is not a plausible phone number is masked in full.
    """
    text = _clean(value or "")
    compact = text.translate(_PHONE_SEPARATORS).replace("(", "").replace(")", "")
    digits, international = _strip_country_code(compact)
    if _MOBILE_RE.fullmatch(digits):
        return digits[:3] + "****" + digits[-4:]
    if not _is_ascii_digits(digits):
        return "*" * len(text)
    if international and not digits.startswith("0"):
        digits = "0" + digits  # +86 21 ... is dialled domestically as 021 ...
    if digits.startswith(("01", "02")):
        area = 3
    elif digits.startswith("0"):
        area = 4
    else:
        area = 0
    if len(digits) - area <= 4:  # nothing would be hidden
        return "*" * len(text)
    return digits[:area] + "*" * (len(digits) - area - 4) + digits[-4:]


def mask_name(value: str | None) -> str:
    """Keep the first character of a name and mask each of the others: 张三丰 -> 张**.

    A one-character name is masked completely ('*'), since keeping it would
    reveal the whole name.
    """
    text = _clean(value or "")
    if len(text) <= 1:
        return "*" * len(text)
    return text[0] + "*" * (len(text) - 1)
