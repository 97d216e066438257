"""A registry server subprocess (``RegistryServer``) and a throwaway PostgreSQL (``Postgres``)."""

from __future__ import annotations

import glob
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tether import state

TETHER = Path(sys.executable).with_name("tether")
USERS = ("alice", "bob", "carol")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tether_cli(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TETHER_HOME": str(home or state.tether_home())}
    for name in ("TETHER_REGISTRY", "TETHER_TOKEN", "COLUMNS"):
        env.pop(name, None)
    return subprocess.run([str(TETHER), *args], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


@dataclass
class RegistryServer:
    url: str
    db_url: str
    home: Path
    process: subprocess.Popen
    tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, db_url: str, home: Path, users: tuple[str, ...] = USERS) -> RegistryServer:
        """``tether registry serve`` on ``db_url`` with ``users`` (added here through the admin
        functions the CLI uses: tests/integration/registry/test_registry_cli.py runs the CLI)."""
        from sqlalchemy.orm import Session

        from tether.registry import admin, db

        engine = db.open_db(db_url)
        with Session(engine) as session:
            tokens = {user: admin.add_user(session, user) for user in users}
            if "carol" in users:
                admin.add_group(session, "ml")
                admin.add_member(session, "ml", "carol")
        engine.dispose()
        port = free_port()
        log = open(home / "serve.log", "wb")  # noqa: SIM115 - the server writes it until stop()
        env = {**os.environ, "TETHER_HOME": str(home)}
        process = subprocess.Popen([str(TETHER), "registry", "serve", "--db", db_url, "--port", str(port)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        server = cls(f"http://127.0.0.1:{port}", db_url, home, process, tokens)
        server.wait_up()
        return server

    def wait_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/v1/health", timeout=2) as response:
                    assert json.loads(response.read())["ok"]
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the registry did not start: {(self.home / 'serve.log').read_text()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- PostgreSQL ------------------------------------------------------------------------------------


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing_postgres() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None."""
    if _bindir() is None:
        return ("PostgreSQL's binaries (initdb, pg_ctl) are not installed: apt-get install -y "
                "postgresql (.ci/run installs it)")
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "PostgreSQL refuses to run as root and there is no 'postgres' user to run it as"
    return None


@dataclass
class Postgres:
    root: Path
    port: int
    bindir: Path
    _names: itertools.count = field(default_factory=itertools.count)

    @staticmethod
    def _as_owner(args: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args

    @classmethod
    def start(cls) -> Postgres:
        bindir = _bindir()
        root = Path(tempfile.mkdtemp(prefix="tether-pg-"))
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        port = free_port()
        run = lambda args: subprocess.run(cls._as_owner(args), check=True, capture_output=True,  # noqa: E731
                                          text=True, timeout=60)
        run([str(bindir / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "postgres",
             "--no-sync", "-E", "UTF8"])
        run([str(bindir / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "log"), "-w", "-o",
             f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
        return cls(root, port, bindir)

    def new_database(self) -> str:
        """A new empty database's SQLAlchemy URL."""
        name = f"registry{next(self._names)}"
        subprocess.run(self._as_owner([str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p",
                                       str(self.port), "-U", "postgres", name]),
                       check=True, capture_output=True, timeout=30)
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(self._as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m",
                                       "immediate", "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)
