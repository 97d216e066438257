"""Other names of objects (``daemon/aliases.py``): what ``fn.save(name=...)`` asks the daemon.
An alias reaches its object by call, describe and ``get``; deleting one leaves the object; a
deploy under an alias takes the name over; a name of another object is refused; aliases come
back after a daemon restart; curl reaches an object by its alias too."""

from __future__ import annotations

import json
import urllib.request

import pytest
import remote_code

import tether as rh


@pytest.fixture(scope="module")
def cluster():
    made = rh.cluster(name="aliases", launcher="local").up_if_not()
    yield made
    made.teardown()


def test_an_alias_reaches_its_object_until_it_is_deleted(cluster):
    add = rh.function(remote_code.add).to(cluster, name="add")
    counter = rh.module(remote_code.Counter).to(cluster)(start=5, name="counter")
    assert cluster.client.alias("plus", "add") == {"alias": "plus", "name": "add"}
    assert cluster.client.alias("also-plus", "plus") == {"alias": "also-plus", "name": "add"}  # its object
    cluster.client.alias("tally", "counter")
    assert cluster.get("also-plus")(2, 3) == 5
    assert cluster.get("tally").increment() == counter.count == 6
    described = cluster.client.request_json("GET", "/_tether/objects/plus")
    assert (described["name"], described["aliases"]) == ("add", ["also-plus", "plus"])
    assert {"add", "plus", "also-plus", "counter", "tally"} <= set(cluster.keys())
    # keys() asks for the names only (?names=1): the same names, in order, as the full listing gives
    full = cluster.client.request_json("GET", "/_tether/keys")
    assert cluster.keys() == [n for o in full for n in (o["name"], *o.get("aliases", ()))]
    assert cluster.keys()[cluster.keys().index("add"):][:3] == ["add", "also-plus", "plus"]
    assert cluster.status()["aliases"] == {"plus": "add", "also-plus": "add", "tally": "counter"}

    with pytest.raises(rh.ConfigError, match="'counter' is the name of another object"):
        cluster.client.alias("counter", "add")
    with pytest.raises(rh.NotFoundError, match="no object named 'nothing'"):
        cluster.client.alias("x", "nothing")
    with pytest.raises(rh.ConfigError, match="bad name"):
        cluster.client.alias("-bad", "add")

    cluster.delete("also-plus")  # the alias only
    assert add(1, 1) == 2 and "also-plus" not in cluster.keys()
    rh.function(remote_code.echo).to(cluster, name="plus")  # a deploy takes the name over
    assert cluster.get("plus")(1) == ((1,), {}) and add(1, 2) == 3
    assert "plus" not in cluster.status()["aliases"]
    cluster.delete("counter")  # the object, and its aliases with it
    assert "tally" not in cluster.keys()
    with pytest.raises(rh.NotFoundError):
        cluster.get("tally")


def test_aliases_come_back_after_a_restart_and_answer_curl(cluster):
    rh.function(remote_code.add).to(cluster, name="add2")
    cluster.client.alias("sum2", "add2")
    cluster.restart_server()
    assert cluster.get("sum2")(20, 22) == 42
    endpoint = cluster.launcher.endpoint(cluster)
    request = urllib.request.Request(f"http://{endpoint.host}:{endpoint.port}/sum2/call?a=1&b=2",
                                     headers={"Authorization": f"Bearer {endpoint.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read()) == 3
