"""A bare FastAPI + uvicorn endpoint (``bench/bare_server.py``) in a subprocess: the HTTP floor.

The Python client is one keep-alive ``http.client`` connection per thread (TCP_NODELAY, like
tether's own client); 64 in flight is aiohttp with 64 tasks on one event loop.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench import measure, processes
from bench.peers import Measured, Peer, WrkTarget

SERVER = Path(__file__).resolve().parents[1] / "bare_server.py"
START_TIMEOUT = 30.0


class BareClient:
    """One keep-alive connection; calling it POSTs ``{}`` to ``/noop/call``."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __call__(self) -> object:
        self.conn.request("POST", "/noop/call", body=b"{}", headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"bare endpoint answered {resp.status}: {body[:200]!r}")
        return json.loads(body)

    def echo(self, array):
        """POST the array's raw bytes to ``/echo``; the bytes that come back, as an array again."""
        import numpy as np

        data = memoryview(array).cast("B")
        self.conn.putrequest("POST", "/echo", skip_accept_encoding=True)
        self.conn.putheader("Content-Type", "application/octet-stream")
        self.conn.putheader("Content-Length", str(data.nbytes))
        self.conn.endheaders()
        self.conn.send(data)
        resp = self.conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"bare endpoint answered {resp.status}: {resp.read()[:200]!r}")
        buf = bytearray(int(resp.getheader("Content-Length")))
        view, got = memoryview(buf), 0
        while got < len(buf):
            n = resp.readinto(view[got:])
            if not n:
                raise RuntimeError(f"the echo ended after {got} of {len(buf)} bytes")
            got += n
        resp.read()
        return np.frombuffer(buf, dtype=array.dtype).reshape(array.shape)


class BarePeer(Peer):
    key = "bare"
    title = "bare FastAPI"
    echo_mode = "the raw bytes POSTed and echoed over HTTP (no pickling)"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> None:
        t0 = measure.clock()
        self.proc = processes.start([sys.executable, str(SERVER)])
        line = processes.read_line(self.proc, START_TIMEOUT)
        if not line.strip().isdigit():
            raise RuntimeError(f"bare_server.py did not start (exit code {self.proc.poll()})")
        self.port = int(line)
        BareClient(self.port)()
        self.details["start"] = {"process_start_to_first_call_s": measure.clock() - t0,
                                 "note": "a new interpreter: import FastAPI + uvicorn, serve, first call"}

    def stop(self) -> None:
        processes.stop(self.proc)
        self.proc = None

    def noop(self) -> Callable[[], object]:
        return BareClient(self.port)

    def in_flight(self, n: int, seconds: float, warmup: int, max_calls: int) -> Measured:
        import aiohttp

        url = f"http://127.0.0.1:{self.port}/noop/call"
        headers = {"Content-Type": "application/json"}

        @asynccontextmanager
        async def client():
            connector = aiohttp.TCPConnector(limit=n)
            async with aiohttp.ClientSession(connector=connector) as session:
                async def call():
                    async with session.post(url, data=b"{}", headers=headers) as resp:
                        body = await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"bare endpoint answered {resp.status}: {body[:200]!r}")
                        return body

                yield call

        got = measure.in_flight(client, n, seconds, warmup, max_calls)
        return {"value": got["calls_per_s"], "mode": f"{n} in flight, aiohttp", **got}

    def echo(self) -> Callable[[Any], Any]:
        return BareClient(self.port).echo

    def echo_socket(self) -> Callable[[Any], Any]:
        return self.echo()  # its only path

    def wrk_target(self) -> WrkTarget:
        return WrkTarget(f"http://127.0.0.1:{self.port}/noop/call")

    def extra_figures(self, settings) -> list[tuple[str, Callable[[], Measured | None]]]:
        start = self.details.get("start", {})
        if not start:
            return []
        return [("cold_start_wall_s", lambda: {
            "value": start["process_start_to_first_call_s"],
            "mode": "new interpreter + FastAPI/uvicorn start + first call"})]
