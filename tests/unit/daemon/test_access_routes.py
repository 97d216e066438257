"""Every route of the daemon's app has an access level for grants (``daemon/access.py``), so a new
route cannot slip through unclassified; and the levels are the ones docs/security.md lists."""

from __future__ import annotations

import sys

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from tether.daemon import access
from tether.daemon.app import create_app
from tether.daemon.store import Store
from tether.protocol.grants import Grant


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("state"), sys.executable)
    return create_app(store, "t" * 43, {"cluster": "unit"}).app


def _routes(app) -> set[tuple[str, str]]:
    found = set()
    for route in app.routes:
        if isinstance(route, (APIRoute, Route)):
            for method in route.methods or ():
                if method != "HEAD":
                    found.add((method, route.path))
    return found


def test_every_route_is_classified(app):
    missing = sorted(_routes(app) - set(access.ROUTES))
    assert not missing, f"routes without an access level in daemon/access.py ROUTES: {missing}"


def test_no_stale_entries(app):
    assert not sorted(set(access.ROUTES) - _routes(app))


@pytest.mark.parametrize(("method", "path", "need"), [
    ("POST", "/embedder/call", "read"),
    ("GET", "/embedder", "read"),
    ("GET", "/_tether/status", "read"),
    ("GET", "/_tether/calls/abc/output", "read"),
    ("GET", "/_tether/calls/abc", "own"),
    ("POST", "/_tether/calls/abc/cancel", "own"),
    ("POST", "/_tether/deploy", "write"),
    ("DELETE", "/_tether/objects/embedder", "write"),
    ("POST", "/_tether/forget", "write"),  # /{name}/{method} matches too: the strictest wins
    ("POST", "/_tether/token", "owner"),
    ("PUT", "/_tether/registry", "owner"),
    ("GET", "/_tether/dashboard/", "owner"),
    ("GET", "/_tether/x/y/z", "owner"),  # no entry: owner
    ("PATCH", "/embedder/call", "owner"),
])
def test_levels(method, path, need):
    assert access.needed(method, path) == need


def test_allows():
    assert access.allows("read", "read") and access.allows("read", "own")
    assert not access.allows("read", "write") and access.allows("write", "write")
    assert not access.allows("write", "owner")


def test_own_calls_and_caller():
    reader = Grant(user="bob", cluster="/alice/gpu", access="read", issued=0, expires=1)
    writer = Grant(user="carol", cluster="/alice/gpu", access="write", issued=0, expires=1)
    assert access.check_own({"tether.grant": reader}, b"bob@h:1", "c1") is None
    assert "not one of user 'bob'" in access.check_own({"tether.grant": reader}, b"alice@h:1", "c1")
    assert access.check_own({"tether.grant": writer}, b"alice@h:1", "c1") is None
    assert access.check_own({}, b"alice@h:1", "c1") is None  # the owner
    headers = [(b"host", b"x"), (b"x-tether-caller", b"alice@laptop:42")]
    assert access.as_user(headers, "bob") == [(b"host", b"x"), (b"x-tether-caller", b"bob@laptop:42")]
    assert access.as_user([], "b@o:b")[-1] == (b"x-tether-caller", b"bob@?:")
