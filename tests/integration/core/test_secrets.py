"""Secrets on this machine and on a cluster: provider secrets read from a temp HOME's credential
files, saved locally 0600, given to a worker as env vars and 0600 files (at deploy, and to a
running worker with sync_secrets), and found nowhere else: not in the cluster's state dir (but for
its secrets/ folder), the daemon's log, status, keys, events or call records."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path

import pytest
import secrets_code
from secrets_code import digest

import tether as rh
from tether.errors import ConfigError, NotFoundError


def rand(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex}"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A temp HOME with fake aws, gcp, azure, huggingface, github and ssh credentials."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "HF_TOKEN", "GH_TOKEN", "GITHUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    v = {k: rand(k) for k in ("aws_id", "aws_key", "gcp", "azure", "hf", "gh", "ssh")}
    files = {
        ".aws/credentials": f"[default]\naws_access_key_id = {v['aws_id']}\naws_secret_access_key = {v['aws_key']}\n",
        ".config/gcloud/application_default_credentials.json": json.dumps(
            {"type": "authorized_user", "client_id": "cid", "client_secret": v["gcp"]}),
        ".azure/clouds.config": f"[AzureCloud]\nsubscription = {v['azure']}\n",
        ".cache/huggingface/token": v["hf"] + "\n",
        ".config/gh/hosts.yml": f"github.com:\n    user: me\n    oauth_token: {v['gh']}\n    git_protocol: https\n",
        ".ssh/deploy-key": f"-----BEGIN OPENSSH PRIVATE KEY-----\n{v['ssh']}\n-----END OPENSSH PRIVATE KEY-----\n",
        ".ssh/deploy-key.pub": "ssh-ed25519 AAAA me@host\n",
    }
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return v


def test_provider_secrets_read_this_machines_files(home):
    aws = rh.provider_secret("aws")
    assert aws.name == "aws" and aws.values == {"access_key": home["aws_id"], "secret_key": home["aws_key"]}
    assert rh.provider_secret("gcp").values["client_secret"] == home["gcp"]
    assert rh.provider_secret("azure").values == {"subscription_id": home["azure"]}
    assert rh.provider_secret("huggingface").values == {"token": home["hf"]}
    assert rh.provider_secret("github").values == {"oauth_token": home["gh"]}
    ssh = rh.provider_secret("ssh", name="deploy-key")
    assert ssh.name == "deploy-key" and home["ssh"] in ssh.values["private_key"]
    assert ssh.values["public_key"].startswith("ssh-ed25519")
    # a provider's name alone is its local credentials when nothing is saved by that name
    assert rh.secret("huggingface").values == {"token": home["hf"]}
    for secret in (aws, ssh, rh.provider_secret("github")):  # what shows never holds a value
        shown = f"{secret!r} {secret} {json.dumps(secret.config())}"
        assert not any(value in shown for value in home.values()), shown
    with pytest.raises(NotFoundError, match=r"no aws credentials at .*nope.*path="):
        rh.provider_secret("aws", path=str(Path(os.environ["HOME"], "nope")))
    with pytest.raises(ConfigError, match="unknown secret provider 'dropbox'"):
        rh.provider_secret("dropbox")
    delivered = aws.delivery()
    assert delivered["env_vars"] == {"AWS_ACCESS_KEY_ID": home["aws_id"], "AWS_SECRET_ACCESS_KEY": home["aws_key"]}
    assert delivered["file_env"] == {"AWS_SHARED_CREDENTIALS_FILE": "credentials"}


def test_saved_on_this_machine_0600_without_values_in_its_config(tether_home):
    value = rand("api")
    name = f"~/api-{uuid.uuid4().hex[:6]}"
    saved = rh.secret(name, values={"API_KEY": value}).save()
    assert saved.rns_address == name
    values_file = tether_home / "secrets" / f"{name[2:]}.json"
    assert stat.S_IMODE(values_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tether_home / "secrets").stat().st_mode) == 0o700
    config_file = tether_home / "resources" / f"{name[2:]}.json"
    assert value not in config_file.read_text() and value in values_file.read_text()
    loaded = rh.load(name)
    assert isinstance(loaded, rh.Secret) and "not loaded" in repr(loaded)
    assert loaded.values == {"API_KEY": value}
    assert rh.secret(name).values == {"API_KEY": value}
    loaded.delete()
    assert not values_file.exists() and not rh.exists(name)
    with pytest.raises(ConfigError, match="key 'not a name' is not an env var name"):
        rh.secret(values={"not a name": value}).delivery()


@pytest.fixture(scope="module")
def cluster():
    made = rh.cluster(name=f"secrets-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    yield made
    state_dir = Path(made.status()["state_dir"])
    made.teardown()
    assert not (state_dir / "secrets").exists()  # teardown takes them away


def test_worker_gets_env_vars_and_0600_files_and_nothing_leaks(cluster, tmp_path):
    api, aws_id, aws_key, gcp, late = (rand(s) for s in ("api", "awsid", "awskey", "gcp", "late"))
    custom = rh.secret("openai", values={"key": api}, env_vars={"key": "OPENAI_API_KEY"})
    aws = rh.provider_secret("aws", values={"access_key": aws_id, "secret_key": aws_key})
    gcp_secret = rh.provider_secret("gcp", values={"type": "service_account", "private_key": gcp})
    env = rh.env(name="with-secrets", secrets=[custom, aws, gcp_secret])
    assert "secrets" in env.config() and api not in json.dumps(env.config())

    env_digests = rh.function(secrets_code.env_digests).to(cluster, env=env, name="env_digests")
    file_of = rh.function(secrets_code.file_of).to(cluster, env=env, name="file_of")
    got = env_digests(["OPENAI_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "LATE_TOKEN"])
    assert got == {"OPENAI_API_KEY": digest(api), "AWS_ACCESS_KEY_ID": digest(aws_id),
                   "AWS_SECRET_ACCESS_KEY": digest(aws_key), "LATE_TOKEN": None}
    creds = file_of("AWS_SHARED_CREDENTIALS_FILE")
    assert creds["mode"] == 0o600 and creds["digest"] == digest(aws.delivery()["files"]["credentials"])
    adc = file_of("GOOGLE_APPLICATION_CREDENTIALS")
    assert adc["mode"] == 0o600 and adc["digest"] == digest(json.dumps(gcp_secret.values))
    pid = cluster.status()["envs"]["with-secrets"]["worker"]["pid"]

    # a running worker gets more at once, keeping its process (and its objects' state)
    answer = cluster.sync_secrets([rh.secret("late", values={"LATE_TOKEN": late})], env=env)
    assert answer["running"] and answer["secrets"]["late"]["env_vars"] == ["LATE_TOKEN"]
    assert env_digests(["LATE_TOKEN"]) == {"LATE_TOKEN": digest(late)}
    assert cluster.status()["envs"]["with-secrets"]["worker"]["pid"] == pid
    assert cluster.status()["secrets"]["with-secrets"] == ["aws", "gcp", "late", "openai"]

    # the values are nowhere but the worker's secrets folder
    values = [api, aws_id, aws_key, gcp, late]
    state_dir = Path(cluster.status()["state_dir"])
    delivered = state_dir / "secrets"
    for path in delivered.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    scanned = 0
    for path in state_dir.rglob("*"):
        if path.is_file() and delivered not in path.parents and not path.is_symlink():
            data = path.read_bytes()
            scanned += 1
            assert not any(v.encode() in data for v in values), f"a secret value is in {path}"
    assert scanned > 5 and (state_dir / "daemon.log").is_file()
    client = cluster.client
    shown = [client.request_json("GET", "/_tether/status"), client.request_json("GET", "/_tether/keys"),
             client.request_json("GET", "/_tether/events"), client.request_json("GET", "/_tether/calls")]
    assert not any(v in json.dumps(shown) for v in values)

    # a daemon restarted on the same state dir gives its restored worker the same secrets
    cluster.restart_server()
    assert env_digests(["OPENAI_API_KEY", "LATE_TOKEN"]) == {"OPENAI_API_KEY": digest(api),
                                                             "LATE_TOKEN": digest(late)}


def test_bad_secret_bodies_are_refused_without_echoing_values(cluster):
    value = rand("bad")
    client = cluster.client
    with pytest.raises(rh.TetherError) as caught:
        client.request_json("PUT", "/_tether/secrets/default",
                            body={"secrets": {"x": {"env_vars": {"BAD NAME": value}}}})
    assert "BAD NAME" in str(caught.value) and value not in str(caught.value)
    with pytest.raises(rh.TetherError, match="file '../up' needs a plain file name"):
        client.request_json("PUT", "/_tether/secrets/default", body={"secrets": {"x": {"files": {"../up": value}}}})
    with pytest.raises(rh.TetherError, match="file_env 'X' must name one of its files"):
        client.request_json("PUT", "/_tether/secrets/default",
                            body={"secrets": {"x": {"files": {"f": value}, "file_env": {"X": "nope"}}}})
    assert value not in json.dumps(client.request_json("GET", "/_tether/status"))
