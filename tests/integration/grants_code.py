"""Code the grant tests deploy (tests/integration/daemon/test_shared_grants.py)."""

from __future__ import annotations


def double(x: int) -> int:
    return 2 * x


def triple(x: int) -> int:
    return 3 * x
