"""Every registry route refuses a request without a valid token (401), found by walking the app's
routes so a route added later is covered too; /v1/health and the API docs are public."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest
from fastapi.routing import APIRoute

from tether.registry.app import create_app

PUBLIC = {"/v1/health"}


def routes(tmp_path) -> list[tuple[str, str]]:
    app = create_app(f"sqlite:///{tmp_path / 'routes.sqlite'}", tmp_path)  # only for its route table
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path not in PUBLIC:
            path = re.sub(r"\{[^}]+\}", "alice/x", route.path)
            found += [(method, path) for method in sorted(route.methods)]
    return found


@pytest.mark.parametrize("token", [None, "trt_not-a-token", "tg1.a.grant"])
def test_every_route_needs_a_token(sqlite_registry, tmp_path, token):
    checked = routes(tmp_path)
    assert len(checked) >= 12
    for method, path in checked:
        request = urllib.request.Request(f"{sqlite_registry.url}{path}", method=method, data=b"{}",
                                         headers={"Content-Type": "application/json"})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 401, (method, path)
        assert json.loads(caught.value.read())["error"] == "unauthenticated"


def test_public_routes(sqlite_registry):
    registry = sqlite_registry
    for path in ("/v1/health", "/openapi.json"):
        with urllib.request.urlopen(f"{registry.url}{path}", timeout=10) as response:
            assert response.status == 200
    with urllib.request.urlopen(f"{registry.url}/openapi.json", timeout=10) as response:
        spec = json.loads(response.read())
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert spec["paths"]["/v1/resources/{path}"]["put"]["description"]
