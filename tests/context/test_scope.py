"""The scope query language (clause 4.19): the pure parser and evaluator, and `scopeQ` on
GET /entities and POST /entityOperations/query."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from pujiang.context.ngsild_scope import (
    MAX_DEPTH,
    ScopeAnd,
    ScopeOr,
    ScopePattern,
    ScopeQSyntaxError,
    matches,
    matches_entity,
    parse_scope_q,
    prefilter,
)
from tests.context.conftest import BASE, create, problem

H = dict[str, str]

# -------------------------------------------------------------------------------------------
# parsing (pure)


def test_parse_forms() -> None:
    assert parse_scope_q("/Madrid") == ScopePattern(("Madrid",))
    assert parse_scope_q("/Madrid/Gardens/#") == ScopePattern(("Madrid", "Gardens"), True)
    assert parse_scope_q("/Madrid/+/ParqueNorte") == ScopePattern(("Madrid", "+", "ParqueNorte"))
    assert parse_scope_q("/#") == ScopePattern((), True)
    assert parse_scope_q("/+/#") == ScopePattern(("+",), True)
    assert parse_scope_q("/上海/黄浦区") == ScopePattern(("上海", "黄浦区"))
    assert parse_scope_q("/A_1/310101") == ScopePattern(("A_1", "310101"))
    a, b, c = (ScopePattern((n,)) for n in "ABC")
    # clause 4.19 EXAMPLE 4 and 5 (both spellings of "or")
    assert parse_scope_q("(/A;/B)") == ScopeAnd((a, b))
    assert parse_scope_q("(/A;/B)|/C") == ScopeOr((ScopeAnd((a, b)), c))
    assert parse_scope_q("(/A;/B),/C") == ScopeOr((ScopeAnd((a, b)), c))
    # ";" without parentheses binds tighter than "|" and ","
    assert parse_scope_q("/A;/B,/C") == ScopeOr((ScopeAnd((a, b)), c))
    assert parse_scope_q("/C|/A;/B") == ScopeOr((c, ScopeAnd((a, b))))
    assert parse_scope_q("/A;(/B|/C)") == ScopeAnd((a, ScopeOr((b, c))))
    # nesting flattens; blanks around operators and parentheses
    assert parse_scope_q("((/A|/B)|/C)") == ScopeOr((a, b, c))
    assert parse_scope_q(" ( /A ; /B ) | /C ") == ScopeOr((ScopeAnd((a, b)), c))
    assert parse_scope_q("(((/A)))") == a


@pytest.mark.parametrize(
    "text",
    [
        "/Madrid",
        "/Madrid/Gardens/#",
        "/#",
        "/Madrid/+/ParqueNorte",
        "(/A;/B)|/C",
        "/A;(/B|/C/#)",
        "(/a|/b);(/c|/d)",
        "/上海/+/#",
    ],
)
def test_round_trip(text: str) -> None:
    expr = parse_scope_q(text)
    assert parse_scope_q(str(expr)) == expr


@pytest.mark.parametrize(
    ("text", "says", "position"),
    [
        ("", "empty", 0),
        ("   ", "empty", 0),
        ("Madrid", "starts with '/'", 0),
        ("/", "level is missing", 1),
        ("/Madrid/", "level is missing", 8),
        ("//Madrid", "empty scope level", 1),
        ("/Madrid//Gardens", "empty scope level", 8),
        ("/Madrid#", "'#' must follow '/'", 7),
        ("/Madrid/#/Gardens", "last level", 9),
        ("/#/Madrid", "last level", 2),
        ("/Madrid/+Gardens", "whole level", 9),
        ("/Madrid/Gard+ens", "'+' is not allowed", 12),
        ("/Pudong-New-Area", "'-' is not allowed", 7),
        ("/a.b", "'.' is not allowed", 2),
        ("/*", "no wildcard", 1),
        ("/_x", "starts with a letter or a digit", 1),
        ("(/A;/B", "missing ')'", 6),
        ("/A)", "without a matching '('", 2),
        ("()", "unexpected ')'", 1),
        ("/A;", "missing at the end", 3),
        ("/A|", "missing at the end", 3),
        ("|/A", "operator '|' has no scope", 0),
        ("/A;;/B", "operator ';' has no scope", 3),
        ("/A /B", "join scopes", 3),
        ("/A(/B)", "join scopes", 2),
        ("/A&/B", "'&' is not allowed", 2),
    ],
)
def test_syntax_errors_name_the_fault(text: str, says: str, position: int) -> None:
    with pytest.raises(ScopeQSyntaxError) as caught:
        parse_scope_q(text)
    assert says in str(caught.value)
    assert caught.value.position == position
    assert isinstance(caught.value, ValueError)


def test_limits_and_types() -> None:
    with pytest.raises(ScopeQSyntaxError, match="deeper"):
        parse_scope_q("(" * (MAX_DEPTH + 1) + "/A" + ")" * (MAX_DEPTH + 1))
    parse_scope_q("(" * MAX_DEPTH + "/A" + ")" * MAX_DEPTH)
    with pytest.raises(ScopeQSyntaxError, match="longer"):
        parse_scope_q("/A" * 10_000)
    with pytest.raises(ScopeQSyntaxError, match="string"):
        parse_scope_q(["/A"])


# -------------------------------------------------------------------------------------------
# evaluation (pure)


@pytest.mark.parametrize(
    ("query", "scope", "expected"),
    [
        # clause 4.19 EXAMPLE 1
        ("/Madrid", "/Madrid", True),
        ("/Madrid", "/Madrid/Gardens", False),
        ("/Madrid", "/Madri", False),
        ("/Madrid", "/madrid", False),
        # EXAMPLE 2: the scope and the whole tree below it
        ("/Madrid/Gardens/#", "/Madrid/Gardens", True),
        ("/Madrid/Gardens/#", "/Madrid/Gardens/ParqueNorte", True),
        ("/Madrid/Gardens/#", "/Madrid/Gardens/ParqueNorte/Parterre1", True),
        ("/Madrid/Gardens/#", "/Madrid/GardensSur", False),
        ("/Madrid/Gardens/#", "/Madrid", False),
        ("/Madrid/Gardens/#", "/Madrid/Sights", False),
        # EXAMPLE 3: "+" is exactly one level
        ("/Madrid/+/ParqueNorte", "/Madrid/Gardens/ParqueNorte", True),
        ("/Madrid/+/ParqueNorte", "/Madrid/Sights/ParqueNorte", True),
        ("/Madrid/+/ParqueNorte", "/Madrid/ParqueNorte", False),
        ("/Madrid/+/ParqueNorte", "/Madrid/A/B/ParqueNorte", False),
        ("/+", "/Madrid", True),
        ("/+", "/Madrid/Gardens", False),
        ("/+/#", "/Madrid/Gardens", True),
        # "/#": any scope at all
        ("/#", "/Madrid", True),
        ("/#", "/A/B/C", True),
        # Unicode levels
        ("/上海/#", "/上海/黄浦区/南京东路", True),
        ("/上海/+", "/上海/黄浦区", True),
    ],
)
def test_one_scope(query: str, scope: str, expected: bool) -> None:
    assert matches(parse_scope_q(query), [scope]) is expected


def test_several_scopes_and_logic() -> None:
    both = ["/Madrid/Districts", "/CompanyA"]
    only_b = ["/CompanyB"]
    only_madrid = ["/Madrid/Districts"]
    example4 = parse_scope_q("(/Madrid/Districts;/CompanyA)")
    assert matches(example4, both)
    assert not matches(example4, only_madrid)
    for text in (
        "(/Madrid/Districts;/CompanyA)|/CompanyB",
        "(/Madrid/Districts;/CompanyA),/CompanyB",
    ):
        example5 = parse_scope_q(text)
        assert matches(example5, both)
        assert matches(example5, only_b)
        assert not matches(example5, only_madrid)
    # one scope may satisfy several operands of a conjunction
    assert matches(parse_scope_q("/Madrid/#;/+/Districts"), only_madrid)
    # no scope: nothing matches, not even "/#"
    assert not matches(parse_scope_q("/#"), [])


def test_entities() -> None:
    expr = parse_scope_q("/Madrid/#")
    assert matches_entity(expr, {"id": "urn:x:1", "scope": ["/Madrid/Gardens"]})
    assert matches_entity(expr, {"id": "urn:x:1", "scope": "/Madrid"})  # one string
    assert not matches_entity(expr, {"id": "urn:x:1"})
    assert not matches_entity(expr, {"id": "urn:x:1", "scope": ["Madrid", 5]})


def test_prefilter_names_what_every_match_holds() -> None:
    assert prefilter(parse_scope_q("/Madrid/Gardens/#")) == "/Madrid/Gardens"
    assert prefilter(parse_scope_q("/Madrid/+/ParqueNorte")) == "/Madrid/"
    assert prefilter(parse_scope_q("/+/Gardens")) == "/"
    assert prefilter(parse_scope_q("/#")) == "/"
    assert prefilter(parse_scope_q("(/A;/B)|/C")) == ("or", (("and", ("/A", "/B")), "/C"))


# -------------------------------------------------------------------------------------------
# over HTTP


def building(n: int, scope: Any = None, **extra: Any) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Building:{n}",
        "type": "Building",
        "name": {"type": "Property", "value": f"building {n}"},
        **extra,
    }
    if scope is not None:
        entity["scope"] = scope
    return entity


@pytest.fixture
def city(client: TestClient, writer: H) -> H:
    create(client, writer, building(1, "/Madrid/Gardens/ParqueNorte"))
    create(client, writer, building(2, ["/Madrid/Gardens/ParqueNorte", "/CompanyA/OrgB/UnitC"]))
    create(client, writer, building(3, "/Madrid/Sights/ParqueNorte"))
    create(client, writer, building(4, ["/上海/黄浦区", "/CompanyB"]))
    create(client, writer, building(5))  # no scope
    create(client, writer, building(6, "/Madrid"))
    return writer


def ids(reply: Any) -> list[int]:
    assert reply.status_code == 200, reply.text
    return sorted(int(e["id"].rsplit(":", 1)[1]) for e in reply.json())


@pytest.mark.parametrize(
    ("scope_q", "expected"),
    [
        ("/Madrid/Gardens/ParqueNorte", [1, 2]),
        ("/Madrid/+/ParqueNorte", [1, 2, 3]),
        ("/Madrid/#", [1, 2, 3, 6]),
        ("/Madrid", [6]),
        ("/CompanyA/#", [2]),
        ("/#", [1, 2, 3, 4, 6]),
        ("/Madrid/Gardens/ParqueNorte;/CompanyA/OrgB/UnitC", [2]),
        ("(/Madrid/Gardens/ParqueNorte;/CompanyA/OrgB/UnitC)", [2]),
        ("(/Madrid/Gardens/ParqueNorte;/Nowhere)", []),
        ("(/Madrid/Gardens/ParqueNorte;/CompanyA/#)|/CompanyB", [2, 4]),
        ("/CompanyA/OrgB/UnitC,/Madrid", [2, 6]),
        ("/上海/黄浦区", [4]),
        ("/上海/#", [4]),
        ("/madrid/#", []),  # case matters (SQLite's LIKE would not tell)
        ("/Nowhere", []),
    ],
)
def test_get_entities_by_scope(
    client: TestClient, city: H, scope_q: str, expected: list[int]
) -> None:
    reply = client.get(
        f"{BASE}/entities", params={"type": "Building", "scopeQ": scope_q}, headers=city
    )
    assert ids(reply) == expected
    # scopeQ alone is a filter too
    assert ids(client.get(f"{BASE}/entities", params={"scopeQ": scope_q}, headers=city)) == expected


def test_scope_with_other_filters_paging_and_count(client: TestClient, city: H) -> None:
    params = {"scopeQ": "/Madrid/#", "q": 'name~="building [123]"', "count": "true", "limit": "2"}
    reply = client.get(f"{BASE}/entities", params=params, headers=city)
    assert ids(reply) == [1, 2]
    assert reply.headers["NGSILD-Results-Count"] == "3"
    assert 'rel="next"' in reply.headers["Link"]
    reply = client.get(f"{BASE}/entities", params={**params, "offset": "2"}, headers=city)
    assert ids(reply) == [3]
    reply = client.get(
        f"{BASE}/entities", params={"scopeQ": "/#", "limit": "0", "count": "true"}, headers=city
    )
    assert reply.headers["NGSILD-Results-Count"] == "5"
    # the scope is returned as stored
    one = client.get(f"{BASE}/entities", params={"scopeQ": "/CompanyB"}, headers=city).json()
    assert one[0]["scope"] == ["/上海/黄浦区", "/CompanyB"]


def test_scope_follows_changes(client: TestClient, city: H) -> None:
    eid = "urn:ngsi-ld:Building:5"
    reply = client.patch(f"{BASE}/entities/{eid}", json={"scope": "/Madrid/Gardens"}, headers=city)
    assert reply.status_code == 204, reply.text
    assert ids(
        client.get(f"{BASE}/entities", params={"scopeQ": "/Madrid/Gardens"}, headers=city)
    ) == [5]
    reply = client.patch(f"{BASE}/entities/{eid}", json={"scope": "urn:ngsi-ld:null"}, headers=city)
    assert reply.status_code == 204, reply.text
    assert (
        ids(client.get(f"{BASE}/entities", params={"scopeQ": "/Madrid/Gardens"}, headers=city))
        == []
    )


def test_post_query_scope(client: TestClient, city: H) -> None:
    body = {"type": "Query", "entities": [{"type": "Building"}], "scopeQ": "/Madrid/+/ParqueNorte"}
    reply = client.post(f"{BASE}/entityOperations/query", json=body, headers=city)
    assert ids(reply) == [1, 2, 3]
    body = {"type": "Query", "scopeQ": "(/Madrid/#;/CompanyA/#)"}
    assert ids(client.post(f"{BASE}/entityOperations/query", json=body, headers=city)) == [2]


@pytest.mark.parametrize(
    ("scope_q", "says"),
    [
        ("", "empty"),
        ("Madrid", "starts with '/'"),
        ("/Madrid/", "level is missing"),
        ("/Madrid/#/Gardens", "last level"),
        ("(/Madrid;/CompanyA", "missing ')'"),
        ("/Pudong-New", "'-' is not allowed"),
    ],
)
def test_bad_scope_q_is_400(client: TestClient, city: H, scope_q: str, says: str) -> None:
    reply = client.get(
        f"{BASE}/entities", params={"type": "Building", "scopeQ": scope_q}, headers=city
    )
    detail = problem(reply, "BadRequestData", 400)["detail"]
    assert "scopeQ" in detail
    assert says in detail
    assert "position" in detail
    body = {"type": "Query", "scopeQ": scope_q}
    reply = client.post(f"{BASE}/entityOperations/query", json=body, headers=city)
    assert says in problem(reply, "BadRequestData", 400)["detail"]


@pytest.mark.parametrize("value", [5, ["/Madrid"], {"scope": "/Madrid"}, None])
def test_post_scope_q_must_be_a_string(client: TestClient, city: H, value: Any) -> None:
    body = {"type": "Query", "entities": [{"type": "Building"}], "scopeQ": value}
    reply = client.post(f"{BASE}/entityOperations/query", json=body, headers=city)
    if value is None:  # absent is no filter
        assert ids(reply) == [1, 2, 3, 4, 5, 6]
    else:
        assert "must be a string" in problem(reply, "BadRequestData", 400)["detail"]
