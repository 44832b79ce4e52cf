"""The NGSI-LD geo-query language (clause 4.10): every georel, every geometry, bad input."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod
from shapely.geometry import box as shapely_box
from shapely.geometry import shape

from pujiang.context.ngsild_geo import (
    GEORELS,
    GeoQuery,
    GeoQueryError,
    parse_geoquery,
)

# People's Square (人民广场) and the Oriental Pearl Tower (东方明珠), WGS84.
PEOPLES_SQUARE = (121.4737, 31.2304)
PEARL_TOWER = (121.4998, 31.2397)

# A 0.1° square over central Shanghai with a hole in its south-west corner.
SQUARE = [[121.40, 31.20], [121.50, 31.20], [121.50, 31.30], [121.40, 31.30], [121.40, 31.20]]
HOLE = [[121.41, 31.21], [121.43, 31.21], [121.43, 31.23], [121.41, 31.23], [121.41, 31.21]]


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def polygon(*rings: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def box(minx: float, miny: float, maxx: float, maxy: float) -> list[list[float]]:
    return [[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]


def vincenty_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Vincenty's inverse formula on WGS84 (independent of pyproj, for the accuracy check)."""
    a, f = 6378137.0, 1 / 298.257223563
    b = a * (1 - f)
    u1 = math.atan((1 - f) * math.tan(math.radians(lat1)))
    u2 = math.atan((1 - f) * math.tan(math.radians(lat2)))
    big_l = math.radians(lon2 - lon1)
    lam = big_l
    for _ in range(200):
        sin_l, cos_l = math.sin(lam), math.cos(lam)
        sin_s = math.hypot(
            math.cos(u2) * sin_l, math.cos(u1) * math.sin(u2) - math.sin(u1) * math.cos(u2) * cos_l
        )
        cos_s = math.sin(u1) * math.sin(u2) + math.cos(u1) * math.cos(u2) * cos_l
        sigma = math.atan2(sin_s, cos_s)
        sin_a = math.cos(u1) * math.cos(u2) * sin_l / sin_s
        cos2_a = 1 - sin_a**2
        cos_2sm = cos_s - 2 * math.sin(u1) * math.sin(u2) / cos2_a
        c = f / 16 * cos2_a * (4 + f * (4 - 3 * cos2_a))
        previous = lam
        lam = big_l + (1 - c) * f * sin_a * (
            sigma + c * sin_s * (cos_2sm + c * cos_s * (-1 + 2 * cos_2sm**2))
        )
        if abs(lam - previous) < 1e-12:
            break
    u_sq = cos2_a * (a**2 - b**2) / b**2
    big_a = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    big_b = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    delta = (
        big_b
        * sin_s
        * (
            cos_2sm
            + big_b
            / 4
            * (
                cos_s * (-1 + 2 * cos_2sm**2)
                - big_b / 6 * cos_2sm * (-3 + 4 * sin_s**2) * (-3 + 4 * cos_2sm**2)
            )
        )
    )
    return b * big_a * (sigma - delta)


# ------------------------------------------------------------------------------------------
# distances


def test_distance_between_two_shanghai_landmarks() -> None:
    metres = vincenty_m(*PEOPLES_SQUARE, *PEARL_TOWER)
    assert 2650 < metres < 2730  # ~2.69 km across the Huangpu
    within = parse_geoquery(
        "near;maxDistance==" + str(metres * 1.001), "Point", list(PEOPLES_SQUARE)
    )
    beyond = parse_geoquery(
        "near;maxDistance==" + str(metres * 0.999), "Point", list(PEOPLES_SQUARE)
    )
    assert within.matches(point(*PEARL_TOWER))
    assert not beyond.matches(point(*PEARL_TOWER))
    far = parse_geoquery("near;minDistance==" + str(metres * 0.999), "Point", list(PEOPLES_SQUARE))
    near = parse_geoquery("near;minDistance==" + str(metres * 1.001), "Point", list(PEOPLES_SQUARE))
    assert far.matches(point(*PEARL_TOWER))
    assert not near.matches(point(*PEARL_TOWER))


@pytest.mark.parametrize(
    "target",
    [
        {"type": "LineString", "coordinates": [[121.49, 31.20], [121.49, 31.26]]},
        polygon(box(121.49, 31.20, 121.52, 31.26)),
        {"type": "MultiPoint", "coordinates": [[121.49, 31.2304], [121.60, 31.30]]},
        {"type": "MultiLineString", "coordinates": [[[121.49, 31.20], [121.49, 31.26]]]},
        {"type": "MultiPolygon", "coordinates": [[box(121.49, 31.20, 121.52, 31.26)]]},
    ],
)
def test_distance_to_lines_and_areas(target: dict[str, Any]) -> None:
    """The nearest part of each target is due east of People's Square on lon 121.49."""
    metres = vincenty_m(*PEOPLES_SQUARE, 121.49, PEOPLES_SQUARE[1])
    assert 1500 < metres < 1600
    inside = parse_geoquery(f"near;maxDistance=={metres * 1.005}", "Point", list(PEOPLES_SQUARE))
    outside = parse_geoquery(f"near;maxDistance=={metres * 0.995}", "Point", list(PEOPLES_SQUARE))
    assert inside.matches(target)
    assert not outside.matches(target)
    ring = parse_geoquery(f"near;minDistance=={metres * 0.995}", "Point", list(PEOPLES_SQUARE))
    assert ring.matches(target)


def test_near_with_both_distances_is_a_ring() -> None:
    gq = parse_geoquery("near;minDistance==1000;maxDistance==3000", "Point", list(PEOPLES_SQUARE))
    assert gq.min_distance == 1000
    assert gq.max_distance == 3000
    assert gq.matches(point(*PEARL_TOWER))  # ~2.7 km
    assert not gq.matches(point(121.4740, 31.2306))  # ~40 m
    assert not gq.matches(point(121.60, 31.30))  # ~14 km
    assert gq.georel_text == "near;maxDistance==3000;minDistance==1000"


def test_a_point_exactly_at_max_distance_matches() -> None:
    lon, lat, _ = Geod(ellps="WGS84").fwd(*PEOPLES_SQUARE, 45.0, 1000.0)
    assert parse_geoquery("near;maxDistance==1000.001", "Point", list(PEOPLES_SQUARE)).matches(
        point(lon, lat)
    )
    assert not parse_geoquery("near;minDistance==1000.001", "Point", list(PEOPLES_SQUARE)).matches(
        point(lon, lat)
    )


# ------------------------------------------------------------------------------------------
# every georel on every reference geometry

REFERENCES: dict[str, tuple[str, Any]] = {
    "Point": ("Point", [121.45, 31.25]),
    "LineString": ("LineString", [[121.40, 31.25], [121.50, 31.25]]),
    "Polygon": ("Polygon", [SQUARE, HOLE]),
    "MultiPoint": ("MultiPoint", [[121.45, 31.25], [121.46, 31.26]]),
    "MultiLineString": (
        "MultiLineString",
        [[[121.40, 31.25], [121.50, 31.25]], [[121.45, 31.20], [121.45, 31.30]]],
    ),
    "MultiPolygon": ("MultiPolygon", [[SQUARE, HOLE], [box(121.60, 31.20, 121.70, 31.30)]]),
}

IN_SQUARE = point(121.45, 31.25)
IN_HOLE = point(121.42, 31.22)
OUTSIDE = point(121.30, 31.10)
IN_SECOND = point(121.65, 31.25)
CROSSING = polygon(box(121.48, 31.28, 121.55, 31.35))
INNER = polygon(box(121.44, 31.24, 121.46, 31.26))
OUTER = polygon(box(121.30, 31.10, 121.80, 31.40))

# (reference, georel, target, expected)
RELATIONS: list[tuple[str, str, dict[str, Any], bool]] = [
    # Point reference
    ("Point", "equals", IN_SQUARE, True),
    ("Point", "equals", OUTSIDE, False),
    ("Point", "within", IN_SQUARE, True),
    ("Point", "intersects", INNER, True),
    ("Point", "contains", INNER, True),  # the target area holds the reference point
    ("Point", "disjoint", OUTSIDE, True),
    ("Point", "disjoint", INNER, False),
    ("Point", "overlaps", INNER, False),  # different dimensions never overlap
    # LineString reference
    (
        "LineString",
        "intersects",
        {"type": "LineString", "coordinates": [[121.45, 31.20], [121.45, 31.30]]},
        True,
    ),
    ("LineString", "intersects", OUTSIDE, False),
    ("LineString", "within", point(121.45, 31.25), True),
    ("LineString", "within", point(121.45, 31.26), False),
    ("LineString", "contains", OUTER, True),
    ("LineString", "contains", INNER, False),
    (
        "LineString",
        "overlaps",
        {"type": "LineString", "coordinates": [[121.45, 31.25], [121.55, 31.25]]},
        True,
    ),
    (
        "LineString",
        "equals",
        {"type": "LineString", "coordinates": [[121.50, 31.25], [121.45, 31.25], [121.40, 31.25]]},
        True,
    ),
    ("LineString", "disjoint", CROSSING, True),
    # Polygon reference (with a hole)
    ("Polygon", "within", IN_SQUARE, True),
    ("Polygon", "within", IN_HOLE, False),
    ("Polygon", "within", OUTSIDE, False),
    ("Polygon", "within", INNER, True),
    ("Polygon", "within", CROSSING, False),
    ("Polygon", "contains", OUTER, True),
    ("Polygon", "contains", INNER, False),
    ("Polygon", "intersects", CROSSING, True),
    ("Polygon", "intersects", IN_HOLE, False),
    ("Polygon", "overlaps", CROSSING, True),
    ("Polygon", "overlaps", INNER, False),
    ("Polygon", "overlaps", OUTER, False),
    ("Polygon", "disjoint", IN_HOLE, True),
    ("Polygon", "disjoint", CROSSING, False),
    ("Polygon", "equals", polygon(box(121.40, 31.20, 121.50, 31.30), HOLE), True),
    ("Polygon", "equals", polygon(box(121.40, 31.20, 121.50, 31.30)), False),
    (
        "Polygon",
        "equals",
        polygon(
            [[121.50, 31.30], [121.40, 31.30], [121.40, 31.20], [121.50, 31.20], [121.50, 31.30]],
            HOLE,
        ),
        True,
    ),
    # MultiPoint reference
    ("MultiPoint", "intersects", INNER, True),
    ("MultiPoint", "within", point(121.46, 31.26), True),
    ("MultiPoint", "contains", INNER, True),
    ("MultiPoint", "contains", polygon(box(121.44, 31.24, 121.455, 31.255)), False),
    ("MultiPoint", "disjoint", OUTSIDE, True),
    (
        "MultiPoint",
        "equals",
        {"type": "MultiPoint", "coordinates": [[121.46, 31.26], [121.45, 31.25]]},
        True,
    ),
    (
        "MultiPoint",
        "overlaps",
        {"type": "MultiPoint", "coordinates": [[121.45, 31.25], [121.0, 31.0]]},
        True,
    ),
    # MultiLineString reference
    ("MultiLineString", "intersects", point(121.45, 31.22), True),
    ("MultiLineString", "within", point(121.45, 31.25), True),
    ("MultiLineString", "contains", OUTER, True),
    ("MultiLineString", "disjoint", IN_HOLE, True),
    (
        "MultiLineString",
        "overlaps",
        {"type": "LineString", "coordinates": [[121.45, 31.25], [121.55, 31.25]]},
        True,
    ),
    # MultiPolygon reference
    ("MultiPolygon", "within", IN_SECOND, True),
    ("MultiPolygon", "within", IN_HOLE, False),
    ("MultiPolygon", "within", point(121.55, 31.25), False),  # between the two
    ("MultiPolygon", "intersects", CROSSING, True),
    ("MultiPolygon", "contains", OUTER, True),
    ("MultiPolygon", "contains", polygon(box(121.30, 31.10, 121.65, 31.40)), False),
    ("MultiPolygon", "contains", polygon(box(121.0, 31.0, 122.0, 32.0)), True),
    ("MultiPolygon", "overlaps", CROSSING, True),
    ("MultiPolygon", "disjoint", point(121.55, 31.25), True),
    (
        "MultiPolygon",
        "equals",
        {
            "type": "MultiPolygon",
            "coordinates": [[box(121.60, 31.20, 121.70, 31.30)], [SQUARE, HOLE]],
        },
        True,
    ),
]


@pytest.mark.parametrize(("reference", "georel", "target", "expected"), RELATIONS)
def test_relations(reference: str, georel: str, target: dict[str, Any], expected: bool) -> None:
    geometry, coordinates = REFERENCES[reference]
    gq = parse_geoquery(georel, geometry, coordinates)
    assert gq.matches(target) is expected
    # Coordinates as query-string JSON text give the same answer.
    as_text = parse_geoquery(georel, geometry, orjson.dumps(coordinates).decode())
    assert as_text.matches(target) is expected
    box_ = gq.bbox()
    if expected and box_ is not None:
        assert shapely_box(*box_).intersects(shape(target))


def test_every_georel_and_geometry_is_covered() -> None:
    seen_rel = {r[1] for r in RELATIONS} | {"near"}
    assert seen_rel == set(GEORELS)
    assert {r[0] for r in RELATIONS} == set(REFERENCES)


def test_geometry_collection_target() -> None:
    gq = parse_geoquery("intersects", "Polygon", [SQUARE])
    target = {"type": "GeometryCollection", "geometries": [OUTSIDE, IN_SQUARE]}
    assert gq.matches(target)


def test_invalid_targets_do_not_match() -> None:
    gq = parse_geoquery("intersects", "Polygon", [SQUARE])
    for target in (
        None,
        5,
        "POINT(1 2)",
        {},
        {"type": "Point"},
        {"type": "Point", "coordinates": "x"},
        {"type": "Polygon", "coordinates": []},
        {"type": "Nope", "coordinates": [1, 2]},
    ):
        assert gq.matches(target) is False
    bowtie = polygon(
        [[121.40, 31.20], [121.50, 31.30], [121.50, 31.20], [121.40, 31.30], [121.40, 31.20]]
    )
    assert gq.matches(bowtie) is True  # invalid but plainly intersecting


def test_matches_entity_internal_form() -> None:
    loc = "https://uri.etsi.org/ngsi-ld/location"
    entity = {
        "id": "urn:ngsi-ld:ParkingSpot:1",
        loc: [
            {"type": "GeoProperty", "value": OUTSIDE},
            {"type": "GeoProperty", "value": IN_SQUARE, "datasetId": "urn:ngsi-ld:Dataset:gps"},
        ],
    }
    gq = parse_geoquery("within", "Polygon", [SQUARE]).map_geoproperty(
        lambda name: "https://uri.etsi.org/ngsi-ld/" + name
    )
    assert gq.geoproperty == loc
    assert gq.matches_entity(entity)
    assert not gq.matches_entity({"id": "x"})
    assert not parse_geoquery("within", "Polygon", [HOLE]).matches_entity(entity, loc)


# ------------------------------------------------------------------------------------------
# bbox


def test_bbox() -> None:
    assert parse_geoquery("within", "Polygon", [SQUARE]).bbox() == (121.40, 31.20, 121.50, 31.30)
    assert parse_geoquery("intersects", "Point", [121.45, 31.25]).bbox() == (
        121.45,
        31.25,
        121.45,
        31.25,
    )
    assert parse_geoquery("disjoint", "Polygon", [SQUARE]).bbox() is None
    assert parse_geoquery("near;minDistance==10", "Point", [121.45, 31.25]).bbox() is None
    minx, miny, maxx, maxy = parse_geoquery(
        "near;maxDistance==1000", "Point", [121.45, 31.25]
    ).bbox() or (0, 0, 0, 0)
    # ~1 km is ~0.009° of latitude and ~0.0105° of longitude at 31.25°N; the box is snug.
    assert 0.0090 < 31.25 - miny < 0.0092
    assert 0.0105 < maxx - 121.45 < 0.0107
    assert maxy - 31.25 == pytest.approx(31.25 - miny)
    assert 121.45 - minx == pytest.approx(maxx - 121.45)


def test_bbox_at_the_edges_of_the_map() -> None:
    edge = parse_geoquery("near;maxDistance==50000", "Point", [179.9, 0]).bbox()
    assert edge is not None
    assert (edge[0], edge[2]) == (-180.0, 180.0)
    polar = parse_geoquery("near;maxDistance==50000", "Point", [10, 89.9]).bbox()
    assert polar is not None
    assert polar[0] == -180.0
    assert polar[3] == 90.0
    assert parse_geoquery("near;maxDistance==1e8", "Point", [10, 0]).bbox() == (
        -180.0,
        -90.0,
        180.0,
        90.0,
    )


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=73, max_value=135),
    st.floats(min_value=-60, max_value=60),
    st.floats(min_value=1, max_value=200_000),
    st.floats(min_value=0, max_value=360),
    st.floats(min_value=0, max_value=0.999),
)
def test_every_point_near_lies_in_the_bbox(
    lon: float, lat: float, metres: float, azimuth: float, fraction: float
) -> None:
    gq = parse_geoquery(f"near;maxDistance=={metres!r}", "Point", [lon, lat])
    target_lon, target_lat, _ = Geod(ellps="WGS84").fwd(lon, lat, azimuth, metres * fraction)
    minx, miny, maxx, maxy = gq.bbox() or (0.0, 0.0, 0.0, 0.0)
    assert minx <= target_lon <= maxx
    assert miny <= target_lat <= maxy
    assert gq.matches(point(target_lon, target_lat))


# ------------------------------------------------------------------------------------------
# parsing and errors


def test_parameters_are_normalised() -> None:
    gq = parse_geoquery(" near ; maxDistance == 2000 ", "point", "[8,40]", "observationSpace")
    assert gq == GeoQuery("near", "Point", [8, 40], "observationSpace", 2000.0, None)
    assert gq.georel_text == "near;maxDistance==2000"
    assert gq.to_dict() == {
        "georel": "near;maxDistance==2000",
        "geometry": "Point",
        "coordinates": [8, 40],
        "geoproperty": "observationSpace",
    }
    again = parse_geoquery(gq.georel_text, gq.geometry, gq.coordinates, gq.geoproperty)
    assert again == gq
    assert parse_geoquery("near;maxDistance==1.5e3", "Point", [8, 40]).max_distance == 1500.0
    assert parse_geoquery("within", "Point", [8, 40, 120.5]).reference.has_z


BAD: list[tuple[str, str, Any, str]] = [
    ("", "Point", "[1,2]", "georel is missing"),
    ("inside", "Point", "[1,2]", "unknown relation 'inside'"),
    ("Within", "Point", "[1,2]", "did you mean 'within'"),
    ("near", "Point", "[1,2]", "near needs a distance"),
    ("near;", "Point", "[1,2]", "bad near modifier"),
    ("near;maxDistance=2000", "Point", "[1,2]", "bad near modifier"),
    ("near;maxDistance:2000", "Point", "[1,2]", "bad near modifier"),
    ("near;distance==2000", "Point", "[1,2]", "bad near modifier"),
    ("near;maxDistance==", "Point", "[1,2]", "positive number of metres"),
    ("near;maxDistance==0", "Point", "[1,2]", "positive number of metres"),
    ("near;maxDistance==-5", "Point", "[1,2]", "positive number of metres"),
    ("near;maxDistance==abc", "Point", "[1,2]", "positive number of metres"),
    ("near;maxDistance==1e999", "Point", "[1,2]", "positive number of metres"),
    ("near;maxDistance==5;maxDistance==6", "Point", "[1,2]", "given twice"),
    ("near;minDistance==5;maxDistance==5", "Point", "[1,2]", "must be below maxDistance"),
    ("within;maxDistance==5", "Point", "[1,2]", "within takes no modifiers"),
    ("near;maxDistance==5", "Polygon", [SQUARE], "near measures from a Point, not a Polygon"),
    ("near;maxDistance==5", "MultiPoint", [[1, 2]], "not a MultiPoint"),
    ("within", "", "[1,2]", "geometry is missing"),
    ("within", "Circle", "[1,2]", "unknown type 'Circle'"),
    ("within", "GeometryCollection", "[]", "unknown type"),
    ("within", "Point", "", "coordinates are missing"),
    ("within", "Point", None, "coordinates are missing"),
    ("within", "Point", "[1,2", "not a JSON array"),
    ("within", "Point", "1,2", "not a JSON array"),
    ("within", "Point", "[1]", "must be a position"),
    ("within", "Point", "[1,2,3,4]", "must be a position"),
    ("within", "Point", '["a",1]', "non-number"),
    ("within", "Point", "[true,1]", "non-number"),
    ("within", "Point", "[200,1]", "longitude 200.0"),
    ("within", "Point", "[31.2,121.4]", "latitude 121.4"),
    ("within", "LineString", "[[1,2]]", "at least 2 positions"),
    ("within", "LineString", "[[1,2],[1,2]]", "2 distinct positions"),
    ("within", "LineString", "[1,2]", "position 0 must be a position"),
    ("within", "Polygon", "[]", "non-empty array of linear rings"),
    ("within", "Polygon", "[[[0,0],[1,0],[0,0]]]", "at least 4 positions"),
    ("within", "Polygon", "[[[0,0],[1,0],[1,1],[0,1]]]", "is not closed"),
    # a ring crossing itself is repaired (test_temporal_deleted.py); one with no area is not
    ("within", "Polygon", "[[[0,0],[1,0],[2,0],[0,0]]]", "encloses no area"),
    ("within", "Polygon", [box(0, 0, 1, 1), box(2, 2, 3, 3)], "not a valid area"),
    ("within", "MultiPoint", "[]", "non-empty array"),
    ("within", "MultiLineString", "[[[0,0]]]", "line 0 needs at least 2 positions"),
    (
        "within",
        "MultiPolygon",
        "[[[[0,0],[1,0],[1,1],[0,0]]], [[[5,5],[6,5]]]]",
        "polygon 1 ring 0 needs",
    ),
    ("within", "MultiPolygon", [[box(0, 0, 2, 2)], [box(1, 1, 3, 3)]], "not a valid area"),
    ("within", "Point", "[1,2]", "geoproperty must name"),
]


@pytest.mark.parametrize(("georel", "geometry", "coordinates", "message"), BAD)
def test_bad_geoqueries(georel: str, geometry: str, coordinates: Any, message: str) -> None:
    geoproperty = "" if message == "geoproperty must name" else "location"
    with pytest.raises(GeoQueryError) as info:
        parse_geoquery(georel, geometry, coordinates, geoproperty)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20), st.text(max_size=12), st.text(max_size=40))
def test_parse_raises_only_geoquery_errors(georel: str, geometry: str, coordinates: str) -> None:
    with contextlib.suppress(GeoQueryError):
        parse_geoquery(georel, geometry, coordinates)
