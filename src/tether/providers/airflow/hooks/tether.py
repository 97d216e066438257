"""``TetherHook``: the ``tether`` connection (where tether keeps its registry, the default launcher).

The connection's host is a folder (this machine's registry: ``$TETHER_HOME``), or a team
registry's URL (``http://registry:8470``) with the user's token as its password: then every
worker, on any machine, finds the same named clusters and services there (docs/registry.md). A
connection is optional: without ``tether_default`` the hook uses tether's own defaults
(``$TETHER_HOME``, ``TETHER_REGISTRY``/``TETHER_TOKEN`` if set, the local launcher). A connection
id that is named explicitly and missing is an error that says which connection to create.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from tether.errors import ConfigError


@dataclass(frozen=True)
class TetherSettings:
    """What a connection says: the registry folder (None: ``$TETHER_HOME``), or a team registry's
    URL and token (None: ``TETHER_REGISTRY``/``TETHER_TOKEN`` as the worker has them), and the
    default launcher."""

    home: str | None = None
    launcher: str = "local"
    registry_url: str | None = None
    registry_token: str | None = field(default=None, repr=False)


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
                f"http://registry:8470 --conn-password <token>` (a team registry) or --conn-host "
                f"/path/to/tether/home, or the env var AIRFLOW_CONN_{self.tether_conn_id.upper()}"
                f"='{{\"conn_type\": \"tether\"}}' (an empty host uses $TETHER_HOME)") from None
        extra = conn.extra_dejson or {}
        launcher = extra.get("launcher") or "local"
        url = _registry_url(conn.host, conn.port)
        if url is not None:
            return TetherSettings(launcher=launcher, registry_url=url, registry_token=conn.password or None)
        return TetherSettings(home=_home(conn.host), launcher=launcher)

    @contextlib.contextmanager
    def activated(self) -> Iterator[TetherSettings]:
        """Run the block with the connection's registry: its folder as ``$TETHER_HOME``, or its team
        registry as ``TETHER_REGISTRY``/``TETHER_TOKEN`` (``tether.core.registry.remote.using``)."""
        from tether.core.registry import remote

        settings = self.get_conn()
        with registry(settings.home), remote.using(settings.registry_url, settings.registry_token):
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
        if settings.registry_url:
            from tether.core.registry import remote

            try:
                with remote.using(settings.registry_url, settings.registry_token) as login:
                    user = remote.RegistryClient(login).whoami(fresh=True)["user"]
            except Exception as exc:  # noqa: BLE001 - the UI shows the reason
                return False, str(exc)
            return True, f"team registry {settings.registry_url} as {user}, launcher {settings.launcher}"
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


def _registry_url(host: str | None, port: int | None) -> str | None:
    """The team registry's URL when the host is one (``http://registry:8470``; the connection's
    port is added when the URL has none), else None."""
    if not host or not host.startswith(("http://", "https://")):
        return None
    url = host.rstrip("/")
    if port and urllib.parse.urlsplit(url).port is None:
        parts = urllib.parse.urlsplit(url)
        url = urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.netloc}:{port}"))
    return url


def _home(host: str | None) -> str | None:
    if not host:
        return None
    if host.startswith("file://"):
        return host[len("file://"):]
    if "://" in host:
        raise ConfigError(f"the tether connection's host {host!r} is neither a folder nor a team "
                          "registry's http(s):// URL")
    return host
