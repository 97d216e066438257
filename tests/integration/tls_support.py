"""Helpers of the TLS tests: what a daemon's listener presents, what crosses a wire, and an
impostor that answers TLS on an address with a certificate of its own (a machine in the middle)."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import ssl
import threading
import time
from pathlib import Path

from tether.daemon.tls import make_certificate, server_context
from tether.protocol.tls import client_context


def presented_fingerprint(host: str, port: int) -> str:
    """The SHA-256 of the certificate a TLS listener presents (a handshake, nothing sent)."""
    with socket.create_connection((host, port), timeout=10) as raw, \
            client_context().wrap_socket(raw) as tls:
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def plain_http_answer(host: str, port: int) -> bytes:
    """What a listener answers a plain-HTTP request with (b"" when it just closes)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        sock.settimeout(3)
        got = b""
        with contextlib.suppress(OSError):
            while len(got) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                got += chunk
        return got


class Impostor:
    """A TLS server on ``host`` with its own certificate; records what each connection sent
    after the handshake. ``with Impostor(host, tmp) as imp: ... imp.port, imp.connections``."""

    def __init__(self, host: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        cert, key, self.fingerprint = make_certificate(folder, "impostor", [host])
        self.ctx = server_context(cert, key)
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections: list[bytes] = []  # bytes received after each completed handshake
        self.handshakes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        got = b""
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                self.handshakes += 1
                while len(got) < 1 << 20:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    got += chunk
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()
        self.connections.append(got)

    def __enter__(self) -> Impostor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(5)


class Capture:
    """Every frame that crosses the network interface ``ifname`` (AF_PACKET, root only), while
    the ``with`` block runs; ``data`` holds them end to end (bounded)."""

    LIMIT = 64 << 20

    def __init__(self, ifname: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.sock.bind((ifname, 0))
        self.sock.settimeout(0.1)
        self.data = bytearray()
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.frames += 1
            if len(self.data) < self.LIMIT:
                self.data += frame

    def __enter__(self) -> Capture:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.2)  # the last frames of what the block did
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
