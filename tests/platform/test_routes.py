"""Every route declares the permission it needs, and the API documents itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from pujiang.app import create_app
from pujiang.platform.deps import PERMISSION_ATTR, AppContext
from pujiang.settings import Settings


def _declared(dependant: Dependant) -> set[str]:
    found: set[str] = set()
    for sub in dependant.dependencies:
        permission: Any = getattr(sub.call, PERMISSION_ATTR, None)
        if permission:
            found.add(permission)
        found |= _declared(sub)
    return found


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        nested = getattr(route, "original_router", None)  # routers kept as a tree
        if nested is not None:
            yield from _api_routes(nested.routes)


def test_every_route_declares_a_permission(settings: Settings, context: AppContext) -> None:
    app = create_app(settings, context)
    routes = list(_api_routes(app.routes))
    assert len(routes) > 10
    missing = [f"{sorted(r.methods)} {r.path}" for r in routes if not _declared(r.dependant)]
    assert missing == [], f"routes without require(...) or public: {missing}"


def test_openapi_and_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/auth/token" in spec["paths"]
    assert "/api/users" in spec["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
