"""Two pipeline workers on two machines (two TETHER_HOMEs: this test process and a subprocess) run
the example pipeline's steps with the Prefect blocks pointed at one team registry (``registry_url``,
the token in a ``Secret`` block): the first brings the cluster up, deploys the trainer and trains
it; the second, which never saw that cluster, finds the cluster and the service by name in the
registry and calls the same live instance (it still holds the model), reaching the cluster by its
endpoint with the registry's grants rather than starting one of its own. Real registry, real
daemon, real worker; no Prefect server needed (the blocks' actions are the tasks' bodies)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from prefect.blocks.system import Secret

from tether.core.registry.remote import Login, RegistryClient
from tether.providers.prefect import TetherCluster, TetherService

EXAMPLES = Path(__file__).parents[3] / "examples" / "dags"

SECOND_WORKER = """
import json, sys
from prefect.blocks.system import Secret
import tether
from tether.providers.prefect import TetherService
from tether.providers.prefect.blocks import in_registry

url, token, cluster, service = sys.argv[1:]
trainer = TetherService(service_name=service, cluster_name=cluster, target="trainer:Trainer",
                        registry_url=url, registry_token=Secret(value=token))
result = trainer.call("evaluate")
with in_registry(trainer):
    launcher = tether.cluster(cluster).launcher_name
print(json.dumps({"evaluate": result, "launcher": launcher}))
"""


def test_a_second_worker_finds_the_cluster_and_service_through_the_registry(
        sqlite_registry, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.delitem(sys.modules, "trainer", raising=False)
    tag = uuid.uuid4().hex[:6]
    cluster_name, service_name = f"train-{tag}", f"trainer-{tag}"
    token = sqlite_registry.tokens["alice"]
    registry = {"registry_url": sqlite_registry.url, "registry_token": Secret(value=token)}
    cluster = TetherCluster(cluster_name=cluster_name, launcher="local", **registry)
    trainer = TetherService(service_name=service_name, cluster_name=cluster_name, target="trainer:Trainer",
                            init_kwargs={"learning_rate": 0.5}, **registry)
    assert "TETHER_REGISTRY" not in os.environ
    cluster.up()
    try:
        trainer.deploy()
        trained = trainer.call("train", data_mib=1)
        alice = RegistryClient(Login(sqlite_registry.url, token))
        assert alice.get(f"/alice/services/{service_name}")["config"]["cluster"] == cluster_name
        assert alice.get(f"/alice/{cluster_name}")["config"]["endpoint"]["home"]

        home = tmp_path / "second-worker"  # another machine's TETHER_HOME: no record of the cluster
        env = {k: v for k, v in os.environ.items() if k not in ("TETHER_REGISTRY", "TETHER_TOKEN")}
        done = subprocess.run([sys.executable, "-c", SECOND_WORKER, sqlite_registry.url, token, cluster_name,
                               service_name], env={**env, "TETHER_HOME": str(home)}, cwd=EXAMPLES,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        second = json.loads(done.stdout.splitlines()[-1])
        assert second["evaluate"] == {"score": 1.0, **trained}  # the instance the first worker trained
        assert second["launcher"] == "shared"
        assert not (home / "clusters").exists()  # it started no cluster of its own
    finally:
        cluster.teardown()
    assert "TETHER_REGISTRY" not in os.environ  # the blocks' registry was the steps' only
