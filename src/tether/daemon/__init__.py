"""The server on each node: FastAPI/uvicorn for the control plane, a raw ASGI route for calls, the
object store, worker processes (started as ``python -m tether.worker.runtime``), node routing,
limits and autostop. It imports ``tether.protocol`` and the shared leaves (``errors``, ``state``,
``compute``), never the caller's side (``core``, ``client``, ``launchers``, ``steps``)."""
