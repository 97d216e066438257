"""The direct-call router's decisions (``tether/client/routes.py``): what it learns from a head's
``x-tether-route``, and which failures of a direct call send it to the head (nothing ran) and
which are the call's outcome. The calls themselves: tests/integration/launchers/test_multinode.py."""

from __future__ import annotations

import pytest

from tether import errors
from tether.client import routes
from tether.client.daemon_client import DaemonClient


def _router(connect=None) -> routes.Router:
    return routes.Router(connect or (lambda index: DaemonClient("127.0.0.1", 9, "t")), lambda: None)


def test_a_route_names_a_node_other_than_the_head_and_the_objects_name_there():
    router = _router()
    router.learn("alias", "2 embed")
    assert router.routes == {"alias": (2, "embed")}
    for bad in ("0 embed", "x embed", "2", "", "-1 embed"):
        router.learn("other", bad)
    router.learn(None, "1 embed")
    assert router.routes == {"alias": (2, "embed")}
    router.forget("alias")
    assert router.routes == {}


def test_only_failures_before_anything_ran_go_to_the_head():
    router = _router()
    router.learn("f", "1 f")
    assert router.target("f")[0] == 1
    not_there = errors.NotFoundError("no object f")
    not_there.http_status = 404
    assert router.fallback("f", 1, not_there) is True and "f" not in router.routes  # moved: ask the head
    assert router.fallback("f", 1, errors.NotFoundError("raised by the function")) is False
    assert router.fallback("f", 1, errors.AuthenticationError("token rotated")) is True
    assert router.fallback("f", 1, errors.CallTimeoutError("late")) is False
    unsent = errors.ConnectionError("refused")
    unsent.unsent = True
    assert router.fallback("f", 1, unsent) is True
    assert router.fallback("f", 1, errors.ConnectionError("lost after sending")) is False  # may have run


def test_a_node_that_fails_is_left_alone_longer_each_time(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(routes, "_clock", lambda: now[0])
    tries = []

    def connect(index: int) -> DaemonClient:
        tries.append(index)
        raise errors.ConnectionError("no tunnel")

    router = _router(connect)
    router.learn("f", "1 f")
    assert router.target("f") is None and tries == [1]
    now[0] += routes.DOWN_FOR - 1
    assert router.target("f") is None and tries == [1]  # through the head meanwhile
    now[0] += 2
    assert router.target("f") is None and tries == [1, 1]
    now[0] += routes.DOWN_FOR + 1
    assert router.target("f") is None and tries == [1, 1]  # twice as long after a second failure
    now[0] += routes.DOWN_FOR
    assert router.target("f") is None and tries == [1, 1, 1]


def test_a_launcher_without_node_endpoints_is_never_asked_again():
    tries = []

    def connect(index: int) -> DaemonClient:
        tries.append(index)
        raise errors.ConfigError("the 'local' launcher has one node")

    router = _router(connect)
    router.learn("f", "1 f")
    assert router.target("f") is None and router.target("f") is None
    assert tries == [1]


@pytest.mark.parametrize("value", ["0", "off", "false", "no", " OFF "])
def test_direct_calls_can_be_turned_off(monkeypatch, value):
    monkeypatch.setenv("TETHER_DIRECT_CALLS", value)
    assert routes.enabled() is False
    monkeypatch.setenv("TETHER_DIRECT_CALLS", "1")
    assert routes.enabled() is True
