"""Code the Image and installer tests deploy (it travels by import path)."""

from __future__ import annotations

import os
import sys


def env_var(name: str):
    return os.environ.get(name)


def module_file(module: str) -> tuple[str, str]:
    """Where ``module`` is imported from in this worker, and the worker's interpreter."""
    import importlib

    return importlib.import_module(module).__file__, sys.executable
