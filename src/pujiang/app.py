"""create_app(settings) -> the ASGI app. Everything is built here; nothing at import time."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from pujiang import __version__
from pujiang.cases import api as cases_api
from pujiang.cases import jobs as cases_jobs
from pujiang.cases import setup as cases_setup
from pujiang.catalog import api as catalog_api
from pujiang.city import api as city_api
from pujiang.city.registries import api as registries_api
from pujiang.context import api as context_api
from pujiang.context import jobs as context_jobs
from pujiang.context import subscriptions as context_subscriptions
from pujiang.iot import api as iot_api
from pujiang.iot import bridge as iot_bridge
from pujiang.iot import worker as iot_worker
from pujiang.platform.api import admin, audit, auth, ops
from pujiang.platform.db import Database
from pujiang.platform.deps import AppContext
from pujiang.platform.errors import install_error_handlers
from pujiang.platform.middleware import HttpMetrics, RequestContextMiddleware
from pujiang.platform.security import Passwords
from pujiang.settings import Mode, Settings

DESCRIPTION = """
浦江 Pujiang — 开放的城市运行平台：城市实时状态、预警、网格化案件、政务数据目录与开放数据。

Pujiang is an open city operating platform. Sign in at `POST /api/auth/token` (OAuth2
password or client-credentials), then send `Authorization: Bearer <token>`; service accounts
may send `X-API-Key` instead. Errors are RFC 9457 `application/problem+json`.
"""


def build_context(settings: Settings) -> AppContext:
    settings.check_startable()
    database = Database(settings.database_url)
    passwords = Passwords(cheap=settings.mode is Mode.TEST)
    return AppContext(settings=settings, db=database, passwords=passwords)


def create_app(settings: Settings, context: AppContext | None = None) -> FastAPI:
    """Build the whole application for these settings (a test passes a temporary database)."""
    context = context or build_context(settings)
    metrics = HttpMetrics()
    context.extras["metrics"] = metrics
    cases_setup(context)  # cases open from `alert.raised` on the bus
    iot_bridge.setup(context)  # writing a command attribute on an entity commands its device

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The subscription matcher and the notification worker live as long as the app,
        # and so do the periodic escalation of overdue cases and the history purge.
        with (
            context_subscriptions.delivery(context),
            cases_jobs.periodic_escalation(context),
            context_jobs.history_retention(context),
            iot_worker.running(context),
        ):
            yield
        context.db.dispose()

    app = FastAPI(
        title="Pujiang 浦江",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.pujiang = context
    install_error_handlers(app)
    routers = (
        ops.router,
        auth.router,
        admin.router,
        audit.router,
        city_api.router,
        registries_api.router,
        cases_api.router,
        catalog_api.router,
        context_api.router,
        iot_api.router,
    )
    for router in routers:
        app.include_router(router)
    app.add_middleware(
        RequestContextMiddleware,
        db=context.db,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        default_language=settings.default_language,
    )
    return app


def create_worker_app() -> FastAPI:
    """The app of one worker of `pujiang serve --workers N` (uvicorn's factory, called in each
    worker process): the parent's settings from the environment, a worker number of its own
    (`platform.workers.claim_slot`) and, with MQTT, its own client id in a shared group."""
    from pathlib import Path

    from pujiang.platform.logs import configure_logging
    from pujiang.platform.workers import CONFIG_ENV, DEFAULT_SHARED_GROUP, claim_slot
    from pujiang.settings import load_settings

    config = os.environ.get(CONFIG_ENV)
    settings = load_settings(Path(config) if config else None)
    slot = claim_slot(settings.var_dir, settings.port, settings.workers)
    settings = settings.model_copy(
        update={
            "ingest_client_id": f"{settings.ingest_client_id}-{slot}",
            "ingest_shared_group": settings.ingest_shared_group or DEFAULT_SHARED_GROUP,
        }
    )
    configure_logging(settings.log_level, json_lines=settings.log_json)
    return create_app(settings)
