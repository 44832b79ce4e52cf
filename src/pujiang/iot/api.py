"""Routes of device ingest: provisioning (`/iot/services`, `/iot/devices`), device status and
counters; the southbound HTTP adapter (`http.py`) and the command routes are mounted here."""

from __future__ import annotations

from fastapi import APIRouter

from pujiang.iot import commands_api
from pujiang.iot import http as southbound

router = APIRouter()
router.include_router(southbound.router)
router.include_router(commands_api.router)
