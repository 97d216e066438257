"""Orchestrator providers: Airflow (``airflow/``), Prefect (``prefect/``), Dagster (``dagster/``).

Each is native to its orchestrator and imports only ``tether.core`` (never the daemon), lazily, so
that parsing a DAG file that imports a provider stays cheap. All three wrap the same four actions,
``tether.steps.actions``: bring up a named cluster, deploy a service, call it (climbing a
``tether.Ladder`` on out-of-memory), tear down.
"""
