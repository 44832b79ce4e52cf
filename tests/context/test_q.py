"""The NGSI-LD query language (clause 4.9): grammar, evaluation, prefilter, robustness."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pujiang.context.ngsild_q import (
    And,
    Compare,
    Exists,
    Or,
    Path,
    Pattern,
    Prefilter,
    QExpr,
    QRange,
    QSyntaxError,
    QValue,
    QValueList,
    evaluate,
    parse_q,
    sql_prefilter,
)

SDM = "https://smartdatamodels.org/dataModel.Environment/"
PARK = "https://smartdatamodels.org/dataModel.Parking/"
LIGHT = "https://smartdatamodels.org/dataModel.Streetlighting/"
DC = "https://uri.etsi.org/ngsi-ld/default-context/"
CORE = "https://uri.etsi.org/ngsi-ld/"

# Short name -> IRI, as the core expands with the request's @context.
TERMS = {
    "pm25": SDM + "pm25",
    "no2": SDM + "no2",
    "airQualityLevel": SDM + "airQualityLevel",
    "address": "https://schema.org/address",
    "name": "https://schema.org/name",
    "location": CORE + "location",
    "refDevice": DC + "refDevice",
    "status": PARK + "status",
    "category": PARK + "category",
    "occupier": PARK + "occupier",
    "powerState": LIGHT + "powerState",
    "illuminanceLevel": LIGHT + "illuminanceLevel",
    "lanternHeight": LIGHT + "lanternHeight",
    "dateLastSwitchingOn": LIGHT + "dateLastSwitchingOn",
    "controllingMethod": LIGHT + "controllingMethod",
    "onTime": LIGHT + "onTime",
    "installedOn": LIGHT + "installedOn",
    "sensor": DC + "sensor",
    "rawdata": DC + "rawdata",
    "accuracy": DC + "accuracy",
    "createdAt": CORE + "createdAt",
}


def expand(name: str) -> str:
    return TERMS.get(name, DC + name)


AIR = {
    "id": "urn:ngsi-ld:AirQualityObserved:310101-1",
    "type": [SDM + "AirQualityObserved"],
    "createdAt": "2026-11-24T01:00:00.000Z",
    "modifiedAt": "2026-11-24T02:00:00.000Z",
    SDM + "pm25": [
        {
            "type": "Property",
            "value": 35,
            "unitCode": "GQ",
            "observedAt": "2026-11-24T01:00:00Z",
            DC + "accuracy": [{"type": "Property", "value": 0.9}],
        },
        {"type": "Property", "value": 80.5, "datasetId": "urn:ngsi-ld:Dataset:station-b"},
    ],
    SDM + "no2": [{"type": "Property", "value": 12}],
    SDM + "airQualityLevel": [{"type": "Property", "value": "moderate"}],
    "https://schema.org/address": [
        {
            "type": "Property",
            "value": {
                "addressLocality": "上海市",
                "district": {"name": "黄浦区", "code": "310101"},
                "streetAddress": "人民大道 100 号",
            },
        }
    ],
    "https://schema.org/name": [
        {"type": "LanguageProperty", "languageMap": {"zh": "人民广场站", "en": "People's Square"}}
    ],
    CORE + "location": [
        {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [121.4737, 31.2304]}}
    ],
    DC + "refDevice": [
        {
            "type": "Relationship",
            "object": "urn:ngsi-ld:Device:aq-17",
            "observedAt": "2026-11-24T01:00:00Z",
        }
    ],
}

LIGHT_ENTITY = {
    "id": "urn:ngsi-ld:Streetlight:xuhui-0042",
    "type": [LIGHT + "Streetlight"],
    "createdAt": "2025-03-01T00:00:00Z",
    LIGHT + "powerState": [{"type": "Property", "value": "on"}],
    LIGHT + "illuminanceLevel": [{"type": "Property", "value": 0.75}],
    LIGHT + "lanternHeight": [{"type": "Property", "value": 10}],
    LIGHT + "dateLastSwitchingOn": [
        {"type": "Property", "value": {"@type": "DateTime", "@value": "2026-11-23T17:05:00Z"}}
    ],
    LIGHT + "installedOn": [{"type": "Property", "value": "2019-06-15"}],
    LIGHT + "onTime": [{"type": "Property", "value": "17:00:00Z"}],
    LIGHT + "controllingMethod": [{"type": "Property", "value": ["group", "individual"]}],
    DC + "sensor": [
        {
            "type": "Property",
            "value": 40,
            DC + "rawdata": [
                {"type": "Property", "value": {"airquality": {"particulate": 40, "PM20": 85}}}
            ],
        }
    ],
}

PARKING = {
    "id": "urn:ngsi-ld:ParkingSpot:jingan-7",
    "type": [PARK + "ParkingSpot"],
    PARK + "status": [{"type": "Property", "value": "occupied"}],
    PARK + "category": [{"type": "Property", "value": ["onStreet", "forDisabled"]}],
    PARK + "occupier": [
        {"type": "Relationship", "object": ["urn:ngsi-ld:Vehicle:A1", "urn:ngsi-ld:Vehicle:B2"]}
    ],
    DC + "isFree": [{"type": "Property", "value": False}],
}

ENTITIES = {"air": AIR, "light": LIGHT_ENTITY, "park": PARKING}

# (q, entity, expected)
CASES: list[tuple[str, str, bool]] = [
    # existence and non-existence
    ("pm25", "air", True),
    ("pm25", "light", False),
    ("!pm25", "light", True),
    ("!pm25", "air", False),
    ("refDevice", "air", True),
    ("pm25.accuracy", "air", True),
    ("no2.accuracy", "air", False),
    ("pm25.observedAt", "air", True),
    ("no2.observedAt", "air", False),
    ("!no2.observedAt", "air", True),
    # numbers; any instance matches
    ("pm25==35", "air", True),
    ("pm25==35.0", "air", True),
    ("pm25==80.5", "air", True),
    ("pm25>50", "air", True),
    ("pm25>80.5", "air", False),
    ("pm25>=80.5", "air", True),
    ("pm25<36", "air", True),
    ("pm25<=34.9", "air", False),
    ("pm25!=35", "air", True),  # the other instance is 80.5
    ("no2!=12", "air", False),
    ("no2==10..20", "air", True),
    ("no2==13..20", "air", False),
    ("no2!=13..20", "air", True),
    ("no2!=10..20", "air", False),
    ("no2==1,5,12", "air", True),
    ("no2!=1,5,12", "air", False),
    ("no2==1e1..1.2e1", "air", True),
    ("no2==-5..-1", "air", False),
    # numbers vs other types: no match, and != matches ("types differ: unequal")
    ('no2=="12"', "air", False),
    ('no2!="12"', "air", True),
    ('no2>"1"', "air", False),
    ("no2==true", "air", False),
    ("isFree==false", "park", True),
    ("isFree==0", "park", False),
    ("isFree!=true", "park", True),
    # strings
    ('airQualityLevel=="moderate"', "air", True),
    ('airQualityLevel=="good","moderate"', "air", True),
    ('airQualityLevel=="good", "moderate"', "air", True),
    ('airQualityLevel!="moderate"', "air", False),
    ('airQualityLevel>"m"', "air", True),
    ('airQualityLevel=="a".."n"', "air", True),
    ('airQualityLevel=="n".."z"', "air", False),
    ('airQualityLevel~="^mod"', "air", True),
    ('airQualityLevel~="^MOD"', "air", False),
    ('airQualityLevel~="(?i)^MOD"', "air", True),
    ('airQualityLevel!~="^mod"', "air", False),
    ('airQualityLevel!~="^good"', "air", True),
    ("airQualityLevel~=^mod(erate|est)$", "air", True),
    ('pm25~="3"', "air", False),  # a number is not a string: no match either way
    ('pm25!~="3"', "air", False),
    # arrays: == is membership, != is non-membership
    ('category=="forDisabled"', "park", True),
    ('category=="private"', "park", False),
    ('category!="forDisabled"', "park", False),
    ('category!="private"', "park", True),
    ('category=="private","onStreet"', "park", True),
    ('category~="^for"', "park", True),
    ('controllingMethod=="individual"', "light", True),
    ('controllingMethod>"a"', "light", False),
    # relationships: object; only == and != apply
    ("refDevice==urn:ngsi-ld:Device:aq-17", "air", True),
    ('refDevice=="urn:ngsi-ld:Device:aq-17"', "air", True),
    ("refDevice==urn:ngsi-ld:Device:aq-18", "air", False),
    ("refDevice!=urn:ngsi-ld:Device:aq-18", "air", True),
    ("refDevice==urn:ngsi-ld:Device:x,urn:ngsi-ld:Device:aq-17", "air", True),
    ('refDevice>"urn"', "air", False),
    ('refDevice~="aq"', "air", False),
    ("refDevice.observedAt>=2026-11-24T00:00:00Z", "air", True),
    ("occupier==urn:ngsi-ld:Vehicle:B2", "park", True),
    ("occupier!=urn:ngsi-ld:Vehicle:B2", "park", False),
    # language properties: any language, or the one named
    ('name=="人民广场站"', "air", True),
    ('name[*]=="People\'s Square"', "air", True),
    ('name[zh]=="人民广场站"', "air", True),
    ('name[en]=="人民广场站"', "air", False),
    ('name[fr]=="人民广场站"', "air", False),
    ('name!="人民广场站"', "air", False),
    ('name[zh]~="广场"', "air", True),
    # compound values
    ('address[addressLocality]=="上海市"', "air", True),
    ('address[district.code]=="310101"', "air", True),
    ('address[district.code]=="310104"', "air", False),
    ("address[district.code]", "air", True),
    ("address[district.postcode]", "air", False),
    ("!address[district.postcode]", "air", True),
    ("sensor.rawdata[airquality.particulate]==40", "light", True),
    ("sensor.rawdata[airquality.PM20]>100", "light", False),
    # meta-attributes
    ('pm25.unitCode=="GQ"', "air", True),
    ('pm25.unitCode=="MGM"', "air", False),
    ("pm25.datasetId==urn:ngsi-ld:Dataset:station-b", "air", True),
    ("pm25.observedAt>=2026-11-24T01:00:00Z", "air", True),
    ("pm25.observedAt>2026-11-24T01:00:00Z", "air", False),
    ("pm25.observedAt>2026-11-24T08:59:59+08:00", "air", True),
    ("pm25.observedAt==2026-11-24T09:00:00+08:00", "air", True),
    ("pm25.observedAt==2026-11-24T00:00:00Z..2026-11-24T02:00:00Z", "air", True),
    ("createdAt<2026-01-01T00:00:00Z", "light", True),
    ("createdAt<2026-01-01T00:00:00Z", "air", False),
    # dates and times compared as such, by type
    ("dateLastSwitchingOn>2026-11-23T12:00:00Z", "light", True),
    ("dateLastSwitchingOn>2026-11-24T12:00:00Z", "light", False),
    ("installedOn<2020-01-01", "light", True),
    ("installedOn==2019-01-01..2019-12-31", "light", True),
    ("installedOn>2019-06-15T00:00:00Z", "light", False),  # a date is not a dateTime
    ("onTime==17:00:00Z", "light", True),
    ("onTime<18:00:00Z", "light", True),
    ("onTime==17:00:00Z..17:30:00Z", "light", True),
    # logic and precedence: ';' before '|', parentheses first
    ("pm25>50;no2<10", "air", False),
    ("pm25>50|no2<10", "air", True),
    ("no2<10;pm25>50|airQualityLevel", "air", True),  # (no2<10;pm25>50)|airQualityLevel
    ("no2<10;(pm25>50|airQualityLevel)", "air", False),
    ("((pm25>50|no2>3000);refDevice)", "air", True),
    ("(no2>=20;no2<=25)|powerState", "air", False),
    ("(no2>=20;no2<=25)|powerState", "light", True),
    (' ( pm25 > 50 ; no2 == 12 ) | powerState == "off" ', "air", True),
]


@pytest.mark.parametrize(("q", "entity", "expected"), CASES)
def test_evaluate(q: str, entity: str, expected: bool) -> None:
    expr = parse_q(q).map_names(expand)
    assert evaluate(expr, ENTITIES[entity]) is expected


@pytest.mark.parametrize("q", [c[0] for c in CASES])
def test_render_round_trip(q: str) -> None:
    expr = parse_q(q)
    assert parse_q(str(expr)) == expr


def test_spec_examples_parse() -> None:
    """Examples 0-10 of clause 4.9."""
    examples = [
        "temperature",
        "temperature==20",
        'brandName!="Mercedes"',
        'isParked=="urn:ngsi-ld:OffStreetParking:Downtown1"',
        'speed>50;brandName!="Mercedes"',
        "isMonitoredBy",
        '((speed>50|rpm>3000);brandName=="Mercedes")',
        "(temperature>=20;temperature<=25)|capacity<=10",
        "temperature.observedAt>=2017-12-24T12:00:00Z",
        'address[city]=="Berlin"',
        "sensor.rawdata[airquality.particulate]==40",
    ]
    for q in examples:
        parse_q(q)


def test_tree_shape_and_precedence() -> None:
    expr = parse_q("a==1;b|c;(d|e)")
    a = Compare(Path("a"), "==", QValue("number", 1))
    assert expr == Or(
        (
            And((a, Exists(Path("b")))),
            And((Exists(Path("c")), Or((Exists(Path("d")), Exists(Path("e")))))),
        )
    )
    assert str(expr) == "a==1;b|c;(d|e)"


def test_values_are_typed() -> None:
    def operand(q: str) -> Any:
        expr = parse_q(q)
        assert isinstance(expr, Compare)
        return expr.operand

    assert operand("a==-1.5e2") == QValue("number", -150.0)
    assert operand('a=="x\\"y\\u00e9"') == QValue("string", 'x"yé')
    assert operand("a==true") == QValue("boolean", True)
    assert operand("a==2026-11-24T09:00:00+08:00") == QValue(
        "datetime", datetime(2026, 11, 24, 1, tzinfo=UTC)
    )
    assert operand("a==2026-11-24T01:00:00.5Z").value.microsecond == 500000
    assert operand("a==2026-11-24").kind == "date"
    assert operand("a==08:30:00+08:00") == QValue("time", 1800.0)
    assert operand("a==https://example.org/red") == QValue.uri("https://example.org/red")
    assert operand("a==1..2") == QRange(QValue("number", 1), QValue("number", 2))
    assert operand('a=="x","y"') == QValueList((QValue.of("x"), QValue.of("y")))


def test_attribute_names_and_map_names() -> None:
    expr = parse_q('a.b.observedAt>2020-01-01T00:00:00Z;(c[x.y]=="1"|!d);e.unitCode=="C"')
    assert expr.attribute_names() == {"a", "c", "d", "e"}
    mapped = expr.map_names(lambda n: "urn:x:" + n)
    assert mapped.attribute_names() == {"urn:x:a", "urn:x:c", "urn:x:d", "urn:x:e"}
    paths = list(mapped.paths())
    assert paths[0] == Path("urn:x:a", ("urn:x:b", "observedAt"))
    assert paths[1] == Path("urn:x:c", (), ("x", "y"))  # members inside values: not expanded
    assert paths[3] == Path("urn:x:e", ("unitCode",))


def test_names_unicode_and_prefixed() -> None:
    assert parse_q("温度>20").attribute_names() == {"温度"}
    assert parse_q("schema:name==1").attribute_names() == {"schema:name"}
    assert parse_q("température_2==1").attribute_names() == {"température_2"}


def test_patterns_compile_once_and_render_quoted() -> None:
    expr = parse_q("a~=^x(1|2);b")
    assert isinstance(expr, And)
    pattern = expr.terms[0]
    assert isinstance(pattern, Pattern)
    assert pattern.regex == "^x(1|2)"
    assert pattern.compiled is not None
    assert str(expr) == 'a~="^x(1|2)";b'


def test_quoted_values_may_hold_operators() -> None:
    expr = parse_q('a=="x;y|z)(,..\\""')
    assert isinstance(expr, Compare)
    assert expr.operand == QValue("string", 'x;y|z)(,.."')


def test_sql_prefilter() -> None:
    q = (
        'pm25>50;name=="x";(a|b);c==1,2;d==1..3;e!=2;f.g>1;h[i]==1;j==2020-01-01;'
        'k=="a","b";l<="m";n=="a".."c";o==1,"x";p==urn:a:b;createdAt>2020-01-01T00:00:00Z;q'
    )
    assert sql_prefilter(parse_q(q)) == [
        Prefilter("pm25", ">", (50,), "number"),
        Prefilter("name", "==", ("x",), "string"),
        Prefilter("c", "==", (1, 2), "number"),
        Prefilter("d", "between", (1, 3), "number"),
        Prefilter("k", "==", ("a", "b"), "string"),
        Prefilter("l", "<=", ("m",), "string"),
        Prefilter("n", "between", ("a", "c"), "string"),
    ]
    assert sql_prefilter(parse_q("a>1")) == [Prefilter("a", ">", (1,), "number")]
    assert sql_prefilter(parse_q("a>1|b>2")) == []
    assert sql_prefilter(parse_q("a")) == []


# Every syntax error, with where it points.
ERRORS: list[tuple[str, int, str]] = [
    ("", 0, "empty"),
    ("   ", 3, "empty"),
    ("==5", 0, "attribute name"),
    ("1abc==5", 0, "start with a letter"),
    ("temp==", 6, "expected a value"),
    ("temp=5", 4, "use '=='"),
    ("temp=>5", 4, "use '=='"),
    ("temp<>5", 5, "expected a value"),
    ("temp>>5", 5, "expected a value"),
    ("temp==5=", 7, "expected ';', '|'"),
    ("temp#5", 4, "expected an operator"),
    ("temp 5", 5, "expected an operator"),
    ("(temp==5", 8, "expected ')' to close the '(' at position 0"),
    ("((a;b)|c", 8, "position 0"),
    ("temp==5)", 7, "no matching '('"),
    ("()", 1, "empty parentheses"),
    ("temp==5;", 8, "after ';'"),
    ("temp==5|", 8, "after '|'"),
    (";a", 0, "before ';'"),
    ("a;;b", 2, "before ';'"),
    ("a|)", 2, "before ')'"),
    ('temp=="abc', 6, "no closing"),
    ('temp=="a\\qb"', 8, "invalid string"),
    ('temp=="a\tb"', 8, "control character"),
    ("temp==abc", 6, 'put text in double quotes, e.g. "abc"'),
    ("temp==007", 6, "not a valid number"),
    ("temp==1.", 6, "not a valid number"),
    ("temp==-", 6, "not a valid number"),
    ("temp==1e999", 6, "out of range"),
    ("temp==2026-13-01", 6, "not a valid date"),
    ("temp==2026-02-30T00:00:00Z", 6, "not a valid date and time"),
    ("temp==25:00:00Z", 6, "not a valid time"),
    ("temp==2026-1-1", 6, "not a valid"),
    ("temp>true", 5, "goes with == or != only"),
    ("temp>urn:a:b", 5, "goes with == or != only"),
    ("temp>1,2", 6, "list of values goes with == or != only"),
    ("temp<=1..2", 7, "range (low..high) goes with == or != only"),
    ("temp==1..", 9, "expected a value"),
    ("temp==1..true", 9, "range bounds must be numbers"),
    ('temp==1.."a"', 9, "of one type"),
    ("temp==1,", 8, "expected a value"),
    ("temp==1,,2", 8, "expected a value"),
    ("temp~=", 6, "regular expression"),
    ('temp~=""', 6, "regular expression"),
    ('temp~="(["', 6, "invalid regular expression"),
    ("temp~=a(b", 6, "invalid regular expression"),
    ("!temp==5", 5, "takes no operator"),
    ("!(a)", 0, "not a group"),
    ("!", 1, "attribute name"),
    ("a.", 2, "sub-attribute name"),
    ("a..b", 2, "sub-attribute name"),
    ("a.1", 2, "start with a letter"),
    ("a.observedAt.x", 12, "must end the path"),
    ("a.unitCode[x]", 10, "meta-attribute"),
    ("a[", 2, "member name"),
    ("a[]", 2, "member name"),
    ("a[b", 3, "expected ']'"),
    ("a[b;c]", 3, "expected '.' or ']'"),
    ("a[b].c", 4, "nothing may follow"),
    ("a[b][c]", 4, "nothing may follow"),
    ("a[b]c", 4, "expected an operator"),
    ("a{b}==1", 1, "linked-entity"),
    ("a==1 2", 5, "expected ';', '|'"),
    ("(" * 65 + "a" + ")" * 65, 64, "nest deeper"),
    ("a==" + "1" * 5000, 3, "too many digits"),
]


@pytest.mark.parametrize(("q", "position", "message"), ERRORS)
def test_syntax_errors(q: str, position: int, message: str) -> None:
    with pytest.raises(QSyntaxError) as info:
        parse_q(q)
    assert info.value.position == position, str(info.value)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)
    assert f"position {position}" in str(info.value)


def test_long_q_is_refused() -> None:
    with pytest.raises(QSyntaxError, match="longer than"):
        parse_q("a;" * 10_000 + "a")


def test_many_terms_are_fine() -> None:
    expr = parse_q(";".join(f"a{i}=={i}" for i in range(1000)))
    assert isinstance(expr, And)
    assert len(expr.terms) == 1000


# -------------------------------------------------------------------------------------------
# property-based

NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,6}", fullmatch=True)
SUBNAMES = st.one_of(NAMES, st.sampled_from(["observedAt", "unitCode", "datasetId"]))


@st.composite
def paths(draw: st.DrawFn) -> Path:
    attr = draw(NAMES)
    sub = draw(st.lists(NAMES, max_size=2))
    if draw(st.booleans()):
        sub.append(draw(SUBNAMES))
    trail = None
    if not (sub and sub[-1] in ("observedAt", "unitCode", "datasetId")) and draw(st.booleans()):
        trail = tuple(draw(st.lists(NAMES, min_size=1, max_size=3)))
    return Path(attr, tuple(sub), trail)


COMPARABLE_VALUES = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12).map(QValue.of),
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(QValue.of),
    st.text(max_size=12).map(QValue.of),
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ).map(QValue.of),
    st.dates().map(QValue.of),
)
ANY_VALUES = st.one_of(
    COMPARABLE_VALUES,
    st.booleans().map(QValue.of),
    st.from_regex(r"urn:ngsi-ld:[A-Za-z]{1,8}:[A-Za-z0-9\-]{1,8}", fullmatch=True).map(QValue.uri),
)


@st.composite
def terms(draw: st.DrawFn) -> QExpr:
    path = draw(paths())
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return Exists(path, negated=draw(st.booleans()))
    if choice == 1:
        op = draw(st.sampled_from([">", ">=", "<", "<="]))
        return Compare(path, op, draw(COMPARABLE_VALUES))
    if choice == 2:
        op = draw(st.sampled_from(["==", "!="]))
        return Compare(path, op, draw(ANY_VALUES))
    if choice == 3:
        low = draw(COMPARABLE_VALUES)
        high = draw(COMPARABLE_VALUES.filter(lambda v: v.kind == low.kind))
        return Compare(path, draw(st.sampled_from(["==", "!="])), QRange(low, high))
    if choice == 4:
        items = draw(st.lists(ANY_VALUES, min_size=2, max_size=4))
        return Compare(path, "==", QValueList(tuple(items)))
    regex = draw(st.sampled_from(["^a", "b$", "x|y", "(?i)z+", 'q"uote', "\\d{2}"]))
    return Pattern(path, regex, negated=draw(st.booleans()))


def _combine(children: st.SearchStrategy[QExpr]) -> st.SearchStrategy[QExpr]:
    def build(kind: type[And] | type[Or], items: list[QExpr]) -> QExpr:
        flat: list[QExpr] = []
        for item in items:
            flat.extend(item.terms if isinstance(item, kind) else (item,))
        return kind(tuple(flat))

    kinds: list[type[And] | type[Or]] = [And, Or]
    return st.tuples(st.sampled_from(kinds), st.lists(children, min_size=2, max_size=3)).map(
        lambda pair: build(pair[0], pair[1])
    )


EXPRESSIONS = st.recursive(terms(), _combine, max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(EXPRESSIONS)
def test_round_trip(expr: QExpr) -> None:
    text = str(expr)
    assert parse_q(text) == expr
    assert str(parse_q(text)) == text


@settings(max_examples=300, deadline=None)
@given(EXPRESSIONS, st.sampled_from(list(ENTITIES.values())))
def test_evaluate_never_raises(expr: QExpr, entity: dict[str, Any]) -> None:
    assert isinstance(evaluate(expr.map_names(expand), entity), bool)


Q_ALPHABET = st.sampled_from([*'abcXYZ019_.[]()!=<>~;|,"\\:-+TZ *é温\t', "..", "=="])


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(Q_ALPHABET, max_size=30).map("".join)))
def test_parse_raises_only_syntax_errors(text: str) -> None:
    error: QSyntaxError | None = None
    try:
        expr = parse_q(text)
    except QSyntaxError as exc:
        error = exc
    if error is not None:
        assert 0 <= error.position <= len(text)
        return
    # Whatever parses renders to something that parses to the same tree.
    assert parse_q(str(expr)) == expr
    assert isinstance(evaluate(expr, AIR), bool)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_quoted_strings_round_trip(value: str) -> None:
    expr = parse_q("a==" + json.dumps(value))
    assert isinstance(expr, Compare)
    assert expr.operand == QValue("string", value)
    entity = {"a": [{"type": "Property", "value": value}]}
    assert evaluate(expr, entity)
