"""tether.Image as data: the chainable steps, their record keys, config round trips, bad input."""

from __future__ import annotations

import pytest

import tether as rh
from tether.core.image import Image, resolve_image
from tether.errors import ConfigError


def three(value: str = "1") -> Image:
    return (rh.Image("base").install_packages(["numpy==2.1.0"]).set_env_vars({"A": value})
            .run_bash(["make", "make install"]))


def test_a_changed_step_changes_its_key_and_every_later_one_only():
    before, after = [k for k, _ in three("1").keyed_steps()], [k for k, _ in three("2").keyed_steps()]
    assert before[0] == after[0]
    assert before[1] != after[1] and before[2] != after[2]
    assert [k for k, _ in three("1").keyed_steps()] == before  # stable: the same content, the same keys
    assert all(len(k) == 24 and int(k, 16) >= 0 for k in before)


def test_the_same_step_in_another_place_is_another_step():
    a = rh.Image().run_bash("x").run_bash("y")
    b = rh.Image().run_bash("y").run_bash("x")
    assert {k for k, _ in a.keyed_steps()}.isdisjoint(k for k, _ in b.keyed_steps())


def test_a_docker_base_is_part_of_every_key():
    plain = [k for k, _ in three().keyed_steps()]
    based = [k for k, _ in three().from_docker("python:3.11").keyed_steps()]
    assert set(plain).isdisjoint(based)


def test_config_round_trip_and_runhouse_forms():
    image = three().from_docker("docker:python:3.11-slim")
    assert image.docker_image == "python:3.11-slim" and image.image_id == "docker:python:3.11-slim"
    assert Image.from_config(image.config()) == image
    assert resolve_image("docker:python:3.11-slim").docker_image == "python:3.11-slim"
    assert resolve_image(image.config()) == image
    assert resolve_image(None) is None
    assert rh.Image().pip_install("six").steps[0].args == {"reqs": ["six"]}
    assert image.env_vars() == {"A": "1"}


def test_set_env_vars_reads_a_dotenv_file(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nexport A=1\nB='two words'\n\nC=\"x=y\"\n")
    assert rh.Image().set_env_vars(str(dotenv)).env_vars() == {"A": "1", "B": "two words", "C": "x=y"}
    dotenv.write_text("NOT A PAIR\n")
    with pytest.raises(ConfigError, match=r"\.env:1 is not KEY=VALUE"):
        rh.Image().set_env_vars(dotenv)
    with pytest.raises(ConfigError, match="could not read the .env file"):
        rh.Image().set_env_vars(str(tmp_path / "missing.env"))


@pytest.mark.parametrize(("make", "says"), [
    (lambda: rh.Image().install_packages([]), "at least one requirement"),
    (lambda: rh.Image().install_packages([3]), "requirement strings"),
    (lambda: rh.Image().run_bash([]), "run_bash"),
    (lambda: rh.Image().run_bash(["ok", "  "]), "run_bash"),
    (lambda: rh.Image().set_env_vars({}), "at least one variable"),
    (lambda: rh.Image().set_env_vars({"A=B": "x"}), "bad variable name"),
    (lambda: rh.Image().from_docker(""), "docker image id"),
    (lambda: rh.Image().from_docker("a:1").from_docker("b:2"), "one docker base"),
    (lambda: Image.from_config({"steps": [{"kind": "explode", "args": {}}]}), "unknown image step"),
    (lambda: resolve_image(3.5), "image= takes"),
], ids=["no-reqs", "reqs-not-strings", "no-commands", "blank-command", "no-vars", "bad-var-name",
        "empty-docker", "two-dockers", "unknown-step", "bad-image-arg"])
def test_bad_steps_say_what_they_take(make, says):
    with pytest.raises(ConfigError, match=says):
        make()
