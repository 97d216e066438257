"""What tether's wheel carries beyond its modules: ``py.typed`` (PEP 561), the dashboard's page and
the registry's migrations.

Without ``py.typed`` a type checker treats an installed tether as untyped and ignores every
annotation; without ``dashboard_static/`` an installed daemon serves a dashboard of 404s; without
``registry/migrations/`` an installed registry cannot make its database.
The wheel is built here the way `make venv` builds the editable install (no build isolation, no
dependencies, offline).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_the_wheel_ships_py_typed_and_the_dashboard(tmp_path: Path) -> None:
    assert (ROOT / "src" / "tether" / "py.typed").is_file()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--wheel-dir", str(tmp_path), str(ROOT)],
                   check=True, timeout=170, cwd=tmp_path)
    (wheel,) = tmp_path.glob("tether-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "tether/py.typed" in names
    static = ROOT / "src" / "tether" / "daemon" / "dashboard_static"
    for path in static.iterdir():
        assert f"tether/daemon/dashboard_static/{path.name}" in names
    migrations = ROOT / "src" / "tether" / "registry" / "migrations"
    for path in [*migrations.glob("*.py"), *migrations.glob("*.mako"), *migrations.glob("versions/*.py")]:
        assert f"tether/registry/{path.relative_to(migrations.parent).as_posix()}" in names
