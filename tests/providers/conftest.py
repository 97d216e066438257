"""The provider tests deploy the same code as the integration tests (``memory_code``, by path), and
run the example pipelines of ``examples/dags/`` as they are."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_CODE = str(Path(__file__).parent.parent / "integration")
if _CODE not in sys.path:
    sys.path.insert(0, _CODE)

EXAMPLES = Path(__file__).parent.parent.parent / "examples" / "dags"
#: the names every example pipeline uses
CLUSTER, SERVICE = "train", "trainer"


@pytest.fixture
def examples(monkeypatch):
    """The example pipelines, run for real: ``examples.load("prefect_pipeline")`` imports that file
    as running it does (its folder first on ``sys.path``, so ``trainer`` is the example's own).

    Their OOM climb needs a real memory limit: without cgroups the test skips (fails in CI), and the
    daemon is told to refuse to start without them. The examples' cluster is torn down after."""
    from limits_support import require_cgroups

    import tether as rh

    require_cgroups()
    monkeypatch.setenv("TETHER_LIMITS", "cgroup")
    monkeypatch.delitem(sys.modules, "trainer", raising=False)

    class Examples:
        folder = EXAMPLES

        @staticmethod
        def load(name: str):
            monkeypatch.syspath_prepend(str(EXAMPLES))
            spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module

    yield Examples()
    sys.modules.pop("trainer", None)  # the next test imports its own
    try:
        rh.cluster(CLUSTER).teardown()  # if a failed run left it up
    except rh.NotFoundError:
        pass
