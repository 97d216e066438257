"""Grants: short-lived access tokens a team registry signs and every daemon checks offline.

A user with read or write access to a shared cluster asks the registry for a grant (``tether
registry``, issue 14); the caller sends it to the cluster's daemon as its bearer token. The daemon
verifies the signature with the registry's public key, which it was given when the cluster came
up, so it never calls the registry per request. Revocation (``unshare``) takes effect when the
grant expires: the registry signs grants for a few minutes only (:data:`DEFAULT_TTL`).

The format is ours and small (no JOSE header to misread, one algorithm)::

    tg1.<base64url(JSON claims)>.<base64url(Ed25519 signature of "tg1." + claims part)>

Claims: ``sub`` (user name), ``cluster`` (the cluster's registry name, e.g. ``/alice/gpu``),
``access`` (``"read"`` or ``"write"``), ``iat`` and ``exp`` (Unix seconds), ``iss`` (the registry's
URL), ``jti`` (an id, for logs). Keys are Ed25519 (``cryptography``, already a dependency): a
signature is 64 bytes, a verification ~50 us; a daemon caches what it verified until it expires.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from typing import Any

PREFIX = "tg1."
ACCESS_LEVELS = ("read", "write")
DEFAULT_TTL = 300.0  # seconds: how long an unshare may take to reach every daemon
CLOCK_SKEW = 30.0  # seconds of clock difference between registry and daemon that are tolerated


class GrantError(ValueError):
    """A grant that is malformed, forged, expired, or for another cluster; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Grant:
    """Verified claims of a grant."""

    user: str
    cluster: str
    access: str
    issued: float
    expires: float
    issuer: str = ""
    id: str = ""

    @property
    def can_write(self) -> bool:
        return self.access == "write"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_private_key() -> bytes:
    """A new Ed25519 private key, raw (32 bytes): the registry keeps it in its own key file."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    return Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def public_key(private_key: bytes) -> str:
    """The public half of ``private_key``, base64url text: what daemons are given."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.from_private_bytes(private_key)
    return _b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def sign(private_key: bytes, *, user: str, cluster: str, access: str, ttl: float = DEFAULT_TTL,
         issuer: str = "", now: float | None = None) -> str:
    """A grant for ``user`` to use ``cluster`` at ``access`` level for ``ttl`` seconds."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if access not in ACCESS_LEVELS:
        raise ValueError(f"access must be one of {ACCESS_LEVELS}, not {access!r}")
    issued = time.time() if now is None else now
    claims = {"sub": user, "cluster": cluster, "access": access, "iat": int(issued),
              "exp": int(issued + ttl), "iss": issuer, "jti": _b64(os.urandom(9))}
    body = PREFIX + _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signature = Ed25519PrivateKey.from_private_bytes(private_key).sign(body.encode("ascii"))
    return f"{body}.{_b64(signature)}"


def looks_like_grant(token: str | bytes) -> bool:
    """Cheap test, before any crypto: is this bearer token a grant (and not a daemon's own token)?"""
    if isinstance(token, bytes):
        return token.startswith(PREFIX.encode())
    return token.startswith(PREFIX)


def unverified_expiry(token: str) -> float | None:
    """When ``token`` expires, as its claims say, WITHOUT checking the signature: for the holder of
    a grant (the client renews it before then), never for deciding access. None if unreadable."""
    try:
        return float(json.loads(_unb64(token.split(".")[1]))["exp"])
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def verify(token: str, public_key_b64: str, *, cluster: str | None = None,
           now: float | None = None) -> Grant:
    """The claims of ``token`` if the registry whose key is ``public_key_b64`` signed it, it has
    not expired, and (when ``cluster`` is given) it is for that cluster; else :class:`GrantError`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not looks_like_grant(token):
        raise GrantError("not a grant")
    try:
        body, sig = token.rsplit(".", 1)
        key = Ed25519PublicKey.from_public_bytes(_unb64(public_key_b64))
        key.verify(_unb64(sig), body.encode("ascii"))
    except InvalidSignature:
        raise GrantError("bad signature: not signed by this cluster's registry") from None
    except (ValueError, TypeError, UnicodeError):
        raise GrantError("malformed grant") from None
    try:
        claims: dict[str, Any] = json.loads(_unb64(body[len(PREFIX):]))
        grant = Grant(user=str(claims["sub"]), cluster=str(claims["cluster"]), access=str(claims["access"]),
                      issued=float(claims["iat"]), expires=float(claims["exp"]),
                      issuer=str(claims.get("iss", "")), id=str(claims.get("jti", "")))
    except (ValueError, KeyError, TypeError):
        raise GrantError("malformed grant claims") from None
    if grant.access not in ACCESS_LEVELS:
        raise GrantError(f"unknown access level {grant.access!r}")
    current = time.time() if now is None else now
    if current > grant.expires + CLOCK_SKEW:
        raise GrantError(f"expired {int(current - grant.expires)} s ago: ask the registry for a new one")
    if grant.issued > current + CLOCK_SKEW:
        raise GrantError("issued in the future: check the clocks of the registry and this machine")
    if cluster is not None and grant.cluster != cluster:
        raise GrantError(f"for cluster {grant.cluster!r}, not {cluster!r}")
    return grant
