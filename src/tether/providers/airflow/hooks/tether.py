"""``TetherHook``: the ``tether`` connection (where tether keeps its registry, the default launcher).

A connection is optional: without ``tether_default`` the hook uses tether's own defaults
(``$TETHER_HOME``, the local launcher). A connection id that is named explicitly and missing is an
error that says which connection to create.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from tether.errors import ConfigError


@dataclass(frozen=True)
class TetherSettings:
    """What a connection says: the registry folder (None: ``$TETHER_HOME``) and default launcher."""

    home: str | None = None
    launcher: str = "local"


class TetherHook(BaseHook):
    """Reads the ``tether`` connection and applies it around a step's work (``activated()``)."""

    conn_name_attr = "tether_conn_id"
    default_conn_name = "tether_default"
    conn_type = "tether"
    hook_name = "Tether"

    def __init__(self, tether_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tether_conn_id = tether_conn_id

    def get_conn(self) -> TetherSettings:
        try:
            conn = self.get_connection(self.tether_conn_id)
        except AirflowNotFoundException:
            if self.tether_conn_id == self.default_conn_name:
                return TetherSettings()  # tether's defaults: $TETHER_HOME, the local launcher
            raise AirflowNotFoundException(
                f"no Airflow connection {self.tether_conn_id!r}: create it with type 'tether', e.g. "
                f"`airflow connections add {self.tether_conn_id} --conn-type tether --conn-host "
                f"/path/to/tether/registry`, or the env var AIRFLOW_CONN_{self.tether_conn_id.upper()}"
                f"='{{\"conn_type\": \"tether\"}}' (an empty host uses $TETHER_HOME)") from None
        extra = conn.extra_dejson or {}
        return TetherSettings(home=_home(conn.host), launcher=extra.get("launcher") or "local")

    @contextlib.contextmanager
    def activated(self) -> Iterator[TetherSettings]:
        """Run the block with the connection's registry as ``$TETHER_HOME``."""
        settings = self.get_conn()
        with registry(settings.home):
            yield settings

    def registry_home(self) -> str | None:
        """The registry folder this process uses with the connection (None: tether's default of
        the process that asks), for a process that cannot read connections (the triggerer)."""
        return self.get_conn().home or os.environ.get("TETHER_HOME") or None

    def test_connection(self) -> tuple[bool, str]:
        try:
            settings = self.get_conn()
        except Exception as exc:  # noqa: BLE001 - the UI shows the reason
            return False, str(exc)
        return True, f"registry {settings.home or '$TETHER_HOME'}, launcher {settings.launcher}"


@contextlib.contextmanager
def registry(home: str | None) -> Iterator[None]:
    """Run the block with ``home`` as ``$TETHER_HOME`` (None: as it is). The variable is the
    process's: where several registries meet in one process (the triggerer), blocks take turns."""
    if home is None:
        yield
        return
    before = os.environ.get("TETHER_HOME")
    os.environ["TETHER_HOME"] = home
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TETHER_HOME", None)
        else:
            os.environ["TETHER_HOME"] = before


def _home(host: str | None) -> str | None:
    if not host:
        return None
    if host.startswith("file://"):
        return host[len("file://"):]
    if host.startswith(("http://", "https://")):
        raise ConfigError(
            f"the tether connection's host {host!r} is a URL: the connection does not take a team "
            "registry's URL yet. Set TETHER_REGISTRY and TETHER_TOKEN in the workers' environment "
            "(docs/registry.md), and use the connection's host for a folder (a path) or leave it empty.")
    return host
