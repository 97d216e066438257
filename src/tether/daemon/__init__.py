"""Everything that runs on a cluster node: the daemon (FastAPI) and the worker runtime.

Nothing is imported here: worker processes import ``tether.daemon.runtime`` and must not pull in
the daemon's dependencies.
"""
