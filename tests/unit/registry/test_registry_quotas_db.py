"""Quotas on the registry's database: use per group, refusals naming the group and its use,
renewal of an entry, expiry of stale ones, release (``tether.registry.quotas``)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from tether.errors import ConfigError, NotFoundError
from tether.registry import admin, db, quotas


@pytest.fixture
def session(tmp_path):
    engine = db.open_db(f"sqlite:///{tmp_path / 'registry.sqlite'}")
    with Session(engine) as session:
        for name in ("ann", "ben", "cat"):
            admin.add_user(session, name)
        admin.add_group(session, "ml")
        admin.add_group(session, "gpu")
        for user in ("ann", "ben"):
            admin.add_member(session, "ml", user)
        admin.add_member(session, "gpu", "ann")
        yield session
    engine.dispose()


def test_limits_count_every_member_and_every_group(session):
    ann, ben, cat = (admin.user(session, n) for n in ("ann", "ben", "cat"))
    quotas.set_quota(session, "ml", clusters=2, cpus=8)
    quotas.set_quota(session, "gpu", gpus=1)
    quotas.claim(session, ann, "a1", "local", 4, 0)
    quotas.claim(session, ben, "b1", "ondemand", 2, 0)
    with pytest.raises(quotas.Exceeded) as refused:  # ml: 2 clusters already
        quotas.claim(session, ben, "b2", "local", 0, 0)
    assert (refused.value.group, refused.value.use) == ("ml", {"clusters": 2, "cpus": 6, "gpus": 0})
    message = refused.value.message("b2")
    assert "group ml past its quota of 2 clusters" in message and "2 clusters, 6 cpus, 0 gpus" in message
    quotas.claim(session, cat, "c1", "local", 64, 8)  # in no group with a quota
    quotas.claim(session, ben, "b1", "ondemand", 4, 0)  # the same cluster again: renewed, resized
    assert quotas.group_use(session, admin.group(session, "ml").id) == {"clusters": 2, "cpus": 8, "gpus": 0}
    assert quotas.release(session, ann, "a1") and not quotas.release(session, ann, "a1")
    with pytest.raises(quotas.Exceeded) as refused:  # ml has room, but ann's other group has no GPU
        quotas.claim(session, ann, "a2", "ondemand", 2, 2)
    assert refused.value.group == "gpu" and "1 gpus" in refused.value.message("a2")
    quotas.claim(session, ann, "a2", "ondemand", 2, 2, check=False)  # up already: only recorded
    assert [row["group"] for row in quotas.list_quotas(session)] == ["gpu", "ml"]
    assert quotas.quotas_of(session, ann)[0]["use"]["gpus"] == 2


def test_stale_entries_expire(session):
    ann = admin.user(session, "ann")
    quotas.set_quota(session, "ml", clusters=1)
    quotas.claim(session, ann, "crashed", "local", 1, 0, ttl=-1)  # a process that never tore it down
    assert quotas.usage_of(session) == []
    quotas.claim(session, ann, "next", "local", 1, 0)
    assert [row["name"] for row in quotas.usage_of(session, ann)] == ["next"]


def test_quota_admin(session):
    with pytest.raises(NotFoundError):
        quotas.set_quota(session, "nobody", clusters=1)
    with pytest.raises(ConfigError):
        quotas.set_quota(session, "ml", clusters=-1)
    quotas.set_quota(session, "ml", clusters=1)
    quotas.set_quota(session, "ml", cpus=4)  # replaces: no cluster limit now
    assert quotas.list_quotas(session)[0]["limit"] == {"clusters": None, "cpus": 4, "gpus": None}
    quotas.remove_quota(session, "ml")
    with pytest.raises(NotFoundError):
        quotas.remove_quota(session, "ml")
