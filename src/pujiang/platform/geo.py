"""Coordinate-system kernels: WGS84 / CGCS2000 / GCJ-02 conversion and distances.

Pure functions, scalar and numpy-vectorised. Longitude comes first everywhere
(``lon, lat``), matching GeoJSON and shapely.

GCJ-02 is the offset ("Mars") datum of Chinese web maps (Amap, Tencent, Google
Maps China). Its official algorithm is unpublished; we implement the widely used
public algorithm (Krasovsky 1940 constants a = 6378245.0, ee = 0.006693421622965943),
which reproduces the reference test vectors to the last double digit.
"""

from __future__ import annotations

import math
from enum import StrEnum

import numpy as np
import numpy.typing as npt

__all__ = [
    "EARTH_MEAN_RADIUS_M",
    "Crs",
    "distance_m",
    "gcj02_to_wgs84",
    "gcj02_to_wgs84_many",
    "in_china_bbox",
    "to_wgs84",
    "to_wgs84_many",
    "wgs84_to_gcj02",
    "wgs84_to_gcj02_many",
]

FloatArray = npt.NDArray[np.float64]


class Crs(StrEnum):
    """Geographic coordinate systems the platform accepts.

    CGCS2000 (EPSG:4490, China Geodetic Coordinate System 2000, ellipsoid
    a = 6378137, 1/f = 298.257222101) is treated as identical to WGS84
    (EPSG:4326): the two are practically interchangeable at city-platform
    accuracy, with differences commonly described as sub-metre/centimetre-level
    (the exact magnitude is not verified in our reference notes). Shanghai's
    local plane system (上海2000坐标系) is NOT covered: its parameters are not public.
    """

    WGS84 = "wgs84"
    GCJ02 = "gcj02"
    CGCS2000 = "cgcs2000"


# Krasovsky 1940 ellipsoid, as used by the public GCJ-02 algorithm (not WGS84's a).
_A = 6378245.0
_EE = 0.006693421622965943  # 2f - f^2 for 1/f = 298.3

# The public algorithm's coarse "inside China" rectangle. It also covers
# neighbouring countries, but every implementation uses it, so we do too.
_LON_MIN, _LON_MAX = 72.004, 137.8347
_LAT_MIN, _LAT_MAX = 0.8293, 55.8271

# Inverse iteration: 1e-9 degrees is ~0.1 mm, far below the 0.5 m requirement;
# the fixed-point iteration contracts by ~1e-2 per step so this takes 3-5 steps.
_INVERSE_TOLERANCE_DEG = 1e-9
_INVERSE_MAX_ITERATIONS = 30

EARTH_MEAN_RADIUS_M = 6_371_008.8  # IUGG mean radius R1, used by distance_m


def in_china_bbox(lon: float, lat: float) -> bool:
    """True if the point is inside the rectangle where GCJ-02 applies an offset."""
    return _LON_MIN <= lon <= _LON_MAX and _LAT_MIN <= lat <= _LAT_MAX


def _offset_lat(x: float, y: float) -> float:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def _offset_lon(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def _gcj_delta(lon: float, lat: float) -> tuple[float, float]:
    """The (dlon, dlat) GCJ-02 adds to a WGS84 point, in degrees."""
    x, y = lon - 105.0, lat - 35.0
    rad = lat / 180.0 * math.pi
    m = 1.0 - _EE * math.sin(rad) ** 2
    sqrt_m = math.sqrt(m)
    # Scale the offsets (metre-like units) by the meridian and parallel radii.
    dlat = _offset_lat(x, y) * 180.0 / ((_A * (1.0 - _EE)) / (m * sqrt_m) * math.pi)
    dlon = _offset_lon(x, y) * 180.0 / (_A / sqrt_m * math.cos(rad) * math.pi)
    return dlon, dlat


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """Convert a WGS84 point to GCJ-02. Points outside China are returned unchanged."""
    if not in_china_bbox(lon, lat):
        return lon, lat
    dlon, dlat = _gcj_delta(lon, lat)
    return lon + dlon, lat + dlat


def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """Convert a GCJ-02 point to WGS84 (iterative inverse, error well below 1 cm).

    There is no closed form; the one-step inverse is off by 1-2 m, so we iterate
    ``wgs -= forward(wgs) - gcj`` until the residual is below 1e-9 degrees.
    """
    if not in_china_bbox(lon, lat):
        return lon, lat
    wlon, wlat = lon, lat
    for _ in range(_INVERSE_MAX_ITERATIONS):
        glon, glat = wgs84_to_gcj02(wlon, wlat)
        dlon, dlat = glon - lon, glat - lat
        if abs(dlon) < _INVERSE_TOLERANCE_DEG and abs(dlat) < _INVERSE_TOLERANCE_DEG:
            break
        wlon -= dlon
        wlat -= dlat
    return wlon, wlat


def to_wgs84(lon: float, lat: float, crs: Crs) -> tuple[float, float]:
    """Convert a point in ``crs`` to WGS84 (CGCS2000 is passed through, see :class:`Crs`)."""
    # Crs(...) also accepts the plain string values, e.g. from a query parameter.
    if Crs(crs) is Crs.GCJ02:
        return gcj02_to_wgs84(lon, lat)
    return lon, lat


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle (haversine) distance in metres on a sphere of the mean Earth radius.

    Accurate to ~0.5 % versus the ellipsoid, which is ample for checking metre-scale
    conversion errors and for city-scale proximity.
    """
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    # min() guards against h creeping above 1 through rounding for antipodal points.
    return 2.0 * EARTH_MEAN_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


# ---------------------------------------------------------------------------
# Vectorised forms (same formulas, applied elementwise to numpy arrays)
# ---------------------------------------------------------------------------


def _as_pair(lons: npt.ArrayLike, lats: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    lon_arr = np.asarray(lons, dtype=np.float64)
    lat_arr = np.asarray(lats, dtype=np.float64)
    if lon_arr.shape != lat_arr.shape:
        raise ValueError(f"lons and lats differ in shape: {lon_arr.shape} vs {lat_arr.shape}")
    return lon_arr, lat_arr


def _in_china_many(lon: FloatArray, lat: FloatArray) -> npt.NDArray[np.bool_]:
    return (lon >= _LON_MIN) & (lon <= _LON_MAX) & (lat >= _LAT_MIN) & (lat <= _LAT_MAX)


def _gcj_delta_many(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    x, y = lon - 105.0, lat - 35.0
    pi = math.pi
    sqrt_abs_x = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
    off_lat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x
    off_lat = off_lat + common
    off_lat = off_lat + (20.0 * np.sin(y * pi) + 40.0 * np.sin(y / 3.0 * pi)) * 2.0 / 3.0
    off_lat = off_lat + (160.0 * np.sin(y / 12.0 * pi) + 320.0 * np.sin(y / 30.0 * pi)) * 2.0 / 3.0
    off_lon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x
    off_lon = off_lon + common
    off_lon = off_lon + (20.0 * np.sin(x * pi) + 40.0 * np.sin(x / 3.0 * pi)) * 2.0 / 3.0
    off_lon = off_lon + (150.0 * np.sin(x / 12.0 * pi) + 300.0 * np.sin(x / 30.0 * pi)) * 2.0 / 3.0
    rad = lat / 180.0 * pi
    m = 1.0 - _EE * np.sin(rad) ** 2
    sqrt_m = np.sqrt(m)
    dlat = off_lat * 180.0 / ((_A * (1.0 - _EE)) / (m * sqrt_m) * pi)
    dlon = off_lon * 180.0 / (_A / sqrt_m * np.cos(rad) * pi)
    return dlon, dlat


def wgs84_to_gcj02_many(lons: npt.ArrayLike, lats: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Vectorised :func:`wgs84_to_gcj02`; returns new float64 arrays of the input shape."""
    lon, lat = _as_pair(lons, lats)
    # The offsets are computed for every element and discarded outside China;
    # silence the warnings that inf/NaN or polar inputs would raise there.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        dlon, dlat = _gcj_delta_many(lon, lat)
    inside = _in_china_many(lon, lat)
    return np.where(inside, lon + dlon, lon), np.where(inside, lat + dlat, lat)


def gcj02_to_wgs84_many(lons: npt.ArrayLike, lats: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Vectorised :func:`gcj02_to_wgs84`; returns new float64 arrays of the input shape.

    Each element stops iterating as soon as it converges, exactly like the scalar
    form, so both give the same answer (up to last-bit differences in numpy's sin).
    """
    lon, lat = _as_pair(lons, lats)
    wlon, wlat = lon.copy(), lat.copy()
    active = _in_china_many(lon, lat)  # outside points stay unchanged
    # inf - inf in the residuals of passed-through elements would warn otherwise.
    with np.errstate(invalid="ignore"):
        for _ in range(_INVERSE_MAX_ITERATIONS):
            if not active.any():
                break
            glon, glat = wgs84_to_gcj02_many(wlon, wlat)
            dlon, dlat = glon - lon, glat - lat
            active &= (np.abs(dlon) >= _INVERSE_TOLERANCE_DEG) | (
                np.abs(dlat) >= _INVERSE_TOLERANCE_DEG
            )
            wlon = np.where(active, wlon - dlon, wlon)
            wlat = np.where(active, wlat - dlat, wlat)
    return wlon, wlat


def to_wgs84_many(
    lons: npt.ArrayLike, lats: npt.ArrayLike, crs: Crs
) -> tuple[FloatArray, FloatArray]:
    """Vectorised :func:`to_wgs84`."""
    if Crs(crs) is Crs.GCJ02:
        return gcj02_to_wgs84_many(lons, lats)
    lon, lat = _as_pair(lons, lats)
    return lon.copy(), lat.copy()
