"""The daemon's bearer token: checked on every request (``DaemonApp``), replaced by a rotation.

``POST /_tether/token`` (authenticated with the current token, like every route) makes a new
token, writes it to the state dir's ``token`` file (0600, through ``tether.state``), and switches
to it at once: from then on the old token gets a 401 that says it was rotated and how to
reconnect. A head first rotates the tokens of its cluster's other nodes (it is the one that
talks to them) and switches its node links to their new tokens as each one answers; the caller
gets every new token in the answer (the launcher keeps the nodes' in its records).

Tokens are never logged: a rotation logs that it happened, and when.

A shared cluster's daemon also accepts *grants* (``protocol/grants.py``): short-lived tokens a team
registry signs for a user, checked here offline with the registry's public key (``Grants``) and
then authorized route by route (``daemon/access.py``). Its settings: the state dir's
``registry.pub`` and ``cluster_path`` (written by the launchers' ``registry_key=``/``registry_path=``
and by the owner's ``PUT /_tether/registry``, which switches a running daemon at once), else env
``TETHER_REGISTRY_KEY`` and ``TETHER_CLUSTER_PATH`` (a daemon started by hand; the launchers do
not pass them on, so a shell that has them set shares no cluster by accident).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether import state
from tether.protocol.grants import CLOCK_SKEW, Grant, verify

if TYPE_CHECKING:
    from tether.daemon.store import Store

log = logging.getLogger("tether.daemon")

#: rotated tokens remembered to tell "rotated" from "wrong" (past that: "wrong")
_RETIRED = 16
#: verified grants kept (each ~1 KB); past it the expired go, then the oldest
GRANT_CACHE = 4096


def session_of(token: str) -> bytes:
    """The dashboard's session cookie value for ``token`` (``daemon/dashboard.py``): derived from
    it, so that a rotation ends every session, and never the token itself."""
    return hmac.new(token.encode(), b"tether dashboard session", hashlib.sha256).hexdigest().encode()


class Tokens:
    """The token a request must carry (``expected``: the whole ``Authorization`` value), and
    the ones it replaced."""

    def __init__(self, token: str, cluster: str, token_path: str) -> None:
        self.expected = f"Bearer {token}".encode()
        self.session = session_of(token)
        self.cluster, self.token_path = cluster, token_path
        # one cookie per cluster: cookies ignore the port, and clusters share localhost
        self.cookie = b"tether_" + hashlib.sha256(cluster.encode()).hexdigest()[:12].encode()
        self._retired: deque[tuple[bytes, float]] = deque(maxlen=_RETIRED)
        self._lock = asyncio.Lock()
        self.grants: Grants | None = None  # a shared cluster's: set by create_app and PUT /_tether/registry

    def replace(self, token: str) -> None:
        self._retired.append((self.expected, time.time()))
        self.expected = f"Bearer {token}".encode()
        self.session = session_of(token)

    def refusal(self, got: bytes) -> tuple[str, str]:
        """The 401's (kind, message) for a request whose token is not ``expected``."""
        for old, when in reversed(self._retired):
            if got and hmac.compare_digest(got, old):
                stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(when))
                return "token_rotated", (
                    f"the bearer token sent for cluster {self.cluster!r} was rotated at {stamp} and is "
                    "refused from now on. Reconnect to pick up the new one: cluster.up_if_not() (or "
                    "tether.cluster(name).up_if_not() in a new process) reads it from the cluster's "
                    "records on this machine.")
        return "unauthorized", (
            f"missing or wrong bearer token for cluster {self.cluster!r}. The token is created with "
            f"the cluster and stored (mode 0600) in {self.token_path}; send it as "
            "'Authorization: Bearer <token>'.")

    async def rotate(self, store: Store) -> dict[str, Any]:
        """Rotate the nodes' tokens (on a head), then this daemon's; returns the new tokens and
        the nodes that could not rotate (they keep their old token; the head still uses it)."""
        async with self._lock:  # two rotations at once would retire each other's token
            rotated, failed = await store.nodes.rotate_tokens()
            token = secrets.token_urlsafe(32)
            state.write_token(store.state_dir, token)  # first: a failed write changes nothing
            self.replace(token)
        log.info("bearer token rotated (%d other node(s) rotated, %d failed)", len(rotated), len(failed))
        return {"token": token, "nodes": rotated, "failed": failed}


class Grants:
    """The grants this daemon accepts: signed by the registry whose public key it holds, for its
    cluster path. ``check`` verifies a grant once and keeps it until it expires, so a caller's
    next requests pay a dict lookup (a verification costs ~50 us)."""

    def __init__(self, public_key: str, cluster: str, limit: int = GRANT_CACHE) -> None:
        key = base64.urlsafe_b64decode(public_key + "=" * (-len(public_key) % 4))
        if len(key) != 32:
            raise ValueError(f"a registry's public key is 32 bytes of Ed25519 in base64url, not {len(key)} bytes")
        if not cluster.startswith("/"):
            raise ValueError(f"a cluster path is the cluster's registry name, e.g. '/alice/gpu', not {cluster!r}")
        self.public_key, self.cluster, self.limit = public_key, cluster, limit
        self._verified: dict[bytes, Grant] = {}

    @classmethod
    def configured(cls, state_dir: Path) -> Grants | None:
        """From the state dir's files, else the env (``TETHER_REGISTRY_KEY``,
        ``TETHER_CLUSTER_PATH``); None (no grants accepted) when neither is set or the setting is
        invalid (logged)."""
        key, path = state.read_registry(state_dir)
        if not key and not path:
            key, path = os.environ.get("TETHER_REGISTRY_KEY"), os.environ.get("TETHER_CLUSTER_PATH")
        if not key and not path:
            return None
        try:
            if not key or not path:
                raise ValueError("both the registry's public key and the cluster's path are needed")
            grants = cls(key, path)
        except ValueError as exc:
            log.error("grants are refused: the registry settings are invalid (%s)", exc)
            return None
        log.info("accepting grants for %s from the registry's key %s...", path, key[:8])
        return grants

    def info(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "public_key": self.public_key}

    def check(self, authorization: bytes) -> Grant:
        """The grant in ``authorization`` (``Bearer tg1...``), verified; else :class:`GrantError`."""
        now = time.time()
        grant = self._verified.get(authorization)
        if grant is not None:
            if now <= grant.expires + CLOCK_SKEW:
                return grant
            del self._verified[authorization]
        token = authorization[7:].decode("ascii", errors="replace")
        grant = verify(token, self.public_key, cluster=self.cluster, now=now)
        if len(self._verified) >= self.limit:
            self._evict(now)
        self._verified[authorization] = grant
        return grant

    def _evict(self, now: float) -> None:
        for key, grant in list(self._verified.items()):
            if now > grant.expires + CLOCK_SKEW:
                del self._verified[key]
        while len(self._verified) >= self.limit:  # all live: the oldest first
            del self._verified[next(iter(self._verified))]

    @staticmethod
    def refusal(cluster: str, reason: str) -> tuple[str, str]:
        """The 401's (kind, message) for a grant this daemon does not accept."""
        return "grant_refused", (
            f"the grant sent to cluster {cluster!r} was refused: {reason}. Ask the registry for a new "
            "one (a cluster loaded from the registry, tether.cluster('/owner/name'), asks by itself; "
            "`tether login URL` if your registry token is gone)")
