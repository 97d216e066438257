"""``TetherCallLink``: the task's button to its tether call, where its cluster's daemon serves it.

The link is the daemon's ``/_tether/calls/{id}`` of the task's call (the result, or the error,
of that call, while the daemon keeps it; a request needs the cluster's bearer token, and the
daemon listens where the task ran: loopback, or the end of an SSH tunnel). A deferred call pushes
it when it starts, so it is there while the task waits in the triggerer; when the task ends, the
worker stores the link of the call it made (Airflow asks ``get_link`` then, in the worker, and the
UI shows what was stored).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink, BaseXCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: the operator's attribute holding the URL of the call it made in this process ("": none)
URL_ATTRIBUTE = "_tether_call_url"


class TetherCallLink(BaseOperatorLink):
    """The tether call of a ``TetherCallOperator`` or ``@task.tether`` task."""

    name = "Tether call"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        url = getattr(operator, URL_ATTRIBUTE, None)
        if url is not None:  # the worker, as the task ends: the call this process made or resumed
            return url
        return BaseXCom.get_value(ti_key=ti_key, key=self.xcom_key) or ""


def push_call_link(task: Any, context: Any, url: str) -> None:
    """Show ``url`` as the task's "Tether call" link now (an XCom under the link's key: the UI
    reads it while the task is deferred)."""
    setattr(task, URL_ATTRIBUTE, url)
    context["ti"].xcom_push(key=TetherCallLink().xcom_key, value=url)


def remember_call(task: Any, url: str) -> None:
    """The call this task made: its link when the task ends (no XCom read, none written twice)."""
    setattr(task, URL_ATTRIBUTE, url)


def call_url(service: str, call_id: str) -> str:
    """Where the daemon of ``service``'s cluster serves the call ``call_id``; "" if it cannot be
    said (the service or its cluster is gone): a link is never worth failing a task."""
    from tether.core.cluster import cluster as named_cluster
    from tether.errors import TetherError
    from tether.steps.services import Service

    try:
        handle = named_cluster(Service.load(service).cluster)
        if not handle.is_up():  # its client would bring it up
            return ""
        return f"{handle.client.url}/_tether/calls/{call_id}"
    except TetherError:
        return ""
