"""A local daemon outlives the program that started it: the next program, in another virtualenv,
must not be served silently by the first one's interpreter and packages.

"Another virtualenv" is a real one, made here with ``python -m venv`` and given this checkout's
packages through a ``.pth`` file; a program run with it starts the cluster's daemon the way a user
does (``up_if_not()``), then this process (another interpreter) uses the same cluster.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import uuid
import warnings
from pathlib import Path

import pytest
from process_helpers import running

import tether as rh
from tether import state


@pytest.fixture
def other_python(tmp_path) -> Path:
    venv = tmp_path / "other-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]  # tether (editable) and the daemon's dependencies
    Path(site, "_this_checkout.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return python


@pytest.fixture
def name():
    name = f"interp-{uuid.uuid4().hex[:6]}"
    yield name
    rh.cluster(name=name, launcher="local").teardown()


def start_with(python: Path, name: str, then: str = "") -> int:
    """Bring the cluster up from a program run by ``python``; the daemon's pid."""
    code = f"import tether as rh\nc = rh.cluster(name={name!r}, launcher='local').up_if_not()\n{then}"
    subprocess.run([str(python), "-c", code], check=True, timeout=120, stdin=subprocess.DEVNULL)
    record = json.loads((state.cluster_dir(name) / "daemon.json").read_text())
    return record["pid"]


def tether_warnings(seen) -> list[str]:
    return [str(w.message) for w in seen if issubclass(w.category, rh.TetherWarning)]


def test_a_daemon_of_another_interpreter_that_holds_nothing_is_restarted_with_ours(other_python, name):
    old = start_with(other_python, name)
    cluster = rh.cluster(name=name, launcher="local")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        status = cluster.up_if_not().status()
    assert not tether_warnings(seen)
    assert status["python"] == sys.executable and status["pid"] != old
    assert cluster.run_python(["import sys; print(sys.executable)"])[0][1].strip() == sys.executable


def test_a_daemon_of_another_interpreter_that_holds_objects_is_named_with_the_fix(other_python, name):
    old = start_with(other_python, name, then="c.put('x', 41)")
    cluster = rh.cluster(name=name, launcher="local")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert cluster.up_if_not().get("x") == 41
    (text,) = tether_warnings(seen)
    assert str(other_python) in text and sys.executable in text
    assert "restart_server()" in text and f"tether daemon restart --cluster {name}" in text
    assert "1 object(s)" in text and f"python={str(other_python)!r}" in text
    assert cluster.status()["pid"] == old  # left running: it holds something

    # asked for by name: that interpreter is what the caller wants, nothing to say
    explicit = rh.cluster(name=name, launcher="local", python=str(other_python))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert explicit.up_if_not().status()["pid"] == old
    assert not tether_warnings(seen)

    cluster.restart_server()  # the fix the warning names: ours now, and x came back
    assert cluster.status()["python"] == sys.executable
    assert cluster.get("x") == 41


def test_a_daemon_whose_interpreter_was_deleted_is_restarted_saying_so(other_python, name):
    old = start_with(other_python, name, then="c.put('x', 7)")
    shutil.rmtree(other_python.parents[1])  # the checkout that ran `make demo` is gone
    cluster = rh.cluster(name=name, launcher="local")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        status = cluster.up_if_not().status()
    (text,) = tether_warnings(seen)
    assert str(other_python) in text and "no longer exists" in text and "restarting" in text
    assert status["python"] == sys.executable and status["pid"] != old
    assert not running(old)
    assert cluster.get("x") == 7  # what it held came back
