"""Importing boundaries into the database: all or nothing, skip-invalid, parents, upserts."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from pujiang.city import service
from pujiang.city.levels import Level
from pujiang.city.models import CityUnit
from pujiang.platform.deps import AppContext
from pujiang.platform.errors import Problem
from pujiang.platform.models import AuditEntry
from tests.city.conftest import collection, feature, toy_city
from tests.city.test_ingest import bow_tie


def _count(context: AppContext, level: Level | None = None) -> int:
    with context.db.session() as session:
        query = select(func.count()).select_from(CityUnit)
        if level is not None:
            query = query.where(CityUnit.level == level.value)
        return int(session.scalar(query) or 0)


def _import(context: AppContext, level: Level, features: list, **kwargs) -> service.ImportReport:  # type: ignore[no-untyped-def, type-arg]
    with context.db.session() as session:
        return service.import_geojson(session, collection(features), level, **kwargs)


def test_toy_city_imports_level_by_level(toy: AppContext) -> None:
    assert _count(toy, Level.DISTRICT) == 2
    assert _count(toy, Level.STREET) == 3
    assert _count(toy, Level.COMMUNITY) == 6
    assert _count(toy, Level.GRID) == 96
    with toy.db.session() as session:
        summary = service.summary(session)
        assert summary.revision == 4
        assert summary.counts[Level.GRID] == 96
        unit = service.get_unit(session, "310101002002006")
        assert unit.parent_code == "310101002002"
        assert unit.area_m2 == pytest.approx(95.1 * 100.1, rel=0.01)
        assert [a.code for a in service.ancestors(session, unit.code)] == [
            "310101", "310101002", "310101002002",
        ]  # fmt: skip
        actions = list(
            session.scalars(select(AuditEntry.action).where(AuditEntry.action == "city.import"))
        )
        assert len(actions) == 4


def test_a_file_with_a_broken_polygon_imports_nothing(context: AppContext) -> None:
    unclosed = feature("310101", "黄浦区", 0, 0, 8, 6)
    unclosed["geometry"]["coordinates"][0].pop()
    features = [feature("310115", "浦东新区", 8, 0, 16, 6), unclosed, bow_tie("310104")]
    with pytest.raises(service.ImportRejected) as caught:
        _import(context, Level.DISTRICT, features)
    errors = caught.value.errors
    assert [(e.index, e.code, e.key) for e in errors] == [
        (1, "310101", "city.import.ring_unclosed"),
        (2, "310104", "city.import.invalid_polygon"),
    ]
    assert caught.value.status == 422
    assert "第 1 项（310101）" in caught.value.detail
    assert _count(context) == 0


def test_skip_invalid_imports_the_rest_and_reports_the_skipped(context: AppContext) -> None:
    features = [feature("310115", "浦东新区", 8, 0, 16, 6), bow_tie("310104"), "junk"]
    report = _import(context, Level.DISTRICT, features, skip_invalid=True)
    assert (report.received, report.inserted, report.skipped) == (3, 1, 2)
    assert [(e.index, e.code) for e in report.errors] == [(1, "310104"), (2, None)]
    assert _count(context) == 1


def test_duplicate_codes_are_refused(context: AppContext) -> None:
    features = [
        feature("310101", "黄浦区", 0, 0, 8, 6),
        feature("310101", "黄浦区又一个", 8, 0, 16, 6),
    ]
    with pytest.raises(service.ImportRejected) as caught:
        _import(context, Level.DISTRICT, features)
    assert {e.index for e in caught.value.errors} == {0, 1}
    assert {e.key for e in caught.value.errors} == {"city.import.duplicate"}
    assert _count(context) == 0


def test_a_child_outside_its_parent_is_refused(toy: AppContext) -> None:
    # 310101003 reaches two cells (~190 m) east of 310101, into 310115.
    features = [
        feature("310101003", "越界街道", 6, 0, 10, 2),
        feature("310115002", "好街道", 8, 0, 10, 2),
    ]
    with pytest.raises(service.ImportRejected) as caught:
        _import(toy, Level.STREET, features)
    (error,) = caught.value.errors
    assert (error.index, error.code, error.key) == (0, "310101003", "city.import.outside_parent")
    assert 180 < float(error.params["distance"]) < 200
    assert "310101（黄浦区）" in error.reason()
    assert _count(toy, Level.STREET) == 3


def test_tolerance_lets_small_overhangs_through(toy: AppContext) -> None:
    # 0.1 cell (about 9.5 m) outside the district: within the default 20 m.
    features = [feature("310101003", "略越界", 7, 0, 8.1, 1)]
    assert _import(toy, Level.STREET, features).inserted == 1
    with pytest.raises(service.ImportRejected):
        _import(toy, Level.STREET, [feature("310101004", "略越界二", 7, 1, 8.1, 2)], tolerance_m=5)


def test_a_child_without_parent_is_refused(toy: AppContext) -> None:
    with pytest.raises(service.ImportRejected) as caught:
        _import(toy, Level.COMMUNITY, [feature("310101009001", "孤儿", 0, 0, 1, 1)])
    assert caught.value.errors[0].key == "city.import.parent_missing"
    assert "310101009" in caught.value.errors[0].reason()


def test_reimport_updates_by_code(toy: AppContext) -> None:
    renamed = feature("310101001", "西街道（新名）", 0, 0, 4, 6)
    report = _import(toy, Level.STREET, [renamed], source="民政局 2026")
    assert (report.inserted, report.updated) == (0, 1)
    with toy.db.session() as session:
        unit = service.get_unit(session, "310101001")
        assert unit.name == "西街道（新名）"
        assert unit.source == "民政局 2026"


def test_listing_and_paging(toy: AppContext) -> None:
    with toy.db.session() as session:
        first = service.list_units(session, level=Level.GRID, parent="310101001001", limit=5)
        assert [u.code for u in first] == [f"310101001001{n:03d}" for n in range(1, 6)]
        rest = service.list_units(
            session, level=Level.GRID, parent="310101001001", after=first[-1].code
        )
        assert len(rest) == 7
        named = service.list_units(session, name="浦东", level=Level.STREET)
        assert [u.code for u in named] == ["310115001"]
        assert service.child_count(session, "310101") == 2
        with pytest.raises(Problem) as caught:
            service.get_unit(session, "310101999")
        assert caught.value.status == 404


def test_reading_the_whole_toy_city_back(toy: AppContext) -> None:
    expected = sum(len(data["features"]) for data in toy_city().values())
    assert _count(toy) == expected
