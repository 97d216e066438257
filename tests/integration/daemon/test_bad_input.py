"""Bad input, at the HTTP level and through the Python client: each is a clear error, never a hang,
and the daemon keeps serving after it.

Raw requests go to the daemon of ``session_cluster`` with httpx, the way curl or another language
would talk to it.
"""

from __future__ import annotations

import socket
import struct
import threading
import uuid

import httpx
import pytest
import remote_code

import tether as rh
from tether._version import __version__
from tether.client.daemon_client import DaemonClient
from tether.protocol import wire

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
LOCK_TYPE = "_thread.lock"


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def names(session_cluster):
    """Services this module calls: a function, an instance, and a function with a bad result."""
    add = unique("bad-add")
    counter = unique("bad-counter")
    lock = unique("bad-lock")
    rh.function(remote_code.add).to(session_cluster, name=add)
    rh.module(remote_code.Counter).to(session_cluster)(start=5, name=counter)
    rh.function(remote_code.return_lock).to(session_cluster, name=lock)
    return {"add": add, "counter": counter, "lock": lock}


@pytest.fixture(scope="module")
def http(session_cluster):
    client = session_cluster.client
    with httpx.Client(base_url=client.url, timeout=TIMEOUT,
                      headers={"Authorization": f"Bearer {client.token}"}) as h:
        yield h


def assert_still_serving(cluster, names) -> None:
    """A good call right after the bad one succeeds, and /health answers."""
    assert cluster.client.call(names["add"], "call", (20, 22)) == 42
    assert cluster.client.health()["status"] == "ok"


def tether_post(http, path: str, body: bytes, **headers) -> httpx.Response:
    return http.post(path, content=body, headers={"Content-Type": wire.CONTENT_TYPE, **headers})


# -- unknown objects and methods: 404 naming what exists ----------------------------------------


def test_unknown_object_is_404_naming_the_objects_that_exist(http, names):
    resp = http.get("/no-such-object/call")
    assert resp.status_code == 404
    body = resp.json()
    assert body["error"] == "not_found"
    assert "no-such-object" in body["message"]
    for name in names.values():
        assert name in body["message"]


@pytest.mark.parametrize(
    ("service", "expected"),
    [("add", ["call"]), ("counter", ["increment", "count", "doubled"])],
    ids=["function", "instance"],
)
def test_unknown_method_is_404_naming_the_methods_that_exist(http, names, service, expected):
    resp = http.get(f"/{names[service]}/no_such_method")
    assert resp.status_code == 404
    body = resp.json()
    assert body["error"] == "not_found"
    assert "no_such_method" in body["message"]
    for method in expected:
        assert method in body["message"]


def test_client_maps_unknown_object_to_not_found(session_cluster, names):
    with pytest.raises(rh.NotFoundError) as info:
        session_cluster.client.call("no-such-object", "call", (1,))
    assert names["add"] in str(info.value)
    assert_still_serving(session_cluster, names)


def test_client_maps_unknown_method_to_not_found(session_cluster, names):
    with pytest.raises(rh.NotFoundError) as info:
        session_cluster.client.call(names["counter"], "no_such_method")
    assert "increment" in str(info.value)
    assert_still_serving(session_cluster, names)


# -- the bearer token: 401 on every route ----------------------------------------------------

ROUTES = [
    ("GET", "/health"),
    ("GET", "/_tether/status"),
    ("GET", "/_tether/keys"),
    ("GET", "/_tether/objects/{add}"),
    ("DELETE", "/_tether/objects/{add}"),
    ("POST", "/_tether/deploy"),
    ("POST", "/_tether/run"),
    ("GET", "/_tether/calls/{add}"),
    ("POST", "/_tether/calls/{add}/cancel"),
    ("GET", "/_tether/calls"),
    ("GET", "/_tether/calls/{add}/record"),
    ("GET", "/_tether/calls/{add}/output"),
    ("GET", "/_tether/metrics"),
    ("GET", "/_tether/nodes"),
    ("POST", "/_tether/nodes"),
    ("POST", "/_tether/token"),
    ("POST", "/_tether/forget"),
    ("POST", "/_tether/envs/{add}/limits"),
    ("GET", "/_tether/image"),
    ("POST", "/_tether/image"),
    ("GET", "/_tether/usage"),
    ("GET", "/_tether/events"),
    ("POST", "/_tether/events"),
    ("GET", "/_tether/registry"),
    ("PUT", "/_tether/registry"),
    ("PUT", "/_tether/records"),
    ("PUT", "/_tether/secrets/{add}"),
    ("PUT", "/_tether/aliases/{add}"),
    ("GET", "/{add}"),
    ("POST", "/{add}"),
    ("GET", "/{add}/call"),
    ("POST", "/{add}/call"),
    ("GET", "/_tether/openapi.json"),
    ("GET", "/_tether/docs"),
    ("GET", "/no/such/route"),
]

# Open without the token on purpose: the dashboard's login (it checks the token itself) and logout
# (forgetting a session harms nobody); they answer no data (test_dashboard_page.py).
OPEN_ROUTES = [("POST", "/_tether/dashboard/login"), ("POST", "/_tether/dashboard/logout")]

BAD_AUTH = {
    "missing": {},
    "wrong-token": {"Authorization": "Bearer not-the-token"},
    "bare-scheme": {"Authorization": "Bearer"},
}


@pytest.mark.parametrize("auth", list(BAD_AUTH), ids=list(BAD_AUTH))
@pytest.mark.parametrize(("verb", "route"), ROUTES, ids=[f"{v} {r}" for v, r in ROUTES])
def test_every_route_refuses_a_missing_or_wrong_token(session_cluster, names, verb, route, auth):
    client = session_cluster.client
    path = route.format(**names)
    body = wire.encode_bytes(wire.CALL, wire.dumps(((1, 2), {})))
    with httpx.Client(base_url=client.url, timeout=TIMEOUT) as h:
        resp = h.request(verb, path, headers={"Content-Type": wire.CONTENT_TYPE, **BAD_AUTH[auth]},
                         content=body if verb == "POST" else None)
    assert resp.status_code == 401
    assert resp.json()["error"] == "unauthorized"
    assert client.token not in resp.text
    # the refused DELETE deleted nothing
    keys = session_cluster.keys()
    assert names["add"] in keys


def test_the_token_covers_every_route_the_daemon_has(http):
    """Every route of the daemon's OpenAPI schema is in ROUTES above (new routes get checked too)."""
    paths = set(http.get("/_tether/openapi.json").json()["paths"])
    covered = {r.replace("/_tether/calls/{add}", "/_tether/calls/{call_id}")
               .replace("/_tether/envs/{add}", "/_tether/envs/{env}")
               .replace("/_tether/secrets/{add}", "/_tether/secrets/{env}")
               .replace("/_tether/aliases/{add}", "/_tether/aliases/{alias}").replace("{add}", "{name}")
               .replace("/{name}/call", "/{name}/{method}") for _, r in ROUTES + OPEN_ROUTES}
    assert paths <= covered, f"routes without a 401 test: {sorted(paths - covered)}"


def test_token_with_another_scheme_is_refused(session_cluster):
    client = session_cluster.client
    with httpx.Client(base_url=client.url, timeout=TIMEOUT) as h:
        resp = h.get("/health", headers={"Authorization": f"Token {client.token}"})
    assert resp.status_code == 401


@pytest.mark.parametrize(
    "call",
    [
        lambda c, n: c.call(n["add"], "call", (1, 2)),
        lambda c, n: c.health(),
        lambda c, n: c.check_version(),
        lambda c, n: c.request_json("GET", "/_tether/keys"),
        lambda c, n: c.run(["true"]),
    ],
    ids=["call", "health", "check_version", "keys", "run"],
)
def test_client_with_a_wrong_token_raises_authentication_error(session_cluster, names, call):
    good = session_cluster.client
    bad = DaemonClient(good.host, good.port, "not-the-token", cluster=session_cluster.name)
    try:
        with pytest.raises(rh.AuthenticationError) as info:
            call(bad, names)
    finally:
        bad.close()
    assert "token" in str(info.value)
    assert info.value.cluster == session_cluster.name
    assert_still_serving(session_cluster, names)


# -- malformed bodies: 400 -------------------------------------------------------------------

_GOOD_CALL = wire.encode_bytes(wire.CALL, wire.dumps(((1, 2), {})))

MALFORMED = {
    "garbage-bytes": ("/{add}/call", wire.CONTENT_TYPE, b"this is not a tether message at all"),
    "empty-body": ("/{add}/call", wire.CONTENT_TYPE, b""),
    "half-a-header": ("/{add}/call", wire.CONTENT_TYPE, _GOOD_CALL[:7]),
    "frame-table-cut": ("/{add}/call", wire.CONTENT_TYPE, _GOOD_CALL[: wire.HEADER_SIZE + 4]),
    "frames-cut": ("/{add}/call", wire.CONTENT_TYPE, _GOOD_CALL[:-5]),
    "trailing-bytes": ("/{add}/call", wire.CONTENT_TYPE, _GOOD_CALL + b"extra"),
    "huge-frame-count": ("/{add}/call", wire.CONTENT_TYPE, struct.pack("<B3xIQ", wire.CALL, 1 << 30, 0)),
    "huge-frame-length": ("/{add}/call", wire.CONTENT_TYPE,
                          struct.pack("<B3xIQQ", wire.CALL, 1, 0, 1 << 62) + b"x"),
    "wrong-kind-result": ("/{add}/call", wire.CONTENT_TYPE, wire.encode_bytes(wire.RESULT, [b"x"])),
    "wrong-kind-unknown": ("/{add}/call", wire.CONTENT_TYPE, wire.encode_bytes(200, [b"x"])),
    "no-frames": ("/{add}/call", wire.CONTENT_TYPE, wire.encode_bytes(wire.CALL, [])),
    "malformed-json": ("/{add}/call", "application/json", b'{"a": 1,'),
    "json-args-not-a-list": ("/{add}/call", "application/json", b'{"args": 5}'),
    "json-kwargs-not-an-object": ("/{add}/call", "application/json", b'{"kwargs": [1]}'),
    "deploy-garbage": ("/_tether/deploy", wire.CONTENT_TYPE, b"\x00" * 40),
    "deploy-wrong-kind": ("/_tether/deploy", wire.CONTENT_TYPE, _GOOD_CALL),
    "deploy-meta-not-json": ("/_tether/deploy", wire.CONTENT_TYPE, wire.encode_bytes(wire.CONTROL, [b"{nope"])),
    "deploy-meta-not-an-object": ("/_tether/deploy", wire.CONTENT_TYPE, wire.encode_bytes(wire.CONTROL, [b"[1, 2]"])),
    "deploy-env-not-an-object": ("/_tether/deploy", wire.CONTENT_TYPE, wire.encode_bytes(
        wire.CONTROL, [b'{"op": "deploy", "kind": "function", "name": "x", "env": "nope"}'])),
    "deploy-unknown-op": ("/_tether/deploy", wire.CONTENT_TYPE, wire.encode_bytes(
        wire.CONTROL, [b'{"op": "explode", "kind": "function", "name": "x"}'])),
    "deploy-bad-name": ("/_tether/deploy", wire.CONTENT_TYPE, wire.encode_bytes(
        wire.CONTROL, [b'{"op": "deploy", "kind": "function", "name": "../etc"}'])),
    "run-malformed-json": ("/_tether/run", "application/json", b"{nope"),
    "run-body-not-an-object": ("/_tether/run", "application/json", b"[1, 2]"),
    "run-commands-not-strings": ("/_tether/run", "application/json", b'{"commands": [1]}'),
    "run-unknown-kind": ("/_tether/run", "application/json", b'{"commands": ["true"], "kind": "perl"}'),
    "env-limits-malformed-json": ("/_tether/envs/untouched/limits", "application/json", b"{nope"),
    "env-limits-not-an-object": ("/_tether/envs/untouched/limits", "application/json", b"[1]"),
    "env-limits-unknown-key": ("/_tether/envs/untouched/limits", "application/json", b'{"gpus": 1}'),
    "env-limits-bad-memory": ("/_tether/envs/untouched/limits", "application/json", b'{"memory": "lots"}'),
    "env-limits-bad-cpus": ("/_tether/envs/untouched/limits", "application/json", b'{"cpus": -2}'),
    "env-limits-bad-env-name": ("/_tether/envs/bad%20name!/limits", "application/json", b'{"memory": "1Gi"}'),
    "image-malformed-json": ("/_tether/image", "application/json", b"{nope"),
    "image-no-action": ("/_tether/image", "application/json", b'{"other": 1}'),
    "image-two-actions": ("/_tether/image", "application/json", b'{"forget": true, "env_vars": {}}'),
    "image-record-bad-key": ("/_tether/image", "application/json", b'{"record": {"key": "../../token"}}'),
    "image-record-not-an-object": ("/_tether/image", "application/json", b'{"record": "abc"}'),
    "image-env-vars-not-strings": ("/_tether/image", "application/json", b'{"env_vars": {"A": [1]}}'),
    "image-forget-not-true": ("/_tether/image", "application/json", b'{"forget": "yes"}'),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_body_is_400_and_the_daemon_keeps_serving(http, session_cluster, names, case):
    route, ctype, body = MALFORMED[case]
    resp = http.post(route.format(**names), content=body, headers={"Content-Type": ctype})
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    data = resp.json()
    assert data["error"] == "bad_request"
    assert data["message"]
    assert_still_serving(session_cluster, names)


def test_client_maps_a_malformed_body_to_config_error(session_cluster, names):
    with pytest.raises(rh.ConfigError) as info:
        session_cluster.client.stream("POST", f"/{names['add']}/call", [b"garbage, not a message"])
    assert "malformed" in str(info.value)
    assert_still_serving(session_cluster, names)


def test_arguments_that_are_not_a_pickle_are_a_serialization_error(session_cluster, names):
    """Well-framed, but the argument frame is not a pickle: the worker says so, and keeps serving."""
    parts = wire.encode(wire.CALL, [b"definitely not a pickle"])
    with pytest.raises(rh.SerializationError, match="cannot unpickle the arguments"):
        session_cluster.client.stream("POST", f"/{names['add']}/call", parts)
    assert_still_serving(session_cluster, names)


# -- curl-style callers: query parameters and JSON bodies, JSON back -------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/{add}/call?a=1&b=2", 3),
        ("/{add}?a=1&b=2", 3),
        ("/{add}/call?a=40", 41),
        ("/{add}/call?a=ab&b=cd", "abcd"),
        ('/{add}/call?a=[1]&b=[2, 3]', [1, 2, 3]),
    ],
    ids=["method", "function-shortcut", "default-argument", "plain-strings", "json-values"],
)
def test_get_with_query_parameters_returns_json(http, names, path, expected):
    resp = http.get(path.format(**names))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"a": 1, "b": 2}, 3),
        ({"args": [1, 2]}, 3),
        ({"args": [1], "kwargs": {"b": 41}}, 42),
        ([5, 6], 11),
        (7, 8),
    ],
    ids=["kwargs-object", "args", "args-and-kwargs", "list-of-args", "single-value"],
)
def test_post_with_a_json_body_returns_json(http, names, body, expected):
    resp = http.post(f"/{names['add']}/call", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == expected


def test_json_callers_reach_methods_and_attributes_of_instances(http, names):
    before = http.get(f"/{names['counter']}/count").json()
    assert http.post(f"/{names['counter']}/increment", json={"by": 3}).json() == before + 3
    assert http.get(f"/{names['counter']}/doubled").json() == 2 * (before + 3)


def test_result_that_is_not_json_is_a_clear_error(http, session_cluster, names):
    resp = http.get(f"/{names['lock']}/call")
    assert resp.status_code == 400
    data = resp.json()
    assert data["error"] == "serialization"
    assert "not JSON serializable" in data["message"]
    assert "lock" in data["message"]
    assert_still_serving(session_cluster, names)


def test_remote_exception_in_json_mode_names_its_type(http, session_cluster, names):
    resp = http.get(f"/{names['add']}/call?b=2")  # 'a' is missing
    assert resp.status_code == 500
    data = resp.json()
    assert data["type"] == "builtins.TypeError"
    assert "missing 1 required positional argument" in data["message"]
    assert "Traceback" in data["traceback"]
    assert_still_serving(session_cluster, names)


def test_protocol_version_header_mismatch_is_409_naming_both_versions(http, session_cluster, names):
    resp = http.get(f"/{names['add']}/call?a=1", headers={wire.VERSION_HEADER: "999"})
    assert resp.status_code == 409
    data = resp.json()
    assert data["error"] == "version_mismatch"
    assert f"protocol {wire.PROTOCOL_VERSION}" in data["message"]
    assert "protocol 999" in data["message"]
    assert __version__ in data["message"]
    assert "restart" in data["message"]
    assert data["daemon_protocol"] == wire.PROTOCOL_VERSION
    assert_still_serving(session_cluster, names)


# -- wrong arguments: the remote TypeError ---------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((), {}, "missing 1 required positional argument: 'a'"),
        ((1, 2, 3), {}, "takes from 1 to 2 positional arguments but 3 were given"),
        ((1,), {"c": 3}, "unexpected keyword argument 'c'"),
        ((1,), {"a": 2}, "multiple values for argument 'a'"),
    ],
    ids=["missing", "too-many", "unexpected-keyword", "twice"],
)
def test_wrong_arguments_raise_the_remote_type_error(session_cluster, names, args, kwargs, match):
    fn = session_cluster.get(names["add"])
    with pytest.raises(TypeError, match=match) as info:
        fn(*args, **kwargs)
    assert not isinstance(info.value, rh.TetherError)  # the user's own TypeError, not ours
    assert "Remote traceback" in "".join(getattr(info.value, "__notes__", []))
    assert_still_serving(session_cluster, names)


def test_wrong_arguments_to_a_method_raise_type_error(session_cluster, names):
    counter = session_cluster.get(names["counter"])
    with pytest.raises(TypeError, match="unexpected keyword argument 'step'"):
        counter.increment(step=2)
    assert isinstance(counter.increment(), int)


def test_wrong_constructor_arguments_raise_type_error_and_register_nothing(session_cluster, names):
    name = unique("bad-ctor")
    Counter = rh.module(remote_code.Counter).to(session_cluster)
    with pytest.raises(TypeError, match="unexpected keyword argument 'begin'"):
        Counter(begin=3, name=name)
    keys = session_cluster.keys()
    assert name not in keys
    assert_still_serving(session_cluster, names)


# -- unpicklable arguments and results: an error naming the type ------------------------------


@pytest.mark.parametrize(
    ("send", "where"),
    [
        (lambda c, n: c.get(n["add"])(threading.Lock()), "argument 0"),
        (lambda c, n: c.get(n["add"])(1, b=threading.Lock()), "keyword argument 'b'"),
        (lambda c, n: c.get(n["counter"]).increment(threading.Lock()), "argument 0"),
        (lambda c, n: rh.module(remote_code.Counter).to(c)(threading.Lock(), name=unique("bad-arg")),
         "argument 0"),
        (lambda c, n: c.put(unique("bad-value"), {"lock": threading.Lock()}), "dict"),
    ],
    ids=["positional", "keyword", "method", "constructor", "put"],
)
def test_unpicklable_argument_is_a_serialization_error_naming_type_and_argument(
        session_cluster, names, send, where):
    keys_before = set(session_cluster.keys())
    with pytest.raises(rh.SerializationError) as info:
        send(session_cluster, names)
    message = str(info.value)
    assert LOCK_TYPE in message or "lock" in message
    assert where in message
    assert set(session_cluster.keys()) == keys_before  # nothing was created
    assert_still_serving(session_cluster, names)


def test_unpicklable_argument_fails_before_anything_is_sent():
    """Against a port where nothing listens: the argument is refused before any connection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: a connection would be refused
        client = DaemonClient("127.0.0.1", port, "token", cluster="nowhere")
        with pytest.raises(rh.SerializationError, match="argument 1 of type _thread.lock"):
            client.call("add", "call", (1, threading.Lock()))
        with pytest.raises(rh.ConnectionError):  # while a picklable call does try to connect
            client.call("add", "call", (1, 2))


def test_unpicklable_result_is_a_serialization_error_naming_the_type(session_cluster, names):
    with pytest.raises(rh.SerializationError) as info:
        session_cluster.get(names["lock"])()
    assert LOCK_TYPE in str(info.value)
    assert "result" in str(info.value)
    assert_still_serving(session_cluster, names)


def test_result_that_cannot_be_unpickled_here_names_what_is_missing(session_cluster, names, tmp_path):
    folder = tmp_path / "worker_only"
    folder.mkdir()
    module = f"worker_only_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text("class Thing:\n    pass\n")
    fn = rh.function(remote_code.make_from_module).to(session_cluster, name=unique("bad-make"))
    with pytest.raises(rh.SerializationError) as info:
        fn(str(folder), module)
    assert "cannot unpickle the result" in str(info.value)
    assert module in str(info.value)
    assert_still_serving(session_cluster, names)


def test_exception_that_cannot_be_pickled_is_a_remote_error(session_cluster, names):
    fn = rh.function(remote_code.raise_unpicklable_exception).to(session_cluster, name=unique("bad-exc"))
    with pytest.raises(rh.RemoteError) as info:
        fn()
    assert info.value.remote_type == "builtins.ValueError"
    assert "an exception holding a lock" in str(info.value)
    assert "raise_unpicklable_exception" in info.value.remote_traceback
    assert_still_serving(session_cluster, names)


def test_exception_that_cannot_be_rebuilt_here_is_a_remote_error(session_cluster, names):
    fn = rh.function(remote_code.raise_needs_two_args).to(session_cluster, name=unique("bad-exc2"))
    with pytest.raises(rh.RemoteError) as info:
        fn()
    assert info.value.remote_type == "remote_code.NeedsTwoArgs"
    assert "first and second" in str(info.value)
    assert_still_serving(session_cluster, names)


@pytest.mark.parametrize(
    ("path", "exc_type"),
    [("/no/such/file", FileNotFoundError), ("/", IsADirectoryError)],
    ids=["file-not-found", "is-a-directory"],
)
def test_remote_os_error_is_its_own_type_not_a_lost_connection(session_cluster, names, path, exc_type):
    fn = rh.function(remote_code.read_file).to(session_cluster, name=unique("bad-read"))
    with pytest.raises(exc_type) as info:
        fn(path)
    assert not isinstance(info.value, rh.ConnectionError)
    assert_still_serving(session_cluster, names)


# -- nodes of a multi-node cluster ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"nodes": 3}', b'{"nodes": [{"index": 1, "host": "10.0.0.9"}]}'],
    ids=["not-json", "not-a-list", "missing-port-and-token"],
)
def test_a_malformed_node_table_is_400_and_the_daemon_serves_on(session_cluster, names, http, body):
    resp = http.post("/_tether/nodes", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"] == "bad_request"
    assert http.get("/_tether/nodes").json() == {"nodes": []}
    assert_still_serving(session_cluster, names)


def test_an_object_on_an_unknown_node_is_a_connection_error_naming_it(session_cluster, names):
    """The head was never told about node 1 (a deploy asked for it without the launcher's table)."""
    meta = {"op": "deploy", "kind": "function", "name": unique("far"), "module": "remote_code",
            "qualname": "add", "env": {"name": "far", "node_idx": 1}}
    with pytest.raises(rh.ConnectionError, match="knows no node 1"):
        session_cluster.client.deploy(meta)
    assert_still_serving(session_cluster, names)


def test_a_local_cluster_has_one_node(session_cluster, names):
    with pytest.raises(rh.ConfigError, match="has 1 node"):
        rh.function(remote_code.add).to(session_cluster, env=rh.env(name="far", compute={"node_idx": 1}))
    with pytest.raises(rh.ConfigError, match="cannot install_local_packages"):
        session_cluster.install_packages(["six"], from_local=True)
    assert_still_serving(session_cluster, names)
