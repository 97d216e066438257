"""A Prefect flow whose tasks run on a tether cluster: ``TetherTaskRunner``, as prefect-ray's
``RayTaskRunner`` runs them on Ray.

Run it with ``python examples/dags/prefect_task_runner.py`` (``PREFECT_API_URL`` set, e.g. after
``prefect server start``, puts the run and its logs in that server's UI).

1. the first task run brings up a local cluster named "shards" on the ladder's first rung
   (256 MiB, 1 CPU); the three ``measure`` task runs run at once, each in a worker of its own;
2. shard 2 holds 400 MiB: its worker is killed by the 256 MiB limit (a real OOM kill), and Prefect
   retries that task run alone on the next rung, a cluster "shards-rung2" of 1 GiB, while shards
   0 and 1 finish where they are (a shard that the kernel kills too, in the same instant, says so
   and moves up as well: only an out-of-memory death climbs);
3. ``summarize`` gets the three results (futures as arguments, as with any task runner);
4. when the flow run ends, both clusters go down (``teardown="started"``: what the runner started).

The tasks are defined in this file, so they travel pickled by value (the cluster's workers need
neither this file nor Prefect); tasks imported from your own package travel by import path.
"""

from prefect import flow, task

from tether.providers.prefect import TetherTaskRunner

# The compute to try, smallest first. Only an out-of-memory failure climbs to the next rung.
LADDER = [{"memory": "256Mi", "cpus": 1}, {"memory": "1Gi", "cpus": 1}]


@task
def measure(shard: int, mib: int) -> dict:
    print(f"shard {shard}: loading {mib} MiB", flush=True)  # in the task run's logs
    data = [bytearray(b"\x01" * (1 << 20)) for _ in range(mib)]  # touched, so it is resident
    return {"shard": shard, "mib": mib, "bytes_set": sum(chunk[0] for chunk in data) << 20}


@task
def summarize(results: list[dict]) -> dict:
    return {"shards": len(results), "mib": sum(r["mib"] for r in results)}


@flow(task_runner=TetherTaskRunner(cluster="shards", launcher="local", ladder=LADDER, max_workers=3))
def measure_shards(sizes: tuple[int, ...] = (32, 64, 400)) -> dict:
    results = measure.map(range(len(sizes)), list(sizes))  # three task runs at once
    return summarize.submit(results).result()


if __name__ == "__main__":
    print(measure_shards())
