"""`pujiang city import | locate | status | demo` through Typer's CliRunner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from pujiang.city.levels import Level
from pujiang.cli import app as cli_app
from pujiang.platform.deps import AppContext
from tests.city.conftest import collection, feature, toy_city, xy
from tests.city.test_ingest import bow_tie


@pytest.fixture
def cli(context: AppContext, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("PUJIANG_DATABASE_URL", context.settings.database_url)
    return CliRunner()


def _file(tmp_path: Path, name: str, data: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_bytes(orjson.dumps(data))
    return str(path)


def test_import_every_level_then_locate(cli: CliRunner, tmp_path: Path) -> None:
    for level, data in toy_city().items():
        path = _file(tmp_path, f"{level.value}.geojson", data)
        result = cli.invoke(cli_app, ["city", "import", path, "--level", level.value])
        assert result.exit_code == 0, result.output
        assert f"inserted {len(data['features'])}" in result.output
    status = cli.invoke(cli_app, ["city", "status"])
    assert "grid" in status.output
    assert "96" in status.output
    lon, lat = xy(5.5, 4.5)
    located = cli.invoke(cli_app, ["city", "locate", str(lon), str(lat)])
    assert located.exit_code == 0, located.output
    assert "310101002002006" in located.output
    assert "东街道" in located.output
    outside = cli.invoke(cli_app, ["city", "locate", "116.39", "39.91"])
    assert outside.exit_code == 1
    assert "不在本市范围内" in outside.output


def test_a_broken_file_is_refused_naming_each_feature(cli: CliRunner, tmp_path: Path) -> None:
    unclosed = feature("310115", "浦东新区", 8, 0, 16, 6)
    unclosed["geometry"]["coordinates"][0].pop()
    data = collection([feature("310101", "黄浦区", 0, 0, 8, 6), unclosed, bow_tie("310104")])
    path = _file(tmp_path, "districts.geojson", data)
    result = cli.invoke(cli_app, ["city", "import", path, "--level", "district"])
    assert result.exit_code == 1
    assert "#1 310115" in result.output
    assert "not closed" in result.output
    assert "未闭合" in result.output
    assert "#2 310104" in result.output
    assert "Self-intersection" in result.output
    assert "nothing imported" in result.output
    assert cli.invoke(cli_app, ["city", "status"]).output.splitlines()[0].split() == [
        "district",
        "0",
    ]
    skipped = cli.invoke(cli_app, ["city", "import", path, "--level", "district", "--skip-invalid"])
    assert skipped.exit_code == 0, skipped.output
    assert "inserted 1" in skipped.output
    assert "skipped 2" in skipped.output
    assert "skipped #1 310115" in skipped.output


def test_import_rejects_unreadable_files(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "bad.geojson"
    path.write_text("{not json", encoding="utf-8")
    result = cli.invoke(cli_app, ["city", "import", str(path), "--level", "district"])
    assert result.exit_code == 2
    assert "not valid JSON" in result.output
    missing = cli.invoke(
        cli_app, ["city", "import", str(tmp_path / "nope.geojson"), "--level", "grid"]
    )
    assert missing.exit_code == 2
    wrong_level = cli.invoke(cli_app, ["city", "import", str(path), "--level", "province"])
    assert wrong_level.exit_code == 2


def test_import_real_district_boundaries_by_name(cli: CliRunner) -> None:
    source = (
        Path(__file__).resolve().parents[2] / "src/pujiang/city/data/shanghai-districts.geojson"
    )
    result = cli.invoke(
        cli_app,
        [
            "city",
            "import",
            str(source),
            "--level",
            Level.DISTRICT.value,
            "--name-property",
            "district",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "inserted 16" in result.output


def test_demo_command_loads_a_small_demo(cli: CliRunner) -> None:
    args = ["city", "demo", "--district", "310101", "--grid-m", "250"]
    first = cli.invoke(cli_app, args)
    assert first.exit_code == 0, first.output
    assert "loaded: 1 districts, 10 streets/towns" in first.output
    again = cli.invoke(cli_app, args)
    assert "already there" in again.output
