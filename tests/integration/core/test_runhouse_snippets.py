"""Runhouse's documented API, run as its docs write it (``import tether as rh``), on the local
cluster and on an SSH test host: calls (map, starmap, enqueue, remote, send), ``rh.Module``
subclasses and their remote attributes (``.remote.x``, ``.fetch()``), a service saved under a new
name and called by it from another process, cluster commands and setup, ``default_env`` (also on
a saved cluster) and commands run in an env, ``keep_warm``, ``rh.configs``, and a named function
from a notebook cell written out to a file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
import runhouse_code
from runhouse_code import Trainer, add3, np_sum, stamp

import tether as rh

pytestmark = pytest.mark.timeout(240)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module", params=["local", "ssh"])
def cluster(request):
    """One cluster per kind for the module: a local one, and one on an SSH test host."""
    if request.param == "local":
        made = rh.cluster(name=_unique("rh-local"), launcher="local")
    else:
        host = request.getfixturevalue("ssh_hosts")[0]
        made = rh.cluster(name=_unique("rh-ssh"), ips=[host.ip], ssh_creds=host.ssh_creds())
    made.up_if_not()
    yield made
    made.teardown()


def test_function_calls(cluster):
    remote_np_sum = rh.function(np_sum).to(cluster)
    assert remote_np_sum(1, 5) == 6

    remote_fn = rh.send(add3).to(cluster)  # Runhouse's first name of rh.function
    assert remote_fn.map([1, 2], [1, 4], [2, 3]) == [4, 9]  # zipped per item
    assert remote_fn.map([1, 2], [3, 4], c=10) == [14, 16]  # keyword arguments go to every call
    assert remote_fn.starmap([(1, 2), (3, 4)], c=100) == [103, 107]

    ref = remote_fn.remote(1, 2, 3)  # the result stays on the cluster
    assert isinstance(ref, rh.RemoteRef)
    assert remote_fn(ref, 4) == 10  # passed to another call as the value itself
    assert rh.get(ref) == 6

    notebook_fn = rh.function(lambda a, b: a * b, name=_unique("nb-mul"), serialize_notebook_fn=True)
    assert notebook_fn.to(cluster)(6, 7) == 42


def test_enqueued_calls_run_one_at_a_time_in_order(cluster):
    remote_stamp = rh.function(stamp).to(cluster, name=_unique("stamp"))
    remote_stamp(0, 0)  # warm: the worker has imported it

    def run_staggered(call) -> list:
        results: list = [None] * 3
        threads = []
        for i in range(3):
            thread = threading.Thread(target=lambda i=i: results.__setitem__(i, call(i, 0.4)))
            thread.start()
            threads.append(thread)
            time.sleep(0.08)  # arrival order 0, 1, 2
        for thread in threads:
            thread.join()
        return results

    queued = run_staggered(remote_stamp.enqueue)
    starts = [start for _, start, _ in queued]
    assert starts == sorted(starts), queued  # in arrival order
    for (_, _, end), (_, start, _) in zip(queued, queued[1:], strict=False):
        assert start >= end - 0.005, queued  # never at the same time
    plain = run_staggered(remote_stamp)  # plain calls are not queued: they overlap
    assert plain[1][1] < plain[0][2], plain


def test_module_subclass_keeps_state(cluster):
    name = _unique("trainer")
    trainer = Trainer(lr=0.5).to(cluster, name=name)
    assert isinstance(trainer, rh.Resource) and trainer.name == name
    assert trainer.lr == 0.5
    assert [trainer.train(), trainer.train()] == [1, 2]
    assert trainer.steps == 2
    trainer.lr = 0.25  # set on the remote object
    assert trainer.lr == 0.25
    assert trainer.data == [0, 1, 2]  # a lazy property, computed there
    assert trainer.getpid() != os.getpid()
    ref = trainer.train.remote()
    assert rh.get(ref) == 3
    assert asyncio.run(trainer.train(run_async=True)) == 4

    same = cluster.get(name=name)  # another handle on the same live object
    assert same.steps == 4
    assert Trainer().get_or_to(cluster, name=name).steps == 4  # there already: not sent again

    RemoteTrainer = rh.module(Trainer).to(cluster)  # the factory form builds it there
    other = RemoteTrainer(lr=0.125, name=_unique("trainer"))
    assert (other.lr, other.train(), trainer.steps) == (0.125, 1, 4)


def test_remote_attributes_and_fetch(cluster):
    trainer = Trainer(lr=0.5).to(cluster, name=_unique("trainer"))
    trainer.train()
    assert (trainer.remote.lr, trainer.remote.steps, trainer.fetch("lr")) == (0.5, 1, 0.5)
    assert trainer.remote.data == [0, 1, 2] and trainer.fetch("_data") == [0, 1, 2]  # private too
    trainer.remote.lr = 0.125
    assert trainer.lr == 0.125
    here = trainer.fetch()  # the object itself, with its state
    assert type(here) is Trainer and (here.lr, here.steps) == (0.125, 1)
    assert trainer.remote().steps == 1
    with pytest.raises(AttributeError):
        _ = trainer.remote.missing


SAVED_ELSEWHERE = """
import json, sys
import tether as rh
fn, trainer = rh.function(name=sys.argv[1]), rh.module(name=sys.argv[2])
print(json.dumps([fn(1, 2, 3), trainer.train(), trainer.name]))
"""


def test_saved_under_a_new_name_is_the_same_service(cluster):
    """``save(name=...)`` after ``.to()``: the new name reaches the same deployed function or
    instance (the daemon keeps it as an alias: the first name keeps working too)."""
    cluster.save()
    remote_fn = rh.function(add3).to(cluster, name=_unique("add3"))
    first = remote_fn.name
    new_fn = _unique("new-add3")
    remote_fn.save(name=new_fn)
    assert (remote_fn.name, remote_fn.rns_address) == (new_fn, f"~/{new_fn}")
    assert rh.function(name=new_fn)(1, 2) == 3 == cluster.get(first)(1, 2)
    assert {first, new_fn} <= set(cluster.keys())

    trainer = Trainer(lr=0.5).to(cluster, name=_unique("trainer"))
    trainer.train()
    new_trainer = _unique("new-trainer")
    trainer.save(name=new_trainer)
    assert trainer.name == new_trainer and cluster.get(new_trainer).steps == 1

    done = subprocess.run([sys.executable, "-c", SAVED_ELSEWHERE, new_fn, new_trainer],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [6, 2, new_trainer]  # the same state
    assert trainer.steps == 2

    cluster.delete(new_fn)  # an alias goes alone
    assert cluster.get(first)(1, 1) == 2 and new_fn not in cluster.keys()


def test_cluster_commands(cluster):
    assert cluster.run(["echo hi", "exit 3"]) == [(0, "hi\n", ""), (3, "", "")]
    assert cluster.run(["true", "false"], require_outputs=False) == [0, 1]
    assert cluster.run(["echo $GREETING"], env=rh.env(env_vars={"GREETING": "hello"})) == [(0, "hello\n", "")]
    assert cluster.run_python(["import sys", "print(sys.version_info[0])"]) == [(0, "3\n", "")]

    marker = f"/tmp/{_unique('tether-run-setup')}"
    try:
        for _ in range(2):  # the second time it is remembered by the nodes, and skipped
            cluster.run_setup([f"echo ran >> {marker}"])
        assert cluster.run([f"cat {marker}"]) == [(0, "ran\n", "")]
    finally:
        cluster.run([f"rm -f {marker}"])


def test_cluster_get_by_keyword_and_missing(cluster):
    key = _unique("value")
    cluster.put(key, {"a": 1})
    assert cluster.get(name=key) == {"a": 1}
    missing = _unique("missing")
    with pytest.raises(rh.NotFoundError, match=f"nothing named '{missing}'.*{key}"):
        cluster.get(missing)
    assert cluster.get(missing, default=None) is None


def test_default_env(cluster):
    env = rh.env(name=_unique("default-env"), env_vars={"GREETING": "hi"})
    with_env = rh.cluster(cluster.name, cluster.launcher_name, default_env=env, **cluster.spec)
    assert rh.Cluster.from_config(with_env.config()).default_env == env  # kept in its config
    greet = rh.function(runhouse_code.greeting).to(with_env, name=_unique("greet"))
    assert greet() == "hi"  # deployed into the default env, without env=
    assert with_env.run(["echo $GREETING"]) == [(0, "hi\n", "")]


def test_saved_cluster_with_default_env_runs_commands_in_it(cluster):
    cluster.save()
    env = rh.env(name=_unique("run-env"), env_vars={"GREETING": "hey"})
    with_env = rh.cluster(cluster.name, default_env=env)  # Runhouse: rh.cluster(name, default_env=...)
    try:
        assert with_env.default_env == env and with_env.is_up()
        prefix = rh.function(runhouse_code.python_prefix).to(with_env, name=_unique("prefix"))()
        # the env's interpreter is first on PATH: `python` is the one its functions run in
        assert with_env.run(["echo $GREETING", "python -c 'import sys; print(sys.prefix)'"]) == [
            (0, "hey\n", ""), (0, prefix + "\n", "")]
        assert with_env.run_python(["import os", "print(os.environ['GREETING'])"]) == [(0, "hey\n", "")]
    finally:
        rh.cluster(cluster.name, default_env=None)


def test_keep_warm_and_restart_grpc_server(cluster):
    remote_fn = rh.function(add3).to(cluster, name=_unique("add3"))
    assert cluster.keep_warm(autostop=30) is cluster
    assert cluster.autostop_mins == 30
    cluster.keep_warm(autostop_mins=-1)
    assert cluster.autostop_mins == -1
    cluster.restart_grpc_server(resync_rh=False)
    assert remote_fn(1, 2) == 3  # what was deployed came back


def test_configs_are_kept_and_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("TETHER_HOME", str(tmp_path))
    monkeypatch.delenv("TETHER_ONDEMAND_AUTOSTOP_MINS", raising=False)
    assert rh.configs.get("default_autostop") == 60
    rh.configs.set("default_autostop", 30)
    rh.configs.set("use_spot", True)
    rh.configs.set("default_provider", "aws")
    assert (tmp_path / "config.yaml").read_text() == (
        'default_autostop: 30\ndefault_provider: "aws"\nuse_spot: true\n')
    assert (rh.configs.get("default_autostop"), rh.configs.use_spot, rh.configs.default_provider) == (30, True, "aws")

    gpu = rh.ondemand_cluster(_unique("od"), instance_type="CPU:2+")
    assert (gpu.autostop_mins, gpu.spec["use_spot"], gpu.spec["provider"]) == (30, True, "aws")
    own = rh.ondemand_cluster(_unique("od"), instance_type="CPU:2+", autostop_mins=5, use_spot=False,
                              provider="gcp")
    assert (own.autostop_mins, own.spec["use_spot"], own.spec["provider"]) == (5, False, "gcp")
    rh.configs.delete("use_spot")
    assert rh.configs.use_spot is False


NOTEBOOK = '''
import linecache, sys
import tether as rh

def run_cell(source, number):
    """What a Jupyter kernel does with a cell: compile it under a name linecache knows."""
    filename = f"<ipython-input-{number}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), sys.modules["__main__"].__dict__)

run_cell("def shout(text):\\n    import os\\n    return text.upper() + os.sep\\n", 1)
run_cell("""
cluster = rh.cluster(name=sys.argv[1], launcher="local")
remote_shout = rh.function(shout, name=sys.argv[2]).to(cluster)
print(remote_shout("hi"))
""", 2)
run_cell("""
class Counter(rh.Module):
    def __init__(self, start=0):
        super().__init__()
        self.n = start

    def inc(self):
        self.n += 1
        return self.n

counter = Counter(5).to(cluster, name=sys.argv[2] + "-counter")
print(counter.inc(), counter.inc())
""", 3)
'''


def test_named_notebook_function_is_written_to_a_file(tmp_path, session_cluster):
    """A function defined in a notebook cell with a name goes to ``<name>_fn.py`` in the working
    directory and is imported from there (Runhouse's way); ``serialize=True`` stays the other.
    A ``rh.Module`` subclass defined in a cell is sent pickled."""
    name = f"nb_shout_{uuid.uuid4().hex[:6]}"
    done = subprocess.run([sys.executable, "-c", NOTEBOOK, session_cluster.name, name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == ["HI/", "6 7"]  # a Module subclass of a cell travels pickled
    assert "def shout(text):" in (tmp_path / f"{name}_fn.py").read_text()
