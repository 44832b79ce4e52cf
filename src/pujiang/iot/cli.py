"""The `pujiang ingest` and `pujiang simulate` commands, and `pujiang iot ...`."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="设备接入 / Device ingest.", no_args_is_help=True)


# -- pujiang simulate -----------------------------------------------------------------------------


def _simulate_fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def simulate(
    ctx: typer.Context,
    devices: Annotated[
        int,
        typer.Option(
            "--devices",
            "-n",
            help="Devices: the demo fleet's 440 (a mix of kinds) first, then extra ones.",
        ),
    ] = 100,
    rate: Annotated[
        float, typer.Option(help="Messages per second in total, across the whole fleet.")
    ] = 10.0,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: at Ctrl-C).")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="Server to send to over HTTP (default: the settings' host and port)."),
    ] = None,
    mqtt: Annotated[
        str | None,
        typer.Option("--mqtt", help="Publish to this MQTT broker (mqtt://host:port) instead."),
    ] = None,
    direct: Annotated[
        bool, typer.Option("--direct", help="Write straight into the database: no server.")
    ] = False,
    speed: Annotated[
        float,
        typer.Option(
            help="Simulated time runs this many times faster (above 1: needs --duration)."
        ),
    ] = 1.0,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of the patterns (default: the demo's); same seed, same readings."),
    ] = None,
) -> None:
    """模拟城市设备 / Simulated city devices with daily patterns, until Ctrl-C or --duration.

    Sends --rate messages per second in total, round-robin: each device reports every
    devices/rate seconds. Devices are provisioned in the database of the settings (the demo
    fleet, plus extra devices beyond it), so run it with the same settings as the server.
    """
    import signal
    import sys
    import threading
    from signal import SIGINT, SIGTERM

    from pujiang.cli import _context as kernel_context
    from pujiang.iot import simulate as sim
    from pujiang.iot.demo import fleet_of, provision

    try:
        sim.check_options(devices, rate, duration, speed)
    except ValueError as exc:
        raise _simulate_fail(str(exc)) from exc
    if sum((url is not None, mqtt is not None, direct)) > 1:
        raise _simulate_fail(
            "--url、--mqtt、--direct 只能选一个 / give one of --url, --mqtt, --direct"
        )
    context = kernel_context(ctx)
    try:
        try:
            publisher = sim.publisher_for(context, url=url, mqtt_url=mqtt, direct=direct)
        except ValueError as exc:
            raise _simulate_fail(str(exc)) from exc
        fleet = fleet_of(devices)
        added = provision(context, fleet)
        try:
            publisher.open()
        except sim.PublishFailed as exc:
            raise _simulate_fail(str(exc), 1) from exc
        simulation = sim.Simulation(
            fleet,
            rate,
            publisher,
            seed=sim.DEFAULT_SEED if seed is None else seed,
            speed=speed,
            duration=duration,
        )
        typer.echo(
            f"模拟 simulating {len(fleet)} devices (新注册 newly provisioned {added}) · "
            f"{rate:g} 条/秒 msg/s in total · each every {len(fleet) / rate:.1f} s · "
            f"via {publisher.label}" + (f" · speed ×{speed:g}" if speed != 1 else "")
        )
        stop = threading.Event()  # Ctrl-C ends the run between two batches
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (SIGINT, SIGTERM)}
        live = sys.stdout.isatty()  # a terminal: one line redrawn; a log: a line every 10 s

        def show(progress: sim.Progress) -> None:
            if live:
                typer.echo(f"\r{progress.line()}\033[K", nl=False)
            else:
                typer.echo(progress.line())

        try:
            progress = simulation.run(stop, report=show, every=1.0 if live else 10.0)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    finally:
        context.db.dispose()
    if live:
        typer.echo("")
    if progress.last_error:
        typer.echo(f"最近的错误 / last error: {progress.last_error}")
    if progress.sent and not progress.accepted:
        raise _simulate_fail("没有消息被接受 / no message was accepted", 1)


# -- pujiang ingest -------------------------------------------------------------------------------

PROGRESS_SECONDS = 10.0


def ingest(
    ctx: typer.Context,
    client_id: Annotated[
        str | None,
        typer.Option(help="MQTT client id: names the persistent session (default: settings)."),
    ] = None,
    shared_group: Annotated[
        str | None,
        typer.Option(help="MQTT 5 shared-subscription group for several workers (default: none)."),
    ] = None,
    apikey: Annotated[
        list[str] | None,
        typer.Option(
            "--apikey",
            help="Consume only these service groups' devices (repeat; default: every group).",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus metrics of this worker on this port.", min=1, max=65535
        ),
    ] = None,
) -> None:
    """设备接入工作进程 / Run the MQTT ingest worker until SIGTERM or Ctrl-C."""
    import signal
    import threading

    from pujiang.cli import _context as kernel_context
    from pujiang.iot.metrics import registry_of
    from pujiang.iot.service import ingestor_of
    from pujiang.iot.worker import Worker
    from pujiang.platform.logs import configure_logging

    context = kernel_context(ctx)
    settings = context.settings
    if not settings.mqtt_url:
        context.db.dispose()
        typer.secho(
            "未设置 MQTT 代理：请设置 PUJIANG_MQTT_URL（如 mqtt://127.0.0.1:1883）/ "
            "no MQTT broker: set PUJIANG_MQTT_URL (e.g. mqtt://127.0.0.1:1883)",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    try:
        worker = Worker(
            context,
            client_id=client_id,
            shared_group=shared_group,
            apikeys=tuple(apikey or ()),
            jobs=True,
        )
    except ValueError as exc:  # a bad PUJIANG_MQTT_URL, group or API key, said in the message
        context.db.dispose()
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    # Only once the settings are known good: the worker's log goes to stderr from here on.
    configure_logging(settings.log_level, json_lines=settings.log_json)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if metrics_port is not None:
        from prometheus_client import start_http_server

        ingestor_of(context)  # its collectors join the registry before it is served
        start_http_server(metrics_port, addr=settings.host, registry=registry_of(context))
    try:
        worker.start()
        typer.echo(worker.describe())
        if metrics_port is not None:
            typer.echo(f"指标 / metrics: http://{settings.host}:{metrics_port}/metrics")
        worker.report_until(stop, typer.echo, PROGRESS_SECONDS)
    finally:
        worker.stop()
        context.db.dispose()
    typer.echo("设备接入已停止 / ingest stopped")
