"""Calling a cluster shared through the team registry, end to end: alice saves her running cluster
in the registry (its daemon is given the registry's public key), shares it with bob, and bob's
process, with a TETHER_HOME of its own (another machine, another Airflow worker), loads it by name
and calls its service with grants the registry signs. Real registry server, real daemon, real
worker; nothing faked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import grants_code
import pytest

import tether

BOB = """
import json, sys, tether
gpu = tether.cluster(sys.argv[1])
out = {"launcher": gpu.launcher_name, "double": gpu.get("double")(21)}
try:
    tether.function(tether.function).to(gpu, name="not-allowed")
except tether.AccessDeniedError as exc:
    out["deploy"] = str(exc)
except tether.TetherError as exc:
    out["deploy"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


@pytest.fixture
def alice_cluster(sqlite_registry, monkeypatch):
    monkeypatch.setenv("TETHER_REGISTRY", sqlite_registry.url)
    monkeypatch.setenv("TETHER_TOKEN", sqlite_registry.tokens["alice"])
    name = f"shared-{uuid.uuid4().hex[:6]}"
    gpu = tether.cluster(name=name, launcher="local")
    gpu.up_if_not()
    try:
        yield gpu
    finally:
        gpu.teardown()


def as_bob(registry, tmp_path, path: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TETHER_HOME": str(tmp_path), "TETHER_REGISTRY": registry.url,
           "TETHER_TOKEN": registry.tokens["bob"]}
    return subprocess.run([sys.executable, "-c", BOB, path], env=env, capture_output=True, text=True,
                          timeout=120)


def test_bob_calls_alices_shared_cluster_with_grants(sqlite_registry, alice_cluster, tmp_path):
    gpu = alice_cluster
    tether.function(grants_code.double).to(gpu, name="double")
    gpu.save()  # a bare name with a registry configured: /alice/<name>, with how to reach it
    path = gpu.rns_address
    assert path == f"/alice/{gpu.name}"
    assert gpu.client.request_json("GET", "/_tether/registry")["cluster"] == path
    saved = tether.load(path).config(endpoint=False)
    assert saved["spec"]["registry_path"] == path
    assert gpu.client.token not in json.dumps(tether.core.registry.store.load(path)[0])

    # not shared yet: the registry refuses bob a grant, naming the access
    refused = as_bob(sqlite_registry, tmp_path / "bob0", path)
    assert refused.returncode != 0 and "AccessDeniedError" in refused.stderr, refused.stderr

    gpu.share("bob", access_level="read")
    got = as_bob(sqlite_registry, tmp_path / "bob1", path)
    assert got.returncode == 0, got.stderr
    out = json.loads(got.stdout.splitlines()[-1])
    assert out["launcher"] == "shared" and out["double"] == 42
    assert "write" in out["deploy"], out  # read access calls, never deploys

    # the daemon's records name bob, from his grant
    calls = gpu.client.request_json("GET", "/_tether/calls", params={"service": "double"})["calls"]
    assert calls[0]["caller"]["user"] == "bob"

    gpu.unshare("bob")
    again = as_bob(sqlite_registry, tmp_path / "bob2", path)
    assert again.returncode != 0 and "AccessDeniedError" in again.stderr, again.stderr
