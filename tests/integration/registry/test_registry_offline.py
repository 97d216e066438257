"""The registry down: configs read before keep loading from the cache (a running pipeline goes on);
writes and never-read names fail with an error naming the registry's URL and what to do."""

from __future__ import annotations

import pytest
from registry_code import embed
from registry_support import RegistryServer

import tether
from tether.core import cluster as cluster_module
from tether.errors import ConnectionError


def test_cached_reads_work_and_writes_fail_while_the_registry_is_down(tmp_path, monkeypatch):
    server = RegistryServer.start(f"sqlite:///{tmp_path / 'registry.sqlite'}", tmp_path, users=("alice",))
    try:
        monkeypatch.setenv("TETHER_REGISTRY", server.url)
        monkeypatch.setenv("TETHER_TOKEN", server.tokens["alice"])
        saved = tether.cluster(name="offline-gpu", launcher="local", cpus=1).save()
        fn = tether.function(embed).save("offline-embed")
        tether.load("offline-gpu")  # read once while up: cached
        tether.load("@/offline-embed", version=1)
        assert (tmp_path / "grant_signing.key").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "registry.sqlite").stat().st_mode & 0o777 == 0o600
    finally:
        server.stop()

    assert tether.load("offline-gpu").config() == saved.config()
    assert tether.load("/alice/offline-gpu").rns_address == "/alice/offline-gpu"
    assert tether.load("@/offline-embed", version=1).config() == fn.config()
    monkeypatch.delitem(cluster_module._clusters, "offline-gpu", raising=False)
    assert tether.cluster("offline-gpu").config() == saved.config()

    with pytest.raises(ConnectionError, match=f"registry at {server.url} cannot be reached.*saving "
                                              "/alice/offline-gpu was not done.*tether registry serve"):
        saved.save()
    with pytest.raises(ConnectionError, match="never read here"):
        tether.load("never-read")
    monkeypatch.delitem(cluster_module._clusters, "local", raising=False)
    assert tether.cluster("local").name == "local"  # the local default needs no registry
