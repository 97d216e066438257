"""How a stub calls: sync or async, generators, ``.map``, ``.submit`` handles, remote results.

``RemoteCallable`` is shared by remote functions and remote methods, so both have the same forms:

    fn(x)                       # sync; a remote generator comes back as a local generator
    await fn.aio(x)             # async (also fn(x, run_async=True)); async def is async by default
    fn.map([1, 2, 3])           # parallel calls, results in input order
    handle = fn.submit(x)       # a call in flight: handle.result(), handle.cancel(force=False)
    fn.enqueue(x)               # waits its turn: enqueued calls of fn run one at a time, in order
    ref = fn.remote(x)          # the result stays on the cluster; pass `ref` to another call

Timeouts. Each form takes tether's call timeout, in seconds: past it the remote call is cancelled
and ``tether.CallTimeoutError`` raised. Where it comes from, first found:

1. ``call_timeout=`` on the call: always tether's (like ``stream_logs=``, the name is reserved);
2. ``timeout=`` on the call, unless the remote function takes a ``timeout`` itself: when its
   parameters (described by the worker at deploy, ``worker/objects.describe``) include
   ``timeout`` or ``**kwargs``, or are unknown, ``timeout=`` is the function's argument and
   reaches it untouched (``fetch(url, timeout=10)`` keeps working);
3. the stub's default, ``.to(..., timeout=)`` (saved with it);
4. ``TETHER_CALL_TIMEOUT`` (seconds), read at each call; unset: no timeout.

``None`` at 1 or 2 means no timeout for that call; ``math.inf`` at 3 means none for that stub,
whatever the environment says. A remote generator gets the timeout to start and then again for
each next item: a stream may last as long as it keeps producing, and the time the consumer takes
between items is not counted against it. Log lines do not extend a timeout. ``.map`` gives each
item's call the timeout (not the whole map); ``.submit`` bounds the call itself, while
``handle.result(timeout)`` only bounds how long that wait lasts.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from tether.client.daemon_client import new_call_id
from tether.errors import ConfigError
from tether.plugins import emit, implemented
from tether.protocol import refs

if TYPE_CHECKING:
    from tether.client.daemon_client import DaemonClient
    from tether.core.cluster import Cluster

DEFAULT_MAP_CONCURRENCY = 16
ON_CALL = "tether_on_call"
TIMEOUT_ENV = "TETHER_CALL_TIMEOUT"
_UNSET: Any = object()


def check_timeout(value: Any, what: str = "timeout") -> float | None:
    """A timeout as seconds (> 0) or None (no timeout; ``math.inf`` is None too)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
        raise ConfigError(f"{what} must be a number of seconds above 0, or None for no timeout "
                          f"(got {value!r})")
    return None if math.isinf(value) else float(value)


# ``os.environ.get`` costs ~0.7 us (it encodes the key and decodes the value): every call reads
# this variable, so read CPython's bytes mapping behind ``os.environ`` directly (~0.05 us). It is
# the mapping ``os.environ[...] = ...`` and ``monkeypatch.setenv`` update.
_ENV_BYTES: dict | None = getattr(os.environ, "_data", None)
_ENV_KEY = os.fsencode(TIMEOUT_ENV)
if not isinstance(_ENV_BYTES, dict):
    _ENV_BYTES = None


def default_timeout() -> float | None:
    """The process-wide call timeout: ``TETHER_CALL_TIMEOUT`` seconds (unset or empty: none),
    read at each call (setting it in a running process takes effect at the next call)."""
    if _ENV_BYTES is not None:
        if not _ENV_BYTES.get(_ENV_KEY):
            return None
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    return check_timeout(value, f"{TIMEOUT_ENV}={raw!r}")


def takes_timeout(flags: dict[str, Any]) -> bool:
    """Whether ``timeout=`` is the remote callable's own argument (see the module docstring)."""
    params = flags.get("params")
    return params is None or "timeout" in params or bool(flags.get("varkw"))


def call_timeout(kwargs: dict, flags: dict[str, Any], default: float | None) -> float | None:
    """Tether's timeout for one call, taken out of ``kwargs`` (``call_timeout=``, or ``timeout=``
    when the remote callable has no such parameter), else the stub's ``default``, else the
    process default."""
    if kwargs:
        given = kwargs.pop("call_timeout", _UNSET)
        if "timeout" in kwargs and not takes_timeout(flags):
            if given is not _UNSET:
                raise ConfigError("both timeout= and call_timeout= were given, and the remote function "
                                  "has no timeout parameter: both would be tether's call timeout; pass one")
            given = kwargs.pop("timeout")
        if given is not _UNSET:
            return check_timeout(given, "timeout")
    if default is not None:
        return None if math.isinf(default) else default
    return default_timeout()


class RemoteCallable:
    """The calling forms every handle has (a remote function, a remote instance's method).

    A subclass implements ``_target()``, returning ``(cluster, object name, method, flags,
    stream_logs, timeout)``: ``flags`` is the method's entry of the interface the daemon described
    at deploy (``async``, ``generator``, ``async_generator``; ``params``, ``varkw``), which decides
    whether ``fn(x)`` is awaitable and whose ``timeout=`` it is; ``timeout`` is the stub's default.
    Every call fires the ``tether_on_call`` hook when a plugin implements it.
    """

    __slots__ = ()

    def _target(self) -> tuple[Cluster, str, str, dict[str, Any], bool, float | None]:
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        cluster, name, method, flags, stream_logs, timeout = self._target()
        if kwargs:
            stream_logs = kwargs.pop("stream_logs", stream_logs)
            run_async = kwargs.pop("run_async", None)
            timeout = call_timeout(kwargs, flags, timeout)
            if kwargs.pop("remote", False):
                return _remote(cluster, name, method, args, kwargs, stream_logs, timeout)
        else:  # the common case, ``fn(x)``: nothing to take out of kwargs
            run_async = None
            timeout = default_timeout() if timeout is None else None if timeout == math.inf else timeout
        if run_async is None:
            run_async = bool(flags.get("async") or flags.get("async_generator"))
        client = cluster.client
        if run_async:
            if implemented(ON_CALL):
                call = _acall(client, name, method, args, kwargs, stream_logs, timeout)
            else:  # the common case: the client's coroutine itself, no wrapper
                call = client.acall(name, method, args, kwargs, stream_logs, timeout=timeout)
            if flags.get("generator") or flags.get("async_generator"):
                return _async_items(call)
            return call
        return _call(client, name, method, args, kwargs, stream_logs, timeout=timeout)

    def aio(self, *args: Any, **kwargs: Any) -> Any:
        """The async form: an awaitable (or an async iterator for a generator)."""
        return self(*args, run_async=True, **kwargs)

    def remote(self, *args: Any, **kwargs: Any) -> RemoteRef:
        """Run the call but keep its result on the cluster; returns a handle to it."""
        return self(*args, remote=True, **kwargs)

    def enqueue(self, *args: Any, **kwargs: Any) -> Any:
        """Call it through the object's queue on the cluster, and wait for the result.

        Enqueued calls of one function (or instance) never run at the same time: each waits for
        the ones enqueued before it, from any caller, and they run in arrival order (Runhouse's
        ``enqueue``). Plain calls are not held by the queue. The call's timeout counts the wait.
        """
        cluster, name, method, flags, stream_logs, timeout = self._target()
        stream_logs = kwargs.pop("stream_logs", stream_logs)
        timeout = call_timeout(kwargs, flags, timeout)
        return _call(cluster.client, name, method, args, kwargs, stream_logs, timeout=timeout, queue=True)

    def submit(self, *args: Any, **kwargs: Any) -> CallHandle:
        """Start the call in the background; the handle gives its result or cancels it. The
        call's timeout bounds the call itself; ``handle.result(timeout)`` only the wait."""
        cluster, name, method, flags, stream_logs, timeout = self._target()
        stream_logs = kwargs.pop("stream_logs", stream_logs)
        timeout = call_timeout(kwargs, flags, timeout)
        return CallHandle(cluster, name, method, args, kwargs, stream_logs, timeout)

    def map(self, *iterables: Iterable[Any], concurrency: int | None = None,
            return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """Call once per item (zipped like ``map``) in parallel; results in input order.

        Args:
            concurrency: calls in flight at once (default 16).
            return_exceptions: put a failed item's exception in its place instead of raising.
            kwargs: passed to every call; ``timeout=``/``call_timeout=`` as for one call (each
                item's call gets it).
        """
        return self.starmap(zip(*iterables, strict=False), concurrency=concurrency,
                            return_exceptions=return_exceptions, **kwargs)

    def starmap(self, arg_tuples: Iterable[Iterable[Any]], concurrency: int | None = None,
                return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """Like ``map`` with each item unpacked as the positional arguments."""
        items = [tuple(a) for a in arg_tuples]
        if not items:
            return []
        cluster, name, method, flags, stream_logs, timeout = self._target()
        stream_logs = kwargs.pop("stream_logs", stream_logs)
        timeout = call_timeout(kwargs, flags, timeout)
        client = cluster.client
        workers = max(1, min(concurrency or DEFAULT_MAP_CONCURRENCY, len(items)))

        def one(args: tuple) -> Any:
            return _call(client, name, method, args, kwargs, stream_logs, timeout=timeout)

        results: list[Any] = [None] * len(items)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tether-map") as pool:
            futures = [pool.submit(one, args) for args in items]
            for index, future in enumerate(futures):
                try:
                    results[index] = future.result()
                except BaseException as exc:
                    if not return_exceptions:
                        for rest in futures[index + 1:]:
                            rest.cancel()
                        _mark_index(exc, index, name if method == "call" else f"{name}.{method}")
                        raise
                    results[index] = exc
        return results


def _call(client: DaemonClient, name: str, method: str, args: tuple, kwargs: dict, stream_logs: bool,
          call_id: str | None = None, timeout: float | None = None, queue: bool = False) -> Any:
    if not implemented(ON_CALL):  # the common case: no timing, no event
        return client.call(name, method, args, kwargs, stream_logs=stream_logs, call_id=call_id,
                           refs=refs_in(args, kwargs), timeout=timeout, queue=queue)
    start, error = time.monotonic(), None
    try:
        return client.call(name, method, args, kwargs, stream_logs=stream_logs, call_id=call_id,
                           refs=refs_in(args, kwargs), timeout=timeout, queue=queue)
    except BaseException as exc:
        error = exc
        raise
    finally:
        _on_call(client, name, method, start, error)


async def _acall(client: DaemonClient, name: str, method: str, args: tuple, kwargs: dict,
                 stream_logs: bool, timeout: float | None = None) -> Any:
    start, error = time.monotonic(), None
    try:
        return await client.acall(name, method, args, kwargs, stream_logs, timeout=timeout)
    except BaseException as exc:
        error = exc
        raise
    finally:
        _on_call(client, name, method, start, error)


def _on_call(client: DaemonClient, name: str, method: str, start: float, error: BaseException | None) -> None:
    """``tether_on_call``: after the call returned (a generator: once it started streaming)."""
    emit(ON_CALL, {"cluster": client.cluster, "name": name, "method": method,
                   "seconds": time.monotonic() - start,
                   "error": None if error is None else f"{type(error).__name__}: {error}"})


def refs_in(args: tuple, kwargs: dict) -> list[str]:
    """Names of the RemoteRefs among the arguments (top level and one container deep), so the
    daemon can hand each one to the call's worker first when it lives in another env."""
    found: list[str] = []
    for value in (*args, *kwargs.values()):
        items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else (value,)
        found.extend(item.name for item in items if isinstance(item, RemoteRef))
    return found


def _mark_index(exc: BaseException, index: int, what: str) -> None:
    try:
        exc.map_index = index  # type: ignore[attr-defined]
        exc.add_note(f"raised by item {index} of {what}.map()")
    except Exception:  # noqa: BLE001 - exceptions with __slots__ cannot take attributes
        pass


async def _async_items(call):
    items = await call
    async for item in items:
        yield item


class CallHandle:
    """A call running in the background (``fn.submit``): ``result()``, ``done()``, ``cancel()``."""

    _ids = itertools.count()

    def __init__(self, cluster: Cluster, name: str, method: str, args: tuple, kwargs: dict,
                 stream_logs: bool, timeout: float | None = None) -> None:
        self.cluster, self.name, self.method = cluster, name, method
        self.call_id = new_call_id()
        self._future: Future = Future()
        client = cluster.client

        def run() -> None:
            try:
                value = _call(client, name, method, args, kwargs, stream_logs, call_id=self.call_id,
                              timeout=timeout)
            except BaseException as exc:  # noqa: BLE001 - handed to result()
                self._future.set_exception(exc)
            else:
                self._future.set_result(value)

        self._thread = threading.Thread(target=run, name=f"tether-call-{next(self._ids)}", daemon=True)
        self._thread.start()

    def result(self, timeout: float | None = None) -> Any:
        """The call's result (or its exception); ``timeout`` bounds this wait only (a
        ``concurrent.futures.TimeoutError``), the call goes on."""
        return self._future.result(timeout)

    def done(self) -> bool:
        return self._future.done()

    def cancel(self, force: bool = False) -> bool:
        """Stop the remote call: async methods are cancelled, a sync method's thread is asked to
        stop; ``force=True`` restarts the worker (its objects are re-created)."""
        if self._future.done():
            return False
        reply = self.cluster.client.cancel(self.call_id, force=force)
        return bool(reply.get("cancelled"))

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"<CallHandle {self.name}.{self.method} {self.call_id} {state}>"


class RemoteRef:
    """A result kept on the cluster (``fn.remote(...)``).

    Passed as an argument to another call on the same cluster, that call gets the object itself:
    it never travels through the caller (between envs the daemon copies it from one worker to the
    other). ``fetch()`` brings it here.
    """

    def __init__(self, cluster: Cluster, name: str, type_name: str = "") -> None:
        self.cluster, self.name, self.type_name = cluster, name, type_name

    def fetch(self) -> Any:
        return self.cluster.client.call(self.name, "__value__", timeout=default_timeout())

    def delete(self) -> None:
        self.cluster.delete(self.name)

    def __reduce__(self):
        return (refs.resolve, (self.name,))

    def __repr__(self) -> str:
        return f"<RemoteRef {self.name!r} ({self.type_name}) on {self.cluster.name!r}>"


def _remote(cluster: Cluster, name: str, method: str, args: tuple, kwargs: dict, stream_logs: bool,
            timeout: float | None = None) -> RemoteRef:
    call_id = new_call_id()
    info = cluster.client.call(name, method, args, kwargs, stream_logs=stream_logs, call_id=call_id,
                               keep=True, refs=refs_in(args, kwargs), timeout=timeout)
    return RemoteRef(cluster, info["ref"], info.get("type", ""))


def get(ref: RemoteRef) -> Any:
    """``tether.get(ref)``: the value behind a remote result."""
    return ref.fetch()
