"""The local registry: one JSON config per resource name under ``$TETHER_HOME/resources/``.

Names may contain ``/`` to form folders (``team/embedder``). Writes are atomic and private
(``tether.state.write_private``), so a reader in another process never sees half a config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tether.errors import ConfigError, NotFoundError
from tether.state import resources_dir, write_private


def _path(name: str) -> Path:
    clean = name.strip("/")
    parts = clean.split("/")
    if not clean or any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"bad resource name {name!r}: use letters, digits, '_', '-', '.', and '/' for folders")
    return resources_dir().joinpath(*parts[:-1], parts[-1] + ".json")


def save(config: dict[str, Any]) -> Path:
    name = config.get("name")
    if not name:
        raise ConfigError("a resource needs a name to be saved: pass name=... or call .save(name=...)")
    path = _path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(config, indent=2, sort_keys=True))
    return path


def load(name: str) -> dict[str, Any]:
    path = _path(name)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFoundError(
            f"no resource named {name!r} is saved in {resources_dir()}; save one with .save() first "
            f"(saved: {', '.join(names()) or 'none'})", name=name) from None


def exists(name: str) -> bool:
    return _path(name).exists()


def delete(name: str) -> None:
    try:
        _path(name).unlink()
    except FileNotFoundError:
        pass


def names() -> list[str]:
    root = resources_dir()
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.json"))
