"""Secrets in the team registry: saved encrypted with the server's key (a raw scan of the SQLite
file finds no value), loaded without values, values only to users with read access (bob once
shared, never carol), versions and rollback carry them, and a worker gets a shared secret."""

from __future__ import annotations

import json
import stat
import urllib.request
import uuid

import pytest
import secrets_code
from sqlalchemy import text

import tether
from tether.core.registry import store
from tether.errors import AccessDeniedError, ConfigError, NotFoundError
from tether.registry import db


def rand(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex}"


def test_saved_encrypted_shared_and_read_only_by_those_with_access(registry, as_user, tether_home):
    name, first, second = f"hf-{uuid.uuid4().hex[:6]}", rand("first"), rand("second")
    as_user("alice")
    secret = tether.secret(name, values={"HF_TOKEN": first}).save()
    assert secret.rns_address == f"/alice/{name}"
    loaded = tether.load(f"/alice/{name}")
    assert isinstance(loaded, tether.Secret) and "not loaded" in repr(loaded)
    assert loaded.values == {"HF_TOKEN": first}
    raw = _get(registry, "alice", f"/v1/resources/alice/{name}")
    raw_token = _versions(registry)[-1][0]["encrypted"]
    assert raw["type"] == "secret" and "encrypted" not in raw["config"] and first not in json.dumps(raw)

    as_user("bob")
    with pytest.raises(AccessDeniedError, match=f"bob has no access to /alice/{name}"):
        tether.secret(f"/alice/{name}").values  # noqa: B018
    as_user("alice")
    secret.share("bob")
    as_user("bob")
    assert tether.secret(f"/alice/{name}").values == {"HF_TOKEN": first}
    with pytest.raises(AccessDeniedError, match="needs write access"):
        tether.secret(f"/alice/{name}", values={"HF_TOKEN": "mine"}).save(f"/alice/{name}")
    as_user("carol")
    with pytest.raises(AccessDeniedError, match="carol has no access"):
        tether.secret(f"/alice/{name}").values  # noqa: B018

    as_user("alice")  # a new version with new values; a rollback brings the first values back
    secret.values = {"HF_TOKEN": second}
    secret.save()
    assert [v["version"] for v in secret.versions()] == [1, 2]
    assert tether.secret(f"/alice/{name}").values == {"HF_TOKEN": second}
    assert tether.load(f"/alice/{name}", version=1).values == {"HF_TOKEN": first}
    secret.rollback(1)
    assert tether.secret(f"/alice/{name}").values == {"HF_TOKEN": first}

    # saved without values, or through the plain resource route (which drops a sealed field)
    bare = tether.secret(f"@/{name}-bare", values={"K": "v"}).save(save_values=False)
    with pytest.raises(NotFoundError, match="saved without values"):
        tether.load(bare.rns_address).values  # noqa: B018
    store.registry_client().put(bare.rns_address, {"type": "secret", "name": bare.name, "encrypted": raw_token})
    with pytest.raises(NotFoundError, match="version 2 was saved without values"):
        tether.load(bare.rns_address).values  # noqa: B018

    # a malformed request is refused without echoing what it held
    with pytest.raises(ConfigError, match="values") as caught:
        store.registry_client().request("PUT", f"secrets/alice/{name}", {"config": {}, "values": [first]})
    assert first not in str(caught.value)

    # the values are nowhere in clear: the database, the server's log, the clients' caches
    if registry.db_url.startswith("sqlite"):
        for path in registry.home.glob("registry.sqlite*"):
            data = path.read_bytes()
            assert first.encode() not in data and second.encode() not in data, path
    rows = json.dumps(_versions(registry))  # what any database holds, read raw
    assert "encrypted" in rows and first not in rows and second not in rows
    assert [stat.S_IMODE(p.stat().st_mode) for p in registry.home.rglob("secrets.key")] == [0o600]
    for path in [registry.home / "serve.log", *tether_home.rglob("*")]:
        if path.is_file() and "secrets" not in path.relative_to(path.anchor).parts:
            data = path.read_bytes()
            assert first.encode() not in data and second.encode() not in data, path


def test_a_worker_gets_a_secret_shared_with_its_user(sqlite_registry, monkeypatch, session_cluster):
    value = rand("shared")
    name = f"api-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("TETHER_REGISTRY", sqlite_registry.url)
    monkeypatch.setenv("TETHER_TOKEN", sqlite_registry.tokens["alice"])
    tether.secret(name, values={"key": value}, env_vars={"key": "SHARED_API_KEY"}).save().share("bob")
    monkeypatch.setenv("TETHER_TOKEN", sqlite_registry.tokens["bob"])
    env = tether.env(name=f"bob-{name}", secrets=[f"/alice/{name}"])
    digests = tether.function(secrets_code.env_digests).to(session_cluster, env=env, name=f"digests-{name}")
    assert digests(["SHARED_API_KEY"]) == {"SHARED_API_KEY": secrets_code.digest(value)}
    assert env.config()["secrets"] == [f"/alice/{name}"]


def _get(registry, user: str, route: str) -> dict:
    request = urllib.request.Request(registry.url + route,
                                     headers={"Authorization": f"Bearer {registry.tokens[user]}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _versions(registry) -> list[list]:
    """Every row of the versions table as stored (config as the database keeps it)."""
    engine = db.engine(registry.db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT config, number, created_by FROM versions ORDER BY id"))
            return [[json.loads(c) if isinstance(c, str) else c, n, b] for c, n, b in rows]
    finally:
        engine.dispose()
