"""Building an env with three real packages on a local cluster: uv against pip, cold and cached.

What a user waits for the first time a function goes to an env with ``reqs=[...]``: the daemon
makes the env's venv and installs the packages (``tether.daemon.envs``), then starts its worker
and deploys. Each installer gets a local cluster of its own (``TETHER_ENV_INSTALLER=uv|pip`` in
the daemon's environment) and an empty cache of its own (``UV_CACHE_DIR``/``PIP_CACHE_DIR`` in the
run's throwaway folder):

* cold: the first env; every wheel is downloaded from the package index (PyPI, for both: pip's
  configuration files are set aside with ``PIP_CONFIG_FILE=/dev/null``, as uv does not read them);
* cached: a second env with the same packages (a new venv), the installer's cache now warm.

Each installer runs as the daemon runs it: pip compiles every module to bytecode as it installs
(sympy alone has ~1,000 files), uv does not (its default: a module is compiled on first import),
and uv links files from its cache where pip unpacks them again.

The time is ``.to()`` of a no-op function into that env plus its first call, less the same
``.to()`` + call into an env without packages (the deploy itself). Needs the package index:
``python bench/run.py --env-build`` (``--peers none`` to run it alone).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: three real packages (with their dependencies: numpy, python-dateutil, pytz, tzdata, mpmath...)
PACKAGES = ["pandas==2.3.3", "sympy==1.14.0", "networkx==3.6.1"]
INSTALLERS = ("uv", "pip")


def measure(workdir: Path, log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """``{installer: {"cold_s", "cached_s", "deploy_s"}}`` for uv and pip."""
    out = {}
    for installer in INSTALLERS:
        out[installer] = _one(installer, workdir / f"envbuild-{installer}", log)
    return out


def _one(installer: str, folder: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from tether.state import environ

    folder.mkdir(parents=True, exist_ok=True)
    env = {"TETHER_ENV_INSTALLER": installer, "UV_CACHE_DIR": str(folder / "uv-cache"),
           "PIP_CACHE_DIR": str(folder / "pip-cache"), "PIP_CONFIG_FILE": os.devnull}
    with environ(env):  # the daemon started below inherits them
        return _measure(installer, log)


def _measure(installer: str, log: Callable[[str], None]) -> dict[str, Any]:
    import tether as rh
    from bench import bench_code

    cluster = rh.cluster(name=f"envbuild-{installer}-{uuid.uuid4().hex[:6]}", launcher="local")
    try:
        cluster.up_if_not()

        def deploy(reqs: list[str], name: str) -> float:
            begin = time.perf_counter()
            fn = rh.function(bench_code.noop).to(cluster, env=rh.env(reqs=reqs, name=name), name=name,
                                                 stream_logs=False)
            fn()
            return time.perf_counter() - begin

        base = deploy([], "nopackages")
        log(f"env build ({installer}): cold, {' '.join(PACKAGES)}")
        cold = deploy(PACKAGES, "cold")
        log(f"env build ({installer}): cached")
        cached = deploy(PACKAGES, "cached")
        return {"cold_s": cold - base, "cached_s": cached - base, "deploy_s": base,
                "cold_wall_s": cold, "cached_wall_s": cached}
    finally:
        cluster.teardown()


def record(results: dict[str, Any], workdir: Path, log: Callable[[str], None]) -> None:
    """File the figures (``bench.report``: the env_build_* rows) under the tether column."""
    from bench import figures

    got: dict[str, Any] = {}

    def run() -> dict[str, Any]:
        got.update(measure(workdir, log))
        return {"value": got["uv"]["cold_s"], "mode": f"uv, empty cache (no bytecode compiled); {', '.join(PACKAGES)}",
                "uv": got["uv"], "pip": got["pip"]}

    figures.record(results, "env_build_uv_cold_s", "tether", run, log)
    if not got:
        return
    mode = f"pip, empty cache (compiles bytecode); {', '.join(PACKAGES)}"
    for key, value, how in (
            ("env_build_pip_cold_s", got["pip"]["cold_s"], mode),
            ("env_build_cold_uv_pip", got["uv"]["cold_s"] / got["pip"]["cold_s"], "uv cold / pip cold"),
            ("env_build_uv_cached_s", got["uv"]["cached_s"], "uv, its cache warm (a second env)"),
            ("env_build_pip_cached_s", got["pip"]["cached_s"], "pip, its cache warm (a second env)"),
            ("env_build_cached_uv_pip", got["uv"]["cached_s"] / got["pip"]["cached_s"], "uv cached / pip cached")):
        figures.record(results, key, "tether", lambda v=value, h=how: {"value": v, "mode": h}, log)
