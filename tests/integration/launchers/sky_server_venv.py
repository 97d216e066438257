"""The venv the SkyPilot API-server tests run the server from (test_sky_api_server.py).

SkyPilot's API server needs uvicorn<0.36 and click<8.2, which the test venv cannot have (Airflow
needs newer), so the server runs from a venv of its own with only SkyPilot in it, at the version
pyproject pins; its other packages at the pins of constraints.txt but those two. Building it is an
install (~2-3 min of pip), not a test: ``make test`` runs this file first (``python
tests/integration/launchers/sky_server_venv.py``), and the tests' fixture finds it made.
``TETHER_SKY_SERVER_VENV`` puts it elsewhere than ``.venv-skyserver``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def skypilot_pin() -> str:
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["sky"]
    return next(r for r in extra if r.startswith("skypilot=="))


def venv_path() -> Path:
    return Path(os.environ.get("TETHER_SKY_SERVER_VENV") or REPO / ".venv-skyserver")


def ensure() -> Path:
    """The server venv, made now unless it is there at tether's pin."""
    venv, pin = venv_path(), skypilot_pin()
    stamp = venv / f".installed-{pin}"
    if stamp.exists():
        return venv
    print(f"==> building {venv} (SkyPilot's API server for the tests: {pin})", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    constraints = venv / "constraints.txt"
    constraints.write_text("".join(
        line + "\n" for line in (REPO / "constraints.txt").read_text().splitlines()
        if not line.lower().startswith(("click==", "uvicorn=="))))
    subprocess.run([str(venv / "bin" / "pip"), "install", "--disable-pip-version-check",
                    "--quiet", "-c", str(constraints), pin], check=True, timeout=780)
    stamp.touch()
    return venv


if __name__ == "__main__":
    import importlib.util

    if importlib.util.find_spec("sky") is None:
        print("SkyPilot is not in this venv: its API-server tests will skip", flush=True)
    else:
        ensure()
