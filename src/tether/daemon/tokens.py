"""The daemon's bearer token: checked on every request (``DaemonApp``), replaced by a rotation.

``POST /_tether/token`` (authenticated with the current token, like every route) makes a new
token, writes it to the state dir's ``token`` file (0600, through ``tether.state``), and switches
to it at once: from then on the old token gets a 401 that says it was rotated and how to
reconnect. A head first rotates the tokens of its cluster's other nodes (it is the one that
talks to them) and switches its node links to their new tokens as each one answers; the caller
gets every new token in the answer (the launcher keeps the nodes' in its records).

Tokens are never logged: a rotation logs that it happened, and when.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from tether import state

if TYPE_CHECKING:
    from tether.daemon.store import Store

log = logging.getLogger("tether.daemon")

#: rotated tokens remembered to tell "rotated" from "wrong" (past that: "wrong")
_RETIRED = 16


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
