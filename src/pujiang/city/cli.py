"""`pujiang city ...`: import boundary files, locate a point, show what is loaded, load the demo."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import orjson
import typer

from pujiang.city.levels import LEVELS, Level
from pujiang.platform.deps import AppContext
from pujiang.platform.errors import Problem
from pujiang.platform.geo import Crs

app = typer.Typer(help="城市区划与定位 / City units and locating.", no_args_is_help=True)

# Errors printed in full up to this many; the rest are counted.
MAX_LISTED_ERRORS = 200


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@contextmanager
def _context(ctx: typer.Context) -> Iterator[AppContext]:
    """The app context for a migrated database, disposed afterwards."""
    from pujiang.app import build_context
    from pujiang.platform.db import migrations_current
    from pujiang.settings import SettingsError, load_settings

    config: Path | None = ctx.obj.get("config") if ctx.obj else None
    try:
        settings = load_settings(config)
        context = build_context(settings)
    except SettingsError as exc:
        raise _fail(str(exc)) from exc
    try:
        if not context.db.ping() or not migrations_current(context.db):
            raise _fail(
                "数据库不可达或未迁移，请先运行 `pujiang db upgrade` / "
                "the database is unreachable or not migrated: run `pujiang db upgrade`"
            )
        yield context
    finally:
        context.db.dispose()


@app.command("import")
def import_file(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="GeoJSON FeatureCollection (WGS84/CGCS2000).")],
    level: Annotated[Level, typer.Option(help="Which level the features are.")],
    skip_invalid: Annotated[
        bool, typer.Option(help="Import the valid features and skip the invalid ones.")
    ] = False,
    tolerance_m: Annotated[
        float, typer.Option(min=0, help="How far (m) a unit may stick out of its parent.")
    ] = 20.0,
    code_property: Annotated[str, typer.Option(help="Property holding the code.")] = "code",
    name_property: Annotated[str, typer.Option(help="Property holding the name.")] = "name",
    source: Annotated[str | None, typer.Option(help="Where the data comes from.")] = None,
) -> None:
    """导入区划边界 / Import district, street, community or grid boundaries from GeoJSON."""
    from pujiang.city import service

    try:
        data = orjson.loads(file.read_bytes())
    except OSError as exc:
        raise _fail(f"无法读取文件 / cannot read {file}: {exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise _fail(f"不是有效的 JSON / not valid JSON: {file}: {exc}") from exc
    with _context(ctx) as context:
        try:
            with context.db.session() as session:
                report = service.import_geojson(
                    session,
                    data,
                    level,
                    source=source or f"import:{file.name}",
                    code_property=code_property,
                    name_property=name_property,
                    skip_invalid=skip_invalid,
                    tolerance_m=tolerance_m,
                    actor="cli",
                )
        except service.ImportRejected as exc:
            for error in exc.errors[:MAX_LISTED_ERRORS]:
                typer.echo(f"  #{error.index} {error.code or '-'}: {error.bilingual()}", err=True)
            if len(exc.errors) > MAX_LISTED_ERRORS:
                typer.echo(f"  … +{len(exc.errors) - MAX_LISTED_ERRORS}", err=True)
            raise _fail(
                f"{len(exc.errors)} 个要素有误，未导入任何数据（--skip-invalid 可跳过）/ "
                f"{len(exc.errors)} invalid features, nothing imported (--skip-invalid skips them)",
                1,
            ) from exc
        except Problem as exc:
            raise _fail(exc.bilingual()) from exc
    for error in report.errors[:MAX_LISTED_ERRORS]:
        typer.echo(f"  skipped #{error.index} {error.code or '-'}: {error.bilingual()}", err=True)
    typer.echo(
        f"{level.value}: 新增 {report.inserted}，更新 {report.updated}，跳过 {report.skipped} / "
        f"inserted {report.inserted}, updated {report.updated}, skipped {report.skipped} "
        f"(revision {report.revision})"
    )


@app.command("locate")
def locate_command(
    ctx: typer.Context,
    lon: Annotated[float, typer.Argument(help="Longitude.")],
    lat: Annotated[float, typer.Argument(help="Latitude.")],
    crs: Annotated[Crs, typer.Option(help="Coordinate system of the input.")] = Crs.WGS84,
) -> None:
    """定位一个点 / Print the district, street, community and grid of a point."""
    from pujiang.city import service

    with _context(ctx) as context:
        location = service.locate(context, lon, lat, crs)
    if not location.inside:
        typer.echo(service.outside_message(location))
        raise typer.Exit(1)
    for level in LEVELS:
        unit = getattr(location, level.value)
        if unit is not None:
            typer.echo(f"{level.value:<10} {unit.code:<16} {unit.name}")
    if location.responsibility is not None:
        team = location.responsibility
        typer.echo(f"{'team':<10} {team.code:<16} {team.name} ({team.department_code})")


@app.command("status")
def status_command(ctx: typer.Context) -> None:
    """区划数据概况 / Show how many units each level holds and the data revision."""
    from pujiang.city import service

    with _context(ctx) as context, context.db.session() as session:
        found = service.summary(session)
    for level in LEVELS:
        typer.echo(f"{level.value:<10} {found.counts[level]:>9}")
    typer.echo(f"revision {found.revision}  {found.source}")


@app.command("demo")
def demo_command(
    ctx: typer.Context,
    seed: Annotated[int | None, typer.Option(help="Seed of the synthetic parts.")] = None,
    grid_m: Annotated[float, typer.Option(min=20, help="Unit grid size in metres.")] = 100.0,
    district: Annotated[
        list[str] | None, typer.Option(help="Only this district (GB/T 2260 code); repeatable.")
    ] = None,
) -> None:
    """加载演示城市 / Load the demo city (idempotent; keeps imported real data)."""
    from pujiang.city import democity, service

    options = democity.DemoOptions(
        seed=democity.DEFAULT_SEED if seed is None else seed,
        grid_m=grid_m,
        districts=tuple(district or ()),
    )
    with _context(ctx) as context:
        report = service.load_demo_city(context, options)
    typer.echo(report.summary())
