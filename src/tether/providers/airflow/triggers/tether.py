"""``TetherCallTrigger``: the triggerer's side of a deferrable tether call.

``TetherCallOperator(deferrable=True)`` and ``@task.tether(deferrable=True)`` prepare the call in
the worker (the ladder's rung, the service made there, the arguments pickled) and defer to this
trigger, which releases the worker slot. In the triggerer it starts the call by its id and reads
its output into the trigger's log (Airflow shows it in the task's log), then fires one event when
the call has ended: the task resumes in a worker (``execute_complete``), which fetches the result,
or the remote error, from the daemon by id. Nothing here unpickles the arguments or the result: the
triggerer needs tether installed and the cluster's registry (the connection's folder, or
``$TETHER_HOME``), not your code.

One asyncio task per call, no thread held while the call runs: the trigger waits on the
daemon's own long poll (``GET /_tether/calls/{id}?timeout=60``) or on the call's response stream.

* A triggerer that restarts (or hands the trigger to another triggerer) does not stop the call:
  the new trigger finds the call running by its id and waits for its end (its output from then on
  is only in the worker's log on the cluster).
* Clearing the task, marking it failed or succeeded (a user's action) cancels the remote call
  (``on_kill``).
* Past the call's timeout (a little before the task's ``execution_timeout``), the trigger cancels
  it and the task fails with ``tether.CallTimeoutError``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from tether.providers.airflow.hooks.tether import registry

#: the registry folder is the process's ``$TETHER_HOME``: triggers of several connections take turns
_REGISTRY = threading.Lock()


class TetherCallTrigger(BaseTrigger):
    """Start a prepared tether call, follow its output, and fire when it has ended.

    :param call: the call, as ``tether.steps.deferred.prepare_call`` named it (JSON).
    :param arguments: its arguments, pickled in the worker (``encode_arguments``), base64.
    :param home: the registry folder where the cluster is saved (None: the triggerer's
        ``$TETHER_HOME``).
    :param poll_interval: the longest single wait on the daemon, in seconds (it answers as soon as
        the call ends; this only bounds one request).
    """

    def __init__(self, *, call: dict[str, Any], arguments: str, home: str | None = None,
                 poll_interval: float = 60.0) -> None:
        super().__init__()
        self.call, self.arguments, self.home = call, arguments, home
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"call": self.call, "arguments": self.arguments, "home": self.home,
                 "poll_interval": self.poll_interval})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from tether.errors import TetherError
        from tether.steps import deferred

        try:
            cluster = await asyncio.to_thread(self._in_registry, deferred.connect, self.call["cluster"])
        except TetherError as exc:
            outcome = deferred.failure(exc)
        else:
            outcome = await deferred.follow(cluster, self.call, self.arguments, logger=self.log,
                                            poll=self.poll_interval)
        yield TriggerEvent({**outcome, "call": self.call})

    async def on_kill(self) -> None:
        """The user cleared the task or marked it: stop the remote call too."""
        from tether.steps import deferred

        cancelled = await asyncio.to_thread(self._in_registry, deferred.cancel, self.call)
        self.log.info("[tether] %s remote call %s of %s", "cancelled" if cancelled else "did not cancel "
                      "(it had ended) the", self.call["call_id"], self.call["what"])

    def _in_registry(self, action, *args: Any) -> Any:
        with _REGISTRY, registry(self.home):
            return action(*args)
