"""Env specs are checked where they are written (``tether.env``, ``Env``): a wrong type is a
ConfigError naming the field, before anything reaches a cluster."""

from __future__ import annotations

import pytest

import tether as rh
from tether.core.images import Env


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"reqs": "abc"}, "reqs"),
    ({"reqs": ["numpy", 3]}, "reqs"),
    ({"reqs": {"numpy": "1.26"}}, "reqs"),
    ({"env_vars": ["A=1"]}, "env_vars"),
    ({"env_vars": {"A": None}}, "env_vars"),
    ({"env_vars": {"A": ["x"]}}, "env_vars"),
    ({"env_vars": {1: "x"}}, "env_vars"),
    ({"env_vars": {"A=B": "x"}}, "env_vars"),
    ({"working_dir": 5}, "working_dir"),
    ({"python": ["python3"]}, "python"),
    ({"compute": {"node_idx": "1"}}, "node_idx"),
])
def test_a_wrong_type_is_a_config_error_naming_the_field(kwargs, field):
    with pytest.raises(rh.ConfigError, match=field):
        rh.env(**kwargs)
    with pytest.raises(rh.ConfigError, match=field):
        Env(**kwargs)


def test_a_string_of_reqs_says_how_to_write_it():
    with pytest.raises(rh.ConfigError, match=r"reqs=\['numpy'\]"):
        rh.env(reqs="numpy")


def test_good_specs_pass_and_numbers_become_strings():
    env = rh.env(reqs=("numpy>=1.26", "pandas"), env_vars={"THREADS": 4, "MODE": "fast", "RATE": 0.5},
                 name="gpu", working_dir="/tmp", python="python3", compute={"node_idx": 1})
    assert env.reqs == ["numpy>=1.26", "pandas"]
    assert env.env_vars == {"THREADS": "4", "MODE": "fast", "RATE": "0.5"}
    assert Env.from_config(env.config()).wire_spec() == env.wire_spec()
    assert rh.env().reqs == [] and rh.env().env_vars == {}
