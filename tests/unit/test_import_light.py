"""``import tether`` stays cheap: orchestrators import it while parsing DAGs.

Each check runs in a fresh interpreter and inspects ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("fastapi", "uvicorn", "httpx", "cloudpickle", "pydantic", "starlette")
DAEMON_ONLY = ("fastapi", "uvicorn", "pydantic", "starlette")


def _modules_after(code: str) -> set[str]:
    program = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def _loaded(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


@pytest.fixture(scope="module")
def after_import() -> set[str]:
    return _modules_after("import tether")


@pytest.mark.parametrize("package", HEAVY)
def test_import_tether_imports_nothing_heavy(after_import, package):
    assert "tether" in after_import
    assert _loaded(after_import, package) == []


def test_import_tether_imports_no_tether_submodule_but_version(after_import):
    assert _loaded(after_import, "tether") == ["tether", "tether._version"]


@pytest.mark.parametrize(
    "code",
    [
        "import tether as rh; rh.function; rh.module; rh.cluster; rh.env; rh.load; rh.RemoteError",
        ("import tether.core.function, tether.core.module, tether.core.cluster, tether.client.daemon_client, "
         "tether.core.stubs, tether.protocol.wire, tether.plugins, tether.launchers.local, "
         "tether.launchers.ssh.launcher"),
    ],
    ids=["public-api", "core-modules"],
)
@pytest.mark.parametrize("package", DAEMON_ONLY)
def test_caller_side_never_imports_the_daemons_dependencies(code, package):
    assert _loaded(_modules_after(code), package) == []


def test_defining_a_function_stays_light():
    """Wrapping a function (no deploy yet) needs neither the HTTP client nor the pickler."""
    modules = _modules_after("import json, tether as rh; rh.function(json.dumps); rh.module(json.JSONDecoder)")
    for package in HEAVY:
        assert _loaded(modules, package) == [], package


def test_local_folders_never_import_the_data_libraries():
    """fsspec, its S3/GCS plugins and pyarrow load only when an object store or a table is used."""
    modules = _modules_after(
        "import tempfile, tether as rh; d = tempfile.mkdtemp(); f = rh.folder(path=d); "
        "f.put({'a.txt': b'x'}); f.ls(); f.get('a.txt'); rh.blob(data=1, path=d + '/b.pkl').fetch(); "
        "rh.table(path=d + '/t.parquet')")
    for package in ("fsspec", "s3fs", "gcsfs", "pyarrow", "pandas", *HEAVY):
        assert _loaded(modules, package) == [], package
