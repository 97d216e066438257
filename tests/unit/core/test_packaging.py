"""Finding how a function or class imports on the cluster: module paths, packages, project roots."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest

from tether.core.packaging import ImportSpec, find_project_root, import_spec
from tether.errors import ConfigError


def _load(module: str, attr: str):
    return getattr(importlib.import_module(module), attr)


def test_top_level_module(project):
    name = project.module_name("jobs")
    project.write(f"{name}.py", "def run():\n    pass\n\nclass Job:\n    pass\n")
    for attr in ("run", "Job"):
        spec = import_spec(_load(name, attr))
        assert spec == ImportSpec(name, attr, (str(project.root.resolve()),), str(project.root.resolve()))


def test_module_in_a_package(project):
    pkg = project.module_name("pkg")
    project.write(f"{pkg}/__init__.py", "")
    project.write(f"{pkg}/sub/__init__.py", "")
    project.write(f"{pkg}/sub/deep.py", "class Outer:\n    class Inner:\n        pass\n")
    spec = import_spec(_load(f"{pkg}.sub.deep", "Outer").Inner)
    assert spec.module == f"{pkg}.sub.deep"
    assert spec.qualname == "Outer.Inner"
    assert spec.path_entries == (str(project.root.resolve()),)  # the entry above the top package


def test_function_in_a_package_init(project):
    pkg = project.module_name("initpkg")
    project.write(f"{pkg}/__init__.py", "def from_init():\n    pass\n")
    project.write(f"{pkg}/inner/__init__.py", "def from_inner_init():\n    pass\n")
    assert import_spec(_load(pkg, "from_init")).path_entries == (str(project.root.resolve()),)
    spec = import_spec(_load(f"{pkg}.inner", "from_inner_init"))
    assert (spec.module, spec.path_entries) == (f"{pkg}.inner", (str(project.root.resolve()),))


def test_src_layout_entry_and_root(project):
    """The import path entry is src/, the project root is the folder with pyproject.toml."""
    pkg = project.module_name("srcpkg")
    project.write(f"src/{pkg}/__init__.py", "")
    project.write(f"src/{pkg}/models.py", "def fit():\n    pass\n")
    import sys

    sys.path.insert(0, str(project.root / "src"))
    try:
        spec = import_spec(_load(f"{pkg}.models", "fit"))
    finally:
        sys.path.remove(str(project.root / "src"))
    assert spec.path_entries == (str((project.root / "src").resolve()),)
    assert spec.project_root == str(project.root.resolve())


@pytest.mark.parametrize("marker", ["pyproject.toml", "setup.py", "setup.cfg", ".git"])
def test_find_project_root_markers(tmp_path, marker):
    root = tmp_path / "repo"
    deep = root / "a" / "b" / "c"
    deep.mkdir(parents=True)
    if marker == ".git":
        (root / ".git").mkdir()
    else:
        (root / marker).write_text("")
    assert find_project_root(deep) == root
    assert find_project_root(root) == root


def test_find_project_root_nearest_wins(tmp_path):
    (tmp_path / ".git").mkdir()
    inner = tmp_path / "packages" / "lib"
    inner.mkdir(parents=True)
    (inner / "pyproject.toml").write_text("")
    (inner / "pkg").mkdir()
    assert find_project_root(inner / "pkg") == inner
    assert find_project_root(tmp_path / "packages") == tmp_path


def test_no_project_root_falls_back_to_the_entry(tmp_path, monkeypatch):
    """A module outside any project: the root is its import path entry."""
    folder = tmp_path / "loose"
    folder.mkdir()
    if find_project_root(folder) is not None:
        pytest.skip(f"{tmp_path} lies inside a project ({find_project_root(folder)})")
    (folder / "loose_mod_for_spec.py").write_text("def f():\n    pass\n")
    monkeypatch.syspath_prepend(str(folder))
    try:
        spec = import_spec(_load("loose_mod_for_spec", "f"))
    finally:
        import sys

        sys.modules.pop("loose_mod_for_spec", None)
    assert spec.path_entries == (str(folder.resolve()),)
    assert spec.project_root == str(folder.resolve())


@pytest.mark.parametrize(
    "obj", [json.dumps, os.path.join, Path, importlib.import_module, len],
    ids=["stdlib-function", "stdlib-posixpath", "stdlib-class", "importlib", "builtin"],
)
def test_installed_code_needs_no_path_entry(obj):
    spec = import_spec(obj)
    assert spec.path_entries == ()
    assert spec.project_root is None
    assert _load(spec.module, spec.qualname) is obj


def test_site_packages_code_needs_no_path_entry():
    import pluggy

    spec = import_spec(pluggy.PluginManager)
    assert (spec.module.split(".")[0], spec.path_entries) == ("pluggy", ())


def test_wire_spec_is_json():
    spec = import_spec(json.dumps)
    assert json.loads(json.dumps(spec.wire())) == {"module": "json", "qualname": "dumps", "path_entries": []}


def _nested():
    def inner():
        pass

    return inner


def _from_main():
    namespace = {"__name__": "__main__"}
    exec("def main_fn():\n    pass\n", namespace)  # noqa: S102 - a real __main__ function
    return namespace["main_fn"]


@pytest.mark.parametrize(
    ("make", "says"),
    [(_from_main, "__main__"), (_nested, "inside another function"), (lambda: lambda: 0, "lambda")],
    ids=["main", "nested", "lambda"],
)
def test_no_import_path_suggests_serialize(make, says):
    with pytest.raises(ConfigError) as info:
        import_spec(make())
    assert says in str(info.value) and "serialize=True" in str(info.value)
