"""Secrets given to an env's worker (``PUT /_tether/secrets/{env}``): the one place a node keeps
secret values, and nowhere else (not the manifest, status, events, logs or error messages).

Layout, under ``<state dir>/secrets/<env>/`` (folders 0700, files 0600)::

    env.json              {secret name: {ENV_VAR: value}}: given to the env's workers as they
                          start (``workers.WorkerProcess.spawn``), and pushed into a running one
    <secret>/<file>       a secret's files (an aws credentials file, a gcp json, an ssh key); its
                          ``file_env`` vars (AWS_SHARED_CREDENTIALS_FILE...) name them

A daemon restarted on the same state dir (a crash, ``restart_server()``) gives its restored workers
the same secrets from here; ``teardown()`` removes the folder. Replies and errors name secrets,
env var names and paths only.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from tether import state
from tether.daemon.requests import BadRequest

ENV_FILE = "env.json"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")


def root(state_dir: Path) -> Path:
    return state_dir / state.SECRETS


def _safe(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.\-]", "_", name).lstrip(".")[:120]
    return clean or "_"


def env_dir(state_dir: Path, env: str) -> Path:
    return root(state_dir) / _safe(env)


def check(body: Any) -> dict[str, dict[str, Any]]:
    """The ``secrets`` of a PUT body, field by field (errors name keys, never values)."""
    if not isinstance(body, dict) or not isinstance(body.get("secrets"), dict):
        raise BadRequest('the body is {"secrets": {name: {"env_vars": {...}, "files": {...}, "file_env": {...}}}}')
    out = {}
    for name, given in body["secrets"].items():
        if not isinstance(name, str) or not _PART.match(name.replace("/", "_")):
            raise BadRequest(f"bad secret name {str(name)[:60]!r}")
        if not isinstance(given, dict):
            raise BadRequest(f"secret {name!r} is an object of env_vars, files and file_env")
        env_vars, files, file_env = (given.get(k) or {} for k in ("env_vars", "files", "file_env"))
        if not all(isinstance(x, dict) for x in (env_vars, files, file_env)):
            raise BadRequest(f"secret {name!r}: env_vars, files and file_env are objects")
        for key, value in env_vars.items():
            if not isinstance(key, str) or not _ENV_NAME.match(key) or not isinstance(value, str) or "\0" in value:
                raise BadRequest(f"secret {name!r}: env var {str(key)[:60]!r} needs a name of letters, "
                                 "digits and '_', and a string value")
        for key, value in files.items():
            if not isinstance(key, str) or not _PART.match(key) or not isinstance(value, str):
                raise BadRequest(f"secret {name!r}: file {str(key)[:60]!r} needs a plain file name and text")
        for key, value in file_env.items():
            if not isinstance(key, str) or not _ENV_NAME.match(key) or value not in files:
                raise BadRequest(f"secret {name!r}: file_env {str(key)[:60]!r} must name one of its files")
        out[name] = {"env_vars": env_vars, "files": files, "file_env": file_env}
    return out


def put(state_dir: Path, env: str, secrets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Write ``secrets`` for ``env`` (each replaces its earlier self); what was set, by name."""
    folder = env_dir(state_dir, env)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    root(state_dir).chmod(0o700)
    kept = state.read_json(folder / ENV_FILE) or {}
    summary = {}
    for name, given in secrets.items():
        own = folder / _safe(name)
        shutil.rmtree(own, ignore_errors=True)
        paths = {}
        if given["files"]:
            own.mkdir(mode=0o700)
            for file, text in given["files"].items():
                state.write_private(own / file, text)
                paths[file] = str(own / file)
        kept[name] = {**given["env_vars"], **{var: paths[file] for var, file in given["file_env"].items()}}
        summary[name] = {"env_vars": sorted(kept[name]), "files": sorted(paths.values())}
    state.write_json(folder / ENV_FILE, kept)
    return summary


def env_vars(state_dir: Path, env: str) -> dict[str, str]:
    """The env vars ``env``'s workers start with (every secret given to it, in the order given)."""
    kept = state.read_json(env_dir(state_dir, env) / ENV_FILE)
    if not isinstance(kept, dict):
        return {}
    out: dict[str, str] = {}
    for given in kept.values():
        if isinstance(given, dict):
            out.update({k: v for k, v in given.items() if isinstance(v, str)})
    return out


def names(state_dir: Path) -> dict[str, list[str]]:
    """{env: [secret names]} given on this node (for the status page: names only)."""
    found = {}
    base = root(state_dir)
    if base.is_dir():
        for folder in sorted(base.iterdir()):
            kept = state.read_json(folder / ENV_FILE)
            if isinstance(kept, dict):
                found[folder.name] = sorted(kept)
    return found


def forget(state_dir: Path) -> None:
    state.remove_secrets(state_dir)
