"""A whole-cluster climb (``steps.climb.resize``) keeps the cluster's Image: the resized cluster
has the same steps, finds them recorded on the machine, and runs none again."""

from __future__ import annotations

import uuid

import pytest

import tether as rh
from tether.steps.climb import resize

pytestmark = pytest.mark.timeout(120)


def test_a_resized_cluster_keeps_its_image(tmp_path):
    marker = tmp_path / "runs.log"
    image = rh.Image("kept").run_bash([f"echo ran >> {marker}"]).set_env_vars({"KEPT": "yes"})
    cluster = rh.cluster(name=f"climb-img-{uuid.uuid4().hex[:6]}", launcher="local", image=image).up_if_not()
    try:
        resized = resize(cluster, {"memory": "2Gi"})
        assert resized.image == image and resized.spec["memory"] == "2Gi"
        assert rh.load(resized.name).image == image  # saved with it
        assert resized.run_bash(["echo $KEPT"], stream_logs=False)[0][1] == "yes\n"
        assert marker.read_text().splitlines() == ["ran"]  # recorded on the machine: not run again
    finally:
        rh.cluster(cluster.name).teardown()
        rh.cluster(cluster.name).delete_configs()
