"""The demo city: deterministic, valid, nested; and the river and the coast in the real data."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from pujiang.city import democity, locate, locate_many, service
from pujiang.city.ingest import UnitBatch
from pujiang.city.levels import LEVELS, Level
from pujiang.city.reference import districts
from pujiang.platform.deps import AppContext

# 黄浦区 has real streets; 金山区 gets synthetic ones. A coarse grid keeps the test quick.
SMALL = democity.DemoOptions(districts=("310101", "310116"), grid_m=400)


def test_same_seed_same_city_other_seed_other_city() -> None:
    first = democity.generate(SMALL)
    again = democity.generate(SMALL)
    assert first.digest() == again.digest()
    other = democity.generate(democity.DemoOptions(seed=7, districts=SMALL.districts, grid_m=400))
    assert other.digest() != first.digest()
    # Only the synthetic parts move with the seed: the real district and streets stay.
    assert first.units[Level.DISTRICT].codes == other.units[Level.DISTRICT].codes
    huangpu = [c for c in first.units[Level.STREET].codes if c.startswith("310101")]
    assert huangpu == [c for c in other.units[Level.STREET].codes if c.startswith("310101")]


def test_the_generated_city_is_a_valid_nested_partition() -> None:
    city = democity.generate(SMALL)
    counts = city.counts()
    assert counts[Level.DISTRICT] == 2
    assert counts[Level.STREET] == 10 + 15  # 10 real in 黄浦区, 15 synthetic in 金山区
    for level in LEVELS:
        units = city.units[level]
        geometries = np.asarray(units.geometries, dtype=object)
        assert shapely.is_valid(geometries).all()
        assert len(set(units.codes)) == len(units.codes)
        parent = level.parent
        if parent is not None:
            assert {c[: parent.code_length] for c in units.codes} <= set(city.units[parent].codes)
    # Streets tile their district: same area, no overlaps.
    for code, _, _, district in democity.real_districts():
        if code in SMALL.districts:
            streets = [
                g
                for c, g in zip(
                    city.units[Level.STREET].codes, city.units[Level.STREET].geometries, strict=True
                )
                if c.startswith(code)
            ]
            assert shapely.union_all(streets).area == pytest.approx(district.area, rel=1e-6)
            assert sum(s.area for s in streets) == pytest.approx(district.area, rel=1e-6)
    synthetic = [
        n
        for c, n in zip(city.units[Level.STREET].codes, city.units[Level.STREET].names, strict=True)
        if c.startswith("310116")
    ]
    assert all(name.endswith("（合成）") for name in synthetic)


def test_real_data_is_mapped_to_gbt2260_codes() -> None:
    by_code = {d.code: d.name for d in districts()}
    rows = democity.real_districts()
    assert [c for c, *_ in rows] == sorted(by_code)
    assert all(by_code[code] == name for code, name, *_ in rows)
    streets = democity.real_streets()
    assert sorted(streets) == [
        "310101",
        "310104",
        "310105",
        "310106",
        "310107",
        "310109",
        "310110",
        "310115",
    ]
    assert sum(len(s) for s in streets.values()) == 113
    assert all(
        len(code) == 9 and code.startswith(d) for d, rows in streets.items() for code, _, _ in rows
    )


@pytest.fixture
def huangpu(context: AppContext) -> AppContext:
    """黄浦区 at the real 100 m grid size."""
    report = service.load_demo_city(context, democity.DemoOptions(districts=("310101",)))
    assert report.loaded
    return context


def test_demo_load_is_idempotent_and_assigns_teams(huangpu: AppContext) -> None:
    again = service.load_demo_city(huangpu, democity.DemoOptions(districts=("310101",)))
    assert not again.loaded
    assert again.counts[Level.STREET] == 10
    assert again.counts[Level.GRID] > 2000
    found = locate(huangpu, 121.4800, 31.2300)  # behind the Bund, 外滩街道
    assert found.street is not None
    assert found.grid is not None
    assert found.responsibility is not None
    assert found.responsibility.department_code == "310101-CGZF"


def test_demo_does_not_overwrite_imported_data(huangpu: AppContext) -> None:
    with huangpu.db.session() as session:
        service.bump_revision(session, "import")  # as an import on top of the demo would
    kept = service.load_demo_city(huangpu, democity.DemoOptions(districts=("310101", "310116")))
    assert not kept.loaded
    assert "kept the imported boundaries" in kept.summary()


def test_huangpu_river_water_has_grids_on_the_huangpu_side(huangpu: AppContext) -> None:
    # Mid-river between the Bund and Lujiazui, on the west side of the district line.
    found = locate(huangpu, 121.4880, 31.2400)
    assert found.district_code == "310101"
    assert found.grid is not None
    # A little further east is 浦东新区's half of the river: not loaded here, so outside,
    # a few hundred metres from 黄浦区.
    east = locate(huangpu, 121.4930, 31.2400)
    assert not east.inside
    assert east.nearest_district is not None
    assert east.nearest_district.code == "310101"
    assert east.nearest_distance_m is not None
    assert east.nearest_distance_m < 600


@pytest.fixture
def districts_only(context: AppContext) -> AppContext:
    """The 16 real district boundaries (no streets): the river and coast as the data has them."""
    with context.db.session() as session:
        batch = UnitBatch(Level.DISTRICT)
        for code, name, name_en, geometry in democity.real_districts():
            batch.add(code, name, geometry, democity.SOURCE_DISTRICTS, name_en)
        service.import_units(session, batch)
    return context


def test_the_huangpu_river_is_split_between_its_banks(districts_only: AppContext) -> None:
    # A transect across the river at the Bund: every point is inside, and the district
    # changes once, from 黄浦区 to 浦东新区, on a line in the water (no gap, no overlap).
    lons = np.arange(121.4860, 121.4945, 0.0005)
    found = locate_many(districts_only, lons, np.full(lons.shape, 31.2400))
    assert found.inside.all()
    codes = found.district_code.tolist()
    changes = [i for i in range(1, len(codes)) if codes[i] != codes[i - 1]]
    assert codes[0] == "310101"
    assert codes[-1] == "310115"
    assert len(changes) == 1


def test_the_coast_and_the_estuary(districts_only: AppContext) -> None:
    sea = locate(districts_only, 122.3, 31.0)  # East China Sea
    assert not sea.inside
    assert sea.nearest_district is not None
    assert sea.nearest_district.code == "310115"
    assert 25_000 < (sea.nearest_distance_m or 0) < 40_000
    channel = locate(districts_only, 121.58, 31.42)  # Yangtze south channel, off 长兴岛
    assert not channel.inside
    assert channel.nearest_district is not None
    assert channel.nearest_district.code == "310151"
    assert (channel.nearest_distance_m or 0) < 3_000
    tidal_flat = locate(districts_only, 121.92, 31.0)  # 南汇 shoals: inside the boundary
    assert tidal_flat.district_code == "310115"
    lake = locate(districts_only, 120.90, 31.12)  # 淀山湖
    assert lake.district_code == "310118"
