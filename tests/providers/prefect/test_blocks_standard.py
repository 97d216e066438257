"""Prefect's own standard test suite for blocks (as prefect-ray and Prefect's integrations run it):
a description, a documentation URL, a described field each, and a code example that imports and
loads the block, for the UI's block catalog."""

from __future__ import annotations

import pytest
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from tether.providers.prefect import TetherCluster, TetherService


@pytest.mark.parametrize("block", [TetherCluster, TetherService], ids=["cluster", "service"])
class TestTetherBlocks(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block):
        return block

    def test_has_a_valid_image(self, block) -> None:
        pytest.skip("tether's blocks have no logo (the suite fetches it over the network)")
