"""The `pujiang context` commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from pujiang.platform.deps import AppContext

app = typer.Typer(help="实时状态（NGSI-LD）/ Live city state (NGSI-LD).", no_args_is_help=True)


def _context(ctx: typer.Context) -> AppContext:
    # The kernel's checked context (reachable, migrated); imported late, as cli.py imports us.
    from pujiang.cli import _context as kernel_context

    return kernel_context(ctx)


@app.command("purge-history")
def purge_history(
    ctx: typer.Context,
    days: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Keep this many days of history (default: context_history_retention_days).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count the rows that would go; delete nothing.")
    ] = False,
) -> None:
    """清理过期历史 / Delete history rows stored more than the retention ago."""
    from pujiang.context import jobs

    context = _context(ctx)
    try:
        keep = days if days is not None else context.settings.context_history_retention_days
        if keep is None:
            typer.secho(
                "未设置保留天数：请用 --days 或设置 PUJIANG_CONTEXT_HISTORY_RETENTION_DAYS / "
                "no retention: pass --days or set PUJIANG_CONTEXT_HISTORY_RETENTION_DAYS",
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(2)
        outcome = jobs.purge_history(context.db, jobs.cutoff(keep), dry_run=dry_run, actor="cli")
    finally:
        context.db.dispose()
    if not outcome.ran:
        typer.echo(
            "另一次清理仍在进行，本次未删除 / another purge is still running; this one deleted "
            "nothing"
        )
        return
    before = outcome.before.strftime("%Y-%m-%d %H:%M:%S UTC")
    if dry_run:
        typer.echo(f"将删除 {outcome.rows} 行（早于 {before}）/ would delete {outcome.rows} rows")
    else:
        typer.echo(f"已删除 {outcome.rows} 行（早于 {before}）/ deleted {outcome.rows} rows")
