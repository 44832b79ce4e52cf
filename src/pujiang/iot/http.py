"""Southbound HTTP adapter: `POST /iot/json?k=&i=` and the bulk endpoint `POST /iot/bulk`."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["iot"])
