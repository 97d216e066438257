"""The one exception hierarchy of tether.

Every error tether raises on purpose derives from :class:`TetherError`; foreign errors (httpx,
sockets, pickle) are translated at one boundary with ``raise ... from exc`` so callers catch ours.

::

    TetherError
    ├── ConfigError                 bad spec, bad name, unknown launcher, nothing saved under a name
    │   └── NotFoundError           a saved resource, or an object/method on a daemon, does not exist
    │       └── ResultExpiredError  a call's result was dropped (retention by count and age)
    ├── LaunchError                 a cluster or its daemon could not be started (no usable python3
    │   │                           on a node, no wheels that fit it, the daemon did not start)
    │   └── QuotaExceededError      the launch would take a group past its team registry quota
    │                               (refused before anything is provisioned; shows the group's use)
    ├── ConnectionError             the daemon or a node cannot be reached (SSH: unreachable, port
    │   │                           closed, host key not trusted), or the connection dropped mid-call
    │   ├── AuthenticationError     the daemon refused the token (HTTP 401), or an SSH login failed
    │   └── VersionMismatchError    the client and the daemon speak different versions
    ├── AccessDeniedError           a registry or a shared cluster refused: the access level is too low
    │                               (HTTP 403; the message names the access and who can grant it)
    ├── SerializationError          an argument or a result cannot be pickled / unpickled
    ├── CallCancelledError          the call was cancelled (Ctrl-C, handle.cancel(), task cancel)
    ├── CallTimeoutError            a call (or a wait for its result) outlived its ``timeout``
    └── RemoteError                 the remote code raised and the type cannot be re-raised locally
        ├── WorkerDiedError         the worker process died mid-call (segfault, os._exit, SIGKILL)
        └── OutOfMemoryError        the worker ran out of memory

Warnings (``warnings.warn``, so callers filter them as usual)::

    TetherWarning
    └── StateResetWarning           an instance was made again from its constructor arguments (a
                                    daemon restart, a worker that died): its in-memory state is gone

Errors carry structured fields (``cluster``, ``node`` (the machine's address), ``service``,
``call_id``...) so that orchestrator providers can act on them without parsing messages.
"""

from __future__ import annotations

import builtins
from typing import Any


class TetherError(Exception):
    """Root of every error tether raises."""

    def __init__(self, message: str = "", **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)

    def __reduce__(self):  # keep fields across pickling (errors travel from daemon to caller)
        return (_rebuild, (type(self), self.message, self.fields))


def _rebuild(cls: type[TetherError], message: str, fields: dict[str, Any]) -> TetherError:
    try:
        err = cls.__new__(cls)
    except TypeError:  # OutOfMemoryError: MemoryError's __new__ refuses a class with two bases
        err = BaseException.__new__(cls)
    TetherError.__init__(err, message, **fields)
    return err


class ConfigError(TetherError, ValueError):
    """A spec, a name or an option is wrong; the message says which and how to fix it."""


class NotFoundError(ConfigError, LookupError):
    """A named resource, object or method does not exist."""


class ResultExpiredError(NotFoundError):
    """The result of a call is no longer kept by the daemon (it keeps results by count and age)."""


class LaunchError(TetherError):
    """A cluster or its daemon could not be brought up."""


class QuotaExceededError(LaunchError):
    """A launch would take one of the user's groups past its quota in the team registry; nothing
    was provisioned. ``group``, ``use`` (what its members run now), ``limit`` and ``asked`` (this
    cluster's size) are dicts of ``clusters``, ``cpus``, ``gpus`` (a limit of None: none)."""


class ConnectionError(TetherError, builtins.ConnectionError):
    """The daemon cannot be reached, or the connection dropped in the middle of a call."""


class AuthenticationError(ConnectionError):
    """The daemon refused the bearer token, or a machine refused the SSH login (``node``)."""


class AccessDeniedError(TetherError, PermissionError):
    """The user's access to a shared resource does not allow this (``needed``: the access level
    it takes, ``user``: who asked); the owner shares it with more (``share(..., access_level=)``)."""


class VersionMismatchError(ConnectionError):
    """The client and the daemon run different tether versions."""


class SerializationError(TetherError, TypeError):
    """An argument or a result cannot be (un)pickled; the message names the type."""


class CallCancelledError(TetherError):
    """The remote call was cancelled before it finished."""


class CallTimeoutError(TetherError, builtins.TimeoutError):
    """A call did not finish within its ``timeout`` (seconds in ``timeout``); it was cancelled."""


class RemoteError(TetherError):
    """The remote code raised an exception whose type cannot be re-raised locally.

    Attributes:
        remote_type: ``module.QualName`` of the remote exception.
        remote_traceback: the formatted remote traceback.
    """

    def __init__(
        self,
        message: str = "",
        remote_type: str = "",
        remote_traceback: str = "",
        **fields: Any,
    ) -> None:
        super().__init__(
            message, remote_type=remote_type, remote_traceback=remote_traceback, **fields
        )

    def __str__(self) -> str:
        head = f"{self.remote_type}: {self.message}" if self.remote_type else self.message
        if self.remote_traceback:
            return f"{head}\n\nRemote traceback:\n{self.remote_traceback}"
        return head


class WorkerDiedError(RemoteError):
    """The worker process running the call died (exit code or signal in ``exitcode``/``signal``)."""


class OutOfMemoryError(RemoteError, MemoryError):
    """The remote call ran out of memory (``limit`` and ``peak`` in bytes when known)."""


def install_hint(extra: str) -> str:
    """The command that installs ``tether[extra]`` here, for error messages.

    tether is not on a package index yet, so ``pip install 'tether[sky]'`` fails: from a checkout
    (this file is in one when ``constraints.txt`` sits beside ``pyproject.toml``) the line that
    works names that checkout; otherwise both forms are given."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "constraints.txt").is_file():
        return f"pip install -e '{root}[{extra}]' -c '{root / 'constraints.txt'}'"
    return (f"pip install 'tether[{extra}]' (from a clone of tether, in the checkout: "
            f"pip install -e '.[{extra}]' -c constraints.txt)")


class TetherWarning(UserWarning):
    """Root of the warnings tether issues."""


class StateResetWarning(TetherWarning):
    """A remote instance was made again from its constructor arguments: its state was reset."""


__all__ = [
    "TetherError",
    "ConfigError",
    "NotFoundError",
    "LaunchError",
    "QuotaExceededError",
    "ConnectionError",
    "AuthenticationError",
    "AccessDeniedError",
    "VersionMismatchError",
    "SerializationError",
    "CallCancelledError",
    "CallTimeoutError",
    "ResultExpiredError",
    "RemoteError",
    "WorkerDiedError",
    "OutOfMemoryError",
    "TetherWarning",
    "StateResetWarning",
]
