"""Tests for pujiang.platform.geo against the shared reference facts."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pujiang.platform.geo import (
    Crs,
    distance_m,
    gcj02_to_wgs84,
    gcj02_to_wgs84_many,
    in_china_bbox,
    to_wgs84,
    to_wgs84_many,
    wgs84_to_gcj02,
    wgs84_to_gcj02_many,
)

STANDARDS_PATH = Path(__file__).parents[3] / "shared" / "reference" / "standards.json"
_MISSING = f"reference file {STANDARDS_PATH} not found; the shared test oracle is unavailable"


def _load_standards() -> dict[str, Any] | None:
    if not STANDARDS_PATH.is_file():
        return None
    data: dict[str, Any] = json.loads(STANDARDS_PATH.read_text(encoding="utf-8"))
    return data


STANDARDS = _load_standards()


def _params(*keys: str, id_key: str) -> list[Any]:
    """Parametrize values for one list in standards.json (a clear skip if the file is absent)."""
    if STANDARDS is None:
        return [pytest.param(None, marks=pytest.mark.skip(reason=_MISSING))]
    node: Any = STANDARDS
    for key in keys:
        node = node[key]
    return [pytest.param(item, id=str(item[id_key])) for item in node]


GCJ_VECTORS = _params("coordinates", "GCJ02", "test_vectors_exact_with_a_6378245", id_key="place")
DISTRICTS = _params("districts", "list", id_key="code")

# Shanghai's extent from the brief: lon 120.85..122.2, lat 30.67..31.88.
SH_LON = (120.85, 122.2)
SH_LAT = (30.67, 31.88)

OUTSIDE_CHINA = [
    (0.0, 0.0),
    (-74.006, 40.7128),  # New York
    (151.2093, -33.8688),  # Sydney
    (139.6917, 35.6895),  # Tokyo: east of the 137.8347° edge
    (2.3522, 48.8566),  # Paris
    (100.0, 0.5),  # just south of the 0.8293° edge
    (100.0, 56.0),  # just north of the 55.8271° edge
    (71.9, 40.0),  # just west of the 72.004° edge
]


@pytest.mark.parametrize("vector", GCJ_VECTORS)
def test_reference_gcj02_vectors(vector: dict[str, Any]) -> None:
    lon, lat = wgs84_to_gcj02(vector["wgs_lon"], vector["wgs_lat"])
    assert lon == pytest.approx(vector["gcj_lon"], abs=1e-9)
    assert lat == pytest.approx(vector["gcj_lat"], abs=1e-9)


@pytest.mark.parametrize("vector", GCJ_VECTORS)
def test_reference_gcj02_vectors_inverse(vector: dict[str, Any]) -> None:
    lon, lat = gcj02_to_wgs84(vector["gcj_lon"], vector["gcj_lat"])
    assert distance_m(lon, lat, vector["wgs_lon"], vector["wgs_lat"]) < 0.01


def test_reference_constants() -> None:
    if STANDARDS is None:
        pytest.skip(_MISSING)
    consts = STANDARDS["coordinates"]["GCJ02"]["public_algorithm"]["constants"]
    # ee is 2f - f^2 for the Krasovsky ellipsoid (1/f = 298.3).
    f = 1 / 298.3
    assert consts["a"] == 6378245.0
    assert consts["ee"] == pytest.approx(2 * f - f * f, rel=1e-12)


@pytest.mark.parametrize("district", DISTRICTS)
def test_district_centroids_convert_both_ways(district: dict[str, Any]) -> None:
    # Both sets of centroids are rounded to 6 decimals, hence the 1e-6 tolerance.
    wgs = district["centroid_wgs84_lonlat"]
    gcj = district["centroid_gcj02_lonlat_source"]
    assert wgs84_to_gcj02(*wgs) == pytest.approx(tuple(gcj), abs=1e-6)
    assert gcj02_to_wgs84(*gcj) == pytest.approx(tuple(wgs), abs=1e-6)
    # Reference: GCJ - WGS is "about" +0.0042..+0.0047° lon, -0.0018..-0.0024° lat
    # here; that range is rounded (Baoshan's centroid has -0.001774), so allow a margin.
    dlon, dlat = gcj[0] - wgs[0], gcj[1] - wgs[1]
    assert 0.0041 <= dlon <= 0.0048
    assert -0.0025 <= dlat <= -0.0017


def _shanghai_grid(n_lon: int = 28, n_lat: int = 25) -> list[tuple[float, float]]:
    return [
        (float(lon), float(lat))
        for lon in np.linspace(*SH_LON, n_lon)
        for lat in np.linspace(*SH_LAT, n_lat)
    ]


def test_round_trip_over_shanghai_grid() -> None:
    worst = 0.0
    for lon, lat in _shanghai_grid():
        back = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
        worst = max(worst, distance_m(lon, lat, *back))
    assert worst < 0.5
    # The iteration actually converges far below the requirement.
    assert worst < 0.001


def test_inverse_of_gcj_grid_maps_back() -> None:
    # Treat the grid as GCJ-02 input too: forward(inverse(p)) must return p.
    for lon, lat in _shanghai_grid(10, 10):
        again = wgs84_to_gcj02(*gcj02_to_wgs84(lon, lat))
        assert distance_m(lon, lat, *again) < 0.5


def test_offset_is_hundreds_of_metres_in_shanghai() -> None:
    # Guards against a no-op conversion passing the round-trip test.
    for lon, lat in _shanghai_grid(5, 5):
        assert 350 < distance_m(lon, lat, *wgs84_to_gcj02(lon, lat)) < 650


@given(
    st.floats(min_value=SH_LON[0], max_value=SH_LON[1]),
    st.floats(min_value=SH_LAT[0], max_value=SH_LAT[1]),
)
def test_round_trip_property_in_shanghai(lon: float, lat: float) -> None:
    back = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert distance_m(lon, lat, *back) < 0.5


@pytest.mark.parametrize(("lon", "lat"), OUTSIDE_CHINA)
def test_outside_china_passes_through(lon: float, lat: float) -> None:
    assert not in_china_bbox(lon, lat)
    assert wgs84_to_gcj02(lon, lat) == (lon, lat)
    assert gcj02_to_wgs84(lon, lat) == (lon, lat)
    glons, glats = wgs84_to_gcj02_many([lon], [lat])
    assert (glons[0], glats[0]) == (lon, lat)
    wlons, wlats = gcj02_to_wgs84_many([lon], [lat])
    assert (wlons[0], wlats[0]) == (lon, lat)


def test_china_bbox_edges_are_inclusive() -> None:
    assert in_china_bbox(72.004, 0.8293)
    assert in_china_bbox(137.8347, 55.8271)
    assert in_china_bbox(121.47, 31.23)


def _mixed_points() -> tuple[np.ndarray[Any, np.dtype[np.float64]], ...]:
    rng = np.random.default_rng(20240601)
    lons = np.concatenate(
        [
            rng.uniform(*SH_LON, 200),
            rng.uniform(73.0, 135.0, 200),  # all of China
            np.array([lon for lon, _ in OUTSIDE_CHINA]),
        ]
    )
    lats = np.concatenate(
        [
            rng.uniform(*SH_LAT, 200),
            rng.uniform(18.0, 53.0, 200),
            np.array([lat for _, lat in OUTSIDE_CHINA]),
        ]
    )
    return lons, lats


def test_vector_forward_equals_scalar() -> None:
    lons, lats = _mixed_points()
    vlons, vlats = wgs84_to_gcj02_many(lons, lats)
    for lon, lat, vlon, vlat in zip(lons, lats, vlons, vlats, strict=True):
        slon, slat = wgs84_to_gcj02(float(lon), float(lat))
        assert vlon == pytest.approx(slon, abs=1e-12)
        assert vlat == pytest.approx(slat, abs=1e-12)


def test_vector_inverse_equals_scalar() -> None:
    lons, lats = _mixed_points()
    vlons, vlats = gcj02_to_wgs84_many(lons, lats)
    for lon, lat, vlon, vlat in zip(lons, lats, vlons, vlats, strict=True):
        slon, slat = gcj02_to_wgs84(float(lon), float(lat))
        assert vlon == pytest.approx(slon, abs=1e-11)
        assert vlat == pytest.approx(slat, abs=1e-11)


def test_vector_forms_keep_shape_and_accept_lists() -> None:
    lons = np.full((3, 4), 121.47)
    lats = np.full((3, 4), 31.23)
    glons, glats = wgs84_to_gcj02_many(lons, lats)
    assert glons.shape == glats.shape == (3, 4)
    assert glons.dtype == np.float64
    wlons, wlats = gcj02_to_wgs84_many(glons.tolist(), glats.tolist())
    assert np.allclose(wlons, lons, atol=1e-8)
    assert np.allclose(wlats, lats, atol=1e-8)
    empty = wgs84_to_gcj02_many([], [])
    assert empty[0].shape == (0,)
    assert gcj02_to_wgs84_many([], [])[0].shape == (0,)


def test_vector_forms_do_not_modify_input() -> None:
    lons = np.array([121.47, 0.0])
    lats = np.array([31.23, 0.0])
    gcj02_to_wgs84_many(lons, lats)
    wgs84_to_gcj02_many(lons, lats)
    assert lons.tolist() == [121.47, 0.0]
    assert lats.tolist() == [31.23, 0.0]


def test_vector_forms_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        wgs84_to_gcj02_many([121.0, 122.0], [31.0])
    with pytest.raises(ValueError, match="shape"):
        gcj02_to_wgs84_many([121.0], [31.0, 31.5])


def test_vector_forms_handle_non_finite_quietly() -> None:
    lons = np.array([np.nan, np.inf, 121.47])
    lats = np.array([31.0, 31.0, np.nan])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fn in (wgs84_to_gcj02_many, gcj02_to_wgs84_many):
            out_lons, out_lats = fn(lons, lats)
            assert np.isnan(out_lons[0])
            assert out_lons[1] == np.inf
            assert np.isnan(out_lats[2])


def test_crs_values_and_to_wgs84() -> None:
    assert [c.value for c in Crs] == ["wgs84", "gcj02", "cgcs2000"]
    assert Crs("gcj02") is Crs.GCJ02
    gcj = wgs84_to_gcj02(121.47, 31.23)
    assert to_wgs84(*gcj, Crs.GCJ02) == gcj02_to_wgs84(*gcj)
    assert to_wgs84(121.47, 31.23, Crs.WGS84) == (121.47, 31.23)
    # CGCS2000 is treated as WGS84 at city scale.
    assert to_wgs84(121.47, 31.23, Crs.CGCS2000) == (121.47, 31.23)
    # Plain strings from a query parameter work too.
    assert to_wgs84(*gcj, "gcj02") == gcj02_to_wgs84(*gcj)  # type: ignore[arg-type]


def test_to_wgs84_many() -> None:
    lons, lats = _mixed_points()
    out = to_wgs84_many(lons, lats, Crs.GCJ02)
    expected = gcj02_to_wgs84_many(lons, lats)
    assert np.array_equal(out[0], expected[0])
    assert np.array_equal(out[1], expected[1])
    same = to_wgs84_many(lons, lats, Crs.CGCS2000)
    assert np.array_equal(same[0], lons)
    assert same[0] is not lons


def test_distance_m() -> None:
    assert distance_m(121.47, 31.23, 121.47, 31.23) == 0.0
    one_degree = distance_m(121.0, 31.0, 121.0, 32.0)
    assert one_degree == pytest.approx(6_371_008.8 * math.pi / 180, rel=1e-12)
    a = distance_m(121.4737, 31.2304, 121.4990, 31.2397)  # People's Square -> the Bund area
    b = distance_m(121.4990, 31.2397, 121.4737, 31.2304)
    assert a == pytest.approx(b)
    assert 2000 < a < 3000
    assert distance_m(0.0, 0.0, 180.0, 0.0) == pytest.approx(math.pi * 6_371_008.8)
