"""The code the benchmark deploys to tether (imported by path on the cluster, like any user code)."""


def noop():
    """Does nothing (returns None): a call measures only tether's call path."""
