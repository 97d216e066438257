"""The example pipeline as a Prefect flow: train a model on a cluster that grows when it runs out of memory.

Run it with ``python examples/dags/prefect_pipeline.py`` (next to ``trainer.py``); with
``PREFECT_API_URL`` set (e.g. after ``prefect server start``) the run and its logs are in that
server's UI, else Prefect starts a temporary server for the run. ``--data-mib 4096`` is more data
than the last rung holds: the train task fails, saying so.

1. bring up a local cluster named "train" on the ladder's first rung (256 MiB, 1 CPU), and deploy
   a live ``Trainer`` on it named "trainer";
2. ``train`` loads 512 MiB of data: run 1 is killed by the 256 MiB limit (a real OOM kill), so
   Prefect retries the task, and run 2 runs on the next rung (2 GiB, 2 CPUs);
3. ``evaluate`` calls the same live instance, found by its name, which still holds the model;
4. ``finally``: the cluster goes down even if a step failed.
"""

from prefect import flow

from tether.providers.prefect import (
    TetherCluster,
    TetherService,
    bring_up_cluster,
    call_service,
    deploy_service,
    teardown_cluster,
)

# The compute to try, smallest first. Only an out-of-memory failure climbs to the next rung.
LADDER = [{"memory": "256Mi", "cpus": 1}, {"memory": "2Gi", "cpus": 2}]


@flow
def train_and_evaluate(data_mib: int = 512) -> dict:
    cluster = TetherCluster(cluster_name="train", ladder=LADDER)
    # By import path: the cluster imports your class from your project.
    trainer = TetherService(service_name="trainer", cluster_name="train", target="trainer:Trainer",
                            init_kwargs={"learning_rate": 0.5})
    try:
        bring_up_cluster(cluster)
        deploy_service(trainer)
        # Retried on the next rung on out-of-memory only; any other error fails at once.
        call_service("trainer", "train", kwargs={"data_mib": data_mib}, ladder=LADDER)
        return call_service("trainer", "evaluate")
    finally:
        teardown_cluster(cluster)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-mib", type=int, default=512, help="MiB of training data (default 512)")
    print(train_and_evaluate(data_mib=parser.parse_args().data_mib))
