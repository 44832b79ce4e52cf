"""Locating points: interiors, shared edges and corners, outside, GCJ-02, batches, rebuilds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely

from pujiang.city import Level, locate, locate_many, service
from pujiang.city.locator import wkb_rectangles
from pujiang.platform.deps import AppContext
from pujiang.platform.geo import Crs, wgs84_to_gcj02
from tests.city.conftest import collection, feature, grid_code, xy


def test_a_cell_centre_gets_the_whole_chain(toy: AppContext) -> None:
    lon, lat = xy(5.5, 4.5)
    found = locate(toy, lon, lat)
    assert found.inside
    assert found.grid_code == grid_code(5, 4) == "310101002002006"
    assert found.community_code == "310101002002"
    assert found.street_code == "310101002"
    assert found.district_code == "310101"
    assert found.district is not None
    assert found.district.name == "黄浦区"
    assert found.grid is not None
    assert found.grid.name == "006号网格"


def test_a_point_on_an_edge_between_two_grids_takes_the_lower_code(toy: AppContext) -> None:
    lon, lat = xy(2, 1.5)  # between cells (1, 1) and (2, 1)
    codes = {locate(toy, lon, lat).grid_code for _ in range(3)}
    assert codes == {min(grid_code(1, 1), grid_code(2, 1))}


def test_a_corner_of_four_communities_takes_the_lowest_grid_and_its_chain(toy: AppContext) -> None:
    lon, lat = xy(4, 3)  # where 310101001, 310101002 and both halves of each meet
    found = locate(toy, lon, lat)
    candidates = [grid_code(x, y) for x in (3, 4) for y in (2, 3)]
    assert found.grid_code == min(candidates) == "310101001001012"
    # The ancestors follow the chosen grid, never a mix of neighbours.
    assert found.community_code == "310101001001"
    assert found.street_code == "310101001"


def test_a_point_on_the_district_border_belongs_to_the_lower_district(toy: AppContext) -> None:
    lon, lat = xy(8, 4.5)
    found = locate(toy, lon, lat)
    assert found.district_code == "310101"
    assert found.grid_code == grid_code(7, 4)


def test_the_outer_boundary_counts_as_inside(toy: AppContext) -> None:
    lon, lat = xy(0, 0)
    assert locate(toy, lon, lat).grid_code == grid_code(0, 0)


def test_outside_with_the_nearest_district(toy: AppContext) -> None:
    lon, lat = xy(16 + 10, 3)  # about 950 m east of 310115
    found = locate(toy, lon, lat)
    assert not found.inside
    assert found.district is None
    assert found.grid is None
    assert found.nearest_district is not None
    assert found.nearest_district.code == "310115"
    assert found.nearest_distance_m == pytest.approx(10 * 95.3, rel=0.02)
    assert "浦东新区" in service.outside_message(found)


def test_far_away_has_no_nearest_district(toy: AppContext) -> None:
    found = locate(toy, 116.39, 39.91)  # Beijing
    assert not found.inside
    assert found.nearest_district is None
    assert service.outside_message(found) == "该点不在本市范围内"


@pytest.mark.parametrize(("x", "y"), [(0.5, 0.5), (5.5, 4.5), (12.25, 2.75)])
def test_gcj02_input_finds_the_same_grid(toy: AppContext, x: float, y: float) -> None:
    lon, lat = xy(x, y)
    glon, glat = wgs84_to_gcj02(lon, lat)
    assert math.hypot(glon - lon, glat - lat) > 0.003  # the offset spans several cells
    found = locate(toy, glon, glat, Crs.GCJ02)
    assert found.grid_code == grid_code(int(x), int(y))
    assert found.lon == pytest.approx(lon, abs=1e-7)
    assert locate(toy, glon, glat, Crs.WGS84).grid_code != found.grid_code


def test_cgcs2000_is_treated_as_wgs84(toy: AppContext) -> None:
    lon, lat = xy(3.5, 3.5)
    assert locate(toy, lon, lat, "cgcs2000").grid_code == grid_code(3, 3)


def test_unknown_crs_is_refused(toy: AppContext) -> None:
    with pytest.raises(ValueError, match="bd09"):
        locate(toy, 121.47, 31.22, "bd09")


def test_batch_matches_single_points(toy: AppContext) -> None:
    rng = np.random.default_rng(7)
    x = rng.uniform(-2, 18, 500)
    y = rng.uniform(-1, 7, 500)
    lons, lats = xy(x, y)
    batch = locate_many(toy, lons, lats)
    assert len(batch) == 500
    assert 0 < int(batch.inside.sum()) < 500
    for i in range(0, 500, 25):
        single = locate(toy, float(lons[i]), float(lats[i]))
        assert batch[i].grid_code == single.grid_code
        assert batch[i].district_code == single.district_code
    inside = batch.inside
    assert all(code for code in batch.grid_code[inside])
    assert not any(batch.district_code[~inside])
    expected = [grid_code(int(a), int(b)) for a, b in zip(x[inside], y[inside], strict=True)]
    assert list(batch.grid_code[inside]) == expected


def test_batch_columns_and_levels(toy: AppContext) -> None:
    lon, lat = xy(1.5, 1.5)
    batch = locate_many(toy, [lon, 0.0, float("nan")], [lat, 0.0, 31.0])
    assert batch.inside.tolist() == [True, False, False]
    columns = batch.columns()
    assert columns["grid_code"] == [grid_code(1, 1), None, None]
    assert columns["district_name"] == ["黄浦区", None, None]
    assert batch.codes(Level.STREET).tolist() == ["310101001", "", ""]
    assert [item.inside for item in batch] == [True, False, False]


def test_the_index_is_rebuilt_when_the_data_changes(toy: AppContext) -> None:
    lon, lat = xy(20.5, 0.5)  # east of the toy city
    assert not locate(toy, lon, lat).inside
    with toy.db.session() as session:
        service.import_geojson(
            session, collection([feature("310104", "徐汇区", 16, 0, 24, 6)]), Level.DISTRICT
        )
    found = locate(toy, lon, lat)
    assert found.inside
    assert found.district_code == "310104"
    assert found.street is None
    assert found.grid is None


def test_empty_city_reports_not_loaded(context: AppContext) -> None:
    found = locate_many(context, [121.47], [31.22])
    assert found.city_empty
    assert not found.inside[0]


def test_responsibility_grid_is_reported(toy: AppContext) -> None:
    members = [grid_code(x, y) for x in range(4) for y in range(3)]
    with toy.db.session() as session:
        service.put_responsibility_grid(
            session,
            "R-001",
            name="西街道责任网格一",
            department_code="310101-CGZF",
            grid_codes=members,
        )
    inside = locate(toy, *xy(0.5, 0.5))
    assert inside.responsibility is not None
    assert inside.responsibility.code == "R-001"
    assert inside.responsibility.department_code == "310101-CGZF"
    assert locate(toy, *xy(0.5, 4.5)).responsibility is None


def test_rectangle_fast_path_only_takes_true_boxes() -> None:
    box = shapely.box(0, 0, 2, 1)
    shapes = np.array(
        [
            box,
            shapely.Polygon([(0, 0), (2, 0), (2, 1), (0, 0)]),  # triangle
            shapely.Polygon([(0, 0), (2, 1), (2, 0), (0, 1), (0, 0)]),  # bow tie on box corners
            shapely.Polygon([(1, 0), (2, 1), (1, 2), (0, 1), (1, 0)]),  # rotated square
            shapely.MultiPolygon([box, shapely.box(3, 0, 4, 1)]),
            shapely.box(0, 0, 2, 1).difference(shapely.box(0.5, 0.25, 1, 0.75)),  # with a hole
        ],
        dtype=object,
    )
    found, bounds = wkb_rectangles(list(shapely.to_wkb(shapes)))
    assert found.tolist() == [True, False, False, False, False, False]
    assert bounds[0].tolist() == [0, 0, 2, 1]
    # The same box written clockwise, or starting at another corner, is still a box.
    turned = [shapely.Polygon([(2, 1), (2, 0), (0, 0), (0, 1), (2, 1)])]
    assert wkb_rectangles(list(shapely.to_wkb(turned)))[0].tolist() == [True]


def test_cut_cells_use_the_exact_test(toy: AppContext) -> None:
    # Two triangular grids splitting one cell east of the toy city along its diagonal.
    (x0, y0), (x1, y1) = xy(16, 0), xy(17, 1)
    with toy.db.session() as session:
        service.import_geojson(
            session, collection([feature("310104", "徐汇区", 16, 0, 17, 1)]), Level.DISTRICT
        )
        service.import_geojson(
            session, collection([feature("310104001", "街道", 16, 0, 17, 1)]), Level.STREET
        )
        service.import_geojson(
            session, collection([feature("310104001001", "居委", 16, 0, 17, 1)]), Level.COMMUNITY
        )
        lower = [[x0, y0], [x1, y0], [x1, y1], [x0, y0]]
        upper = [[x0, y0], [x1, y1], [x0, y1], [x0, y0]]
        grids = [
            {"type": "Feature", "properties": {"code": f"310104001001{n:03d}"},
             "geometry": {"type": "Polygon", "coordinates": [corners]}}
            for n, corners in ((1, lower), (2, upper))
        ]  # fmt: skip
        service.import_geojson(session, collection(grids), Level.GRID)
    assert locate(toy, *xy(16.8, 0.2)).grid_code == "310104001001001"
    assert locate(toy, *xy(16.2, 0.8)).grid_code == "310104001001002"
    assert locate(toy, x0, y0).grid_code == "310104001001001"  # shared corner: lower code
    # On the west edge the triangle meets the toy city's plain box grid (15, 0), whose code
    # is higher: the triangle must still be found, though the box answers first.
    west = locate(toy, *xy(16, 0.75))
    assert west.grid_code == "310104001001002"
    assert locate_many(toy, *xy(np.array([16.0]), np.array([0.75]))).grid_code[0] == west.grid_code
