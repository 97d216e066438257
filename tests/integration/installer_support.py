"""Interpreters for local clusters whose daemon has uv, or not: what ``tether.daemon.installer`` finds.

``layered_python(folder, uv=...)`` makes a venv (no pip, no uv) whose site-packages adds this
test environment's (so tether and its dependencies import there, and packages installed into it
stay out of the test environment), and links this environment's ``uv`` binary into its ``bin``
when ``uv=True``: the daemon looks for uv next to its interpreter, then on PATH.
``path_without_uv()`` is PATH without the folders that hold a ``uv``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

UV = shutil.which("uv", path=sysconfig.get_path("scripts"))


def layered_python(folder: Path, uv: bool) -> str:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = sysconfig.get_path("purelib")
    Path(site, "_tether_tests.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    if uv:
        assert UV, "this test environment has no uv (`make venv` installs it with the dev extra)"
        (folder / "bin" / "uv").symlink_to(UV)
    return str(python)


def path_without_uv() -> str:
    keep = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not Path(p, "uv").exists()]
    return os.pathsep.join(keep)


def site_packages(python: str) -> str:
    return subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
