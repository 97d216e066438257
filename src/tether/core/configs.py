"""Your defaults (Runhouse's ``rh.configs``), kept in ``$TETHER_HOME/config.yaml``.

    import tether as rh
    rh.configs.set("default_autostop", 30)      # on-demand clusters stop after 30 idle minutes
    rh.configs.set("use_spot", True)            # ... on spot machines
    rh.configs.set("default_provider", "aws")   # ... of this provider when none is given
    rh.configs.get("default_autostop")          # 30

The on-demand launcher reads them when a cluster is defined without the key
(``launchers/ondemand/spec.py``); a key given to the cluster always wins. The file is read again
when it changes, so another process's ``set`` is seen. It holds one ``key: value`` per line, with
scalar values (strings, numbers, true/false, null): a small YAML that this module reads and writes
itself, so that tether needs no YAML library. Standard library only.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from tether import state
from tether.errors import ConfigError

CONFIG_FILE = "config.yaml"

#: the keys tether reads, and their values when unset (others are kept for your own use)
BASE_DEFAULTS: dict[str, Any] = {
    "default_autostop": 60,  # minutes idle before an on-demand cluster stops (-1: never)
    "use_spot": False,
    "default_provider": None,  # None: the cheapest provider SkyPilot can use
}

_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False,
          "null": None, "~": None, "": None}


class Defaults:
    """``get``/``set``/``delete`` of the config file; ``use_spot``, ``default_provider`` and
    ``default_autostop`` read it too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: tuple[Path, float, dict[str, Any]] | None = None

    @property
    def path(self) -> Path:
        return state.tether_home() / CONFIG_FILE

    @property
    def defaults_cache(self) -> dict[str, Any]:
        """What the file holds now (a copy)."""
        path = self.path
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        with self._lock:
            cached = self._cache
            if cached is not None and cached[0] == path and cached[1] == mtime:
                return dict(cached[2])
            values = parse(path.read_text(), path)
            self._cache = (path, mtime, values)
            return dict(values)

    def get(self, key: str, alt: Any = None) -> Any:
        """The value set for ``key``; else ``alt``; else tether's default for it (or None)."""
        values = self.defaults_cache
        if key in values and values[key] is not None:
            return values[key]
        return alt if alt is not None else BASE_DEFAULTS.get(key)

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` in the file (None removes it)."""
        self.set_many({key: value})

    def set_many(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            check(key, value)
        current = self.defaults_cache
        current.update(values)
        self._write({k: v for k, v in current.items() if v is not None})

    def delete(self, key: str) -> None:
        current = self.defaults_cache
        if current.pop(key, None) is not None:
            self._write(current)

    def _write(self, values: dict[str, Any]) -> None:
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        state.write_private(path, dump(values))
        with self._lock:
            self._cache = None

    @property
    def use_spot(self) -> bool:
        return bool(self.get("use_spot"))

    @property
    def default_provider(self) -> str | None:
        return self.get("default_provider")

    @property
    def default_autostop(self) -> float:
        return self.get("default_autostop")


def check(key: Any, value: Any) -> None:
    if not isinstance(key, str) or not key.replace("_", "").isalnum():
        raise ConfigError(f"a config key is a name of letters, digits and '_', not {key!r}")
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise ConfigError(f"config {key!r} takes a string, number, true/false or None, not "
                          f"{type(value).__name__}")
    if key == "default_autostop" and value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"default_autostop is a number of minutes (-1: never), not {value!r}")
    if key == "use_spot" and value is not None and not isinstance(value, bool):
        raise ConfigError(f"use_spot is True or False, not {value!r}")


def dump(values: dict[str, Any]) -> str:
    """One ``key: value`` per line; strings quoted as JSON (which YAML reads the same)."""
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in sorted(values.items()))


def parse(text: str, where: Path | str = CONFIG_FILE) -> dict[str, Any]:
    """Read the flat ``key: value`` form (comments and blank lines skipped)."""
    values: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, raw = stripped.partition(":")
        if not sep or line[:1].isspace() or not key.strip():
            raise ConfigError(f"{where}:{number}: expected 'key: value', got {line!r:.80} (tether's "
                              "config holds one key and a plain value per line)")
        values[key.strip()] = _scalar(raw.strip())
    return values


def _scalar(raw: str) -> Any:
    if raw.lower() in _WORDS:
        return _WORDS[raw.lower()]
    if raw[:1] == "'" and raw[-1:] == "'" and len(raw) >= 2:
        return raw[1:-1].replace("''", "'")
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # a bare word: a string


configs = Defaults()

