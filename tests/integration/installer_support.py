"""Interpreters for local clusters whose daemon has uv, or not: what ``tether.daemon.installer`` finds.

``layered_python(folder, uv=...)`` makes a venv (no pip, no uv) whose site-packages adds this
test environment's (so tether and its dependencies import there, and packages installed into it
stay out of the test environment), and links this environment's ``uv`` binary into its ``bin``
when ``uv=True``: the daemon looks for uv next to its interpreter, then on PATH.
``path_without_uv()`` is PATH without the folders that hold a ``uv``. ``build_wheel`` writes a
pure-Python wheel by hand, for installs that need no package index.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
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


def build_wheel(dest: Path, dist: str, version: str, files: dict[str, str]) -> Path:
    """A pure-Python wheel of ``files`` (path -> source)."""
    info = f"{dist}-{version}.dist-info"
    contents = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tether-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    wheel = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in contents.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            z.writestr(path, data)
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel
