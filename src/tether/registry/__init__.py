"""The team registry server (``tether registry serve``): shared names, versions, access levels.

A small FastAPI app over SQLAlchemy 2 (SQLite by default, PostgreSQL by URL) whose schema is made
by the Alembic migrations shipped here (``migrations/``). Every process, notebook and pipeline
worker of a team finds the same names through it (``/alice/embedder``); the client is
``tether.core.registry.remote``. Besides the database, the server keeps its key files in a key
dir (``keys``): the Ed25519 key it signs grants with (``tether.protocol.grants``).

Modules: ``models`` (tables), ``db`` (engines, migrations), ``keys``, ``admin`` (users, groups,
tokens: the CLI's and the routes' one implementation), ``access`` (who may read or write what),
``schemas`` (the HTTP bodies), ``app`` (the routes). This layer imports ``errors``, ``state``
and ``protocol`` only, never the user API or the daemon.
"""
