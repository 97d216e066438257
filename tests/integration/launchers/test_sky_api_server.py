"""``SkyProvisioner`` against a real SkyPilot API server: the client/server SDK end to end
(request ids, ``sky.get``, SkyPilot's exceptions crossing the wire), as far as it goes without a
cloud.

No cloud exists here, and no credentials: SkyPilot's own ``sky check`` finds none, so a launch
stops before any machine, and the tests check what tether does with what SkyPilot answers.

SkyPilot's API server needs uvicorn<0.36, which the test venv cannot have (Airflow needs
>=0.37; see the Makefile), so it runs from a venv of its own with only SkyPilot in it, at the
version pyproject pins (``sky_server_venv.py``: made by ``make test`` before the tests, kept in
``.venv-skyserver``; ``TETHER_SKY_SERVER_VENV`` puts it elsewhere). That is also how SkyPilot is deployed for a team: one API server, clients
that point at it (``SKYPILOT_API_SERVER_ENDPOINT``). The client, tether in the test venv, runs
in a fresh interpreter with its own HOME (the fixture catalog and kubeconfig), like a user's
laptop; the server has a HOME of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import sky_server_venv

REPO = Path(__file__).resolve().parents[3]
CATALOG_DIR = REPO / "tests" / "unit" / "launchers" / "sky"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def server_venv() -> Path:
    """A venv with SkyPilot alone, at tether's pin (``sky_server_venv.py``: ``make test`` builds it
    before the tests; run alone, the fixture builds it)."""
    if importlib_missing("sky"):
        pytest.skip("SkyPilot is not installed in the test venv: pip install 'tether[sky]'")
    return sky_server_venv.ensure()


def importlib_missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None


@pytest.fixture(scope="module")
def api_server(server_venv):
    """A SkyPilot API server on a free loopback port, with a HOME of its own (the fixture
    catalog in it); stopped after."""
    home = Path(tempfile.mkdtemp(prefix="tether-skyserver-home-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HOME": str(home), "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
           "SKYPILOT_API_SERVER_LOCAL_PORT": str(port)}  # `sky api stop` stops the one there
    env.pop("SKYPILOT_API_SERVER_ENDPOINT", None)
    sky_cli = str(server_venv / "bin" / "sky")
    # the server validates and plans with its own catalog: the fixture's (no network here)
    subprocess.run([str(server_venv / "bin" / "python"), "-c",
                    "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
                    "from sky_catalog import write_catalog; write_catalog(Path(sys.argv[2]))",
                    str(CATALOG_DIR), str(home)], env=env, check=True, timeout=120)
    started = subprocess.run([sky_cli, "api", "start", "--host", "127.0.0.1", "--port", str(port)],
                             env=env, capture_output=True, text=True, timeout=300, check=False)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield endpoint
    finally:
        subprocess.run([sky_cli, "api", "stop"], env=env, capture_output=True, timeout=120,
                       check=False)
        leftover = kill_server_processes(port)
        shutil.rmtree(home, ignore_errors=True)
    assert leftover == [], f"`sky api stop` left {leftover} running (killed now)"


def kill_server_processes(port: int) -> list[int]:
    """Kill what is left of the server on ``port`` (ours: the port was free), children first;
    the pids that were left."""
    import psutil

    left = []
    for process in psutil.process_iter(attrs=["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if "sky.server.server" in cmdline and f"--port={port}" in cmdline:
            family = process.children(recursive=True) + [process]
            left.extend(p.pid for p in family)
            for member in family:
                member.kill()
            psutil.wait_procs(family, timeout=10)
    return left


CLIENT = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from sky_catalog import KUBECONFIG, write_catalog
    home = Path(os.environ["HOME"])
    (home / ".kube").mkdir()
    (home / ".kube" / "config").write_text(KUBECONFIG)
    import sky
    write_catalog(home)
    from tether.launchers.ondemand.provisioner import MachineRequest
    from tether.launchers.sky.provisioner import SkyProvisioner

    provisioner, out = SkyProvisioner(), {}

    def record(name, call):
        try:
            out[name] = {"ok": call()}
        except Exception as exc:
            out[name] = {"error": type(exc).__name__, "text": str(exc),
                         "cleaned_up": getattr(exc, "cleaned_up", None)}

    said = []
    record("machines", lambda: provisioner.machines("never-made"))
    record("terminate", lambda: provisioner.terminate("never-made"))
    record("stop", lambda: provisioner.stop("never-made"))
    record("check_type", lambda: provisioner.check(
        MachineRequest(provider="aws", instance_type="g5.xlargee")))
    record("check_aws", lambda: provisioner.check(
        MachineRequest(provider="aws", instance_type="m6i.large")))
    record("create", lambda: provisioner.create(
        "no-creds", MachineRequest(provider="aws", instance_type="m6i.large", num_nodes=2,
                                   autostop_mins=20), said.append))
    record("after", lambda: provisioner.machines("no-creds"))
    out["said"] = said
    print("RESULT " + json.dumps(out, default=str))
""")


@pytest.fixture(scope="module")
def client_results(api_server):
    """What tether's provisioner got from the server, run in a fresh client process."""
    home = Path(tempfile.mkdtemp(prefix="tether-skyclient-home-"))
    env = {**os.environ, "HOME": str(home), "TETHER_HOME": str(home / ".tether"),
           "SKYPILOT_API_SERVER_ENDPOINT": api_server, "SKYPILOT_DISABLE_USAGE_COLLECTION": "1"}
    env.pop("KUBECONFIG", None)
    try:
        proc = subprocess.run([sys.executable, "-c", CLIENT, str(CATALOG_DIR)], env=env,
                              capture_output=True, text=True, timeout=300, check=False)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_a_cluster_the_server_never_made_has_no_machines(client_results):
    assert client_results["machines"] == {"ok": []}


def test_teardown_and_stop_of_nothing_are_no_ops(client_results):
    assert client_results["terminate"] == {"ok": None}
    assert client_results["stop"] == {"ok": None}


def test_an_unknown_type_is_refused_with_close_matches(client_results):
    got = client_results["check_type"]
    assert got["error"] == "ConfigError"
    assert "close matches in SkyPilot's aws catalog: g5.xlarge, g5.2xlarge" in got["text"]


def test_check_names_the_cloud_without_credentials(client_results):
    got = client_results["check_aws"]
    assert got["error"] == "ProvisionError"
    assert "no usable credentials for aws" in got["text"] and "`sky check aws`" in got["text"]


def test_a_launch_without_credentials_says_so_and_leaves_nothing(client_results):
    got = client_results["create"]
    assert got["error"] == "ProvisionError", got
    assert "no usable credentials for aws" in got["text"]
    assert "Cloud access is not set up" in got["text"]  # SkyPilot's server, across the wire
    assert "SkyPilot made no machine, nothing is left running" in got["text"]
    assert got["cleaned_up"] == []
    assert client_results["after"] == {"ok": []}
    assert client_results["said"] == [
        "launching 2 x m6i.large on aws with SkyPilot as cluster 'no-creds' "
        "(autodown after 20 idle minutes)"]
