"""A shared cluster's daemon checks grants offline (docs/security.md, "Grants"): a user with read
access calls its services and reads its records, one with write access also deploys; expired,
forged and other clusters' grants are refused with the reason; calls go on across renewals.

The grants are signed here with protocol.grants and a test key: in production the team registry
(``tether registry serve``, built beside this) signs them and the cluster's handle asks it for
them (``POST /v1/grants``); here a ``token_source`` lambda stands in for that request.

The owner's daemon listens off the local launcher's loopback address with TLS (``direct_launcher``:
127.0.0.2, ``--tls on``), the way users on other machines reach a shared cluster: pinned to its
certificate, with the endpoint its owner's ``config(endpoint=True)`` gives and no token.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import direct_launcher
import grants_code
import httpx
import pytest

import tether as rh
from tether import state
from tether.client.daemon_client import DaemonClient
from tether.core.cluster import shared_cluster
from tether.protocol import grants

pytestmark = pytest.mark.timeout(120)

KEY = grants.new_private_key()
PATH = "/alice/gpu"


def grant(user: str = "bob", access: str = "read", **kw) -> str:
    return grants.sign(KEY, user=user, cluster=kw.pop("cluster", PATH), access=access, **kw)


@pytest.fixture(scope="module")
def owner(tmp_path_factory):
    """The owner's cluster: its daemon given the registry's key and its registry path (the state
    dir's registry.pub and cluster_path), with ``double`` deployed."""
    direct_launcher.register()
    folder = tmp_path_factory.mktemp("shared")
    state.write_registry(folder, grants.public_key(KEY), PATH)
    cluster = rh.cluster(name=f"shared-{uuid.uuid4().hex[:6]}", launcher=direct_launcher.NAME,
                         state_dir=str(folder)).up_if_not()
    rh.function(grants_code.double).to(cluster, name="double")
    yield cluster
    cluster.teardown()


@pytest.fixture(scope="module")
def endpoint(owner) -> dict:
    return owner.config(endpoint=True)["endpoint"]


def as_user(endpoint: dict, access: str = "read", user: str = "bob", ttl: float = 300):
    return shared_cluster(PATH, endpoint, lambda: grant(user, access, ttl=ttl))


def raw(endpoint: dict, token: str, method: str, path: str, **kw) -> httpx.Response:
    """A request with ``token`` as bearer, over TLS (not pinned: the client's own tests check pins)."""
    from tether.protocol.tls import client_context

    headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
    with httpx.Client(verify=client_context(), timeout=30) as h:
        return h.request(method, f"https://{endpoint['host']}:{endpoint['port']}{path}", headers=headers, **kw)


def test_owner_token_and_endpoint(owner, endpoint):
    assert owner.get("double")(4) == 8
    assert endpoint["host"] == direct_launcher.HOST and len(endpoint["fingerprint"]) == 64
    assert owner.client.token not in str(owner.config(endpoint=True))
    assert owner.client.request_json("GET", "/_tether/registry") == {
        "cluster": PATH, "public_key": grants.public_key(KEY)}


def test_read_grant_calls_and_reads_but_cannot_change(owner, endpoint):
    bob = as_user(endpoint, "read")
    assert bob.get("double")(21) == 42
    assert "double" in bob.keys()
    calls = bob.client.request_json("GET", "/_tether/calls", params={"service": "double"})["calls"]
    assert calls[0]["caller"]["user"] == "bob"
    assert bob.client.request_json("GET", "/_tether/status")["cluster"] == owner.name
    with pytest.raises(rh.AccessDeniedError, match="needs write access") as denied:
        rh.function(grants_code.triple).to(bob, name="triple")
    assert denied.value.needed == "write" and denied.value.user == "bob"
    with pytest.raises(rh.AccessDeniedError, match="'bob' has read access"):
        bob.delete("double")
    with pytest.raises(rh.AccessDeniedError):
        bob.run_bash("echo hi")
    assert "double" in owner.keys()


def test_a_grant_cannot_claim_another_user(owner, endpoint):
    """The call record names the grant's user, whatever the caller header says."""
    token, call_id = grant("bob"), uuid.uuid4().hex
    resp = raw(endpoint, token, "POST", "/double/call", json={"args": [1]},
               headers={"x-tether-caller": "alice@owner-box:1", "x-tether-call-id": call_id})
    assert resp.status_code == 200, resp.text
    record = owner.client.request_json("GET", f"/_tether/calls/{call_id}/record")
    assert record["caller"]["user"] == "bob" and record["caller"]["host"] == "owner-box"


def test_read_grant_gets_and_cancels_its_own_calls_only(owner, endpoint):
    bob, carol = as_user(endpoint, "read"), as_user(endpoint, "read", user="carol")
    mine = uuid.uuid4().hex
    bob.client.call("double", "call", (5,), call_id=mine)
    assert bob.result(mine) == 10
    with pytest.raises(rh.AccessDeniedError, match="not one of user 'carol'"):
        carol.result(mine)
    with pytest.raises(rh.AccessDeniedError):
        carol.cancel(mine)
    assert bob.cancel(mine) is False  # finished; but allowed
    owners = uuid.uuid4().hex
    owner.client.call("double", "call", (1,), call_id=owners)
    with pytest.raises(rh.AccessDeniedError):
        bob.result(owners)
    assert as_user(endpoint, "write", user="dave").result(owners) == 2  # write: any call


def test_write_grant_deploys_and_deletes_but_not_owner_routes(owner, endpoint):
    dave = as_user(endpoint, "write", user="dave")
    assert rh.function(grants_code.triple).to(dave, name="triple")(3) == 9
    assert owner.get("triple")(2) == 6
    dave.delete("triple")
    assert "triple" not in owner.keys()
    with pytest.raises(rh.AccessDeniedError, match="owner only"):
        dave.client.request_json("POST", "/_tether/token")
    with pytest.raises(rh.AccessDeniedError, match="owner only"):
        dave.client.request_json("PUT", "/_tether/registry", body={"public_key": None, "cluster": None})
    assert raw(endpoint, grant("dave", "write"), "GET", "/_tether/dashboard/").status_code == 403


@pytest.mark.parametrize(("token", "reason"), [
    (lambda: grant(now=time.time() - 3600, ttl=300), "expired"),
    (lambda: grants.sign(grants.new_private_key(), user="bob", cluster=PATH, access="write"), "bad signature"),
    (lambda: grant(cluster="/alice/other"), "for cluster '/alice/other'"),
    (lambda: grant()[:-6] + "AAAAAA", "bad signature"),
])
def test_refused_grants_are_401_with_the_reason(endpoint, token, reason):
    resp = raw(endpoint, token(), "POST", "/double/call", json={"args": [1]})
    assert resp.status_code == 401
    body = resp.json()
    assert body["error"] == "grant_refused" and reason in body["reason"]
    assert "Ask the registry for a new one" in body["message"]
    bad = shared_cluster(PATH, endpoint, token)
    with pytest.raises(rh.AuthenticationError, match=reason):
        bad.get("double")


def test_grants_are_renewed_before_they_expire(endpoint):
    asked = []

    def source():
        asked.append(time.time())
        return {"grant": grant("erin", ttl=2), "expires": time.time() + 2}

    erin = shared_cluster(PATH, endpoint, source)
    double = erin.get("double")
    end = time.monotonic() + 3.5
    n = 0
    while time.monotonic() < end:
        assert double(n) == 2 * n
        n += 1
        time.sleep(0.05)
    assert len(asked) >= 2, asked  # renewed (at 4/5 of each grant's life), calls never failed
    assert n > 20
    before = len(asked)

    async def later():  # the async client renews too
        await asyncio.sleep(2.0)
        return await double.aio(7)

    assert asyncio.run(later()) == 14 and len(asked) > before


def test_the_local_launcher_shares_its_daemon(tmp_path):
    """registry_key=/registry_path= reach the daemon at start (state dir files) and a running one
    (PUT /_tether/registry); a daemon without them refuses every grant."""
    name = f"lshare-{uuid.uuid4().hex[:6]}"
    plain = rh.cluster(name=name, launcher="local").up_if_not()
    try:
        client = plain.client
        loopback = {"host": client.host, "port": client.port}
        with pytest.raises(rh.AuthenticationError, match="accepts no grants"):
            shared_cluster(PATH, loopback, grant).keys()
        with pytest.raises(rh.ConfigError, match="both"):
            client.request_json("PUT", "/_tether/registry", body={"public_key": grants.public_key(KEY)})
        with pytest.raises(rh.ConfigError, match="32 bytes"):
            client.request_json("PUT", "/_tether/registry", body={"public_key": "abc", "cluster": PATH})
        with pytest.raises(rh.ConfigError, match="registry_path="):
            rh.cluster(name=name, launcher="local", registry_key=grants.public_key(KEY))
        shared = rh.cluster(name=name, launcher="local", registry_key=grants.public_key(KEY),
                            registry_path=PATH).up_if_not()  # the running daemon: switched at once
        assert state.read_registry(state.cluster_dir(name)) == (grants.public_key(KEY), PATH)
        assert shared_cluster(PATH, shared.config(endpoint=True)["endpoint"], grant).keys() == []
        shared.restart_server()  # the next daemon reads it from the state dir
        assert DaemonClient(shared.client.host, shared.client.port, token_source=grant,
                            cluster=name).request_json("GET", "/_tether/registry")["cluster"] == PATH
    finally:
        plain.teardown()
