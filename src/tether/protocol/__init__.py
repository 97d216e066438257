"""The one contract of the caller, the daemon and the worker: the wire format (``wire``), frames in
shared memory (``shm``), message streams on sockets and HTTP bodies (``streams``, ``http_body``),
and remote refs (``refs``).

Worker processes import this package: standard library and cloudpickle only (lazily), nothing of
tether but ``tether.errors``.
"""
