"""TLS on a daemon's listeners off loopback, with a certificate made when the daemon starts.

Who reaches a daemon: a caller on its loopback (the local cluster), through an SSH tunnel (which
ends on the node's loopback), or over the network: a multi-node cluster's head reaching another
node's daemon on its cluster address (``--cluster-host``), or a caller reaching a daemon with no
tunnel. Loopback stays plain HTTP (TLS there would only cost); every other listener speaks TLS
by default (``--tls auto``), so the bearer token and the pickles never cross a network in clear.

The certificate is self-signed, made fresh by each daemon at start (an EC P-256 key; a few
milliseconds), and stored 0600 in its state dir (``tls.crt``, ``tls.key``, through
``tether.state``). Nobody checks it against a CA: the daemon's record carries its SHA-256
(``fingerprint``), the launcher hands that to whoever connects (the head's node table, an
``Endpoint``), and they compare it with the certificate presented before sending anything
(``tether.protocol.tls``).

uvicorn applies one SSL setting to all the sockets of a server, so the TLS listeners get a
second ``uvicorn.Server`` on the same event loop and the same app, with the same settings, no
lifespan of its own, started and stopped with the main one (:func:`add_tls_listeners`).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import ipaddress
import logging
import socket
import ssl
from pathlib import Path
from typing import Any

from tether import state
from tether.protocol.tls import fingerprint

MODES = ("auto", "on", "off")
#: forward-secret AEAD suites for TLS 1.2 (TLS 1.3, which both ends speak, has its own)
_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"

log = logging.getLogger("tether.daemon")


def wants_tls(mode: str, host: str) -> bool:
    """Whether a listener on ``host`` speaks TLS: ``on``, ``off``, or ``auto`` (off loopback)."""
    if mode != "auto":
        return mode == "on"
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # every address (""), or a host name that may resolve to anything


def make_certificate(state_dir: Path, cluster: str, hosts: list[str]) -> tuple[Path, Path, str]:
    """A new self-signed certificate for this daemon, valid for ``hosts`` (its listening
    addresses), stored 0600 in ``state_dir``: (certificate path, key path, SHA-256 fingerprint).

    Its dates do not matter to tether (the pin is what is checked); it is valid for ten years so
    that a generic TLS client looking at it does not see it expire under a long-running daemon.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"tether daemon of {cluster}"[:64])])
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if host:
                names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_path, key_path = state.write_tls(state_dir, cert.public_bytes(serialization.Encoding.PEM), key_pem)
    return cert_path, key_path, fingerprint(cert.public_bytes(serialization.Encoding.DER))


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """The listeners' context: TLS >= 1.2, forward-secret suites, no client certificate (the
    bearer token authenticates callers), no session tickets (nothing arrives on an idle
    connection that a client checking it for a close would have to tell apart)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_CIPHERS)
    ctx.num_tickets = 0
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


def add_tls_listeners(server: Any, secure: list[socket.socket], ctx: ssl.SSLContext) -> None:
    """Serve ``secure`` with TLS next to ``server`` (a ``uvicorn.Server`` about to ``run()``).

    A twin server with a copy of its config (the same app and limits, no lifespan: the app's
    start-up and shutdown are the main server's) starts right after the main one and stops with
    it, whatever stops it (a signal, autostop).
    """
    import uvicorn

    config = copy.copy(server.config)  # before the main config loads: load() builds each its own
    config.lifespan = "off"
    twin = uvicorn.Server(config)
    startup, shutdown = server.startup, server.shutdown
    ticks: list[asyncio.Task] = []

    async def startup_both(sockets: list[socket.socket] | None = None) -> None:
        await startup(sockets=sockets)
        config.load()
        config.ssl = ctx
        twin.lifespan = config.lifespan_class(config)
        await twin.startup(sockets=secure)
        ticks.append(asyncio.ensure_future(twin.main_loop()))  # what uvicorn does once a second
        log.info("TLS on %s", ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in secure))

    async def shutdown_both(sockets: list[socket.socket] | None = None) -> None:
        twin.should_exit = True
        if not twin.started:
            await asyncio.gather(shutdown(sockets=sockets), *ticks)
            return
        closer = asyncio.ensure_future(_end_closing_connections(twin))
        try:
            await asyncio.gather(shutdown(sockets=sockets), twin.shutdown(sockets=secure), *ticks)
        finally:
            closer.cancel()

    server.startup, server.shutdown = startup_both, shutdown_both


async def _end_closing_connections(server: Any) -> None:
    """While ``server`` shuts down: end the TLS connections it is closing once they have
    nothing left to send. A TLS close waits for the peer's close_notify, which an idle
    keep-alive client that is not reading (the head's pooled connections, a blocking client)
    never sends: without this, every stop would wait out uvicorn's graceful-shutdown timeout."""
    while True:
        for conn in list(server.server_state.connections):
            transport = getattr(conn, "transport", None)
            if transport is not None and transport.is_closing() and not transport.get_write_buffer_size():
                transport.abort()
        await asyncio.sleep(0.05)


def serve_tls_where_wanted(server: Any, sockets: list[socket.socket], mode: str, state_dir: Path,
                           cluster: str) -> tuple[list[socket.socket], dict[str, Any]]:
    """Put the sockets that want TLS (``mode``, their address) on a TLS twin of ``server``.

    Returns the sockets the main server serves in plain HTTP, and what the daemon's record says
    about TLS: ``tls`` (its main listener), ``cluster_tls`` (its cluster listener, when it has
    one) and the certificate's ``fingerprint`` when any listener speaks TLS.
    """
    flags = [wants_tls(mode, s.getsockname()[0]) for s in sockets]
    record: dict[str, Any] = {"tls": flags[0]}
    if len(sockets) > 1:
        record["cluster_tls"] = flags[1]
    secure = [s for s, on in zip(sockets, flags, strict=True) if on]
    if not secure:
        return sockets, record
    cert, key, record["fingerprint"] = make_certificate(
        state_dir, cluster, [s.getsockname()[0] for s in secure])
    add_tls_listeners(server, secure, server_context(cert, key))
    return [s for s, on in zip(sockets, flags, strict=True) if not on], record
