"""The `pujiang cases` commands: load the catalogue, escalate overdue cases, send messages."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pujiang.platform.deps import AppContext

app = typer.Typer(help="网格化案件 / Grid-management cases.", no_args_is_help=True)


def _context(ctx: typer.Context) -> AppContext:
    from pujiang.app import build_context
    from pujiang.platform.db import migrations_current
    from pujiang.settings import SettingsError, load_settings

    parent = ctx.find_root()
    config: Path | None = parent.obj.get("config") if parent.obj else None
    try:
        settings = load_settings(config)
        context = build_context(settings)
    except SettingsError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    if not migrations_current(context.db):
        context.db.dispose()
        typer.secho(
            "数据库未迁移到最新版本，请先运行 `pujiang db upgrade` / run `pujiang db upgrade`",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    return context


@app.command("load-catalogue")
def load_catalogue(ctx: typer.Context) -> None:
    """载入案件分类目录 / Add the seed classes (部件/事件) that are missing."""
    from pujiang.cases import service

    context = _context(ctx)
    try:
        with context.db.session() as session:
            added = service.load_catalogue(session)
    finally:
        context.db.dispose()
    typer.echo(f"added {added} case classes / 新增 {added} 个小类")


@app.command("escalate")
def escalate(ctx: typer.Context) -> None:
    """超期升级 / Flag cases past their stage deadline and escalate them one level up.

    Run it every few minutes (cron, a systemd timer); it is idempotent.
    """
    from pujiang.cases import escalate_overdue

    context = _context(ctx)
    try:
        total = 0
        while batch := escalate_overdue(context):
            total += len(batch)
    finally:
        context.db.dispose()
    typer.echo(f"escalated {total} cases / 升级 {total} 件")


@app.command("notify")
def notify_reporters(
    ctx: typer.Context,
    smtp_host: Annotated[str, typer.Option(help="SMTP server for e-mail.")] = "127.0.0.1",
    smtp_port: Annotated[int, typer.Option(help="SMTP port.")] = 25,
    sender: Annotated[str, typer.Option(help="From address.")] = "noreply@pujiang.local",
    starttls: Annotated[bool, typer.Option(help="Use STARTTLS.")] = False,
    username: Annotated[str | None, typer.Option(help="SMTP user, if it needs a login.")] = None,
    password_stdin: Annotated[
        bool, typer.Option(help="Read the SMTP password from standard input.")
    ] = False,
) -> None:
    """通知报告人 / Send the pending status messages to reporters by e-mail."""
    from pujiang.cases import notify

    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    mail = notify.SmtpSender(
        smtp_host, smtp_port, sender, username=username, password=password, starttls=starttls
    )
    context = _context(ctx)
    try:
        with context.db.single_run("cases-notify") as only_run:
            if not only_run:  # it would send the same pending messages a second time
                typer.echo(
                    "另一次通知仍在进行，本次不发送 / another notify run is still sending; this "
                    "one sends nothing"
                )
                return
            with context.db.session() as session:
                sent, failed = notify.deliver(session, {"email": mail})
    finally:
        context.db.dispose()
    typer.echo(f"sent {sent}, failed {failed} / 已发送 {sent}，失败 {failed}")
    if failed:
        raise typer.Exit(1)
