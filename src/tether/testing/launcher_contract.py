"""The launcher contract: what every launcher must do, as a pytest suite you run against your own.

tether's ``local`` and ``ssh`` launchers pass it (``tests/integration/test_launcher_contract.py``);
a third-party launcher runs the same suite against itself::

    import pytest
    import tether
    from tether.testing.launcher_contract import LauncherContract

    class TestMyLauncher(LauncherContract):
        @pytest.fixture
        def contract_cluster(self):
            cluster = tether.cluster(name="contract-mine", launcher="mine", size="small")
            yield cluster                    # not up yet: the suite brings it up
            cluster.teardown()

Each test brings the cluster up itself, deploys code from a throwaway project (a folder with a
``pyproject.toml``, as a user's project is, so remote launchers sync it like any other), calls it,
and checks what a user sees: the result, the remote output in the caller's terminal, the remote
exception's own type, a clear error for bad input after which the daemon still serves, an Image
whose steps run once on every node, and a teardown that really stops the daemon. Nothing is mocked: the suite needs a launcher that really
brings compute up.
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.client.daemon_client import DaemonClient

CODE = '''
import os

def add(a, b):
    return a + b

def shout(word):
    print(f"contract-out {word}")
    import sys
    print(f"contract-err {word}", file=sys.stderr)
    return word.upper()

def fail(message):
    raise ValueError(message)

def where():
    return {"pid": os.getpid(), "cwd": os.getcwd()}

def env_var(name):
    return os.environ.get(name)

class Counter:
    def __init__(self, start=0):
        self.count = start

    def increment(self, by=1):
        self.count += by
        return self.count
'''


class LauncherContract:
    """The suite. Subclasses provide ``contract_cluster``: a fixture yielding a ``tether.Cluster``
    of the launcher under test (up or not), torn down afterwards."""

    @pytest.fixture
    def contract_cluster(self) -> Any:
        raise NotImplementedError("a LauncherContract subclass provides the contract_cluster fixture")

    @pytest.fixture
    def contract_code(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
        """A module of a throwaway project, importable here (and so deployable by import path)."""
        root = tmp_path / "contract_project"
        root.mkdir()
        (root / "pyproject.toml").write_text("[project]\nname = 'contract-project'\n")
        name = f"tether_contract_{uuid.uuid4().hex[:8]}"
        (root / f"{name}.py").write_text(textwrap.dedent(CODE))
        monkeypatch.syspath_prepend(str(root))
        module = __import__(name)
        yield module
        sys.modules.pop(name, None)

    # -- up, status, reattach ------------------------------------------------------------------

    def test_up_is_idempotent_and_status_describes_the_daemon(self, contract_cluster):
        cluster = contract_cluster.up_if_not()
        assert cluster.is_up()
        status = cluster.status()
        assert status["protocol"] == tether_protocol()
        assert status["tether"] and status["pid"]
        assert cluster.up_if_not().status()["pid"] == status["pid"]  # up again: the same daemon
        again = tether.Cluster(cluster.name, cluster.launcher_name, **cluster.spec)  # a new handle
        assert again.status()["pid"] == status["pid"]

    def test_config_round_trips_and_saved_clusters_load_by_name(self, contract_cluster):
        config = contract_cluster.config()
        assert config["type"] == "cluster" and config["launcher"] == contract_cluster.launcher_name
        assert tether.Cluster.from_config(config) == contract_cluster
        contract_cluster.save()
        try:
            assert tether.load(contract_cluster.name) == contract_cluster
        finally:
            contract_cluster.delete_configs()

    # -- deploy and call -----------------------------------------------------------------------

    def test_deploy_and_call_a_function_and_an_instance(self, contract_cluster, contract_code):
        add = tether.function(contract_code.add).to(contract_cluster, name=_name("add"))
        assert add(2, 3) == 5
        assert add.map([1, 2, 3], [10, 20, 30]) == [11, 22, 33]
        counter = tether.module(contract_code.Counter).to(contract_cluster)(start=10, name=_name("counter"))
        assert counter.increment() == 11
        assert counter.increment(by=5) == 16  # state stays on the cluster
        found = contract_cluster.get(counter.name)
        assert found.increment() == 17  # found by name: the same live instance
        assert counter.name in contract_cluster.keys()

    def test_remote_output_streams_to_the_caller(self, contract_cluster, contract_code, capfd):
        shout = tether.function(contract_code.shout).to(contract_cluster, name=_name("shout"))
        assert shout("hi") == "HI"
        out, err = capfd.readouterr()
        assert "contract-out hi" in out
        assert "contract-err hi" in err
        (code, stdout, _), = contract_cluster.run_bash(["echo contract-bash"])
        assert (code, stdout.strip()) == (0, "contract-bash")

    def test_a_remote_exception_keeps_its_type_and_traceback(self, contract_cluster, contract_code):
        fail = tether.function(contract_code.fail).to(contract_cluster, name=_name("fail"))
        with pytest.raises(ValueError, match="contract failure") as info:
            fail("contract failure")
        assert "raise ValueError(message)" in info.value.remote_traceback
        assert fail.system.status()["pid"]  # the daemon serves on

    # -- bad input -----------------------------------------------------------------------------

    def test_bad_input_is_a_clear_error_and_the_daemon_serves_on(self, contract_cluster, contract_code):
        with pytest.raises(tether.ConfigError, match="does not understand"):
            contract_cluster.launcher.validate({"no_such_option_for_the_contract": 1})
        add = tether.function(contract_code.add).to(contract_cluster, name=_name("add"))
        with pytest.raises(tether.NotFoundError, match="no-such-service"):
            contract_cluster.client.call("no-such-service", "call", (1,))
        with pytest.raises(tether.SerializationError, match="argument 0"):
            add(lambda_in_a_lock(), 1)
        with pytest.raises(tether.ConfigError, match="bad name"):
            tether.function(contract_code.add).to(contract_cluster, name="no spaces allowed")
        with pytest.raises(TypeError):  # the remote function's own error for a wrong call
            add(1)
        endpoint = contract_cluster.launcher.endpoint(contract_cluster)
        stranger = DaemonClient(endpoint.host, endpoint.port, "not-the-token", cluster=contract_cluster.name,
                                fingerprint=endpoint.fingerprint)
        try:
            with pytest.raises(tether.AuthenticationError):
                stranger.call(add.name, "call", (1, 2))
        finally:
            stranger.close()
        assert add(40, 2) == 42  # after all of it, the daemon serves

    # -- images -------------------------------------------------------------------------------

    def test_an_image_runs_its_steps_once_on_every_node(self, contract_cluster, contract_code):
        marker = f"/tmp/tether-contract-image-{uuid.uuid4().hex[:8]}"
        image = (tether.Image("contract").run_bash([f"echo ran >> {marker}"])
                 .set_env_vars({"TETHER_CONTRACT_IMAGE": "yes"}))

        def handle() -> tether.Cluster:  # a new handle each time, as a later process has
            return tether.Cluster(contract_cluster.name, contract_cluster.launcher_name, image=image,
                                  **contract_cluster.spec)

        cluster = handle().up_if_not()
        try:
            handle().up_if_not()  # every step is recorded on every node: nothing runs again
            counts = cluster.run_bash([f"wc -l < {marker}"], node="all", stream_logs=False)
            assert [out.strip() for ((_, out, _),) in counts] == ["1"] * len(cluster.ips)
            env_var = tether.function(contract_code.env_var).to(cluster, name=_name("env-var"))
            assert env_var("TETHER_CONTRACT_IMAGE") == "yes"  # the image's env vars reach the workers
        finally:
            cluster.run_bash([f"rm -f {marker}"], node="all", stream_logs=False)
            cluster.reset_image()

    # -- teardown ------------------------------------------------------------------------------

    def test_teardown_stops_the_daemon_and_up_starts_a_fresh_one(self, contract_cluster, contract_code):
        contract_cluster.up_if_not()
        before = contract_cluster.status()["pid"]
        name = _name("add")
        tether.function(contract_code.add).to(contract_cluster, name=name)
        contract_cluster.teardown()
        assert not contract_cluster.is_up()
        contract_cluster.up_if_not()
        assert contract_cluster.status()["pid"] != before
        assert name not in contract_cluster.keys()  # objects lived in the stopped daemon
        contract_cluster.teardown()  # twice is fine
        contract_cluster.teardown()
        assert not contract_cluster.is_up()


def _name(stem: str) -> str:
    return f"contract-{stem}-{uuid.uuid4().hex[:6]}"


def lambda_in_a_lock() -> Any:
    """A value no pickler can send (a lock)."""
    import threading

    return threading.Lock()


def tether_protocol() -> int:
    from tether.protocol import wire

    return wire.PROTOCOL_VERSION
