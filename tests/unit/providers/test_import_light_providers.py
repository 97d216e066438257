"""Importing a provider never imports the daemon (nor its FastAPI/uvicorn), nor tether's call
machinery: DAG parsing and Prefect/Dagster code locations import providers, and must stay cheap.

Each check runs in a fresh interpreter and inspects ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROVIDER_MODULES = [
    "tether.providers.airflow.operators.tether",
    "tether.providers.airflow.hooks.tether",
    "tether.providers.airflow.decorators.tether",
    "tether.providers.prefect",
    "tether.providers.dagster",
]
# tether modules a provider may import when imported: its own, and the light core ones
ALLOWED = ("tether", "tether._version", "tether.providers", "tether.core", "tether.errors")


def _modules_after(code: str) -> set[str]:
    program = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", PROVIDER_MODULES)
def test_a_provider_imports_no_daemon_and_no_call_machinery(module):
    loaded = _modules_after(f"import {module}")
    ours = sorted(m for m in loaded if m.startswith("tether.") and not m.startswith(module.rsplit(".", 1)[0])
                  and not m.startswith("tether.providers"))
    assert [m for m in ours if m not in ALLOWED] == []
    assert not [m for m in loaded if m.startswith("tether.daemon")]


def test_airflow_reads_provider_info_without_importing_airflow_or_the_core():
    loaded = _modules_after("from tether.providers.airflow import get_provider_info; get_provider_info()")
    assert not [m for m in loaded if m == "airflow" or m.startswith("airflow.")]
    assert not [m for m in loaded if m.startswith(("tether.core", "tether.daemon"))]
