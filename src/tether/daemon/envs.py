"""Interpreters for envs: the default one, or a venv with the env's ``reqs`` installed.

A venv is keyed by a hash of (base interpreter, reqs), built once and reused while the spec is
unchanged. It is layered on the default interpreter's packages (a ``.pth`` file appends them after
the venv's own), so the env's reqs win and everything else the project already has stays importable.
Progress lines (venv creation, the installer's output) are handed to ``progress`` so the caller
sees them live; they say which installer built the env: uv where the node has it, else pip
(``tether.daemon.installer``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tether.daemon import children, installer
from tether.errors import LaunchError

Progress = Callable[[str], Awaitable[None]]


class EnvBuildError(LaunchError, RuntimeError):
    """An env's venv could not be built (the message holds pip's output); the caller gets it as is."""


class EnvBuilder:
    def __init__(self, envs_dir: Path, default_python: str) -> None:
        self.envs_dir = envs_dir
        self.default_python = default_python
        self._locks: dict[str, asyncio.Lock] = {}

    def interpreter(self, config: dict[str, Any]) -> Callable[[Progress], Awaitable[str]]:
        """What finds an env's interpreter for a command (``cluster.run(..., env=...)``),
        building its venv first if need be, as its worker's does."""
        name, reqs = config.get("name") or "default", tuple(config.get("reqs") or ())
        return lambda progress: self.python_for(name, reqs, config.get("python"), progress)

    async def python_for(self, name: str, reqs: tuple[str, ...], python: str | None, progress: Progress) -> str:
        """The interpreter a worker of this env runs; builds the env's venv first if needed."""
        base = python or self.default_python
        if not reqs:
            return base
        key = hashlib.sha256(json.dumps([base, sorted(reqs)]).encode()).hexdigest()[:12]
        target = self.envs_dir / f"{_safe(name)}-{key}"
        lock = self._locks.setdefault(str(target), asyncio.Lock())
        async with lock:
            exe = target / "bin" / "python"
            if (target / ".tether-ready").exists() and exe.exists():
                return str(exe)
            if target.exists():
                shutil.rmtree(target)
            tool = installer.find()
            await progress(f"[tether] creating env {name!r} with {tool.label}: venv at {target}\n")
            await _run(tool.venv_argv(base, str(target)), progress)
            await _layer_on(base, exe)
            await progress(f"[tether] installing into env {name!r} with {tool.label}: {' '.join(reqs)}\n")
            await _run(tool.install_argv(str(exe), list(reqs)), progress)
            (target / ".tether-ready").write_text(json.dumps({"reqs": list(reqs), "base": base,
                                                              "installer": tool.name}))
            await progress(f"[tether] env {name!r} ready (built with {tool.label})\n")
            return str(exe)


async def _layer_on(base: str, exe: Path) -> None:
    """Append the base interpreter's site-packages after the venv's own."""
    code = "import json, site, sysconfig; print(json.dumps([sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']]))"
    base_paths = json.loads((await _capture([base, "-c", code])).strip())
    own = json.loads((await _capture([str(exe), "-c", code])).strip())[0]
    Path(own, "_tether_base.pth").write_text("\n".join(dict.fromkeys(base_paths)) + "\n")


async def _capture(cmd: list[str]) -> str:
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode:
        raise EnvBuildError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode(errors='replace')}")
    return out.decode()


async def _run(cmd: list[str], progress: Progress) -> None:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PIP_NO_INPUT": "1"}, preexec_fn=children.preexec(),
    )
    tail: list[str] = []
    assert proc.stdout is not None
    async for raw in proc.stdout:
        line = raw.decode(errors="replace")
        tail = (tail + [line])[-30:]
        await progress(line)
    if await proc.wait():
        raise EnvBuildError(
            f"`{' '.join(cmd)}` failed with exit code {proc.returncode}:\n{''.join(tail)}"
        )


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:40]


def default_python() -> str:
    return os.environ.get("TETHER_WORKER_PYTHON") or sys.executable
