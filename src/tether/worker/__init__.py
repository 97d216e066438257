"""The small runtime a worker process runs (``python -m tether.worker.runtime``), next to the
user's code: it never imports the daemon's dependencies (FastAPI, uvicorn, pydantic) nor the
caller's (the client, launchers). Only ``tether.protocol``, ``tether.errors`` and the standard
library (and cloudpickle). The daemon puts nothing else of tether on a worker's path."""
