"""Routes of this module (filled in by the module's work)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
