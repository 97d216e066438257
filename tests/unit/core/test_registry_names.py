"""What a name means with and without a team registry (no server: forms that need none)."""

from __future__ import annotations

import pytest

import tether
from tether.core.registry.names import resolve
from tether.errors import ConfigError


@pytest.fixture
def no_registry(monkeypatch, tmp_path):
    monkeypatch.setenv("TETHER_HOME", str(tmp_path))
    monkeypatch.delenv("TETHER_REGISTRY", raising=False)
    monkeypatch.delenv("TETHER_TOKEN", raising=False)


def test_without_a_registry_names_stay_local(no_registry):
    assert resolve("team/embed") == resolve("~/team/embed")
    address = resolve("team/embed")
    assert address.local and address.path == address.name == "team/embed"
    assert address.rns_address == "~/team/embed"
    for name in ("@/embed", "/alice/embed"):
        with pytest.raises(ConfigError, match="none is configured.*tether login"):
            resolve(name)


def test_local_names_have_one_version(no_registry):
    tether.env(reqs=["numpy"], name="one").save()
    assert tether.load("one").rns_address == "~/one"
    with pytest.raises(ConfigError, match="keeps one version"):
        tether.load("one", version=1)
    with pytest.raises(ConfigError, match="saved on this machine only"):
        tether.load("one").share("bob")


def test_absolute_names_need_no_round_trip(no_registry, monkeypatch):
    monkeypatch.setenv("TETHER_REGISTRY", "http://127.0.0.1:9")  # nothing listens: not asked
    address = resolve("/alice/nlp/embed")
    assert not address.local and address.path == "/alice/nlp/embed" and address.name == "nlp/embed"
    assert resolve("~/x").local
    with pytest.raises(ConfigError, match="bad registry name"):
        resolve("/alice")


def test_each_form_without_a_registry(no_registry):
    """Runhouse's address forms on this machine: ``~/x``, ``x``, ``./x``, ``^x`` (built in);
    ``@/x`` and ``/user/x`` need a registry and say so."""
    assert tether.current_folder() == "~"
    env = tether.env(name="emb", env_vars={"K": "V"})
    for form, address in (("~/emb", "~/emb"), ("emb", "~/emb"), ("./emb", "~/emb")):
        assert env.save(form).rns_address == address and env.name == "emb"
        assert tether.exists(form) and tether.exists(name=form, resource_type="env")
        assert not tether.exists(form, resource_type="cluster")
        assert tether.load(form).rns_address == "~/emb"
    assert not tether.exists("~/other")
    for form in ("@/emb", "/alice/emb"):
        with pytest.raises(ConfigError, match="none is configured"):
            tether.exists(form)


def test_builtins_are_read_only_and_launch_nothing(no_registry):
    assert tether.exists("^local") and tether.exists("^rh-cpu", resource_type="cluster")
    assert not tether.exists("^nope")
    local = tether.cluster("^local")
    assert (local.name, local.launcher_name, local.rns_address) == ("local", "local", "^local")
    cpu = tether.load("^rh-cpu")
    assert (cpu.launcher_name, cpu.spec["cpus"], cpu.rns_address) == ("ondemand", "2+", "^rh-cpu")
    with pytest.raises(tether.NotFoundError, match=r"no built-in resource named '\^nope'.*\^local"):
        tether.load("^nope")
    with pytest.raises(ConfigError, match="built in to tether and read-only"):
        cpu.save()
    assert cpu.save("my-cpu").rns_address == "~/my-cpu"  # a copy of one's own
    assert tether.cluster("my-cpu").spec["cpus"] == "2+"


def test_set_folder_moves_bare_names(no_registry):
    try:
        assert tether.set_folder("~/team") == "~/team" == tether.current_folder()
        assert tether.env(name="emb").save().rns_address == "~/team/emb"
        assert tether.set_folder("nlp") == "~/team/nlp"  # inside the current folder
        assert resolve("emb").rns_address == "~/team/nlp/emb"
        assert resolve("~/emb").rns_address == "~/emb"  # other forms are where they say
        assert tether.unset_folder() == "~/team"
        assert tether.exists("emb") and not tether.exists("~/emb")
    finally:
        while tether.unset_folder() != "~":
            pass
    assert resolve("emb").rns_address == "~/emb"
