"""Provider secrets: where each provider's credentials live on this machine, and how a worker gets
them (env vars, and 0600 files the provider's tools are pointed at).

    provider      read from (default path)                                   worker gets
    aws           ~/.aws/credentials (profile $AWS_PROFILE or default)       AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
                                                                             (+ AWS_SESSION_TOKEN), AWS_SHARED_CREDENTIALS_FILE
    gcp           ~/.config/gcloud/application_default_credentials.json      GOOGLE_APPLICATION_CREDENTIALS (the json file)
    azure         ~/.azure/clouds.config ([AzureCloud] subscription)          AZURE_SUBSCRIPTION_ID (+ AZURE_CLIENT_ID, ...)
    huggingface   ~/.cache/huggingface/token (or $HF_TOKEN)                   HF_TOKEN, HUGGING_FACE_HUB_TOKEN, HF_TOKEN_PATH
    github        ~/.config/gh/hosts.yml (or $GH_TOKEN / $GITHUB_TOKEN)       GH_TOKEN, GITHUB_TOKEN
    ssh           ~/.ssh/<key> (+ <key>.pub)                                  TETHER_SSH_KEY (the key file, 0600)

A delivery is ``{"env_vars": {NAME: value}, "files": {relative path: text}, "file_env": {NAME:
relative path}}``: the daemon writes the files 0600 in a 0700 folder of the env and sets each
``file_env`` variable to the file's absolute path there (``tether.daemon.secrets``).
"""

from __future__ import annotations

import configparser
import json
import os
import re
from pathlib import Path
from typing import Any

from tether.errors import ConfigError, NotFoundError

DEFAULT_PATHS = {
    "aws": "~/.aws/credentials",
    "gcp": "~/.config/gcloud/application_default_credentials.json",
    "azure": "~/.azure/clouds.config",
    "huggingface": "~/.cache/huggingface/token",
    "github": "~/.config/gh/hosts.yml",
    "ssh": "~/.ssh/id_rsa",
}
PROVIDERS = tuple(DEFAULT_PATHS)
#: value key -> env var, per provider (a secret's own ``env_vars=`` overrides these)
ENV_VARS: dict[str, dict[str, str]] = {
    "aws": {"access_key": "AWS_ACCESS_KEY_ID", "secret_key": "AWS_SECRET_ACCESS_KEY",
            "session_token": "AWS_SESSION_TOKEN"},
    "azure": {"subscription_id": "AZURE_SUBSCRIPTION_ID", "client_id": "AZURE_CLIENT_ID",
              "client_secret": "AZURE_CLIENT_SECRET", "tenant_id": "AZURE_TENANT_ID"},
    "huggingface": {"token": "HF_TOKEN"},
    "github": {"oauth_token": "GH_TOKEN"},
    "gcp": {},
    "ssh": {},
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_provider(provider: str) -> str:
    if provider not in DEFAULT_PATHS:
        raise ConfigError(f"unknown secret provider {provider!r}: one of {', '.join(PROVIDERS)}, or a "
                          "custom secret: tether.secret(name, values={...}, env_vars={...})")
    return provider


def default_path(provider: str, key: str | None = None) -> Path:
    if provider == "ssh" and key:
        return Path("~/.ssh", key).expanduser()
    return Path(DEFAULT_PATHS[check_provider(provider)]).expanduser()


def read(provider: str, path: str | Path | None = None) -> dict[str, Any]:
    """The values of ``provider``'s credentials on this machine (NotFoundError naming the file)."""
    file = Path(path).expanduser() if path else default_path(provider)
    from_env = _from_env(provider) if path is None else None
    if not file.is_file():
        if from_env:
            return from_env
        raise NotFoundError(f"no {provider} credentials at {file}: pass path=... (or values={{...}}) to "
                            f"tether.provider_secret({provider!r})", provider=provider, path=str(file))
    text = file.read_text()
    if provider == "aws":
        return _aws(text, file)
    if provider == "gcp":
        try:
            return json.loads(text)
        except ValueError:
            raise ConfigError(f"{file} is not a JSON credentials file") from None
    if provider == "azure":
        parser = configparser.ConfigParser()
        parser.read_string(text)
        subscription = parser.get("AzureCloud", "subscription", fallback=None)
        if not subscription:
            raise ConfigError(f"{file} has no [AzureCloud] subscription: run `az account set`")
        return {"subscription_id": subscription}
    if provider == "huggingface":
        return {"token": text.strip()}
    if provider == "github":
        found = re.search(r"^github\.com:\s*$(?:\n[ \t]+.*$)*?\n[ \t]+oauth_token:\s*(\S+)", text, re.M)
        if not found:
            raise ConfigError(f"{file} has no oauth_token for github.com: run `gh auth login`, or pass "
                              "values={'oauth_token': ...}")
        return {"oauth_token": found.group(1)}
    values = {"private_key": text, "key_name": file.name}  # ssh
    public = file.with_name(file.name + ".pub")
    if public.is_file():
        values["public_key"] = public.read_text()
    return values


def _aws(text: str, file: Path) -> dict[str, Any]:
    parser = configparser.ConfigParser()
    parser.read_string(text)
    profile = os.environ.get("AWS_PROFILE") or "default"
    if not parser.has_section(profile):
        raise ConfigError(f"{file} has no [{profile}] profile (sections: {', '.join(parser.sections())})")
    section = parser[profile]
    if "aws_access_key_id" not in section or "aws_secret_access_key" not in section:
        raise ConfigError(f"the [{profile}] profile of {file} lacks aws_access_key_id or aws_secret_access_key")
    values = {"access_key": section["aws_access_key_id"], "secret_key": section["aws_secret_access_key"]}
    if section.get("aws_session_token"):
        values["session_token"] = section["aws_session_token"]
    return values


def _from_env(provider: str) -> dict[str, Any] | None:
    env = os.environ
    if provider == "aws" and env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return {"access_key": env["AWS_ACCESS_KEY_ID"], "secret_key": env["AWS_SECRET_ACCESS_KEY"]}
    if provider == "huggingface" and env.get("HF_TOKEN"):
        return {"token": env["HF_TOKEN"]}
    if provider == "github" and (env.get("GH_TOKEN") or env.get("GITHUB_TOKEN")):
        return {"oauth_token": env.get("GH_TOKEN") or env["GITHUB_TOKEN"]}
    return None


def delivery(provider: str | None, values: dict[str, Any], env_vars: dict[str, str]) -> dict[str, Any]:
    """How a worker gets these values (see the module docstring). Errors name keys, never values."""
    names = {**ENV_VARS.get(provider or "", {}), **env_vars}
    out: dict[str, Any] = {"env_vars": {}, "files": {}, "file_env": {}}
    if provider == "gcp":
        out["files"]["application_default_credentials.json"] = json.dumps(values)
        out["file_env"]["GOOGLE_APPLICATION_CREDENTIALS"] = "application_default_credentials.json"
    elif provider == "ssh":
        key = _file_name(str(values.get("key_name") or "id_rsa"))
        out["files"][key] = str(values.get("private_key") or "")
        if values.get("public_key"):
            out["files"][key + ".pub"] = str(values["public_key"])
        out["file_env"]["TETHER_SSH_KEY"] = key
        return out
    elif provider == "aws":
        lines = ["[default]", f"aws_access_key_id = {values.get('access_key', '')}",
                 f"aws_secret_access_key = {values.get('secret_key', '')}"]
        if values.get("session_token"):
            lines.append(f"aws_session_token = {values['session_token']}")
        out["files"]["credentials"] = "\n".join(lines) + "\n"
        out["file_env"]["AWS_SHARED_CREDENTIALS_FILE"] = "credentials"
    elif provider == "huggingface":
        out["files"]["token"] = str(values.get("token", ""))
        out["file_env"]["HF_TOKEN_PATH"] = "token"
        names.setdefault("token", "HF_TOKEN")
        out["env_vars"]["HUGGING_FACE_HUB_TOKEN"] = str(values.get("token", ""))
    elif provider == "github":
        out["env_vars"]["GITHUB_TOKEN"] = str(values.get("oauth_token", ""))
    for key, value in values.items():
        if provider == "gcp" or (provider and key not in names):
            continue
        name = names.get(key, key)
        if not _ENV_NAME.match(name):
            raise ConfigError(f"the secret's key {key!r} is not an env var name: map it with "
                              f"env_vars={{{key!r}: 'SOME_NAME'}}")
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"the secret's value for {key!r} is a {type(value).__name__}; env vars "
                              "take strings and numbers")
        out["env_vars"][name] = str(value)
    return out


def _file_name(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.\-]", "_", name).lstrip(".")
    return clean or "key"
