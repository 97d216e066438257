"""What a worker process holds: user objects, how they are made, described and called.

Imported by worker processes (``tether.worker.runtime``): the standard library, cloudpickle and
``tether.protocol.wire`` only.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import sysconfig
import threading
from collections import deque
from typing import Any

from tether.protocol import wire


class Entry:
    """One named object in a worker, with its call gate and what is known of its methods."""

    __slots__ = ("kind", "obj", "gate", "queue", "_flags")

    def __init__(self, kind: str, obj: Any, max_concurrency: int | None = None) -> None:
        self.kind, self.obj = kind, obj
        self.gate = Gate(max_concurrency) if max_concurrency else None
        #: enqueued calls (``fn.enqueue``) take turns here, one at a time, before ``gate``
        self.queue = Gate(1)
        self._flags: dict[str, dict[str, bool]] = {}

    def flags(self, method: str) -> dict[str, bool]:
        """async/generator flags of a method, looked up once (a call must not pay ``inspect``)."""
        found = self._flags.get(method)
        if found is None:
            static = static_attr(self, method)
            found = self._flags[method] = flags(static) if static is not None else {}
        return found

    def forget_flags(self) -> None:
        self._flags.clear()


class Gate:
    """At most ``limit`` calls of one object at once; the others start in arrival order.

    A waiting call holds no thread: ``enter(job)`` says whether the job may run now, else keeps
    it; ``leave()`` hands the freed place to the next kept job and returns it, for the caller to
    run. Any thread may call either.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self.waiting: deque = deque()
        self.lock = threading.Lock()

    def enter(self, job) -> bool:
        with self.lock:
            if self.running >= self.limit:
                self.waiting.append(job)
                return False
            self.running += 1
            return True

    def leave(self):
        with self.lock:
            if self.waiting:
                return self.waiting.popleft()
            self.running -= 1
            return None


def flags(fn: Any) -> dict[str, bool]:
    fn = inspect.unwrap(fn) if callable(fn) else fn
    if isinstance(fn, (staticmethod, classmethod)):
        fn = fn.__func__
    return {
        "async": inspect.iscoroutinefunction(fn),
        "generator": inspect.isgeneratorfunction(fn),
        "async_generator": inspect.isasyncgenfunction(fn),
    }


def describe(fn: Any, bound: bool = False) -> dict[str, Any]:
    """A method's entry in the interface: its flags, and the names of its parameters.

    ``params`` lists the parameters a caller may pass by keyword, ``varkw`` says whether it takes
    ``**kwargs``: the stub decides from them whether ``timeout=`` is the function's own argument
    or tether's call timeout (``tether.core.invoke``). A signature that cannot be read (some
    builtins) leaves both out, and the stub then never takes ``timeout=`` for itself. ``bound``:
    ``fn`` is a function found on a class, called bound (its first parameter is not passed).
    """
    described: dict[str, Any] = flags(fn)
    target = fn.__func__ if isinstance(fn, (staticmethod, classmethod)) else fn
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return described
    if params and (isinstance(fn, classmethod) or bound and inspect.isfunction(fn)):
        params = params[1:]  # self / cls
    described["params"] = [p.name for p in params
                           if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    described["varkw"] = any(p.kind == p.VAR_KEYWORD for p in params)
    return described


def interface(kind: str, obj: Any) -> dict[str, Any]:
    """What the caller's stub needs to know: methods (with async/generator flags and parameter
    names, ``describe``) and properties."""
    if kind == "function":
        return {"kind": kind, "type": qualname(obj), "methods": {"call": describe(obj)}, "properties": []}
    if kind == "value":
        return {"kind": kind, "type": qualname(type(obj)), "methods": {}, "properties": []}
    cls = obj if isinstance(obj, type) else type(obj)
    methods, properties = {}, []
    local_api = getattr(cls, "_tether_local_api", ())
    for name in dir(cls):
        if name.startswith("_") and name != "__call__":
            continue
        if name in local_api and _defined_by_tether(cls, name):
            continue  # tether.Module's own API (to, save...) on a subclass: used by the caller only
        try:
            attr = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        if isinstance(attr, (staticmethod, classmethod)):  # a classmethod is no callable: not a property
            methods[name] = describe(attr, bound=True)
        elif isinstance(attr, property) or hasattr(attr, "__set__") or hasattr(attr, "__get__") and not callable(attr):
            properties.append(name)
        elif callable(attr):
            methods[name] = describe(attr, bound=True)
    return {"kind": kind, "type": qualname(cls), "methods": methods, "properties": properties}


def _defined_by_tether(cls: type, name: str) -> bool:
    """Whether the class that defines ``name`` for ``cls`` is tether's (not the user's override)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass.__module__.startswith("tether.")
    return False


def qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def import_target(meta: dict[str, Any], payload: list[memoryview]) -> Any:
    """The function or class a deploy names: by import path, or unpickled when serialized."""
    if meta.get("serialized"):
        return wire.loads(payload[: meta["payload_frames"]], "the serialized code")
    for entry in reversed(meta.get("path_entries") or []):
        entry = os.path.expanduser(entry)  # synced code: "~/.tether/code/..." on every node
        if entry not in sys.path:
            sys.path.insert(0, entry)
    module = importlib.import_module(meta["module"])
    target: Any = module
    for part in meta["qualname"].split("."):
        target = getattr(target, part)
    return target


class NotFound(AttributeError):
    """The call names an object or attribute that does not exist (the caller gets a 404)."""


class Unserializable(TypeError):
    """A result cannot be sent in the form the caller asked for (JSON)."""


def static_attr(entry: Entry, method: str) -> Any:
    if entry.kind == "function":
        return entry.obj if method in ("call", "__call__") else None
    if entry.kind != "instance":
        return None
    try:
        return inspect.getattr_static(entry.obj, method)
    except AttributeError:
        return None


def bound_target(entry: Entry, method: str) -> Any:
    """The callable an async call runs: the function itself, or the bound method."""
    return entry.obj if entry.kind == "function" else getattr(entry.obj, method)


def invoke(entry: Entry, method: str, args: list, kwargs: dict) -> Any:
    obj = entry.obj
    if entry.kind == "function":
        if method not in ("call", "__call__"):
            raise NotFound(f"a function has only the method 'call' (asked for {method!r})")
        return obj(*args, **kwargs)
    if entry.kind == "value":
        if method == "__value__":
            return obj
        raise NotFound(f"a stored value has no method {method!r}; fetch it with cluster.get()")
    if method == "__value__":  # the instance itself, by value (``instance.fetch()``)
        return obj
    if method == "__setattr__":
        setattr(obj, *args)
        entry.forget_flags()  # an attribute may now shadow a method
        return None
    try:
        attr = getattr(obj, method)
    except AttributeError:
        if method in dir(obj):
            raise  # a property that itself raised AttributeError: the user's error
        public = sorted(n for n in dir(obj) if not n.startswith("_"))
        raise NotFound(f"{type(obj).__name__} has no attribute {method!r}; it has: {', '.join(public)}") from None
    if callable(attr):
        return attr(*args, **kwargs)
    if args or kwargs:
        raise TypeError(f"{type(obj).__name__}.{method} is a {type(attr).__name__}, not a method")
    return attr


class ModuleWatch:
    """Remembers the user modules a worker imported, to tell when their source was edited."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, int]] = {}
        self.skipped: set[str] = set()  # paths judged not the user's (stdlib, site-packages): once each
        self.known = 0  # len(sys.modules) at the last record(): a cheap "anything new?" test
        paths = sysconfig.get_paths()
        dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, paths.get("purelib", ""), paths.get("platlib", ""),
                paths.get("stdlib", ""), os.path.dirname(os.path.dirname(wire.__file__))}
        self.ignored = tuple(os.path.realpath(d) + os.sep for d in dirs if d)

    def record_new(self) -> None:
        """Record modules a call imported; O(1) when it imported none."""
        if len(sys.modules) != self.known:
            self.record()

    def record(self) -> None:
        self.known = len(sys.modules)
        for mod in list(sys.modules.values()):
            path = getattr(mod, "__file__", None)
            if not path or path in self.seen or path in self.skipped:
                continue
            real = os.path.realpath(path)
            if real.startswith(self.ignored) or "site-packages" in real:
                self.skipped.add(path)  # a realpath per module per deploy was ~15% of a deploy's CPU here
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            self.seen[path] = (st.st_mtime_ns, st.st_size)

    def stale(self) -> list[str]:
        changed = []
        for path, stamp in self.seen.items():
            try:
                st = os.stat(path)
            except OSError:
                changed.append(path)
                continue
            if (st.st_mtime_ns, st.st_size) != stamp:
                changed.append(path)
        for path in changed:  # its .pyc is stamped to the second: an edit within it would be hidden
            _drop_bytecode(path)
        return changed


def _drop_bytecode(path: str) -> None:
    if not path.endswith(".py"):
        return
    try:
        os.unlink(importlib.util.cache_from_source(path))
    except (OSError, NotImplementedError, ValueError):
        pass
