"""Names that survive processes: save(), load(), exists(), and config round trips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

import pytest
import remote_code

import tether as rh
from tether.core.function import Function
from tether.core.module import Module
from tether.core.resources import from_config
from tether.core.stubs import RemoteFunction, RemoteInstance


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _run_elsewhere(code: str) -> object:
    """Run ``code`` in a fresh Python process sharing TETHER_HOME; it prints one JSON line last."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, env=os.environ.copy(), check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- clusters --------------------------------------------------------------------------------


def test_saved_cluster_loads_by_name(session_cluster):
    session_cluster.save()
    assert rh.exists(session_cluster.name)
    assert rh.cluster(name=session_cluster.name) is session_cluster  # one handle per name here
    loaded = rh.load(session_cluster.name)
    assert isinstance(loaded, rh.Cluster)
    assert loaded == session_cluster
    assert loaded.is_up()


def test_saved_cluster_is_reachable_by_name_from_another_process(session_cluster):
    session_cluster.save()
    key = _unique("from-elsewhere")
    session_cluster.put(key, {"put": "here"})
    seen = _run_elsewhere(f"""
        import json
        import tether as rh
        cluster = rh.cluster(name={session_cluster.name!r})
        print(json.dumps({{"launcher": cluster.launcher_name, "value": cluster.get({key!r}),
                          "listed": {key!r} in cluster.keys()}}))
    """)
    assert seen == {"launcher": "local", "value": {"put": "here"}, "listed": True}


def test_unsaved_cluster_name_is_not_found():
    with pytest.raises(rh.NotFoundError, match="no cluster named"):
        rh.cluster(name=_unique("never-saved"))


# -- functions --------------------------------------------------------------------------------


def test_saved_function_is_callable_by_name_in_another_process(session_cluster):
    name = _unique("saved-add")
    fn = rh.function(remote_code.add).to(session_cluster, name=name)
    fn.save()
    assert rh.exists(name)
    result = _run_elsewhere(f"""
        import json
        import tether as rh
        add = rh.function(name={name!r})
        print(json.dumps([add(20, 22), add(1), add.system.name]))
    """)
    assert result == [42, 2, session_cluster.name]


def test_saved_function_loads_in_this_process(session_cluster):
    name = _unique("saved-echo")
    rh.function(remote_code.echo).to(session_cluster, name=name).save()
    for loaded in (rh.function(name=name), rh.load(name)):
        assert isinstance(loaded, RemoteFunction)  # the deployed handle, with its definition
        assert isinstance(loaded.definition, Function) and loaded.definition.spec is not None
        assert loaded.system == session_cluster
        assert loaded(1, k=2) == ((1,), {"k": 2})


def test_save_under_another_name(session_cluster):
    alias = _unique("team/alias")
    fn = rh.function(remote_code.add).to(session_cluster, name=_unique("add-orig"))
    fn.save(alias)
    assert rh.exists(alias)
    assert rh.function(name=alias).name == alias


def test_undeployed_function_loaded_by_name_says_to_deploy(session_cluster):
    name = _unique("undeployed")
    rh.function(remote_code.add, name=name).save()
    loaded = rh.function(name=name)
    with pytest.raises(rh.ConfigError, match=r"\.to\(cluster\)"):
        loaded(1, 2)
    deployed = loaded.to(session_cluster)  # the saved import path is enough to deploy it
    assert deployed(1, 2) == 3


def test_load_missing_name_is_not_found():
    name = _unique("missing")
    assert not rh.exists(name)
    with pytest.raises(rh.NotFoundError, match=name):
        rh.load(name)
    with pytest.raises(rh.NotFoundError):
        rh.function(name=name)


def test_load_of_the_wrong_type_is_a_config_error(session_cluster):
    name = _unique("an-env")
    rh.env(env_vars={"A": "1"}, name=name).save()
    with pytest.raises(rh.ConfigError, match="not a function"):
        rh.function(name=name)
    with pytest.raises(rh.ConfigError, match="not a cluster"):
        rh.cluster(name=name)


def test_delete_configs(session_cluster):
    name = _unique("to-forget")
    fn = rh.function(remote_code.add).to(session_cluster, name=name).save()
    assert rh.exists(name)
    fn.delete_configs()
    assert not rh.exists(name)


# -- modules, instances, envs ------------------------------------------------------------------


def test_saved_instance_loads_as_a_working_stub(session_cluster):
    name = _unique("saved-trainer")
    trainer = rh.module(remote_code.Trainer).to(session_cluster)("vit", name=name)
    trainer.train(2)
    trainer.save()
    loaded = rh.load(name)
    assert isinstance(loaded, RemoteInstance)
    assert loaded.steps == 2
    assert loaded.train() == 3
    assert trainer.steps == 3  # the same live object
    seen = _run_elsewhere(f"""
        import json
        import tether as rh
        trainer = rh.load({name!r})
        print(json.dumps([trainer.train(), trainer.summary]))
    """)
    assert seen == [4, "vit@4"]


def test_instance_saved_under_an_alias(session_cluster):
    name, alias = _unique("orig-trainer"), _unique("alias-trainer")
    trainer = rh.module(remote_code.Trainer).to(session_cluster)("t5", name=name)
    trainer.save(alias)
    loaded = rh.load(alias)
    assert loaded.name == alias == trainer.name  # the daemon's alias reaches the live object
    assert loaded.summary == "t5@0" == session_cluster.get(name).summary  # its first name too


def test_saved_module_deploys_by_name(session_cluster):
    name = _unique("saved-module")
    rh.module(remote_code.Counter, name=name).save()
    loaded = rh.module(name=name)
    assert isinstance(loaded, Module)
    counter = loaded.to(session_cluster)(start=7, name=_unique("counter-from-saved"))
    assert counter.increment() == 8


def test_saved_env_loads_by_name(session_cluster):
    name = _unique("saved-env")
    rh.env(env_vars={"TETHER_SAVED": "yes"}, name=name).save()
    env = rh.env(name=name)
    assert env.env_vars == {"TETHER_SAVED": "yes"}
    fn = rh.function(remote_code.env_var).to(session_cluster, env=name, name=_unique("saved-env-var"))
    assert fn("TETHER_SAVED") == "yes"  # env="name" resolves the saved env
    session_cluster.delete(name)


# -- config round trips -------------------------------------------------------------------------


def _make(kind: str, cluster):
    env = rh.env(reqs=["tqdm"], env_vars={"K": "V"}, name="cfg-env", working_dir="/tmp")
    makers = {
        "cluster": lambda: cluster,
        "cluster-with-spec": lambda: rh.Cluster(name="cfg-cluster", launcher="local", port=12345),
        "function": lambda: rh.function(remote_code.add, name="cfg-add"),
        "function-serialized": lambda: rh.function(lambda x: x, name="cfg-lambda", serialize=True),
        "function-deployed": lambda: RemoteFunction(cluster, "cfg-add-deployed", None, False,
                                                    rh.function(remote_code.add, name="cfg-add-deployed"), env),
        "function-found": lambda: RemoteFunction(cluster, "cfg-add-found", {"methods": {}}),
        "module": lambda: rh.module(remote_code.Trainer),
        "env": lambda: env,
        "instance": lambda: rh.module(remote_code.Counter).to(cluster)(name="cfg-counter"),
    }
    return makers[kind]()


@pytest.mark.parametrize(
    "kind",
    ["cluster", "cluster-with-spec", "function", "function-serialized", "function-deployed",
     "function-found", "module", "env", "instance"],
)
def test_config_round_trip(session_cluster, kind):
    resource = _make(kind, session_cluster)
    config = resource.config()
    assert json.loads(json.dumps(config)) == config  # plain JSON
    rebuilt = type(resource).from_config(config)
    assert type(rebuilt) is type(resource)
    assert rebuilt.config() == config
    assert from_config(config).config() == config  # through the type registry too
