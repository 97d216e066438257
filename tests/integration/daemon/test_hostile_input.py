"""Hostile or buggy input at the daemon's HTTP edge: raw sockets against a real daemon.

Each test is a finding of a security campaign that held before the HTTP edge was guarded
(``tether.daemon.http_guard``, ``daemon/requests.py``); each docstring says what happened then.
Every test ends by checking that the daemon still serves everyone else.

The daemon's memory is read from /proc: ``VmHWM`` is its peak resident size, reset before a test
by writing 5 to ``/proc/<pid>/clear_refs`` (root, as the test hosts need anyway).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import resource
import select
import socket
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager

import httpx
import pytest
import remote_code

import tether as rh
from tether import state
from tether.protocol import wire

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
MIB = 1 << 20
DEEP = b"[" * 100_000 + b"]" * 100_000  # JSON nested 100k deep


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:6]}"


# -- helpers -----------------------------------------------------------------------------------


def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} for pid {pid}")


def _reset_peak(pid: int) -> bool:
    """Reset the daemon's peak resident size (VmHWM); False where that is not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@contextmanager
def peak_growth(pid: int):
    """``with peak_growth(pid) as grown: ...; grown()``: how much the daemon's peak memory rose."""
    if not _reset_peak(pid):
        pytest.skip("cannot reset the daemon's peak memory (/proc/<pid>/clear_refs needs root)")
    before = _status_kb(pid, "VmRSS")
    yield lambda: _status_kb(pid, "VmHWM") - before


def _address(cluster) -> tuple[str, int]:
    return cluster.client.host, cluster.client.port


def _connect(cluster, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(_address(cluster), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _head(method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: tether"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _auth(cluster) -> dict[str, str]:
    return {"Authorization": f"Bearer {cluster.client.token}"}


class _NoClose(io.BufferedReader):
    """The socket's one buffered reader: http.client closes the file it reads a response from,
    which would throw away the bytes of the next (pipelined) response already buffered."""

    def close(self) -> None:
        pass


_readers: dict[int, tuple[socket.socket, io.BufferedReader]] = {}


def _read_response(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the next response on ``sock`` (a body that is not JSON: {"text"}).
    One buffered reader per socket, kept across calls: two responses may arrive in one read."""
    held = _readers.get(id(sock))
    if held is None or held[0] is not sock:
        held = _readers[id(sock)] = (sock, _NoClose(socket.SocketIO(sock, "rb")))
    reader = held[1]

    class _Source:
        def makefile(self, mode: str):
            return reader

    resp = http.client.HTTPResponse(_Source())
    resp.begin()
    body = resp.read()
    try:
        data = json.loads(body)
    except ValueError:
        data = {"text": body.decode(errors="replace")}
    return resp.status, data


def _closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the daemon sent before closing ``sock`` within ``seconds``; None if it stayed open."""
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            continue
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    return None


def assert_still_serving(cluster, fn_name: str) -> None:
    """A good call right after the bad input succeeds, and /health answers."""
    assert cluster.client.call(fn_name, "call", (20, 22)) == 42
    assert cluster.client.health()["status"] == "ok"


class Prober:
    """Other callers while a hostile client works: /health in a loop on fresh connections, the
    slowest answer kept (measured, bounded generously: no timing is asserted tightly)."""

    def __init__(self, cluster) -> None:
        self.url, self.headers = cluster.client.url, _auth(cluster)
        self.slowest, self.answers, self.failures = 0.0, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                with httpx.Client(base_url=self.url, headers=self.headers, timeout=TIMEOUT) as h:
                    assert h.get("/health").status_code == 200
                self.answers += 1
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.failures.append(repr(exc))
            self.slowest = max(self.slowest, time.monotonic() - start)
            time.sleep(0.05)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)


def _send_in_background(sock: socket.socket, data: bytes, piece: int = MIB) -> threading.Thread:
    """Send ``data`` in pieces until done or the daemon stops reading (its answer is read meanwhile)."""

    def run() -> None:
        view = memoryview(data)
        try:
            for offset in range(0, len(view), piece):
                sock.sendall(view[offset:offset + piece])
        except OSError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@contextmanager
def env(**values: str):
    """Knobs for a daemon started inside the block (the local launcher's daemon inherits them)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in values.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def add(session_cluster) -> str:
    name = unique("hostile-add")
    rh.function(remote_code.add).to(session_cluster, name=name)
    return name


@pytest.fixture(scope="module")
def tight():
    """A daemon with short timeouts and a small body limit (its own, torn down with the module);
    without shared memory, so that big arguments travel in the request body."""
    with env(TETHER_HEADER_TIMEOUT="1", TETHER_KEEP_ALIVE="1", TETHER_MAX_BODY=str(MIB), TETHER_SHM="0"):
        cluster = rh.cluster(name=unique("tight"), launcher="local").up_if_not()
    name = unique("tight-add")
    rh.function(remote_code.add).to(cluster, name=name)
    yield cluster, name
    cluster.teardown()


# -- without a token: headers ------------------------------------------------------------------


def test_a_huge_header_is_refused_at_once_while_others_are_served(session_cluster, add):
    """Before: no limit on headers, and httptools' cost grows with the square of a header's
    length: a 64 MiB header cost 3 s of the daemon's CPU, stalled other callers for 2.6 s and
    grew its memory by hundreds of MiB, then got a 401. Now: 431 once the head passes
    TETHER_MAX_HEADER_BYTES, the rest is never parsed."""
    pid = session_cluster.status()["pid"]
    with peak_growth(pid) as grown, Prober(session_cluster) as prober, _connect(session_cluster, 30) as sock:
        sender = _send_in_background(sock, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (64 * MIB))
        status, data = _read_response(sock)
        sender.join(30)
        time.sleep(0.3)  # the prober gets a few answers in after the refusal too
    assert status == 431, data
    assert data["error"] == "headers_too_large"
    assert "TETHER_MAX_HEADER_BYTES" in data["message"]
    assert grown() < 50 * MIB, f"the daemon's peak memory grew by {grown() / MIB:.0f} MiB"
    assert not prober.failures and prober.answers >= 1
    assert prober.slowest < 5.0, f"another caller waited {prober.slowest:.1f} s"
    assert_still_serving(session_cluster, add)


def test_too_many_header_fields_are_refused(session_cluster, add):
    """Before: any number of header fields was parsed (and walked by every route), then 401."""
    headers = {f"X-H{i}": "v" for i in range(2000)}
    with _connect(session_cluster) as sock:
        sock.sendall(_head("GET", "/health", headers))
        status, data = _read_response(sock)
    assert status == 431, data
    assert "TETHER_MAX_HEADERS" in data["message"]
    assert_still_serving(session_cluster, add)


def test_a_slowloris_client_is_disconnected_after_the_header_timeout(tight):
    """Before: no header timeout: a client sending one header byte at a time held its connection
    (and a file descriptor) forever. Now: 408 and closed after TETHER_HEADER_TIMEOUT (1 s here)."""
    cluster, add = tight
    with Prober(cluster) as prober, _connect(cluster) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        got, deadline = None, time.monotonic() + 10
        while got is None and time.monotonic() < deadline:
            try:
                sock.sendall(b"X")  # a header name that never ends
            except OSError:
                got = _closed_within(sock, 1) or b""
                break
            got = _closed_within(sock, 0.2)
    assert got is not None, "the daemon kept a slowloris connection open for 10 s"
    if got:  # the answer arrived before the close (it can be lost to the reset when it races)
        assert got.startswith(b"HTTP/1.1 408"), got[:200]
        assert b"TETHER_HEADER_TIMEOUT" in got
    assert not prober.failures and prober.answers >= 1
    assert_still_serving(cluster, add)


def test_a_connection_that_never_sends_a_request_is_closed(tight):
    """Before: a connection that sent nothing stayed open forever. Now: closed, without an
    answer, after TETHER_HEADER_TIMEOUT (1 s here)."""
    cluster, add = tight
    with _connect(cluster) as sock:
        assert _closed_within(sock, 10) == b""
    assert_still_serving(cluster, add)


def test_an_idle_keep_alive_connection_is_closed(tight):
    """Before: keep-alive connections were kept 3600 s. Now: TETHER_KEEP_ALIVE (1 s here)."""
    cluster, add = tight
    with _connect(cluster) as sock:
        sock.sendall(_head("GET", "/health", _auth(cluster)))
        status, _ = _read_response(sock)
        assert status == 200
        assert _closed_within(sock, 10) == b""
    assert_still_serving(cluster, add)


def test_pipelined_requests_and_stray_bytes_are_served_in_order(tight):
    """Two requests in one write get two answers; bytes after a request whose answer takes longer
    than TETHER_HEADER_TIMEOUT (a stray CRLF, as some clients send after a body) do not cut it."""
    cluster, add = tight
    sleepy = unique("tight-sleepy")
    rh.function(remote_code.sleepy).to(cluster, name=sleepy)
    body = json.dumps({"seconds": 2.5}).encode()
    with _connect(cluster, timeout=30) as sock:
        sock.sendall(_head("GET", "/health", _auth(cluster)) + _head("GET", f"/{add}/call?a=1&b=2", _auth(cluster)))
        assert _read_response(sock)[0] == 200
        assert _read_response(sock) == (200, 3)
        sock.sendall(_head("POST", f"/{sleepy}/call", {**_auth(cluster), "Content-Type": "application/json",
                                                        "Content-Length": str(len(body))}) + body)
        time.sleep(0.3)
        sock.sendall(b"\r\n")  # on its own: the daemon reads it while the call runs
        assert _read_response(sock) == (200, "slept")
    assert_still_serving(cluster, add)


@contextmanager
def open_files_soft_limit(soft: int):
    """Lower this process's open-files soft limit (a daemon started inside inherits it)."""
    old_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= soft:
        pytest.skip(f"the open-files hard limit is {hard}: the daemon cannot raise it")
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, hard))


@contextmanager
def raised_open_files(needed: int):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"this test needs {needed} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _health_on_a_new_connection(cluster) -> int:
    with _connect(cluster, timeout=10) as sock:
        sock.sendall(_head("GET", "/health", _auth(cluster)))
        return _read_response(sock)[0]


def test_idle_connections_do_not_lock_out_a_new_client(make_cluster):
    """Before: the daemon kept its open-files soft limit (commonly 1024) and every connection
    forever: 1,100 idle connections locked out every new client ("the daemon closed the
    connection"). Now: the daemon raises its soft limit to the hard one at start."""
    with open_files_soft_limit(1024):
        cluster = make_cluster()
    name = unique("idle-add")
    rh.function(remote_code.add).to(cluster, name=name)
    with raised_open_files(4096), ExitStack() as stack:
        for _ in range(1100):
            stack.enter_context(_connect(cluster))
        assert _health_on_a_new_connection(cluster) == 200
        assert cluster.client.call(name, "call", (20, 22)) == 42
    assert_still_serving(cluster, name)


def test_over_the_connection_cap_idle_connections_make_room(make_cluster):
    """Before: no cap and no eviction: idle connections piled up until the open-files limit.
    Now (TETHER_MAX_CONNECTIONS=8 here): a new connection over the cap closes the connection
    idle the longest, so 40 idle connections neither lock anyone out nor stay open."""
    with env(TETHER_MAX_CONNECTIONS="8"):
        cluster = make_cluster()
    name = unique("cap-add")
    rh.function(remote_code.add).to(cluster, name=name)
    with ExitStack() as stack:
        idle = [stack.enter_context(_connect(cluster)) for _ in range(40)]
        time.sleep(0.2)
        assert _health_on_a_new_connection(cluster) == 200
        closed = sum(_closed_within(sock, 0.05) is not None for sock in idle)
    assert closed >= 32, f"only {closed} of 40 idle connections were closed"
    assert_still_serving(cluster, name)


def test_over_the_connection_cap_with_every_connection_busy_is_503(make_cluster):
    """Before: no cap. Now: when every connection has a request in progress, a connection over
    TETHER_MAX_CONNECTIONS is answered 503 naming the knob, and served again once one ends."""
    with env(TETHER_MAX_CONNECTIONS="4"):
        cluster = make_cluster()
    name = unique("cap-add")
    rh.function(remote_code.add).to(cluster, name=name)
    sleepy = unique("cap-sleepy")
    rh.function(remote_code.sleepy).to(cluster, name=sleepy)
    call_id = uuid.uuid4().hex
    body = json.dumps({"seconds": 3}).encode()
    call = _head("POST", f"/{sleepy}/call", {**_auth(cluster), "Content-Type": "application/json",
                                             "Content-Length": str(len(body)), wire.CALL_ID_HEADER: call_id})
    wait = _head("GET", f"/_tether/calls/{call_id}?timeout=30", _auth(cluster))
    with ExitStack() as stack:  # four busy connections: the call, and three waiting for its result
        busy = [stack.enter_context(_connect(cluster, timeout=30)) for _ in range(4)]
        busy[0].sendall(call + body)
        time.sleep(0.3)
        for sock in busy[1:]:
            sock.sendall(wait)
        time.sleep(0.3)
        with _connect(cluster) as extra:
            extra.sendall(_head("GET", "/health", _auth(cluster)))
            status, data = _read_response(extra)
        assert status == 503, data
        assert data["error"] == "too_many_connections"
        assert "TETHER_MAX_CONNECTIONS" in data["message"]
        for sock in busy:  # the call ends: the waiting callers get its result
            assert _read_response(sock)[0] == 200
    assert _health_on_a_new_connection(cluster) == 200
    assert_still_serving(cluster, name)


# -- with a token: bodies ------------------------------------------------------------------------


def test_a_declared_content_length_is_not_allocated_up_front(session_cluster, add):
    """Before: the daemon allocated a body's declared Content-Length at once: three connections
    declaring 1 GiB and sending 10 bytes cost it 3 GiB. Now: memory follows the bytes that
    arrive."""
    pid = session_cluster.status()["pid"]
    head = _head("POST", f"/{add}/call", {**_auth(session_cluster), "Content-Type": wire.CONTENT_TYPE,
                                           "Content-Length": str(1 << 30)})
    with peak_growth(pid) as grown, ExitStack() as stack:
        socks = [stack.enter_context(_connect(session_cluster)) for _ in range(3)]
        for sock in socks:
            sock.sendall(head + b"0123456789")
        time.sleep(1.0)
        assert grown() < 50 * MIB, f"the daemon's peak memory grew by {grown() / MIB:.0f} MiB"
    assert_still_serving(session_cluster, add)


def test_a_content_length_above_the_limit_is_413_before_reading(session_cluster, add):
    """Before: a Content-Length of 10^13 was a 500 (MemoryError). Now: 413 naming the limit and
    its knob, before a byte of the body is read."""
    head = _head("POST", f"/{add}/call", {**_auth(session_cluster), "Content-Type": wire.CONTENT_TYPE,
                                           "Content-Length": str(10**13)})
    with _connect(session_cluster) as sock:
        sock.sendall(head + b"0123456789")
        status, data = _read_response(sock)
    assert status == 413, data
    assert data["error"] == "too_large"
    assert "TETHER_MAX_BODY" in data["message"]
    assert_still_serving(session_cluster, add)


@pytest.mark.parametrize("route", ["/{add}/call", "/_tether/deploy", "/_tether/run"])
def test_a_chunked_body_over_the_limit_is_413(tight, route):
    """A body without a Content-Length (chunked) stops at TETHER_MAX_BODY (1 MiB here) as well;
    before, the control routes read any body whole."""
    cluster, add = tight
    head = _head("POST", route.format(add=add), {**_auth(cluster), "Content-Type": wire.CONTENT_TYPE,
                                                 "Transfer-Encoding": "chunked"})
    piece = b"%x\r\n" % (256 * 1024) + b"x" * (256 * 1024) + b"\r\n"
    with _connect(cluster) as sock:
        sender = _send_in_background(sock, head + piece * 8 + b"0\r\n\r\n")
        status, data = _read_response(sock)
        sender.join(10)
    assert status == 413, data
    assert "TETHER_MAX_BODY" in data["message"]
    assert_still_serving(cluster, add)


def test_the_client_raises_a_clear_error_for_a_body_over_the_limit(tight):
    """Before: no limit (the call went through, whatever its size). Now: the Python client raises
    tether.ConfigError for the 413, naming TETHER_MAX_BODY (1 MiB here)."""
    cluster, add = tight
    with pytest.raises(rh.ConfigError, match="TETHER_MAX_BODY") as info:
        cluster.client.call(add, "call", (b"x" * (2 * MIB), b""), stream_logs=False)
    assert info.value.cluster == cluster.name
    assert_still_serving(cluster, add)


# -- with a token: what was a bare 500 is a 4xx that says what was wrong -------------------------


def _deploy_body(meta: bytes) -> bytes:
    return wire.encode_bytes(wire.CONTROL, [meta])


DEPLOY = '{{"op": "deploy", "kind": "function", "name": "x", "module": "m", "qualname": "f", "env": {env}}}'

FIVE_HUNDREDS = {
    # (verb, path, content type, body, what the message must name) - each was a bare 500
    "call-json-nested-100k-deep": ("POST", "/{add}/call", "application/json", DEEP, "nested"),
    "call-query-nested-deep": ("GET", "/{add}/call?a=" + "[" * 20_000, None, b"", "nested"),
    "run-nested-100k-deep": ("POST", "/_tether/run", "application/json", DEEP, "nested"),
    "nodes-nested-100k-deep": ("POST", "/_tether/nodes", "application/json", DEEP, "nested"),
    "deploy-meta-nested-deep": ("POST", "/_tether/deploy", wire.CONTENT_TYPE, _deploy_body(DEEP), "nested"),
    "nodes-index-not-a-number": ("POST", "/_tether/nodes", "application/json",
                                 b'{"nodes": [{"index": "zz", "host": "h", "port": 1, "token": "t"}]}', "index"),
    "nodes-port-not-a-number": ("POST", "/_tether/nodes", "application/json",
                                b'{"nodes": [{"index": 1, "host": "h", "port": "abc", "token": "t"}]}', "port"),
    "deploy-env-name-not-a-string": ("POST", "/_tether/deploy", wire.CONTENT_TYPE,
                                     _deploy_body(DEPLOY.format(env='{"name": 5}').encode()), "name"),
}


@pytest.mark.parametrize("case", list(FIVE_HUNDREDS), ids=list(FIVE_HUNDREDS))
def test_what_was_a_bare_500_is_a_4xx_saying_what_was_wrong(session_cluster, add, case):
    """Before: each of these was a plain 'Internal Server Error' (RecursionError, ValueError,
    TypeError in the daemon). Now: 400 with a message naming what was wrong."""
    verb, path, ctype, body, names = FIVE_HUNDREDS[case]
    headers = {"Content-Type": ctype} if ctype else {}
    with httpx.Client(base_url=session_cluster.client.url, timeout=TIMEOUT, headers=_auth(session_cluster)) as h:
        resp = h.request(verb, path.format(add=add), content=body or None, headers=headers)
    assert resp.status_code == 400, resp.text[:300]
    data = resp.json()
    assert data["error"] == "bad_request"
    assert names in data["message"]
    assert http_nodes(session_cluster) == []  # nothing half-applied
    assert_still_serving(session_cluster, add)


def http_nodes(cluster) -> list:
    return cluster.client.request_json("GET", "/_tether/nodes")["nodes"]


@pytest.fixture
def running_call(session_cluster):
    """A call that runs for a few seconds, for fetching its result by id with a timeout."""
    sleepy = rh.function(remote_code.sleepy).to(session_cluster, name=unique("hostile-sleepy"))
    handle = sleepy.submit(3)
    with httpx.Client(base_url=session_cluster.client.url, timeout=TIMEOUT, headers=_auth(session_cluster)) as h:
        deadline = time.monotonic() + 30  # submit() sends the call from a thread: wait until it runs
        while h.get(f"/_tether/calls/{handle.call_id}?timeout=0").status_code == 404:
            assert time.monotonic() < deadline, "the submitted call never started"
            time.sleep(0.02)
    yield handle
    handle.result(60)


@pytest.mark.parametrize(("timeout", "names"), [("nan", "timeout"), ("-1", "timeout"), ("abc", "timeout")])
def test_a_bad_result_timeout_is_400(session_cluster, add, running_call, timeout, names):
    """Before: ``timeout=nan`` on a running call was a 500 (ValueError in asyncio), ``-1`` a 408
    and ``abc`` FastAPI's 422 in another shape. Now: 400 saying what a timeout is."""
    with httpx.Client(base_url=session_cluster.client.url, timeout=TIMEOUT, headers=_auth(session_cluster)) as h:
        resp = h.get(f"/_tether/calls/{running_call.call_id}", params={"timeout": timeout})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "bad_request"
    assert names in resp.json()["message"]
    assert_still_serving(session_cluster, add)


def test_a_result_timeout_raises_call_timeout_error(session_cluster, add, running_call):
    """Before: ``cluster.result(id, timeout=0)`` on a running call raised a bare TetherError
    ("HTTP 408 ..."). Now: tether.CallTimeoutError, and the call runs on."""
    with pytest.raises(rh.CallTimeoutError, match="still running") as info:
        session_cluster.result(running_call.call_id, timeout=0)
    assert isinstance(info.value, TimeoutError)
    assert info.value.call_id == running_call.call_id
    assert session_cluster.result(running_call.call_id, timeout=30) == "slept"
    assert_still_serving(session_cluster, add)


# -- an unexpected error: 500 with an error id that the daemon's log shows -------------------------


@contextmanager
def address_space_limit(pid: int, headroom: int):
    """Cap the daemon's address space at its current size + ``headroom`` (root), so that a big
    allocation fails with a genuine MemoryError."""
    soft, hard = resource.prlimit(pid, resource.RLIMIT_AS)
    resource.prlimit(pid, resource.RLIMIT_AS, (_status_kb(pid, "VmSize") + headroom, hard))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize("route", ["/{add}/call", "/_tether/run"], ids=["raw-call-route", "fastapi-route"])
def test_an_unexpected_error_is_500_with_an_error_id_in_the_log(make_cluster, route):
    """Before: a plain-text 'Internal Server Error' and the traceback only in uvicorn's log line,
    nothing linking the two (and the keep-alive connection was cut after it). Now: JSON with an
    error id, and the daemon's log shows the id with the traceback.

    The error is a genuine MemoryError: the daemon's address space is capped (prlimit) just above
    its size, then sent JSON that decodes to ~500 MB of lists."""
    if os.geteuid() != 0:
        pytest.skip("capping another process's address space needs root")
    cluster = make_cluster()
    add = unique("oom-add")
    rh.function(remote_code.add).to(cluster, name=add)
    pid = cluster.status()["pid"]
    body = b"[" + b",".join([b"[]"] * (6 * MIB)) + b"]"  # 18 MB of JSON, ~500 MB once decoded
    with address_space_limit(pid, 256 * MIB), httpx.Client(
            base_url=cluster.client.url, timeout=TIMEOUT, headers=_auth(cluster)) as h:
        resp = h.post(route.format(add=add), content=body, headers={"Content-Type": "application/json"})
        assert resp.status_code == 500, resp.text[:300]
        data = resp.json()
        assert h.get("/health").status_code == 200  # the same keep-alive connection serves on
    assert data["error"] == "internal"
    error_id = data["error_id"]
    assert error_id in data["message"] and "MemoryError" in data["message"]
    log = (state.cluster_dir(cluster.name) / "daemon.log").read_text()
    at = log.index(f"error id {error_id}")
    assert "Traceback" in log[at:] and "MemoryError" in log[at:]
    with pytest.raises(rh.TetherError, match=error_id):  # what the Python client raises for it
        _raise_for(cluster, resp)
    assert_still_serving(cluster, add)


def _raise_for(cluster, resp: httpx.Response) -> None:
    """What the Python client raises for that answer."""
    from tether.client.replies import http_error

    raise http_error(cluster.name, resp.status_code, resp.content)


# -- env specs -------------------------------------------------------------------------------------


ENV_SPECS = {
    "reqs-a-string": ('{"name": "e1", "reqs": "abc"}', "reqs"),
    "reqs-not-strings": ('{"name": "e1", "reqs": ["numpy", 3]}', "reqs"),
    "env-vars-a-list": ('{"name": "e1", "env_vars": ["A=1"]}', "env_vars"),
    "env-vars-not-strings": ('{"name": "e1", "env_vars": {"A": 1}}', "env_vars"),
    "working-dir-not-a-string": ('{"name": "e1", "working_dir": 5}', "working_dir"),
    "python-not-a-string": ('{"name": "e1", "python": ["python3"]}', "python"),
    "node-idx-not-an-index": ('{"name": "e1", "node_idx": "one"}', "node_idx"),
}


@pytest.mark.parametrize("case", list(ENV_SPECS), ids=list(ENV_SPECS))
def test_a_malformed_env_spec_is_400_naming_the_field(session_cluster, add, case):
    """Before: ``reqs: "abc"`` installed the packages a, b and c (and other wrong types failed
    later, deep in the env's build). Now: 400 naming the field, and nothing is deployed."""
    spec, field = ENV_SPECS[case]
    with httpx.Client(base_url=session_cluster.client.url, timeout=TIMEOUT, headers=_auth(session_cluster)) as h:
        resp = h.post("/_tether/deploy", content=_deploy_body(DEPLOY.format(env=spec).encode()),
                      headers={"Content-Type": wire.CONTENT_TYPE})
    assert resp.status_code == 400, resp.text[:300]
    assert field in resp.json()["message"]
    assert "x" not in session_cluster.keys()
    assert_still_serving(session_cluster, add)
