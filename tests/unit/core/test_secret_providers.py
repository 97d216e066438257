"""What each provider's secret gives a worker, and how provider files are read (no daemon)."""

from __future__ import annotations

import json

import pytest

from tether.core import secret_providers as providers
from tether.core.secrets import Secret
from tether.errors import ConfigError


def test_github_token_wherever_it_sits_under_github_com(tmp_path):
    hosts = tmp_path / "hosts.yml"
    hosts.write_text("gitlab.com:\n    oauth_token: not-this\ngithub.com:\n    oauth_token: gho_1\n    user: me\n")
    assert providers.read("github", hosts) == {"oauth_token": "gho_1"}
    hosts.write_text("github.com:\n    users:\n        me: {}\n    user: me\n")  # a token kept in the keyring
    with pytest.raises(ConfigError, match="no oauth_token for github.com"):
        providers.read("github", hosts)


def test_deliveries_name_env_vars_and_files():
    aws = providers.delivery("aws", {"access_key": "A", "secret_key": "S", "session_token": "T"}, {})
    assert aws["env_vars"] == {"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "S", "AWS_SESSION_TOKEN": "T"}
    assert "aws_session_token = T" in aws["files"]["credentials"]
    hf = providers.delivery("huggingface", {"token": "h"}, {})
    assert hf["env_vars"] == {"HUGGING_FACE_HUB_TOKEN": "h", "HF_TOKEN": "h"}
    assert providers.delivery("github", {"oauth_token": "g"}, {})["env_vars"] == {"GITHUB_TOKEN": "g", "GH_TOKEN": "g"}
    ssh = providers.delivery("ssh", {"private_key": "k", "public_key": "p", "key_name": "../id"}, {})
    assert ssh == {"env_vars": {}, "files": {"_id": "k", "_id.pub": "p"}, "file_env": {"TETHER_SSH_KEY": "_id"}}
    gcp = providers.delivery("gcp", {"client_secret": "c"}, {})
    assert json.loads(gcp["files"]["application_default_credentials.json"]) == {"client_secret": "c"}
    assert gcp["env_vars"] == {}
    renamed = providers.delivery("azure", {"subscription_id": "s"}, {"subscription_id": "SUB"})
    assert renamed["env_vars"] == {"SUB": "s"}
    assert providers.delivery(None, {"A": 1, "b": "x"}, {"b": "B_VAR"})["env_vars"] == {"A": "1", "B_VAR": "x"}


def test_errors_and_reprs_never_show_values():
    with pytest.raises(ConfigError) as caught:
        providers.delivery(None, {"k": {"nested": "the-value"}}, {})
    assert "the-value" not in str(caught.value) and "'k'" in str(caught.value)
    secret = Secret("x", values={"TOKEN": "the-value"})
    assert "the-value" not in repr(secret) + str(secret) + json.dumps(secret.config())
    assert Secret.from_config(secret.config()).config() == secret.config()
