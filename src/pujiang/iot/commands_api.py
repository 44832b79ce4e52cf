"""Routes of device commands: send a command, list a device's commands."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["iot"])
