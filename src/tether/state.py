"""The files tether keeps, read and written here and nowhere else.

Under ``$TETHER_HOME`` (default ``~/.tether``; on a node of a remote cluster, the node user's)::

    clusters/<name>/        a cluster's state dir (mode 0700)
        token               the bearer token, made with the cluster (replaced by a rotation)
        tls.crt tls.key     the daemon's self-signed TLS certificate and its key, made when it
                            starts with a listener off loopback (the head's node link, a daemon
                            reached without a tunnel); callers pin the certificate's SHA-256
        daemon.json         the running daemon's record: pid, host, port, tether, protocol, started
                            (and cluster_address on a node that its head reaches; tls,
                            cluster_tls and fingerprint when a listener speaks TLS)
        daemon.pid          the same pid, for shell scripts
        limits.json         {"memory": bytes or null, "cpus": float or null}: what its daemon enforces
        env_limits.json     {env: {"memory", "cpus"}}: envs given limits of their own (a ladder's
                            climb); kept across restarts, removed by ``teardown()`` and when the
                            cluster's own size changes
        autostop.json       {"minutes": m}: re-read by the running daemon when it changes
        manifest/           what was deployed, restored by the next daemon (``daemon/manifest.py``):
                            kept across restarts and crashes, removed by ``teardown()``
        image/<key>.json    an Image step done on this node (``core/image_apply.py``): its key
                            chains the step's content to the steps before it; kept across
                            restarts and teardowns (the machine keeps what the step did)
        image_env.json      {"env_vars": {...}}: an Image's set_env_vars, given to every worker
                            and command the daemon starts
        secrets/<env>/      secrets given to an env's worker (``daemon/secrets.py``): env.json
                            (its env vars) and each secret's files, 0600 in 0700 folders; the
                            only place a node keeps secret values; removed by ``teardown()``
        nodes.json ...      a launcher's own records (the ssh launcher: nodes, tunnels)
    resources/              the local registry (``tether.core.registry.local``)
    registry.json           {"url", "token"}: the team registry this machine uses (``tether login``)
    registry-cache/<url>/   the last config read per registry name, for reads while it is down
    registry/               a registry server's default home (``tether registry serve``):
        registry.sqlite     its database (SQLite by default)
        grant_signing.key   its Ed25519 key for grants (0600; never in the database)
        secrets.key         its Fernet key for secret values at rest (0600; never in the database)
    secrets/<name>.json     this machine's saved secret values (0600, folders 0700; the secret's
                            config, without values, is in resources/)

Every file is written whole and private: :func:`write_private` writes a temporary file (0600) and
renames it over the old one, so a reader in another process sees the old file or the new one,
never half of either. Standard library only: the daemon, launchers and the CLI all read these.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TOKEN = "token"
DAEMON_RECORD = "daemon.json"
DAEMON_PID = "daemon.pid"
LIMITS = "limits.json"
ENV_LIMITS = "env_limits.json"
AUTOSTOP = "autostop.json"
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"
MANIFEST = "manifest"
IMAGE = "image"
IMAGE_ENV = "image_env.json"
REGISTRY_KEY = "registry.pub"
CLUSTER_PATH = "cluster_path"
SECRETS = "secrets"


def tether_home() -> Path:
    return Path(os.environ.get("TETHER_HOME") or Path.home() / ".tether").expanduser()


def home_id() -> str:
    """This machine and ``$TETHER_HOME``, hashed: which one holds a cluster's records (a team
    registry's cluster entry says where it was brought up, so the owner's other machines reach it
    by its endpoint rather than starting their own)."""
    import hashlib
    import socket

    return hashlib.sha256(f"{socket.gethostname()}\0{tether_home().resolve()}".encode()).hexdigest()[:16]


def cluster_dir(name: str) -> Path:
    """State of a cluster started from this machine: token, daemon.json, logs."""
    return tether_home() / "clusters" / name


def resources_dir() -> Path:
    return tether_home() / "resources"


def registry_login_path() -> Path:
    """Where ``tether login`` keeps the team registry's URL and this user's token (0600)."""
    return tether_home() / "registry.json"


def registry_cache_dir() -> Path:
    """The configs last read from team registries, so loads work while one is down."""
    return tether_home() / "registry-cache"


def secrets_dir() -> Path:
    """This machine's saved secret values (``tether.core.secrets``), 0600 files."""
    return tether_home() / "secrets"


def registry_server_dir() -> Path:
    """A registry server's default home: its SQLite database and its key files."""
    return tether_home() / "registry"


# -- writing and reading ---------------------------------------------------------------------------


def write_private(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) atomically: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_json(path: Path, value: Any) -> None:
    write_private(path, json.dumps(value))


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing or unreadable (a file being replaced is
    never half-read: see ``write_private``)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# -- the token -------------------------------------------------------------------------------------


def ensure_token(state_dir: Path) -> str:
    """The cluster's bearer token, created with the cluster and stored with mode 0600."""
    import secrets

    path = state_dir / TOKEN
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def write_token(state_dir: Path, token: str) -> None:
    """Replace the cluster's token (a rotation): 0600, atomically."""
    write_private(state_dir / TOKEN, token)


def read_token(state_dir: Path) -> str | None:
    try:
        return (state_dir / TOKEN).read_text().strip() or None
    except OSError:
        return None


# -- the registry a shared cluster trusts (grants, docs/security.md) --------------------------------


def write_registry(state_dir: Path, public_key: str | None, cluster_path: str | None) -> None:
    """The registry's public key (``registry.pub``) and the cluster's name there (``cluster_path``),
    with which its daemon verifies grants; None for both: the daemon accepts no grants."""
    for name, value in ((REGISTRY_KEY, public_key), (CLUSTER_PATH, cluster_path)):
        if value:
            write_private(state_dir / name, value.strip() + "\n")
        else:
            (state_dir / name).unlink(missing_ok=True)


def read_registry(state_dir: Path) -> tuple[str | None, str | None]:
    """(public key, cluster path) as ``write_registry`` stored them; None where absent."""
    found = []
    for name in (REGISTRY_KEY, CLUSTER_PATH):
        try:
            found.append((state_dir / name).read_text().strip() or None)
        except OSError:
            found.append(None)
    return found[0], found[1]


# -- the daemon's TLS certificate -----------------------------------------------------------------


def write_tls(state_dir: Path, cert_pem: bytes, key_pem: bytes) -> tuple[Path, Path]:
    """Store a daemon's certificate and private key (both 0600); returns their paths."""
    cert, key = state_dir / TLS_CERT, state_dir / TLS_KEY
    write_private(key, key_pem)
    write_private(cert, cert_pem)
    return cert, key


# -- the daemon's record ---------------------------------------------------------------------------


def write_daemon_record(state_dir: Path, record: dict[str, Any]) -> None:
    """Published by a daemon once it listens: a client that reads it can connect at once."""
    write_json(state_dir / DAEMON_RECORD, record)
    write_private(state_dir / DAEMON_PID, str(record["pid"]))


def read_daemon_record(state_dir: Path) -> dict[str, Any] | None:
    record = read_json(state_dir / DAEMON_RECORD)
    return record if isinstance(record, dict) else None


def remove_daemon_record(state_dir: Path, pid: int | None = None) -> None:
    """Remove the record; with ``pid``, only if it still names that process (a daemon that stops
    never removes the record of a newer one)."""
    if pid is not None:
        if (read_daemon_record(state_dir) or {}).get("pid") == pid:
            (state_dir / DAEMON_RECORD).unlink(missing_ok=True)
        with contextlib.suppress(OSError, ValueError):
            if int((state_dir / DAEMON_PID).read_text()) == pid:
                (state_dir / DAEMON_PID).unlink(missing_ok=True)
        return
    for name in (DAEMON_RECORD, DAEMON_PID):
        (state_dir / name).unlink(missing_ok=True)


# -- settings the daemon reads ---------------------------------------------------------------------


def write_limits(state_dir: Path, memory: int | None, cpus: float | None) -> None:
    """The machine size the next daemon of ``state_dir`` gives its workers (bytes, CPUs)."""
    write_json(state_dir / LIMITS, {"memory": memory, "cpus": cpus})


def read_limits(state_dir: Path) -> dict[str, Any]:
    """``{"memory": bytes or None, "cpus": float or None}`` (none when the file is missing)."""
    data = read_json(state_dir / LIMITS)
    data = data if isinstance(data, dict) else {}
    return {"memory": data.get("memory"), "cpus": data.get("cpus")}


def write_env_limits(state_dir: Path, envs: dict[str, dict[str, Any]]) -> None:
    """Envs with limits of their own: ``{env: {"memory": bytes or None, "cpus": float or None}}``
    (None: the cluster's). Written by the daemon that applies them, read by the next one."""
    write_json(state_dir / ENV_LIMITS, {"envs": envs})


def read_env_limits(state_dir: Path) -> dict[str, dict[str, Any]]:
    data = read_json(state_dir / ENV_LIMITS)
    envs = data.get("envs") if isinstance(data, dict) else None
    return {str(k): v for k, v in envs.items() if isinstance(v, dict)} if isinstance(envs, dict) else {}


def remove_env_limits(state_dir: Path) -> None:
    """Every env back to the cluster's limits, from the next daemon on (a teardown, a new size)."""
    (state_dir / ENV_LIMITS).unlink(missing_ok=True)


def write_autostop(state_dir: Path, minutes: float | None) -> None:
    """Minutes idle before the daemon stops itself (None or -1: never); a running daemon
    re-reads the file when it changes."""
    write_json(state_dir / AUTOSTOP, {"minutes": -1 if minutes is None else minutes})


def read_autostop(state_dir: Path) -> float:
    data = read_json(state_dir / AUTOSTOP)
    try:
        return float(data.get("minutes", -1)) if isinstance(data, dict) else -1.0
    except (TypeError, ValueError):
        return -1.0


def remove_manifest(state_dir: Path) -> None:
    """Forget what was deployed (``teardown()``): the next daemon of ``state_dir`` starts empty.
    Only for a stopped daemon: a running one would write it again on its next deploy."""
    import shutil

    shutil.rmtree(state_dir / MANIFEST, ignore_errors=True)


def remove_secrets(state_dir: Path) -> None:
    """Remove the secrets given to the cluster's envs (``teardown()``; ``daemon/secrets.py``)."""
    import shutil

    shutil.rmtree(state_dir / SECRETS, ignore_errors=True)


# -- an Image's records -------------------------------------------------------------------------


def read_image_records(state_dir: Path) -> dict[str, dict[str, Any]]:
    """The Image steps done on this node: ``{key: record}``."""
    out = {}
    folder = state_dir / IMAGE
    if folder.is_dir():
        for path in folder.glob("*.json"):
            record = read_json(path)
            if isinstance(record, dict):
                out[path.stem] = record
    return out


def write_image_record(state_dir: Path, key: str, record: dict[str, Any]) -> None:
    """Record an Image step as done (``key``: hex digits, from ``ImageStep.key``)."""
    if not key or not all(c in "0123456789abcdef" for c in key):
        raise ValueError(f"an image step key is hex digits, not {key[:40]!r}")
    folder = state_dir / IMAGE
    folder.mkdir(mode=0o700, exist_ok=True)
    write_json(folder / f"{key}.json", record)


def remove_image_records(state_dir: Path) -> None:
    """Forget every Image step done here: the next bring-up runs them all again."""
    import shutil

    shutil.rmtree(state_dir / IMAGE, ignore_errors=True)


def write_image_env(state_dir: Path, env_vars: dict[str, str]) -> None:
    write_json(state_dir / IMAGE_ENV, {"env_vars": env_vars})


def read_image_env(state_dir: Path) -> dict[str, str]:
    """An Image's env vars for the workers and commands of ``state_dir``'s daemon."""
    data = read_json(state_dir / IMAGE_ENV)
    env = data.get("env_vars") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}


# -- processes and locks ---------------------------------------------------------------------------


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def environ(values: dict[str, str | None]) -> Iterator[None]:
    """Set (``None``: unset) these variables of this process for the block, then put back what was
    there: settings that subprocesses started inside it (a daemon, a worker) must inherit."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        _set_environ(values)
        yield
    finally:
        _set_environ(saved)


def _set_environ(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created 0600), across threads and processes."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def pid_alive(pid: object) -> bool:
    """Whether ``pid`` names a live process (our own exited child, a zombie, is not alive)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
