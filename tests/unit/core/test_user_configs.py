"""``tether.configs``' file form: what ``set`` writes is read back, hand-written YAML scalars too."""

from __future__ import annotations

import pytest

from tether.core import configs
from tether.errors import ConfigError


def test_written_values_read_back():
    values = {"default_autostop": -1, "use_spot": False, "default_provider": "gcp", "note": "it's: x"}
    assert configs.parse(configs.dump(values)) == values


def test_hand_written_yaml_scalars():
    text = "# mine\ndefault_autostop: 30\nuse_spot: yes\ndefault_provider: aws\nregion: 'us-east-1'\nzone: ~\n\n"
    assert configs.parse(text) == {"default_autostop": 30, "use_spot": True, "default_provider": "aws",
                                   "region": "us-east-1", "zone": None}


@pytest.mark.parametrize("text", ["secrets:\n  aws: x\n", "just words\n"])
def test_nested_or_malformed_files_are_refused_with_the_line(text):
    with pytest.raises(ConfigError, match="config.yaml:[12]: expected 'key: value'"):
        configs.parse(text)


@pytest.mark.parametrize(("key", "value"), [("default_autostop", "30"), ("use_spot", 1), ("x", [1]),
                                            ("bad key", 1)])
def test_set_refuses_values_of_the_wrong_form(key, value):
    with pytest.raises(ConfigError):
        configs.check(key, value)
