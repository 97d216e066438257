"""The example pipeline as an Airflow DAG: train a model on a cluster that grows when it runs out of memory.

Copy this file and ``trainer.py`` into your DAGs folder, then ``airflow dags test tether_train``
(``-c '{"data_mib": 1024}'`` trains on more data; the calls defer to the triggerer when Airflow's
``[operators] default_deferrable`` is on).

1. ``up`` brings up a local cluster named "train" on the ladder's first rung (256 MiB, 1 CPU), and
   ``deploy`` makes a live ``Trainer`` on it named "trainer";
2. ``train`` loads 512 MiB of data: try 1 is killed by the 256 MiB limit (a real OOM kill), so
   Airflow retries it, and try 2 runs on the next rung (2 GiB, 2 CPUs);
3. ``evaluate`` calls the same live instance, found by its name, which still holds the model;
4. ``down`` is a teardown task: the cluster goes down even if a step failed.
"""

from datetime import datetime

from airflow.sdk import DAG

from tether.providers.airflow.operators.tether import (
    TetherCallOperator,
    TetherClusterOperator,
    TetherDeployOperator,
    TetherTeardownOperator,
)

# The compute to try, smallest first. Only an out-of-memory failure climbs to the next rung.
LADDER = [{"memory": "256Mi", "cpus": 1}, {"memory": "2Gi", "cpus": 2}]

# ``data_mib`` is a run parameter (``airflow dags test tether_train -c '{"data_mib": 1024}'``),
# rendered as a native int for the call (``render_template_as_native_obj``).
with DAG("tether_train", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         params={"data_mib": 512}, render_template_as_native_obj=True) as dag:
    up = TetherClusterOperator(task_id="up", cluster_name="train", ladder=LADDER)
    # By import path: Airflow does not import your code (and its heavy libraries) to parse the DAG.
    deploy = TetherDeployOperator(task_id="deploy", target="trainer:Trainer", service_name="trainer",
                                  cluster_name=up.output, init_kwargs={"learning_rate": 0.5})
    # The ladder gives this task one retry per rung; any other error fails it without a retry.
    train = TetherCallOperator(task_id="train", service_name=deploy.output, method="train",
                               op_kwargs={"data_mib": "{{ params.data_mib }}"}, ladder=LADDER)
    evaluate = TetherCallOperator(task_id="evaluate", service_name=deploy.output, method="evaluate")
    down = TetherTeardownOperator(task_id="down", cluster_name=up.output).as_teardown(setups=up)

    up >> deploy >> train >> evaluate >> down

if __name__ == "__main__":
    dag.test()
