"""Step overhead: what a tether call step adds to a pipeline task, per orchestrator.

For each orchestrator, a pipeline of N no-op tasks of its own against the same pipeline of N tether
call steps calling a deployed no-op service, run the same way (Airflow ``dag.test()``, a Prefect
flow on one ``prefect_test_harness()`` server, Dagster ``execute_in_process()``), in ms per task.

- ``runner.py``: the parent side, in ``bench/run.py``'s process: one child process per orchestrator
  (their imports are heavy and must not disturb the other figures), each with throwaway homes;
  skipped, with the reason, when the orchestrator is not installed.
- ``child.py``: the child side common to all: deploy the service, time the pairs, write the JSON.
- ``airflow_steps.py``, ``prefect_steps.py``, ``dagster_steps.py``: each orchestrator's pipelines.
- ``table.py``: the rows as printed under the main table.

Nothing here imports an orchestrator in the benchmark's own process.
"""

#: orchestrator -> (the module its child runs, the distribution that says it is installed, the extra)
ORCHESTRATORS = {
    "airflow": ("bench.orchestrators.airflow_steps", "apache-airflow", "airflow"),
    "prefect": ("bench.orchestrators.prefect_steps", "prefect", "prefect"),
    "dagster": ("bench.orchestrators.dagster_steps", "dagster", "dagster"),
}
