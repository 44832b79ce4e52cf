"""The `pujiang` command."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import orjson
import typer

from pujiang import __version__
from pujiang.cases import cli as cases_cli
from pujiang.catalog import cli as catalog_cli
from pujiang.city import cli as city_cli
from pujiang.city.registries import cli as registry_cli
from pujiang.context import cli as context_cli
from pujiang.iot import cli as iot_cli
from pujiang.platform import db as dbtools
from pujiang.platform.deps import AppContext
from pujiang.platform.errors import Problem
from pujiang.settings import Settings, SettingsError, load_settings, mask_url_password

if TYPE_CHECKING:
    from datetime import datetime

    from pydantic import BaseModel
    from sqlalchemy.orm import Session

    from pujiang.platform.models import ApiKey

RequestT = TypeVar("RequestT", bound="BaseModel")

app = typer.Typer(
    help="浦江 Pujiang — 城市运行平台 / an open city operating platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="数据库迁移 / Database migrations.", no_args_is_help=True)
users_app = typer.Typer(help="账户管理 / Accounts.", no_args_is_help=True)
config_app = typer.Typer(help="配置 / Settings.", no_args_is_help=True)
audit_app = typer.Typer(help="审计日志 / The audit log.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(config_app, name="config")
app.add_typer(audit_app, name="audit")
app.add_typer(cases_cli.app, name="cases")
app.add_typer(catalog_cli.app, name="catalog")
app.add_typer(city_cli.app, name="city")
app.add_typer(catalog_cli.exchange_app, name="exchange")
app.add_typer(context_cli.app, name="context")
app.add_typer(registry_cli.app, name="registry")
app.add_typer(iot_cli.app, name="iot")
app.command("simulate")(iot_cli.simulate)
app.command("ingest")(iot_cli.ingest)

NOT_MIGRATED = (
    "数据库未迁移到最新版本，请先运行 `pujiang db upgrade` / "
    "the database is not at the latest migration: run `pujiang db upgrade`"
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (PUJIANG_* variables override it)."),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _settings(ctx: typer.Context, **overrides: object) -> Settings:
    config: Path | None = ctx.obj.get("config") if ctx.obj else None
    try:
        settings = load_settings(config, **overrides)
        settings.check_startable()
    except SettingsError as exc:
        raise _fail(str(exc)) from exc
    return settings


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pujiang {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: ConfigOption = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    ctx.obj = {"config": config}


# -- serve and demo -------------------------------------------------------------------------------


def _run_server(settings: Settings, config: Path | None = None) -> None:
    import uvicorn

    from pujiang.app import create_app
    from pujiang.platform.logs import configure_logging

    configure_logging(settings.log_level, json_lines=settings.log_json)
    if settings.workers > 1:
        _run_workers(settings, config)
        return
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


def _run_workers(settings: Settings, config: Path | None) -> None:
    """Several worker processes: each builds its app from these settings, handed down in the
    environment (`app.create_worker_app`), with metrics shared through files."""
    import uvicorn

    from pujiang.platform.workers import CONFIG_ENV, MULTIPROC_ENV, prepare_metrics_dir

    metrics = prepare_metrics_dir(settings.var_dir, settings.port)
    os.environ[MULTIPROC_ENV] = str(metrics)
    os.environ["PUJIANG_HOST"] = settings.host
    os.environ["PUJIANG_PORT"] = str(settings.port)
    os.environ["PUJIANG_WORKERS"] = str(settings.workers)
    if config is not None:
        os.environ[CONFIG_ENV] = str(config.resolve())
    uvicorn.run(
        "pujiang.app:create_worker_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
    )


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Server processes (default: the `workers` setting, 1).", min=1, max=64),
    ] = None,
) -> None:
    """启动服务 / Serve the API (run `pujiang db upgrade` first)."""
    chosen = {"host": host, "port": port, "workers": workers}
    overrides = {k: v for k, v in chosen.items() if v is not None}
    settings = _settings(ctx, **overrides)
    from pujiang.platform.db import Database, migrations_current

    database = Database(settings.database_url)
    try:
        if not migrations_current(database):
            raise _fail(NOT_MIGRATED)
    finally:
        database.dispose()
    _run_server(settings, ctx.obj.get("config") if ctx.obj else None)


@app.command()
def demo(
    ctx: typer.Context,
    serve_it: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve after loading.")
    ] = True,
) -> None:
    """演示城市 / Migrate a SQLite file under ./var, load the demo city and serve it."""
    from pujiang.demo.run import load_demo, print_welcome, simulated_devices

    settings = _settings(ctx)
    dbtools.upgrade(settings.database_url)
    logins = load_demo(settings)
    print_welcome(settings, logins)
    if serve_it:
        with simulated_devices(settings):  # the demo city's devices report while it serves
            _run_server(settings)


# -- db -------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context, revision: Annotated[str, typer.Argument(help="Target revision.")] = "head"
) -> None:
    """升级数据库 / Migrate the database up (to the latest by default)."""
    dbtools.upgrade(_settings(ctx).database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision, '-1' or 'base'.")] = "-1",
) -> None:
    """回退数据库 / Migrate the database down (one step by default)."""
    dbtools.downgrade(_settings(ctx).database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """当前版本 / Show the database's revision and whether it is the latest."""
    database = dbtools.Database(_settings(ctx).database_url)
    try:
        with database.engine.connect() as conn:
            current = dbtools.current_revisions(conn)
    finally:
        database.dispose()
    heads = dbtools.head_revisions()
    typer.echo(f"current: {', '.join(sorted(current)) or '(empty database)'}")
    typer.echo(f"latest:  {', '.join(sorted(heads))}")
    if current != heads:
        raise _fail("not at the latest revision: run `pujiang db upgrade`", 1)


# -- users ----------------------------------------------------------------------------------------


def _context(ctx: typer.Context) -> AppContext:
    """The app context for a command that needs a migrated database."""
    from pujiang.app import build_context

    context = build_context(_settings(ctx))
    if not context.db.ping():
        context.db.dispose()
        raise _fail(f"cannot reach the database {mask_url_password(context.settings.database_url)}")
    if not dbtools.migrations_current(context.db):
        context.db.dispose()
        raise _fail(NOT_MIGRATED)
    return context


RolesOption = Annotated[list[str], typer.Option("--role", "-r", help="Role; repeat for several.")]
DepartmentOption = Annotated[str | None, typer.Option(help="Department code.")]


@users_app.command("create")
def users_create(
    ctx: typer.Context,
    username: str,
    role: RolesOption,
    department: DepartmentOption = None,
    display_name: Annotated[str, typer.Option(help="Name shown to others.")] = "",
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input.")
    ] = False,
) -> None:
    """新建用户 / Create a user (asks for the password)."""
    from pujiang.platform import audit, identity

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password / 密码: ")
        if getpass.getpass("Again / 再次输入: ") != password:
            raise _fail("passwords differ / 两次输入的密码不一致")
    context = _context(ctx)
    try:
        with context.db.session() as session:
            identity.create_user(
                session,
                context,
                username=username,
                password=password,
                display_name=display_name,
                department_code=department,
                roles=role,
            )
            audit.append(
                session, actor="cli", action="users.create", target=f"principal:{username}"
            )
    except Problem as exc:
        raise _fail(exc.bilingual()) from exc
    finally:
        context.db.dispose()
    typer.echo(f"created {username} ({', '.join(role)})")


@users_app.command("list")
def users_list(ctx: typer.Context) -> None:
    """账户列表 / List accounts."""
    from pujiang.platform import identity

    context = _context(ctx)
    try:
        with context.db.session() as session:
            rows = identity.list_principals(session)
            for row in rows:
                state = "active" if row.is_active else "disabled"
                department = row.department.code if row.department else "-"
                typer.echo(
                    f"{row.username:<24} {row.kind:<8} {department:<14} {state:<9} "
                    f"{','.join(row.roles)}"
                )
    finally:
        context.db.dispose()


def _set_active(ctx: typer.Context, username: str, active: bool) -> None:
    from pujiang.platform import audit, identity

    context = _context(ctx)
    try:
        with context.db.session() as session:
            identity.set_active(session, username, active)
            audit.append(
                session,
                actor="cli",
                action="users.enable" if active else "users.disable",
                target=f"principal:{username}",
            )
    except Problem as exc:
        raise _fail(exc.bilingual()) from exc
    finally:
        context.db.dispose()
    typer.echo(f"{username} {'enabled' if active else 'disabled'}")


@users_app.command("disable")
def users_disable(ctx: typer.Context, username: str) -> None:
    """停用账户 / Disable an account and end its sessions."""
    _set_active(ctx, username, False)


@users_app.command("enable")
def users_enable(ctx: typer.Context, username: str) -> None:
    """启用或解锁账户 / Enable or unlock an account."""
    _set_active(ctx, username, True)


# -- service accounts and their API keys ----------------------------------------------------------

KEY_SHOWN_ONCE = (
    "请立即保存此密钥：它只显示这一次，无法找回；遗失后请新建密钥并撤销旧密钥 / "
    "Store this key now: it is shown only once and cannot be recovered; if it is lost, "
    "create a new key and revoke the old one."
)

LabelOption = Annotated[
    str, typer.Option(help="Label telling this key from the account's others, e.g. its site.")
]


@contextmanager
def _account_session(ctx: typer.Context) -> Iterator[tuple[AppContext, Session]]:
    """A session on the migrated database, committed at the end; a Problem inside rolls it all
    back and becomes a usage error (exit 2)."""
    context = _context(ctx)
    try:
        with context.db.session() as session:
            yield context, session
    except Problem as exc:
        raise _fail(exc.bilingual()) from exc
    finally:
        context.db.dispose()


def _edge_checked(
    model: type[RequestT], fields: dict[str, object], options: dict[str, str]
) -> RequestT:
    """The fields checked by the HTTP API's own request model (lengths, blanks); an error names
    the command-line option (`options` maps a field to it) instead of the JSON field."""
    from pydantic import ValidationError

    from pujiang.platform.errors import describe_validation_errors

    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        errors = [
            {**error, "loc": (options.get(str(error["loc"][0]), error["loc"][0]),)}
            for error in exc.errors()
        ]
        described = describe_validation_errors(errors)
        raise _fail("; ".join(error["message"] for error in described)) from exc


def _print_new_key(settings: Settings, key_id: int, key: str) -> None:
    # Only the key goes to stdout, so that `KEY=$(pujiang users key-create NAME)` captures it.
    typer.echo(key)
    notice = f"↑ API 密钥 / API key {key_id}\n{KEY_SHOWN_ONCE}"
    typer.secho(notice, fg=typer.colors.YELLOW, err=True)
    example = f"curl -H 'X-API-Key: {key}' http://{settings.host}:{settings.port}/api/auth/me"
    typer.echo(f"使用示例 / Example:\n  {example}", err=True)


@users_app.command("service-account")
def users_service_account(
    ctx: typer.Context,
    name: str,
    role: RolesOption,
    department: DepartmentOption = None,
    display_name: Annotated[
        str,
        typer.Option("--display-name", "--description", help="What the account is, for people."),
    ] = "",
    label: LabelOption = "",
) -> None:
    """新建服务账户及其首个密钥（只显示一次）/ Create a service account and its first API key."""
    from pujiang.platform import audit, identity
    from pujiang.platform.schemas import ServiceAccountIn

    wanted = _edge_checked(
        ServiceAccountIn,
        {
            "name": name,
            "display_name": display_name,
            "department_code": department,
            "roles": role,
            "key_label": label,
        },
        {"name": "NAME", "display_name": "--display-name", "key_label": "--label"},
    )
    with _account_session(ctx) as (context, session):
        account, row, key = identity.open_service_account(session, wanted)
        audit.append(
            session,
            actor="cli",
            action="service_accounts.create",
            target=f"principal:{wanted.name}",
            detail={"roles": account.roles, "key_id": row.id, "key_prefix": row.prefix},
        )
    typer.echo(f"created service account {wanted.name} ({', '.join(account.roles)})", err=True)
    _print_new_key(context.settings, row.id, key)


@users_app.command("key-create")
def users_key_create(ctx: typer.Context, name: str, label: LabelOption = "") -> None:
    """新增 API 密钥（只显示一次）/ Issue another API key for a service account (shown once)."""
    from pujiang.platform import audit, identity
    from pujiang.platform.schemas import ApiKeyIn

    wanted = _edge_checked(ApiKeyIn, {"label": label}, {"label": "--label"})
    with _account_session(ctx) as (context, session):
        account = identity.get_service_account(session, name)
        row, key = identity.issue_api_key(session, account, label=wanted.label)
        audit.append(
            session,
            actor="cli",
            action="api_keys.create",
            target=f"principal:{name}",
            detail={"key_id": row.id, "key_prefix": row.prefix},
        )
    _print_new_key(context.settings, row.id, key)


def _key_state(row: ApiKey) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= dbtools.utcnow():
        return "expired"
    return "active"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


@users_app.command("keys")
def users_keys(ctx: typer.Context, name: str) -> None:
    """服务账户的密钥列表（不含密钥本身）/ List a service account's API keys, never the keys."""
    from pujiang.platform import identity

    with _account_session(ctx) as (_, session):
        rows = identity.list_api_keys(session, identity.get_service_account(session, name))
    if not rows:
        typer.echo(f"{name} 没有 API 密钥 / {name} has no API keys")
        return
    typer.echo(f"{'id':<6} {'prefix':<16} {'created (UTC)':<19} {'last used':<19} state    label")
    for row in rows:
        typer.echo(
            f"{row.id:<6} {'pjk_' + row.prefix:<16} {_when(row.created_at):<19} "
            f"{_when(row.last_used_at):<19} {_key_state(row):<8} {row.label}"
        )


@users_app.command("key-revoke")
def users_key_revoke(
    ctx: typer.Context,
    name: str,
    key_id: Annotated[int, typer.Argument(help="The key's id, as `pujiang users keys` lists it.")],
) -> None:
    """撤销 API 密钥（立即生效）/ Revoke a service account's API key, with effect at once."""
    from pujiang.platform import audit, identity

    with _account_session(ctx) as (_, session):
        account = identity.get_service_account(session, name)
        row = identity.revoke_api_key(session, account, key_id)
        audit.append(
            session,
            actor="cli",
            action="api_keys.revoke",
            target=f"api_key:{key_id}",
            detail={"account": name, "key_prefix": row.prefix},
        )
    typer.echo(f"revoked key {key_id} (pjk_{row.prefix}) of {name}")


# -- config and audit -----------------------------------------------------------------------------


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """显示配置（隐藏密钥）/ Show the settings in force, secrets masked."""
    config: Path | None = ctx.obj.get("config") if ctx.obj else None
    try:
        settings = load_settings(config)
    except SettingsError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(orjson.dumps(settings.masked(), option=orjson.OPT_INDENT_2).decode())


@audit_app.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """校验审计哈希链 / Verify the audit log's hash chain; exit 1 naming the first bad row."""
    from pujiang.platform import audit

    context = _context(ctx)
    try:
        with context.db.session() as session:
            result = audit.verify(session)
    finally:
        context.db.dispose()
    if not result.ok:
        raise _fail(f"audit log damaged at row {result.first_bad_id}: {result.reason}", 1)
    typer.echo(f"audit log intact: {result.checked} rows; head {result.head_id} {result.head_hash}")


def main() -> None:
    app()
