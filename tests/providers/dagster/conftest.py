"""Fixtures of the Dagster provider tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def tag():
    """A fresh suffix for a test's cluster and services; the cluster ``dg-<tag>`` is torn down after."""
    import uuid

    import tether as rh

    value = uuid.uuid4().hex[:6]
    yield value
    try:
        rh.cluster(f"dg-{value}").teardown()
    except rh.NotFoundError:
        pass
