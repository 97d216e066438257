"""Runhouse's address forms with a team registry (``sqlite_registry``): ``x``, ``./x``, ``@/x``,
``/user/x``, ``~/x`` (still this machine's), ``^x`` (built in), ``rh.current_folder()``,
``set_folder``, ``rns_address`` and ``rh.exists`` of each; and a deployed function saved into a
registry folder, called by that name from another process."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from runhouse_code import add3

import tether as rh


@pytest.fixture
def alice(sqlite_registry, monkeypatch):
    monkeypatch.setenv("TETHER_REGISTRY", sqlite_registry.url)
    monkeypatch.setenv("TETHER_TOKEN", sqlite_registry.tokens["alice"])
    yield
    while rh.unset_folder() != "/alice":
        pass


def test_each_form_with_a_registry(alice):
    name = f"emb-{uuid.uuid4().hex[:6]}"
    env = rh.env(name=name, env_vars={"K": "V"})
    assert rh.current_folder() == "/alice"
    for form in (name, f"./{name}", f"@/{name}", f"/alice/{name}"):
        assert env.save(form).rns_address == f"/alice/{name}" and env.name == name
        assert rh.exists(form) and rh.exists(name=form, resource_type="env")
        assert rh.load(form).rns_address == f"/alice/{name}"
    assert not rh.exists(f"~/{name}")  # this machine's registry is another place
    assert env.save(f"~/{name}").rns_address == f"~/{name}" and rh.exists(f"~/{name}")
    assert rh.exists("^local") and rh.cluster("^local").rns_address == "^local"

    assert rh.set_folder("@/team") == "/alice/team" == rh.current_folder()
    assert env.save(name).rns_address == f"/alice/team/{name}"
    assert rh.exists(f"/alice/team/{name}") and rh.exists(name)
    assert rh.unset_folder() == "/alice"


def test_a_function_saved_in_a_registry_folder_is_called_by_that_name(alice, session_cluster):
    session_cluster.save(f"~/{session_cluster.name}")
    fn = rh.function(add3).to(session_cluster, name=f"add3-{uuid.uuid4().hex[:6]}")
    stem = f"embed-{uuid.uuid4().hex[:6]}"
    fn.save(f"@/team/{stem}")  # the daemon names the function `stem` too (an alias)
    assert (fn.name, fn.rns_address) == (stem, f"/alice/team/{stem}")
    assert stem in session_cluster.keys()
    done = subprocess.run(
        [sys.executable, "-c", f"import tether as rh; print(rh.function(name='/alice/team/{stem}')(1, 2, 3))"],
        capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert (done.returncode, done.stdout.strip()) == (0, "6"), done.stderr
