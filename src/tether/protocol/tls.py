"""Pinned TLS: how a caller, or a cluster's head, checks the daemon it connected to.

A daemon that listens off loopback serves TLS with a self-signed certificate made when it
starts (``tether.daemon.tls``), and publishes the certificate's SHA-256 in its record. Whoever
reaches it pins that fingerprint: the handshake verifies nothing (``CERT_NONE``: there is no CA),
then the certificate the daemon presented is hashed and compared with the pin, *before* any
request (and so before the bearer token) is sent. A mismatch is :class:`PinMismatch`.

Standard library only: the caller's transport (``tether.client``) and the head daemon
(``tether.daemon.nodes``) both use it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import ssl

_HEX = re.compile(r"^[0-9a-f]{64}$")


class PinMismatch(ConnectionError):
    """The daemon presented another certificate than the pinned one; nothing was sent to it."""


def fingerprint(der: bytes) -> str:
    """The SHA-256 of a DER certificate, as 64 lowercase hex digits (how records carry it)."""
    return hashlib.sha256(der).hexdigest()


def normalize(pin: str) -> str:
    """A fingerprint in the form records use; accepts ``AB:CD:...`` (``openssl x509
    -fingerprint -sha256``) and a ``sha256:`` prefix. A ValueError says what is wrong."""
    text = str(pin).strip().lower().removeprefix("sha256:").replace(":", "")
    if not _HEX.match(text):
        raise ValueError(f"a TLS pin is the certificate's SHA-256: 64 hex digits, not {pin!r}")
    return text


def client_context() -> ssl.SSLContext:
    """A client context for a pinned daemon: TLS >= 1.2, no CA or host name check (the pin is
    the check, done by :func:`check_pin` on the certificate the daemon presents)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def check_pin(der: bytes | None, pin: str, where: str) -> None:
    """Raise :class:`PinMismatch` unless ``der`` (``getpeercert(binary_form=True)``) hashes to
    ``pin``. ``where`` names the daemon in the message (``"node 1 (10.0.0.6:4321)"``)."""
    got = fingerprint(der) if der else "no certificate"
    if der and hmac.compare_digest(got, normalize(pin)):
        return
    raise PinMismatch(
        f"{where} presented a TLS certificate with SHA-256 {got}, and the pinned one is "
        f"{normalize(pin)}: nothing was sent to it. Either something else answers on that address "
        "(a machine in the middle), or the daemon was restarted with a new certificate and this "
        "record is stale: cluster.up_if_not() reads the daemon's current record.")
