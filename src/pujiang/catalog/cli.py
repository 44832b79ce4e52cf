"""The `pujiang catalog` and `pujiang exchange` commands."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="数据目录 / The data resource catalog.", no_args_is_help=True)
exchange_app = typer.Typer(
    help="数据共享交换 / Data exchange between departments.", no_args_is_help=True
)


def _context(ctx: typer.Context):  # type: ignore[no-untyped-def]
    from pujiang.cli import _context as kernel_context

    return kernel_context(ctx)


@app.command("refresh")
def refresh(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option(help="Refresh every live view, due or not.")] = False,
) -> None:
    """刷新到期的实时视图 / Refresh live views whose update cycle has passed (run from cron)."""
    from pujiang.catalog import service

    context = _context(ctx)
    try:
        with context.db.session() as session:
            done = service.refresh_due(session, force=force)
    finally:
        context.db.dispose()
    typer.echo(f"refreshed {len(done)} live view(s): {', '.join(done) or '-'}")


@app.command("late")
def late(ctx: typer.Context) -> None:
    """逾期未更新的资源 / List resources late for their update cycle; exit 1 if any."""
    from pujiang.catalog import quality

    context = _context(ctx)
    try:
        with context.db.session() as session:
            scores = [s for s in quality.all_quality(session) if s.late]
    finally:
        context.db.dispose()
    for score in scores:
        due = score.due_at.isoformat() if score.due_at else "never loaded / 从未更新"
        typer.echo(f"{score.department_code:<14} {score.resource:<40} due {due}")
    if scores:
        raise typer.Exit(1)
    typer.echo("no resource is late / 没有逾期资源")


@exchange_app.command("verify")
def verify(ctx: typer.Context) -> None:
    """校验交换日志哈希链 / Verify the exchange log's chain; exit 1 naming the first bad row."""
    from pujiang.catalog import sharing

    context = _context(ctx)
    try:
        with context.db.session() as session:
            result = sharing.verify_log(session)
    finally:
        context.db.dispose()
    if not result.ok:
        typer.secho(
            f"exchange log damaged at row {result.first_bad_id}: {result.reason}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(
        f"exchange log intact: {result.checked} rows; head {result.head_id} {result.head_hash}"
    )
