"""Temporal pagination (clause 6.3.10) with the page size a setting, the aggregated
representation's periods (clause 4.5.19), and the ProblemDetails of bad representations."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pujiang.settings import Settings, SettingsError, load_settings
from tests.context.conftest import BASE, problem

H = dict[str, str]
TEMPORAL = f"{BASE}/temporal/entities"
QUERY = f"{BASE}/temporal/entityOperations/query"
BUS = "urn:ngsi-ld:Bus:1"
BUS2 = "urn:ngsi-ld:Bus:2"
TRAM = "urn:ngsi-ld:Tram:1"
PAGE = 4


def at(minutes: int) -> str:
    """2026-11-24T01:MM:00Z, as clients write it (and as period bounds are written)."""
    moment = datetime(2026, 11, 24, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ms(minutes: int) -> str:
    """The same instant as the Content-Range header writes it."""
    return at(minutes)[:-1] + ".000Z"


def series(values: dict[int, float]) -> list[dict[str, Any]]:
    return [{"type": "Property", "value": v, "observedAt": at(m)} for m, v in values.items()]


def post_evolution(client: TestClient, headers: H, entity_id: str, **attrs: Any) -> None:
    body = {"id": entity_id, "type": entity_id.split(":")[2], **attrs}
    reply = client.post(TEMPORAL, json=body, headers=headers)
    assert reply.status_code == 201, reply.text


@pytest.fixture
def paged(settings: Settings) -> Settings:
    settings.context_temporal_page_size = PAGE  # the app reads it per request
    return settings


@pytest.fixture
def buses(client: TestClient, writer: H, paged: Settings) -> H:
    """Bus 1: speed at minutes 1..10 (10 x minute), fuelLevel at 3..12 (100 - minute);
    Bus 2: speed at 20 and 21 only. Pages of 4 instances per attribute."""
    post_evolution(
        client,
        writer,
        BUS,
        speed=series({m: 10 * m for m in range(1, 11)}),
        fuelLevel=series({m: 100 - m for m in range(3, 13)}),
    )
    post_evolution(client, writer, BUS2, speed=series({20: 5, 21: 6}))
    return writer


def minutes(attribute: list[dict[str, Any]]) -> list[int]:
    start = datetime(2026, 11, 24, 1, tzinfo=UTC)
    return [
        int(
            (datetime.fromisoformat(i["observedAt"].replace("Z", "+00:00")) - start)
            / timedelta(minutes=1)
        )
        for i in attribute
    ]


def get(client: TestClient, headers: H, url: str, **params: Any) -> Any:
    return client.get(url, params=params, headers=headers)


_RANGE = re.compile(r"date-time (\d{4}-\d\d-\d\dT[\d:.]+Z)-(\d{4}-\d\d-\d\dT[\d:.]+Z)/(\*|\d+)")


def content_range(reply: Any) -> tuple[str, str, str]:
    """(start, end, size) of a 206 reply's Content-Range."""
    assert reply.status_code == 206, reply.text
    match = _RANGE.fullmatch(reply.headers["Content-Range"])
    assert match, reply.headers["Content-Range"]
    return match.group(1), match.group(2), match.group(3)


# -------------------------------------------------------------------------------------------
# the setting


def test_page_size_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv("PUJIANG_CONTEXT_TEMPORAL_PAGE_SIZE", raising=False)
    assert load_settings().context_temporal_page_size == 1000
    monkeypatch.setenv("PUJIANG_CONTEXT_TEMPORAL_PAGE_SIZE", "10")
    assert load_settings().context_temporal_page_size == 10
    for bad in ("0", "-5", "many", "100001"):
        monkeypatch.setenv("PUJIANG_CONTEXT_TEMPORAL_PAGE_SIZE", bad)
        with pytest.raises(SettingsError, match="context_temporal_page_size"):
            load_settings()
    monkeypatch.delenv("PUJIANG_CONTEXT_TEMPORAL_PAGE_SIZE")
    config = tmp_path / "pujiang.yaml"
    config.write_text("context_temporal_page_size: 25\n", encoding="utf-8")
    assert load_settings(config).context_temporal_page_size == 25


def test_default_page_holds_everything(client: TestClient, writer: H) -> None:
    post_evolution(client, writer, BUS, speed=series({m: m for m in range(30)}))
    reply = get(client, writer, f"{TEMPORAL}/{BUS}")
    assert reply.status_code == 200, reply.text
    assert "Content-Range" not in reply.headers
    assert len(reply.json()["speed"]) == 30


# -------------------------------------------------------------------------------------------
# forwards


def test_forward_page(client: TestClient, buses: H) -> None:
    reply = get(client, buses, f"{TEMPORAL}/{BUS}")
    assert reply.status_code == 206, reply.text
    # every attribute cut at the instant the first full attribute reaches the page size
    assert reply.headers["Content-Range"] == f"date-time {ms(1)}-{ms(4)}/*"
    body = reply.json()
    assert minutes(body["speed"]) == [1, 2, 3, 4]
    assert minutes(body["fuelLevel"]) == [3, 4]
    assert [i["value"] for i in body["speed"]] == [10, 20, 30, 40]
    # after / between: the range starts at timeAt
    reply = get(client, buses, f"{TEMPORAL}/{BUS}", timerel="after", timeAt=at(0))
    assert reply.headers["Content-Range"] == f"date-time {ms(0)}-{ms(4)}/*"
    reply = get(
        client,
        buses,
        f"{TEMPORAL}/{BUS}",
        timerel="between",
        timeAt=at(2),
        endTimeAt=at(11),
    )
    assert reply.status_code == 206
    assert reply.headers["Content-Range"] == f"date-time {ms(2)}-{ms(5)}/*"
    assert minutes(reply.json()["speed"]) == [2, 3, 4, 5]
    # before: from the first instance
    reply = get(client, buses, f"{TEMPORAL}/{BUS}", timerel="before", timeAt=at(11))
    assert reply.headers["Content-Range"] == f"date-time {ms(1)}-{ms(4)}/*"


def test_forward_pages_miss_nothing(client: TestClient, buses: H) -> None:
    """Asking on from each page's end (`after` is inclusive) walks the whole history."""
    seen: set[tuple[str, int]] = set()
    params: dict[str, Any] = {}
    ranges = []
    for _ in range(10):
        reply = get(client, buses, f"{TEMPORAL}/{BUS}", **params)
        body = reply.json()
        seen |= {(name, m) for name in ("speed", "fuelLevel") for m in minutes(body[name])}
        if reply.status_code == 200:
            break
        start, end, size = content_range(reply)
        ranges.append((start, end, size))
        params = {"timerel": "after", "timeAt": end}
    else:
        pytest.fail("temporal paging does not end")
    assert ranges == [(ms(1), ms(4), "*"), (ms(4), ms(7), "*"), (ms(7), ms(10), "*")]
    expected = {("speed", m) for m in range(1, 11)} | {("fuelLevel", m) for m in range(3, 13)}
    assert seen == expected


# -------------------------------------------------------------------------------------------
# backwards (lastN)


def test_backward_pages_miss_nothing(client: TestClient, buses: H) -> None:
    """Asking on before each page's end (`before` is exclusive) walks back through it all."""
    seen: set[tuple[str, int]] = set()
    params: dict[str, Any] = {"lastN": 20}
    ends = []
    for _ in range(10):
        reply = get(client, buses, f"{TEMPORAL}/{BUS}", **params)
        body = reply.json()
        page = {(name, m) for name in ("speed", "fuelLevel") for m in minutes(body[name])}
        assert not page & seen  # nothing twice
        seen |= page
        if reply.status_code == 200:
            break
        _, end, size = content_range(reply)
        assert size == "20"
        ends.append(end)
        params = {"lastN": 20, "timerel": "before", "timeAt": end}
    else:
        pytest.fail("temporal paging does not end")
    assert ends == [ms(9), ms(5)]
    expected = {("speed", m) for m in range(1, 11)} | {("fuelLevel", m) for m in range(3, 13)}
    assert seen == expected


def test_backward_page(client: TestClient, buses: H) -> None:
    reply = get(client, buses, f"{TEMPORAL}/{BUS}", lastN=20)
    assert reply.status_code == 206, reply.text
    # from the newest instance back to the oldest returned; the size is lastN
    assert reply.headers["Content-Range"] == f"date-time {ms(12)}-{ms(9)}/20"
    body = reply.json()
    assert minutes(body["speed"]) == [9, 10]
    assert minutes(body["fuelLevel"]) == [9, 10, 11, 12]
    # before: from timeAt; between: from endTimeAt; after: from the newest instance
    reply = get(client, buses, f"{TEMPORAL}/{BUS}", lastN=20, timerel="before", timeAt=at(9))
    assert reply.headers["Content-Range"] == f"date-time {ms(9)}-{ms(5)}/20"
    assert minutes(reply.json()["speed"]) == [5, 6, 7, 8]
    reply = get(
        client,
        buses,
        f"{TEMPORAL}/{BUS}",
        lastN=20,
        timerel="between",
        timeAt=at(2),
        endTimeAt=at(11),
    )
    assert reply.headers["Content-Range"] == f"date-time {ms(11)}-{ms(7)}/20"
    reply = get(client, buses, f"{TEMPORAL}/{BUS}", lastN=20, timerel="after", timeAt=at(0))
    assert reply.headers["Content-Range"] == f"date-time {ms(12)}-{ms(9)}/20"
    # the last page going back: within the page size, 200
    reply = get(client, buses, f"{TEMPORAL}/{BUS}", lastN=20, timerel="before", timeAt=at(5))
    assert reply.status_code == 200
    assert "Content-Range" not in reply.headers
    assert minutes(reply.json()["speed"]) == [1, 2, 3, 4]


def test_within_the_page_size(client: TestClient, buses: H) -> None:
    for params in (
        {"lastN": PAGE},
        {"lastN": 1},
        {"attrs": "speed", "timerel": "after", "timeAt": at(7)},
        {"timerel": "after", "timeAt": at(10), "attrs": "fuelLevel"},
    ):
        reply = get(client, buses, f"{TEMPORAL}/{BUS}", **params)
        assert reply.status_code == 200, params
        assert "Content-Range" not in reply.headers
    assert minutes(get(client, buses, f"{TEMPORAL}/{BUS}", lastN=PAGE).json()["speed"]) == [
        7,
        8,
        9,
        10,
    ]
    # one more than the page size asked: cut, and the size says what was asked
    reply = get(client, buses, f"{TEMPORAL}/{BUS}", lastN=PAGE + 1, attrs="speed")
    assert reply.status_code == 206
    assert reply.headers["Content-Range"] == f"date-time {ms(10)}-{ms(7)}/5"


def test_unsynchronized_attributes(client: TestClient, writer: H, paged: Settings) -> None:
    """speed in minutes 0..5, fuelLevel in 60..65: the cut leaves the other attribute empty
    (present, with no instance) rather than reaching past the range."""
    depot = {"type": "Relationship", "object": "urn:ngsi-ld:Depot:1", "observedAt": at(70)}
    post_evolution(
        client,
        writer,
        TRAM,
        speed=series({m: m for m in range(6)}),
        fuelLevel=series({m: m for m in range(60, 66)}),
        depot=[depot],
    )
    reply = get(client, writer, f"{TEMPORAL}/{TRAM}", timerel="after", timeAt=at(-60))
    assert reply.status_code == 206
    assert minutes(reply.json()["speed"]) == [0, 1, 2, 3]
    assert reply.json()["fuelLevel"] == []
    assert reply.json()["depot"] == []
    # the simplified representation keeps each attribute's shape, with no pairs
    reply = get(
        client,
        writer,
        f"{TEMPORAL}/{TRAM}",
        options="temporalValues",
        timerel="before",
        timeAt=at(99),
    )
    assert reply.status_code == 206
    body = reply.json()
    assert body["speed"]["values"] == [[0, at(0)], [1, at(1)], [2, at(2)], [3, at(3)]]
    assert body["fuelLevel"] == {"type": "Property", "values": []}
    assert body["depot"] == {"type": "Relationship", "objects": []}
    reply = get(client, writer, f"{TEMPORAL}/{TRAM}", lastN=100, timerel="before", timeAt=at(70))
    assert reply.status_code == 206
    assert reply.json()["speed"] == []
    assert minutes(reply.json()["fuelLevel"]) == [62, 63, 64, 65]
    assert reply.headers["Content-Range"] == f"date-time {ms(70)}-{ms(62)}/100"


def test_simplified_representation_is_paged(client: TestClient, buses: H) -> None:
    reply = get(client, buses, f"{TEMPORAL}/{BUS}", options="temporalValues")
    assert reply.status_code == 206
    assert reply.headers["Content-Range"] == f"date-time {ms(1)}-{ms(4)}/*"
    body = reply.json()
    assert body["speed"] == {
        "type": "Property",
        "values": [[10, at(1)], [20, at(2)], [30, at(3)], [40, at(4)]],
    }
    assert body["fuelLevel"] == {"type": "Property", "values": [[97, at(3)], [96, at(4)]]}


# -------------------------------------------------------------------------------------------
# several entities


def test_query_cuts_every_entity_at_one_instant(client: TestClient, buses: H) -> None:
    """Bus 2's instances (minutes 20, 21) lie beyond the range Bus 1 is cut to: they wait for
    a later page, so that asking on from the range's end misses nothing of Bus 1."""
    reply = get(client, buses, TEMPORAL, type="Bus")
    assert reply.status_code == 206, reply.text
    assert reply.headers["Content-Range"] == f"date-time {ms(1)}-{ms(4)}/*"
    found = {e["id"]: e for e in reply.json()}
    assert minutes(found[BUS]["speed"]) == [1, 2, 3, 4]
    assert found[BUS2]["speed"] == []
    reply = get(client, buses, TEMPORAL, type="Bus", format="temporalValues")
    found = {e["id"]: e for e in reply.json()}
    assert found[BUS2]["speed"] == {"type": "Property", "values": []}
    reply = get(client, buses, TEMPORAL, type="Bus", timerel="after", timeAt=at(10))
    assert reply.status_code == 200
    found = {e["id"]: e for e in reply.json()}
    assert minutes(found[BUS2]["speed"]) == [20, 21]
    assert minutes(found[BUS]["fuelLevel"]) == [10, 11, 12]
    # backwards: Bus 1's older instances wait
    reply = get(client, buses, TEMPORAL, type="Bus", lastN=3)
    assert reply.status_code == 200  # 3 per attribute fits
    reply = get(client, buses, TEMPORAL, type="Bus", lastN=10)
    assert reply.status_code == 206
    assert reply.headers["Content-Range"] == f"date-time {ms(21)}-{ms(9)}/10"
    found = {e["id"]: e for e in reply.json()}
    assert minutes(found[BUS]["speed"]) == [9, 10]
    assert minutes(found[BUS2]["speed"]) == [20, 21]


def test_post_query_is_paged(client: TestClient, buses: H) -> None:
    body = {
        "type": "Query",
        "entities": [{"type": "Bus"}],
        "temporalQ": {"timerel": "before", "timeAt": at(30), "lastN": 8},
    }
    reply = client.post(QUERY, json=body, headers=buses)
    assert reply.status_code == 206, reply.text
    assert reply.headers["Content-Range"] == f"date-time {ms(30)}-{ms(9)}/8"
    found = {e["id"]: e for e in reply.json()}
    assert minutes(found[BUS]["fuelLevel"]) == [9, 10, 11, 12]


def test_entity_pages_and_instance_pages(client: TestClient, buses: H) -> None:
    """The entity after the page (read to know a next page exists) does not move the cut."""
    post_evolution(client, buses, "urn:ngsi-ld:Bus:3", speed=series({m: m for m in range(6)}))
    reply = get(client, buses, TEMPORAL, type="Bus", limit=1, count="true")
    assert reply.status_code == 206
    assert [e["id"] for e in reply.json()] == [BUS]
    assert reply.headers["Content-Range"] == f"date-time {ms(1)}-{ms(4)}/*"
    assert reply.headers["NGSILD-Results-Count"] == "3"
    assert 'rel="next"' in reply.headers["Link"]
    reply = get(client, buses, TEMPORAL, type="Bus", limit=1, offset=1)
    assert reply.status_code == 200  # Bus 2: two instances
    assert [e["id"] for e in reply.json()] == [BUS2]
    assert 'rel="next"' in reply.headers["Link"]
    reply = get(client, buses, TEMPORAL, type="Bus", limit=1, offset=2)
    assert [e["id"] for e in reply.json()] == ["urn:ngsi-ld:Bus:3"]
    assert 'rel="next"' not in reply.headers.get("Link", "")
    # the largest limit is allowed (the look-ahead entity is the store's business)
    assert get(client, buses, TEMPORAL, type="Bus", limit=1000).status_code == 206


# -------------------------------------------------------------------------------------------
# the aggregated representation


def test_aggregated_replies_are_not_paged(client: TestClient, buses: H) -> None:
    reply = get(
        client,
        buses,
        f"{TEMPORAL}/{BUS}",
        options="aggregatedValues",
        aggrMethods="totalCount,max",
    )
    assert reply.status_code == 200, reply.text
    assert "Content-Range" not in reply.headers
    body = reply.json()
    # no aggrPeriodDuration: one period, from the first instance to the last (all attributes)
    assert body["speed"]["totalCount"] == [[10, at(1), at(12)]]
    assert body["speed"]["max"] == [[100, at(1), at(12)]]
    assert body["fuelLevel"]["totalCount"] == [[10, at(1), at(12)]]


def test_aggregation_periods(client: TestClient, buses: H) -> None:
    url = f"{TEMPORAL}/{BUS}"
    common = {"format": "aggregatedValues", "aggrMethods": "totalCount", "attrs": "speed"}
    reply = get(
        client, buses, url, aggrPeriodDuration="PT5M", timerel="after", timeAt=at(0), **common
    )
    assert reply.json()["speed"]["totalCount"] == [
        [4, at(0), at(5)],
        [5, at(5), at(10)],
        [1, at(10), at(15)],
    ]
    # a zero duration is the whole range of the query
    for zero in ("PT0S", "P0D"):
        reply = get(
            client,
            buses,
            url,
            aggrPeriodDuration=zero,
            timerel="between",
            timeAt=at(0),
            endTimeAt=at(6),
            **common,
        )
        assert reply.json()["speed"]["totalCount"] == [[5, at(0), at(6)]]
    reply = get(client, buses, url, timerel="before", timeAt=at(3), **common)
    assert reply.json()["speed"]["totalCount"] == [[2, at(1), at(3)]]
    # periods keep their grid from timeAt, however far back (no period is walked to get there)
    reply = get(
        client,
        buses,
        url,
        aggrPeriodDuration="PT1M",
        timerel="after",
        timeAt="2000-01-01T00:00:30Z",
        **common,
    )
    assert reply.status_code == 200, reply.text
    periods = reply.json()["speed"]["totalCount"]
    assert len(periods) == 10
    assert periods[0] == [1, "2026-11-24T01:00:30Z", "2026-11-24T01:01:30Z"]
    # calendar months
    reply = get(client, buses, url, aggrPeriodDuration="P1M", **common)
    assert reply.json()["speed"]["totalCount"] == [[10, at(1), "2026-12-24T01:01:00Z"]]


def test_period_bounds_keep_fractions(client: TestClient, writer: H) -> None:
    post_evolution(
        client,
        writer,
        TRAM,
        speed=[
            {"type": "Property", "value": 1, "observedAt": "2026-11-24T01:00:00.250Z"},
            {"type": "Property", "value": 2, "observedAt": "2026-11-24T01:00:01.5Z"},
        ],
    )
    reply = get(
        client,
        writer,
        f"{TEMPORAL}/{TRAM}",
        options="aggregatedValues",
        aggrMethods="sum",
    )
    assert reply.json()["speed"]["sum"] == [
        [3, "2026-11-24T01:00:00.250Z", "2026-11-24T01:00:01.500Z"]
    ]


@pytest.mark.parametrize(
    "duration", ["", "hourly", "PT", "P1H", "-PT1H", "PT1H/PT2H", "P99999999Y", "P9999999999W"]
)
def test_bad_aggregation_period(client: TestClient, buses: H, duration: str) -> None:
    reply = get(
        client,
        buses,
        f"{TEMPORAL}/{BUS}",
        options="aggregatedValues",
        aggrMethods="sum",
        aggrPeriodDuration=duration,
    )
    assert "aggrPeriodDuration" in problem(reply, "BadRequestData", 400)["detail"]


@pytest.mark.parametrize(
    "where",
    [
        lambda d: {"temporalQ": {"timerel": "after", "timeAt": at(0), **d}},
        lambda d: {"temporalQ": {"timerel": "after", "timeAt": at(0)}, "aggrParams": d},
        lambda d: {"temporalQ": {"timerel": "after", "timeAt": at(0)}, "aggregationParams": d},
    ],
)
def test_aggregation_in_a_query_body(client: TestClient, buses: H, where: Any) -> None:
    base = {"type": "Query", "entities": [{"type": "Bus"}], "attrs": ["speed"]}
    url = f"{QUERY}?options=aggregatedValues"
    good = where({"aggrMethods": ["sum"], "aggrPeriodDuration": "PT5M"})
    reply = client.post(url, json={**base, **good}, headers=buses)
    assert reply.status_code == 200, reply.text
    found = {e["id"]: e for e in reply.json()}
    assert found[BUS]["speed"]["sum"] == [
        [100, at(0), at(5)],
        [350, at(5), at(10)],
        [100, at(10), at(15)],
    ]
    for bad, says in (
        ({"aggrMethods": ["sum"], "aggrPeriodDuration": "bogus"}, "aggrPeriodDuration"),
        ({"aggrMethods": ["sum"], "aggrPeriodDuration": 3600}, "aggrPeriodDuration"),
        ({"aggrMethods": ["median"]}, "median"),
        ({"aggrMethods": 7}, "aggrMethods"),
    ):
        reply = client.post(url, json={**base, **where(bad)}, headers=buses)
        assert says in problem(reply, "BadRequestData", 400)["detail"], bad


def test_aggr_methods_apply_to_the_aggregated_representation_only(
    client: TestClient, buses: H
) -> None:
    """aggrMethods is "only applicable if aggregatedValues is present"; format wins."""
    url = f"{TEMPORAL}/{BUS}"
    reply = get(
        client,
        buses,
        url,
        format="temporalValues",
        options="aggregatedValues",
        aggrMethods="sum",
        attrs="speed",
        lastN=2,
    )
    assert reply.json()["speed"] == {"type": "Property", "values": [[90, at(9)], [100, at(10)]]}
    reply = get(client, buses, url, aggrMethods="sum", attrs="speed", lastN=1)
    assert [i["value"] for i in reply.json()["speed"]] == [100]
    # still validated
    reply = get(client, buses, url, aggrMethods="median")
    assert "median" in problem(reply, "BadRequestData", 400)["detail"]
    reply = get(client, buses, url, options="aggregatedValues")
    assert "aggrMethods" in problem(reply, "BadRequestData", 400)["detail"]


# -------------------------------------------------------------------------------------------
# representations the temporal API does not define


@pytest.mark.parametrize(
    ("params", "entities_too"),
    [
        ({"options": "invalidOptions"}, True),
        ({"options": "temporalValues,invalidOptions"}, True),
        ({"options": "aggregatedValues,bogus", "format": "temporalValues"}, True),
        ({"format": "invalidFormat"}, True),
        ({"format": ""}, True),
        # representations of /entities that the temporal API does not have
        ({"options": "keyValues"}, False),
        ({"format": "keyValues"}, False),
        ({"format": "simplified"}, False),
    ],
)
def test_unknown_options_and_formats(
    client: TestClient, buses: H, params: dict[str, str], entities_too: bool
) -> None:
    """400 InvalidRequest (clause 6.3.20), the type /entities answers for the same mistake."""
    query = {"type": "Query", "entities": [{"type": "Bus"}]}
    for reply in (
        get(client, buses, TEMPORAL, type="Bus", **params),
        get(client, buses, f"{TEMPORAL}/{BUS}", **params),
        client.post(QUERY, params=params, json=query, headers=buses),
    ):
        problem(reply, "InvalidRequest", 400)
    entities = get(client, buses, f"{BASE}/entities", type="Bus", **params)
    if entities_too:
        problem(entities, "InvalidRequest", 400)
    else:
        assert entities.status_code == 200, entities.text
