"""Finding how a function or class can be imported on the cluster.

Code travels by import path, never pickled: we find the object's module, the ``sys.path`` entry
that module is imported from, and the project root around it (the folder with ``pyproject.toml``,
``setup.py`` or ``.git``). The local cluster imports straight from those paths; remote launchers sync
the project root first.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.errors import ConfigError

ROOT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")


@dataclass(frozen=True)
class ImportSpec:
    module: str
    qualname: str
    path_entries: tuple[str, ...]
    project_root: str | None

    def wire(self) -> dict[str, Any]:
        return {"module": self.module, "qualname": self.qualname, "path_entries": list(self.path_entries)}


def find_project_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return None


def _installed_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths.get("stdlib"), paths.get("platstdlib"), paths.get("purelib"), paths.get("platlib")}
    return tuple(os.path.realpath(d) + os.sep for d in dirs if d)


def in_notebook(obj: Any) -> bool:
    """Whether ``obj`` was defined in a notebook cell (or an interactive session): in
    ``__main__`` without a file."""
    return getattr(obj, "__module__", None) == "__main__" and not hasattr(sys.modules.get("__main__"), "__file__")


def write_notebook_function(fn: Any, name: str, folder: Path | None = None) -> ImportSpec:
    """Runhouse's way with a named function from a notebook: write its source to
    ``<name>_fn.py`` in the working directory and import it from there on the cluster. Its
    imports must be inside its body (the cell's other lines are not written)."""
    import inspect
    import re
    import textwrap

    if fn.__name__ == "<lambda>":
        raise ConfigError(f"{name!r} is a lambda: define it with def to send it by name, or pass "
                          "serialize=True to send it pickled", name=name)
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as exc:
        raise ConfigError(f"cannot read the source of {name!r} ({exc}); pass serialize=True to send "
                          "it pickled", name=name) from None
    folder = (folder or Path.cwd()).resolve()
    module = re.sub(r"\W", "_", f"{name}_fn")
    module = module if module[0].isalpha() or module[0] == "_" else f"fn_{module}"
    path = folder / f"{module}.py"
    path.write_text(f"# written by tether from a notebook: the function {name!r}\n{source}")
    root = find_project_root(folder)
    return ImportSpec(module, fn.__name__, (str(folder),), str(root or folder))


def import_spec(obj: Any) -> ImportSpec:
    """How to import ``obj`` (a function or class) on the cluster; a ConfigError says why not."""
    what = "class" if isinstance(obj, type) else "function"
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    module_name = getattr(obj, "__module__", None)
    if not name or not module_name:
        raise ConfigError(f"cannot find where {obj!r} is defined; pass serialize=True to send it pickled")
    if module_name == "__main__":
        raise ConfigError(
            f"{what} {name!r} is defined in __main__ (a script run directly, or a notebook), so the "
            f"cluster cannot import it. Move it to a module of your project and import it from there, "
            f"or pass serialize=True to send it pickled (cloudpickle, by value); in a notebook, a name= "
            f"writes a function to <name>_fn.py and sends it from there.",
            name=name,
        )
    if "<locals>" in name or "<lambda>" in name:
        raise ConfigError(
            f"{what} {name!r} is defined inside another function or is a lambda, so it has no import "
            f"path. Define it at module level, or pass serialize=True to send it pickled.", name=name)
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if file is None:  # builtins and extension modules compiled in: importable by name anywhere
        return ImportSpec(module_name, name, (), None)
    path = Path(file).resolve()
    if str(path).startswith(_installed_dirs()) or "site-packages" in path.parts:
        return ImportSpec(module_name, name, (), None)  # installed: the env must have it too
    depth = module_name.count(".") + (1 if path.stem == "__init__" else 0)
    entry = path.parent
    for _ in range(depth):
        entry = entry.parent
    root = find_project_root(path.parent)
    return ImportSpec(module_name, name, (str(entry),), str(root) if root else str(entry))
