"""Reading GeoJSON boundary files: each broken feature is named with its index, code and reason."""

from __future__ import annotations

from typing import Any

import pytest

from pujiang.city.ingest import check_units, read_feature_collection
from pujiang.city.levels import Level, code_is_valid, level_of, parent_code
from pujiang.platform.errors import Problem
from pujiang.platform.i18n import EN
from tests.city.conftest import collection, feature, ring


def _read(features: list[Any], level: Level = Level.STREET, **kwargs: Any):  # type: ignore[no-untyped-def]
    return read_feature_collection(collection(features), level, source="test", **kwargs)


def bow_tie(code: str) -> dict[str, Any]:
    """A self-intersecting "bow tie": a closed ring whose edges cross."""
    f = feature(code, "蝴蝶结", 0, 0, 1, 1)
    (a, b, c, d, _) = f["geometry"]["coordinates"][0]
    f["geometry"]["coordinates"] = [[a, c, b, d, a]]
    return f


def test_good_features_are_read() -> None:
    batch, errors = _read([feature("310101001", "西街道", 0, 0, 4, 6)])
    assert errors == []
    assert batch.codes == ["310101001"]
    assert batch.names == ["西街道"]
    assert batch.geometries[0].is_valid


def test_unclosed_ring_is_named() -> None:
    broken = feature("310101002", "缺口", 0, 0, 1, 1)
    broken["geometry"]["coordinates"][0].pop()  # drop the closing position
    batch, errors = _read([feature("310101001", "好", 0, 0, 1, 1), broken])
    assert [(e.index, e.code, e.key) for e in errors] == [
        (1, "310101002", "city.import.ring_unclosed")
    ]
    assert "未闭合" in errors[0].reason()
    assert "not closed" in errors[0].reason(EN)
    assert batch.codes == ["310101001"]


def test_bow_tie_is_read_but_fails_the_validity_check() -> None:
    batch, errors = _read([bow_tie("310101003")])
    assert errors == []
    problems, bad = check_units(batch)
    assert bad == {0}
    assert problems[0].key == "city.import.invalid_polygon"
    assert "Self-intersection" in problems[0].reason()


@pytest.mark.parametrize(
    ("geometry", "key"),
    [
        (None, "city.import.no_geometry"),
        ({"type": "Point", "coordinates": [121.5, 31.2]}, "city.import.geometry_type"),
        (
            {"type": "Polygon", "coordinates": [[[121.5, 31.2], [121.6, 31.2], [121.5, 31.2]]]},
            "city.import.ring_short",
        ),
        ({"type": "Polygon", "coordinates": [[["a", 31.2]] * 4]}, "city.import.coordinates"),
        ({"type": "Polygon", "coordinates": [[[121.5, 31.2], [121.6]]]}, "city.import.coordinates"),
        ({"type": "Polygon", "coordinates": "nope"}, "city.import.coordinates"),
        ({"type": "MultiPolygon", "coordinates": [[[[1, 2], [3, 4]]]]}, "city.import.ring_short"),
    ],
)
def test_malformed_geometry(geometry: Any, key: str) -> None:
    f = feature("310101001", "x", 0, 0, 1, 1)
    f["geometry"] = geometry
    _, errors = _read([f])
    assert [(e.index, e.key) for e in errors] == [(0, key)]


def test_projected_coordinates_are_refused_with_the_position() -> None:
    f = feature("310101001", "x", 0, 0, 1, 1)
    f["geometry"]["coordinates"] = [
        [[350000.0, 3450000.0], [351000.0, 3450000.0], [351000.0, 3451000.0], [350000.0, 3450000.0]]
    ]
    _, errors = _read([f])
    assert errors[0].key == "city.import.out_of_range"
    assert "350000" in errors[0].reason()


def test_not_a_feature_and_missing_properties() -> None:
    no_code = feature("310101001", "无编码", 0, 0, 1, 1)
    del no_code["properties"]["code"]
    no_name = feature("310101002", "", 0, 0, 1, 1)
    _, errors = _read(["text", no_code, no_name])
    assert [(e.index, e.key) for e in errors] == [
        (0, "city.import.not_feature"),
        (1, "city.import.code_missing"),
        (2, "city.import.name_missing"),
    ]


def test_not_a_feature_collection() -> None:
    with pytest.raises(Problem) as caught:
        read_feature_collection({"type": "Feature"}, Level.DISTRICT, source="x")
    assert caught.value.status == 422


def test_duplicate_codes_name_every_occurrence() -> None:
    batch, _ = _read(
        [
            feature("310101001", "甲", 0, 0, 1, 1),
            feature("310101002", "乙", 1, 0, 2, 1),
            feature("310101001", "丙", 2, 0, 3, 1),
        ]
    )
    errors, bad = check_units(batch)
    assert bad == {0, 2}
    assert sorted((e.index, e.params["others"]) for e in errors) == [(0, "2"), (2, "0")]


def test_code_format_per_level() -> None:
    batch, _ = _read(
        [feature("31010100", "短", 0, 0, 1, 1), feature("310101000", "全零", 0, 0, 1, 1)]
    )
    errors, bad = check_units(batch)
    assert bad == {0, 1}
    assert all(e.key == "city.import.code_format" for e in errors)
    assert "9 位数字" in errors[0].reason()


def test_district_codes_come_from_gbt2260_names_and_numbers_are_accepted() -> None:
    named = feature("x", "黄浦区", 0, 0, 1, 1)
    del named["properties"]["code"]
    numeric = feature("x", "浦东新区", 1, 0, 2, 1)
    numeric["properties"]["code"] = 310115
    batch, errors = _read([named, numeric], Level.DISTRICT)
    assert errors == []
    assert batch.codes == ["310101", "310115"]


def test_grid_names_default_from_the_code() -> None:
    f = feature("310101001001007", "", 0, 0, 1, 1)
    del f["properties"]["name"]
    batch, errors = _read([f], Level.GRID)
    assert errors == []
    assert batch.names == ["007号网格"]


def test_custom_property_names() -> None:
    f = {
        "type": "Feature",
        "properties": {"DM": "310101001", "MC": "西街道"},
        "geometry": {"type": "Polygon", "coordinates": [ring(0, 0, 1, 1)]},
    }
    batch, errors = _read([f], code_property="DM", name_property="MC")
    assert errors == []
    assert batch.codes == ["310101001"]


def test_levels_and_codes() -> None:
    assert level_of("310101001001007") is Level.GRID
    assert parent_code("310101001001007") == "310101001001"
    assert parent_code("310101") is None
    assert code_is_valid(Level.DISTRICT, "310101")
    assert not code_is_valid(Level.DISTRICT, "310100")
    assert not code_is_valid(Level.STREET, "３１０１０１００１")  # full-width digits
    assert Level.GRID.parent is Level.COMMUNITY
    assert Level.DISTRICT.parent is None
