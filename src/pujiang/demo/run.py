"""What `pujiang demo` does after migrating: load the simulated city and say how to use it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from pujiang.app import build_context
from pujiang.cases.demo import load_demo_cases
from pujiang.catalog.demo import load_demo_catalog
from pujiang.city.registries.synthetic import load_demo_registries
from pujiang.city.service import load_demo_city
from pujiang.context.demo import load_demo as load_demo_context
from pujiang.demo.seed import DEMO_ACCOUNTS, seed_accounts, seed_departments
from pujiang.iot.demo import demo_fleet, provision_demo_fleet
from pujiang.settings import Settings

# While the demo serves, each demo device reports every this many seconds.
DEMO_REPORT_SECONDS = 30.0


def load_demo(settings: Settings) -> dict[str, str]:
    """Load (or top up) the demo city; returns the demo logins with fresh passwords."""
    context = build_context(settings)
    try:
        with context.db.session() as session:
            seed_departments(session)
            logins = seed_accounts(session, context)
        typer.echo(load_demo_city(context).summary())  # after the departments it assigns grids to
        typer.echo(load_demo_registries(context).summary())  # after the city: residents located
        typer.echo(f"cases: {load_demo_cases(context)} demo cases loaded")  # located in the city
        typer.echo(
            f"context: {load_demo_context(context)} NGSI-LD entities loaded"
        )  # after the city
        typer.echo(f"iot: {provision_demo_fleet(context)} demo devices provisioned")  # feed them
        with context.db.session() as session:
            typer.echo(f"catalog: {load_demo_catalog(session)} data resources loaded")
        return logins
    finally:
        context.db.dispose()


def print_welcome(settings: Settings, logins: dict[str, str]) -> None:
    base = f"http://{settings.host}:{settings.port}"
    typer.echo("")
    typer.secho("浦江 Pujiang 演示城市已就绪 / the demo city is ready", bold=True)
    typer.echo(f"  API 文档 / API docs:   {base}/docs")
    typer.echo(f"  OpenAPI:              {base}/openapi.json")
    typer.echo(f"  健康检查 / health:     {base}/healthz  {base}/readyz  {base}/metrics")
    typer.echo(f"  数据库 / database:     {settings.database_url}")
    typer.echo("")
    typer.echo("演示账户（密码每次启动重新生成）/ demo logins (new passwords on every start):")
    for account in DEMO_ACCOUNTS:
        typer.echo(f"  {account.username:<11} {logins[account.username]:<18} {account.what}")
    typer.echo("")
    typer.echo("获取令牌 / get a token:")
    typer.echo(f"  curl -s -d username=admin -d 'password={logins['admin']}' {base}/api/auth/token")
    typer.echo("")


@contextmanager
def simulated_devices(settings: Settings) -> Iterator[None]:
    """While the block runs (the demo serving), every demo device reports every 30 s: over
    MQTT when a broker is configured (the server's ingest worker takes it from there), else
    over HTTP to the server itself."""
    from pujiang.iot.simulate import (
        HttpPublisher,
        MqttSimPublisher,
        Publisher,
        Simulation,
        in_background,
        server_url,
    )

    fleet = demo_fleet()
    publisher: Publisher
    if settings.mqtt_url:
        publisher = MqttSimPublisher(settings.mqtt_url)
    else:
        publisher = HttpPublisher(server_url(settings.host, settings.port))
    simulation = Simulation(fleet, len(fleet) / DEMO_REPORT_SECONDS, publisher, tick=1.0)
    typer.echo(
        f"模拟设备 / simulated devices: {len(fleet)} 台每 {DEMO_REPORT_SECONDS:g} 秒上报一次 / "
        f"each reports every {DEMO_REPORT_SECONDS:g} s over {publisher.label}"
    )
    typer.echo("")
    with in_background(simulation):
        yield
