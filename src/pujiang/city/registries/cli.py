"""The `pujiang registry` commands: import files, make synthetic ones, show counts."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pujiang.city.registries.columns import Kind
from pujiang.platform.geo import Crs

if TYPE_CHECKING:
    from pujiang.city.registries.ingest import ImportReport
    from pujiang.platform.deps import AppContext

app = typer.Typer(
    help="三大基础库：人口、法人、地址 / The base registries: persons, entities, addresses.",
    no_args_is_help=True,
)

ENCODINGS = ("utf-8", "utf-8-sig", "gbk", "gb18030")


def _context(ctx: typer.Context) -> AppContext:
    # The kernel's checked context (reachable, migrated); imported late, as cli.py imports us.
    from pujiang.cli import _context as kernel_context

    return kernel_context(ctx)


def _print_report(report: ImportReport, error_file: Path | None) -> None:
    zh, en = report.kind.titles
    typer.echo(
        f"{zh} / {en}: {report.source} ({report.format}"
        f"{', ' + report.encoding if report.encoding else ''})"
    )
    typer.echo(
        f"  数据行 rows {report.rows}  错误行 bad {report.bad_rows}  新增 inserted "
        f"{report.inserted}  更新 updated {report.updated}  定位 located {report.located}  "
        f"未定位 unlocated {report.unlocated}  用时 {report.seconds:.2f}s"
    )
    if report.ignored_columns:
        typer.echo(f"  忽略的列 / ignored columns: {', '.join(report.ignored_columns)}")
    for error in report.errors:
        typer.echo(
            f"  第 {error.row} 行 row {error.row} [{error.column}] "
            f"{error.message_zh} / {error.message_en}",
            err=True,
        )
    if error_file is not None and report.errors:
        # UTF-8 with a BOM, so Excel shows the Chinese columns right.
        with error_file.open("w", encoding="utf-8-sig", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(
                ["行号 row", "列 column", "字段 field", "代码 code", "错误说明", "reason"]
            )
            for error in report.errors:
                writer.writerow(
                    [
                        error.row,
                        error.column,
                        error.field,
                        error.code,
                        error.message_zh,
                        error.message_en,
                    ]
                )
        typer.echo(f"  错误清单已写入 / errors written to {error_file}")


@app.command("import")
def import_command(
    ctx: typer.Context,
    kind: Annotated[Kind, typer.Argument(help="persons | entities | addresses")],
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV or XLSX file")
    ],
    partial: Annotated[
        bool,
        typer.Option(
            "--partial",
            help="导入正确的行，报告错误行 / Import the good rows of a file with bad ones.",
        ),
    ] = False,
    crs: Annotated[
        Crs, typer.Option(help="经纬度坐标系 / Coordinate system of lon/lat.")
    ] = Crs.WGS84,
    errors: Annotated[
        Path | None,
        typer.Option("--errors", help="把错误清单写成 CSV / Write the bad rows to this CSV file."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=100, help="Rows per database batch.")] = 20_000,
) -> None:
    """导入人口、法人或地址文件 / Import a persons, entities or addresses file (upsert)."""
    from pujiang.city.registries.ingest import ImportOptions, ImportRejected, import_file
    from pujiang.city.registries.locate import city_locator
    from pujiang.platform import audit
    from pujiang.platform.errors import Problem

    context = _context(ctx)
    options = ImportOptions(partial=partial, crs=crs, batch_size=batch_size)
    target = f"registry:{kind.value}"
    try:
        with context.db.session() as session, file.open("rb") as stream:
            report = import_file(
                session,
                kind,
                stream,
                source=file.name,
                options=options,
                locator=city_locator(context),
            )
            audit.append(
                session,
                actor="cli",
                action="registry.import",
                target=target,
                detail=report.summary(),
            )
    except ImportRejected as exc:
        _print_report(exc.report, errors)
        audit.record(
            context.db,
            actor="cli",
            action="registry.import",
            target=target,
            outcome=audit.Outcome.FAILURE,
            detail=exc.report.summary(),
        )
        typer.secho(exc.detail, fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except Problem as exc:
        typer.secho(exc.detail, fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    finally:
        context.db.dispose()
    _print_report(report, errors)


@app.command("generate")
def generate_command(
    kind: Annotated[Kind, typer.Argument(help="persons | entities | addresses")],
    out: Annotated[Path, typer.Argument(dir_okay=False, help="CSV file to write")],
    count: Annotated[int, typer.Option(min=1, help="Data rows.")] = 1000,
    seed: Annotated[int, typer.Option(help="Same seed, same rows.")] = 20200701,
    encoding: Annotated[str, typer.Option(help=f"One of {', '.join(ENCODINGS)}.")] = "utf-8",
) -> None:
    """生成合成数据文件（不含真实个人信息）/ Write a synthetic registry CSV (no real people)."""
    from pujiang.city.registries.synthetic import generate, write_csv

    if encoding not in ENCODINGS:
        raise typer.BadParameter(
            f"{encoding}: use one of {', '.join(ENCODINGS)}", param_hint="--encoding"
        )
    written = write_csv(generate(kind, count, seed), out, encoding)
    typer.echo(f"{out}: {written} rows ({encoding})")


@app.command("stats")
def stats_command(ctx: typer.Context) -> None:
    """各区记录数 / Rows of each registry, per district."""
    from pujiang.city.registries import service

    context = _context(ctx)
    try:
        with context.db.session() as session:
            result = service.stats(session)
    finally:
        context.db.dispose()
    typer.echo(
        f"persons {result.persons}  entities {result.entities}  addresses {result.addresses}"
    )
    for row in result.by_district:
        typer.echo(
            f"  {row.district_code} {row.name:<6} "
            f"{row.persons:>9} {row.entities:>8} {row.addresses:>8}"
        )
