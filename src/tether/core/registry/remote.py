"""The team registry's client: which registry this process uses, its HTTP API, and a read cache.

Which registry: ``TETHER_REGISTRY`` / ``TETHER_TOKEN`` (pipelines) over what ``tether login``
stored in ``$TETHER_HOME/registry.json``; none configured means names stay on this machine (the
local registry). Requests are a few small JSON round trips, so this uses the standard library's
urllib rather than an HTTP client dependency. Each config read is kept in
``$TETHER_HOME/registry-cache/<registry>/`` so a running pipeline keeps loading its names while the
registry is down; writes then fail with an error naming the URL and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.errors import (
    AccessDeniedError,
    AuthenticationError,
    ConfigError,
    ConnectionError,
    NotFoundError,
    QuotaExceededError,
    TetherError,
)
from tether.state import environ, read_json, registry_cache_dir, registry_login_path, write_json

ENV_URL = "TETHER_REGISTRY"
ENV_TOKEN = "TETHER_TOKEN"
TIMEOUT = 10.0  # seconds per request


@dataclass(frozen=True)
class Login:
    url: str
    token: str


def configured() -> Login | None:
    """The registry this process uses (env vars first, then ``tether login``'s file), or None."""
    saved = read_json(registry_login_path()) or {}
    url = (os.environ.get(ENV_URL) or saved.get("url") or "").rstrip("/")
    if not url:
        return None
    token = os.environ.get(ENV_TOKEN) or (saved.get("token") if saved.get("url", "").rstrip("/") == url else "")
    return Login(url, token or "")


def client() -> RegistryClient | None:
    login = configured()
    return None if login is None else RegistryClient(login)


#: (url, token) -> whoami: a token's user never changes
_WHOAMI: dict[tuple[str, str], dict[str, Any]] = {}
#: (url, token, cluster) -> the grant last signed for it
_GRANTS: dict[tuple[str, str, str], dict[str, Any]] = {}
RENEW_BEFORE = 60.0  # seconds: a grant this close to expiring is renewed


class RegistryUnavailableError(ConnectionError):
    """The registry cannot be reached (``url``); reads fall back to the cache, writes fail."""


class RegistryClient:
    """The registry's HTTP API (``/v1``), with errors as tether's own."""

    def __init__(self, login: Login) -> None:
        self.url, self.token = login.url, login.token
        self._cache = registry_cache_dir() / re.sub(r"[^A-Za-z0-9_.-]", "_", urllib.parse.urlsplit(self.url).netloc
                                                    or self.url)

    # -- transport ------------------------------------------------------------------------------

    def request(self, method: str, route: str, body: Any = None, query: dict[str, Any] | None = None,
                doing: str = "") -> Any:
        url = f"{self.url}/v1/{route.lstrip('/')}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise self._error(exc) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryUnavailableError(
                f"the team registry at {self.url} cannot be reached ({reason}): {doing or method + ' ' + route} "
                f"was not done. Check that it runs (`tether registry serve`) and that {ENV_URL} or "
                "`tether login URL` names it; to keep a resource on this machine only, use a ~/name",
                url=self.url) from None
        return json.loads(raw) if raw else None

    def _error(self, exc: urllib.error.HTTPError) -> TetherError:
        try:
            body = json.loads(exc.read() or b"{}")
            message = body.get("message") or json.dumps(body.get("detail", body))
        except ValueError:
            body, message = {}, exc.reason
        where = f"team registry {self.url}"
        if exc.code == 401:
            if not self.token:
                message = f"no token for {self.url}: run `tether login {self.url}` or set {ENV_TOKEN}"
            return AuthenticationError(f"{where}: {message}", url=self.url)
        if exc.code == 403:
            return AccessDeniedError(f"{where}: {message}", url=self.url)
        if exc.code == 404:
            return NotFoundError(f"{where}: {message}", url=self.url)
        if exc.code == 409 and body.get("error") == "quota_exceeded":
            return QuotaExceededError(f"{where}: {message}", url=self.url, group=body.get("group"),
                                      use=body.get("use"), limit=body.get("limit"), asked=body.get("asked"))
        if exc.code in (400, 409, 422):
            return ConfigError(f"{where}: {message}", url=self.url)
        return TetherError(f"{where} answered HTTP {exc.code}: {message}", url=self.url)

    # -- who ------------------------------------------------------------------------------------

    def whoami(self, fresh: bool = False) -> dict[str, Any]:
        """``{"user", "admin", "groups"}`` for this token (kept in this process and on disk: ``@/x``
        costs one round trip per process, and resolves while the registry is down)."""
        key = (self.url, self.token)
        if key in _WHOAMI and not fresh:
            return _WHOAMI[key]
        path = self._cache / f"whoami-{hashlib.sha256(self.token.encode()).hexdigest()[:16]}.json"
        try:
            found = self.request("GET", "whoami")
        except RegistryUnavailableError:
            cached = None if fresh else read_json(path)
            if cached is None:
                raise
            return cached
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json(path, found)
        _WHOAMI[key] = found
        return found

    # -- resources ------------------------------------------------------------------------------

    def _cached(self, path: str, version: int | None) -> Path:
        return self._cache.joinpath(*path.strip("/").split("/")[:-1],
                                    path.rsplit("/", 1)[1] + ("" if version is None else f"@{version}") + ".json")

    def get(self, path: str, version: int | None = None) -> dict[str, Any]:
        """``{"path", "type", "version", "config", "owner", "access", ...}``; from the cache when the
        registry cannot be reached (``"cached": True``)."""
        cache = self._cached(path, version)
        try:
            found = self.request("GET", f"resources{path}", query={"version": version}, doing=f"loading {path}")
        except RegistryUnavailableError as exc:
            cached = read_json(cache)
            if cached is None:
                raise RegistryUnavailableError(f"{exc.message} (and {path} was never read here, so no "
                                               "cached copy exists)", url=self.url) from None
            return {**cached, "cached": True}
        except NotFoundError:
            cache.unlink(missing_ok=True)
            raise
        cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json(cache, found)
        return found

    def put(self, path: str, config: dict[str, Any]) -> int:
        """Save ``config`` as a new version of ``path``; its number."""
        return self.request("PUT", f"resources{path}", {"config": config}, doing=f"saving {path}")["version"]

    def put_secret(self, path: str, config: dict[str, Any], values: dict[str, Any]) -> int:
        """Save a secret's config and values (encrypted at rest by the registry); the new version."""
        return self.request("PUT", f"secrets{path}", {"config": config, "values": values},
                            doing=f"saving the secret {path}")["version"]

    def secret_values(self, path: str, version: int | None = None) -> dict[str, Any]:
        """A secret's values (read access). Never cached on disk: a registry that is down fails."""
        return self.request("GET", f"secrets{path}", query={"version": version},
                            doing=f"reading the secret {path}")["values"]

    def delete(self, path: str) -> None:
        self.request("DELETE", f"resources{path}", doing=f"deleting {path}")
        self._cached(path, None).unlink(missing_ok=True)

    def versions(self, path: str) -> list[dict[str, Any]]:
        return self.request("GET", f"resources{path}/versions")

    def rollback(self, path: str, version: int) -> int:
        return self.request("POST", f"resources{path}/rollback", {"version": version},
                            doing=f"rolling {path} back to version {version}")["version"]

    def share(self, path: str, principals: list[str], access: str) -> list[dict[str, str]]:
        return self.request("PUT", f"resources{path}/shares", {"principals": principals, "access": access},
                            doing=f"sharing {path}")

    def unshare(self, path: str, principals: list[str]) -> list[dict[str, str]]:
        return self.request("DELETE", f"resources{path}/shares", {"principals": principals},
                            doing=f"unsharing {path}")

    def shares(self, path: str) -> list[dict[str, str]]:
        return self.request("GET", f"resources{path}/shares")

    def list(self, prefix: str = "/") -> list[dict[str, Any]]:
        return self.request("GET", "resources", query={"prefix": prefix})

    def shared_with_me(self) -> list[dict[str, Any]]:
        return self.request("GET", "shared-with-me")

    def grant(self, cluster: str) -> dict[str, Any]:
        """A grant for ``cluster`` (``{"grant", "expires", "access", ...}``): the bearer token its
        daemon accepts from this user (``tether.protocol.grants``)."""
        return self.request("POST", "grants", {"cluster": cluster}, doing=f"asking for a grant to {cluster}")

    def grant_key(self, doing: str = "reading the registry's grant key") -> dict[str, str]:
        """``{"public_key", "issuer"}``: what a shared cluster's daemon verifies grants with."""
        return self.request("GET", "grant-key", doing=doing)

    def grant_token(self, cluster: str) -> str:
        """A grant for ``cluster`` that is valid for a while yet: kept per (registry, token,
        cluster) in this process and renewed :data:`RENEW_BEFORE` seconds before it expires, so a
        caller sends it as its bearer token on every request without asking each time."""
        key = (self.url, self.token, cluster)
        held = _GRANTS.get(key)
        if held is None or held["expires"] - time.time() < RENEW_BEFORE:
            held = _GRANTS[key] = self.grant(cluster)
        return held["grant"]


    # -- quotas ---------------------------------------------------------------------------------

    def claim_usage(self, name: str, launcher: str, cpus: float, gpus: float, check: bool = True) -> dict[str, Any]:
        """Count cluster ``name`` against this user's groups' quotas (or renew its entry);
        QuotaExceededError past one (``check``) with the group's use and limits."""
        return self.request("POST", "usage/clusters", {"name": name, "launcher": launcher, "cpus": cpus,
                                                       "gpus": gpus, "check": check},
                            doing=f"counting cluster {name!r} against your quotas")

    def release_usage(self, name: str) -> None:
        self.request("DELETE", f"usage/clusters/{urllib.parse.quote(name)}",
                     doing=f"releasing cluster {name!r} from your quotas")

    def usage(self) -> dict[str, Any]:
        """``{"clusters": [...], "quotas": [...]}``: this user's counted clusters, their groups' quotas."""
        return self.request("GET", "usage")


@contextlib.contextmanager
def using(url: str | None, token: str | None = None) -> Iterator[Login | None]:
    """Run the block with the team registry at ``url`` (and ``token``), as ``TETHER_REGISTRY`` and
    ``TETHER_TOKEN`` would: what an orchestrator's step does with its connection, block or resource.
    ``url`` None: as it is. The variables are the process's (subprocesses inherit them), restored
    after the block; steps of one process that use different registries take turns."""
    if not url:
        yield configured()
        return
    if not re.match(r"^https?://", url):
        raise ConfigError(f"the registry URL {url!r} needs its scheme: http://host:port or https://host")
    with environ({ENV_URL: url.rstrip("/"), ENV_TOKEN: token or None}):
        yield configured()


def login(url: str, token: str) -> str:
    """Check ``token`` at ``url`` and store both (0600) for this machine; the user's name."""
    url = url.rstrip("/")
    if not re.match(r"^https?://", url):
        raise ConfigError(f"the registry URL {url!r} needs its scheme: http://host:port or https://host")
    user = RegistryClient(Login(url, token)).whoami(fresh=True)["user"]
    registry_login_path().parent.mkdir(parents=True, exist_ok=True)
    write_json(registry_login_path(), {"url": url, "token": token})
    return user


def logout() -> bool:
    """Forget the stored registry login; whether there was one."""
    try:
        registry_login_path().unlink()
    except FileNotFoundError:
        return False
    return True
