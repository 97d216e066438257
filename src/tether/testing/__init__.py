"""Test suites third parties run against their own code: ``launcher_contract``."""
