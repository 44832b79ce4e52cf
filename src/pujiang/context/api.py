"""Routes of the context module: the NGSI-LD API under /ngsi-ld/v1 (see ngsild.py)."""

from __future__ import annotations

from fastapi import APIRouter

from pujiang.context import ngsild, ngsild_subscriptions, ngsild_temporal

router = APIRouter()
router.include_router(ngsild.router)
router.include_router(ngsild_temporal.router)
router.include_router(ngsild_subscriptions.router)
