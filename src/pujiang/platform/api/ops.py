"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pujiang import __version__
from pujiang.platform.db import migrations_current
from pujiang.platform.deps import Context, public
from pujiang.platform.workers import scrape_registry

router = APIRouter(tags=["运维 Operations"])


@router.get("/healthz", summary="进程存活 / Process alive")
def healthz(_: Annotated[None, Depends(public)]) -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/readyz", summary="可以服务 / Ready to serve", responses={503: {}})
def readyz(context: Context, _: Annotated[None, Depends(public)]) -> Response:
    database = context.db.ping()
    migrations = database and migrations_current(context.db)
    ready = database and migrations
    body = {
        "status": "ready" if ready else "not ready",
        "checks": {"database": database, "migrations_current": migrations},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus 指标 / Prometheus metrics")
def metrics(context: Context, _: Annotated[None, Depends(public)]) -> Response:
    registry = scrape_registry(context.extras["metrics"].registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
