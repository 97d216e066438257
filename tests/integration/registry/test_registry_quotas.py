"""Quotas end to end: the admin sets a group's quota with the CLI; a member's launch past it fails
with ``QuotaExceededError`` showing the group's use, before anything starts (no daemon, no state
folder); a teardown frees its share. Real registry server, real daemons."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

import tether
from tether import state
from tether.cli import app
from tether.core.registry.remote import Login, RegistryClient


def quota(registry, *args: str) -> str:
    """``tether registry quota ARGS`` on the server's database (typer's runner: the same code)."""
    done = CliRunner().invoke(app, ["registry", "quota", *args, "--db", registry.db_url])
    assert done.exit_code == 0, done.output
    return done.stdout


def local(prefix: str, **spec):
    return tether.cluster(name=f"{prefix}-{uuid.uuid4().hex[:6]}", launcher="local", **spec)


def test_a_launch_past_the_quota_fails_before_anything_starts(sqlite_registry, monkeypatch):
    registry = sqlite_registry
    quota(registry, "set", "ml", "--clusters", "1", "--cpus", "8")
    monkeypatch.setenv("TETHER_REGISTRY", registry.url)
    monkeypatch.setenv("TETHER_TOKEN", registry.tokens["carol"])  # carol is in group ml
    first, second, big = local("q1", cpus=2), local("q2"), local("q3", cpus=16)
    first.up_if_not()
    try:
        with pytest.raises(tether.QuotaExceededError) as refused:
            second.up_if_not()
        message = str(refused.value)
        assert "group ml past its quota of 1 clusters" in message
        assert "it uses 1 clusters, 2 cpus, 0 gpus now" in message and "tether registry quota set ml" in message
        assert refused.value.use == {"clusters": 1, "cpus": 2, "gpus": 0}
        assert refused.value.limit == {"clusters": 1, "cpus": 8, "gpus": None}
        assert not state.cluster_dir(second.name).exists() and not second.is_up()  # nothing started

        listed = json.loads(quota(registry, "list", "--json"))
        assert listed == [{"group": "ml", "limit": {"clusters": 1, "cpus": 8, "gpus": None},
                           "use": {"clusters": 1, "cpus": 2, "gpus": 0}}]
        first.up_if_not()  # up already: renewed, not refused
        counted = json.loads(quota(registry, "usage", "--json"))
        assert [(row["user"], row["name"], row["cpus"]) for row in counted] == [("carol", first.name, 2)]
    finally:
        first.teardown()
    assert "0/1" in quota(registry, "list")  # the teardown freed its share
    with pytest.raises(tether.QuotaExceededError, match="past its quota of 8 cpus"):
        big.up_if_not()
    assert not state.cluster_dir(big.name).exists()
    second.up_if_not()  # the share first held
    second.teardown()


def test_users_outside_the_group_and_the_usage_route(sqlite_registry):
    alice = RegistryClient(Login(sqlite_registry.url, sqlite_registry.tokens["alice"]))
    alice.claim_usage("big", "ondemand", 512, 16)  # alice is in no group with a quota
    report = alice.usage()
    assert [(c["name"], c["cpus"], c["gpus"]) for c in report["clusters"]] == [("big", 512, 16)]
    assert report["quotas"] == []
    alice.release_usage("big")
    assert alice.usage()["clusters"] == []


def test_quota_checks_on_postgresql(postgres):
    """The claim's row lock (``SELECT ... FOR UPDATE OF quotas``) and sums on a real PostgreSQL."""
    from sqlalchemy.orm import Session

    from tether.registry import admin, db, quotas

    engine = db.open_db(postgres.new_database())
    try:
        with Session(engine) as session:
            admin.add_user(session, "dan")
            admin.add_group(session, "ml")
            admin.add_member(session, "ml", "dan")
            quotas.set_quota(session, "ml", clusters=2, gpus=2)
            dan = admin.user(session, "dan")
            quotas.claim(session, dan, "a", "ondemand", 4, 2)
            with pytest.raises(quotas.Exceeded) as refused:
                quotas.claim(session, dan, "b", "ondemand", 4, 1)
            assert refused.value.use == {"clusters": 1, "cpus": 4, "gpus": 2}
            quotas.claim(session, dan, "a", "ondemand", 4, 1)  # resized: room for one more GPU now
            quotas.claim(session, dan, "b", "ondemand", 4, 1)
            assert quotas.list_quotas(session)[0]["use"] == {"clusters": 2, "cpus": 8, "gpus": 2}
    finally:
        engine.dispose()
