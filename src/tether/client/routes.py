"""Direct calls to the node that holds an object, past the head of a multi-node cluster.

A head that forwarded a call names the node and the object's name there in its answer
(``x-tether-route: <node> <name>``). A client with a ``Router`` (the cluster handle gives its
head client one when this process can reach the nodes' daemons itself: the owner of an SSH
cluster, through a tunnel per node) calls that node's daemon directly from then on: one hop, and
the head does no work for the call (it cost ~2x a direct call through the head).

A direct call falls back to the head, which stays the authority on where objects live:

* the node's daemon cannot be connected to (nothing was sent): through the head at once, and for
  ``DOWN_FOR`` seconds after (twice as long after each failure in a row), then directly again;
* the node answers 404 before running anything (the object moved to another node or was
  deleted): the route is forgotten and the head is asked, which names the new node;
* the node refuses the token (401: it was rotated): a new client with the new token next time.

A request that may have reached the node is never sent again: a connection lost after sending
raises ``tether.ConnectionError`` as through the head, and the next calls go through the head
for ``DOWN_FOR`` seconds. Calls that the head must see go through it always: a result kept on the
cluster (``.remote()``), RemoteRefs among the arguments, a call with its own id (``submit``:
``cluster.result(id)`` and cancel by id ask the head). While calls go direct (and while one runs),
a thread sends the head a health request every ``HEAD_TOUCH`` seconds, so that its autostop does
not take it for idle (a forwarded call kept a request in flight there).
``TETHER_DIRECT_CALLS=0`` turns direct calls off in this process.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tether import errors

if TYPE_CHECKING:
    from tether.client.daemon_client import DaemonClient

#: seconds a node that could not be reached directly is called through the head (doubled at each
#: failure in a row, up to ``DOWN_MAX``: a process that cannot reach the nodes does not try often)
DOWN_FOR = 30.0
DOWN_MAX = 600.0
_clock = time.monotonic
#: seconds between the health requests that keep the head's autostop from stopping it
HEAD_TOUCH = 30.0


def enabled() -> bool:
    """Direct calls unless ``TETHER_DIRECT_CALLS`` says no."""
    return os.environ.get("TETHER_DIRECT_CALLS", "1").strip().lower() not in ("0", "off", "false", "no")


class Router:
    """Where the objects on other nodes are, and a client per node (made on first use).

    ``connect(index)`` makes a checked client of node ``index``'s daemon (a ``TetherError``: this
    process cannot reach it); ``touch()`` sends the head a request (its autostop counts it)."""

    def __init__(self, connect: Callable[[int], DaemonClient], touch: Callable[[], Any]) -> None:
        self._connect, self._touch = connect, touch
        self.routes: dict[str, tuple[int, str]] = {}  # the name called -> (node, the object's name there)
        self._clients: dict[int, DaemonClient] = {}
        self._down: dict[int, float] = {}  # node -> until when it is called through the head
        self._strikes: dict[int, int] = {}  # node -> failures in a row
        self._lock = threading.Lock()
        self._running = 0  # direct calls in flight (a generator: until it started)
        self._counting = threading.Lock()
        self._used = False  # a direct call since the head's last health request
        self._toucher: threading.Thread | None = None
        self._closed = threading.Event()

    def learn(self, name: str | None, route: str) -> None:
        """Remember the head's ``x-tether-route`` answer to a call of ``name``."""
        node, _, there = route.partition(" ")
        if name and node.isdigit() and int(node) > 0 and there:
            self.routes[name] = (int(node), there)

    def forget(self, name: str | None) -> None:
        self.routes.pop(name or "", None)

    def target(self, name: str) -> tuple[int, DaemonClient, str] | None:
        """(node, its client, the object's name there) for a call of ``name`` that goes
        directly, or None: through the head."""
        route = self.routes.get(name)
        if route is None:
            return None
        index, there = route
        client = self._client(index)
        if client is None:
            return None
        self._keep_head_up()
        return index, client, there

    def fallback(self, name: str, index: int, exc: errors.TetherError) -> bool:
        """After a direct call to node ``index`` raised ``exc``: True if nothing ran there and the
        call goes to the head now; False: ``exc`` is the call's outcome (raise it)."""
        if isinstance(exc, errors.NotFoundError):
            if getattr(exc, "http_status", None) != 404:
                return False  # raised by the call itself
            self.forget(name)  # moved or deleted: nothing ran, the head knows where it is now
            return True
        if isinstance(exc, errors.AuthenticationError):
            self._failed(index, backoff=False)  # the node's token was rotated: a new client next time
            return True
        if isinstance(exc, errors.ConnectionError):
            self._failed(index)  # the next calls use the head for a while
            return bool(getattr(exc, "unsent", False))  # else it may have run: not sent again
        return False

    def call(self, name: str, method: str, args: Sequence[Any], kwargs: dict | None, stream_logs: bool,
             timeout: float | None, queue: bool) -> tuple[bool, Any]:
        """(True, the value) of a call made directly on the node, or (False, None): call the head."""
        target = self.target(name)
        if target is None:
            return False, None
        index, client, there = target
        with self._attempt(name, index):
            return True, client.call(there, method, args, kwargs, stream_logs=stream_logs, timeout=timeout,
                                     queue=queue)
        return False, None  # the attempt fell back: nothing ran on the node

    async def acall(self, name: str, method: str, args: Sequence[Any], kwargs: dict | None,
                    stream_logs: bool, timeout: float | None) -> tuple[bool, Any]:
        """``call``'s async form."""
        target = self.target(name)
        if target is None:
            return False, None
        index, client, there = target
        with self._attempt(name, index):
            return True, await client.acall(there, method, args, kwargs, stream_logs, timeout=timeout)
        return False, None  # the attempt fell back: nothing ran on the node

    @contextlib.contextmanager
    def _attempt(self, name: str, index: int) -> Iterator[None]:
        """One direct call to node ``index``, counted while it runs: its success clears the node's
        strikes; a failure after which the head may take the call is swallowed (``fallback``)."""
        self._count(1)
        try:
            yield
            self._strikes.pop(index, None)
        except errors.TetherError as exc:
            if not self.fallback(name, index, exc):
                raise
        finally:
            self._count(-1)

    def _client(self, index: int) -> DaemonClient | None:
        if self._down.get(index, 0.0) > _clock():
            return None
        client = self._clients.get(index)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(index)
            if client is None:
                try:
                    client = self._connect(index)
                except errors.ConfigError:  # the launcher gives no endpoint of that node: never
                    self._down[index] = float("inf")
                    return None
                except errors.TetherError:
                    self._failed(index)
                    return None
                self._clients[index] = client
        return client

    def _failed(self, index: int, backoff: bool = True) -> None:
        """Call node ``index`` through the head for a while; ``backoff=False``: only drop its client."""
        if backoff:
            strikes = self._strikes[index] = self._strikes.get(index, 0) + 1
            self._down[index] = _clock() + min(DOWN_MAX, DOWN_FOR * 2 ** (strikes - 1))
        client = self._clients.pop(index, None)
        if client is not None:
            client.close()

    def _count(self, delta: int) -> None:
        with self._counting:
            self._running += delta

    def _keep_head_up(self) -> None:
        self._used = True
        if self._toucher is None:
            with self._lock:
                if self._toucher is None:
                    self._toucher = threading.Thread(target=self._touch_while_used, name="tether-head-touch",
                                                     daemon=True)
                    self._toucher.start()

    def _touch_while_used(self) -> None:
        while not self._closed.wait(HEAD_TOUCH):
            if self._used or self._running > 0:
                self._used = False
                try:
                    self._touch()
                except errors.TetherError:
                    pass  # the head's own calls say what is wrong with it

    def close(self) -> None:
        self._closed.set()
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self.routes.clear()
