"""tether.daemon.installer: which installer, the commands it runs, pip's settings passed to uv."""

from __future__ import annotations

import pytest

from tether.daemon import installer
from tether.errors import ConfigError


def test_pip_is_chosen_when_asked_and_uv_where_it_is(monkeypatch):
    monkeypatch.setenv("TETHER_ENV_INSTALLER", "pip")
    assert installer.find().name == "pip"
    monkeypatch.setenv("TETHER_ENV_INSTALLER", "auto")
    found = installer.find()
    assert found.name == ("uv" if installer.find_uv() else "pip")
    monkeypatch.setenv("TETHER_ENV_INSTALLER", "conda")
    with pytest.raises(ConfigError, match="TETHER_ENV_INSTALLER is one of auto, uv, pip"):
        installer.find()


def test_the_commands(monkeypatch):
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(key, raising=False)
    uv = installer.Installer("uv", "/opt/uv", "0.13.8")
    assert uv.label == "uv 0.13.8"
    assert uv.venv_argv("/usr/bin/python3", "/e") == ["/opt/uv", "venv", "--quiet", "--python", "/usr/bin/python3", "/e"]
    assert uv.install_argv("/e/bin/python", ["six"]) == ["/opt/uv", "pip", "install", "--python", "/e/bin/python", "six"]
    pip = installer.Installer("pip")
    assert pip.venv_argv("/usr/bin/python3", "/e") == ["/usr/bin/python3", "-m", "venv", "/e"]
    assert pip.install_argv("/e/bin/python", ["six"])[:4] == ["/e/bin/python", "-m", "pip", "install"]


def test_pips_settings_reach_uv_unless_uvs_own_are_set(monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://a/simple https://b/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "/wheels")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    for key in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "UV_INDEX", "UV_FIND_LINKS", "UV_NO_INDEX"):
        monkeypatch.delenv(key, raising=False)
    assert installer._pip_settings() == [
        "--index-url", "https://mirror/simple", "--extra-index-url", "https://a/simple",
        "--extra-index-url", "https://b/simple", "--no-index", "--find-links", "/wheels"]
    monkeypatch.setenv("UV_INDEX_URL", "https://uv/simple")
    monkeypatch.setenv("UV_NO_INDEX", "1")
    assert "--index-url" not in installer._pip_settings() and "--no-index" not in installer._pip_settings()
