"""``TetherCallLink``: the task's button to its tether call, where its cluster's daemon serves it.

The link is the daemon's ``/_tether/calls/{id}`` of the task's call (the result, or the error,
of that call, while the daemon keeps it; a request needs the cluster's bearer token, and the
daemon listens where the task ran: loopback, or the end of an SSH tunnel). The operator pushes it
when it starts the call, so it is there while the task waits in the triggerer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink, BaseXCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


class TetherCallLink(BaseOperatorLink):
    """The tether call of a ``TetherCallOperator`` or ``@task.tether`` task."""

    name = "Tether call"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return BaseXCom.get_value(ti_key=ti_key, key=self.xcom_key) or ""


def push_call_link(context, url: str) -> None:
    """Show ``url`` as the task's "Tether call" link (an XCom under the link's key: the UI reads it)."""
    context["ti"].xcom_push(key=TetherCallLink().xcom_key, value=url)
