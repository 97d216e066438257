"""How many CPUs and GPUs a cluster's spec counts against a team registry's quotas."""

from __future__ import annotations

import pytest

from tether.core.registry.usage import accelerator_count, instance_cpus, size


@pytest.mark.parametrize(("spec", "expected"), [
    ({}, (0, 0)),
    ({"cpus": 2, "memory": "1Gi"}, (2, 0)),
    ({"cpus": "4+"}, (4, 0)),
    ({"cpus": "4", "num_nodes": 3}, (12, 0)),
    ({"accelerators": "A10G:2"}, (0, 2)),
    ({"accelerators": "A100", "num_nodes": 2}, (0, 2)),
    ({"accelerators": {"L4": 4}}, (0, 4)),
    ({"instance_type": "g5.xlarge"}, (4, 1)),
    ({"instance_type": "g5.12xlarge", "num_nodes": 2}, (96, 8)),
    ({"instance_type": "p4d.24xlarge"}, (96, 8)),
    ({"instance_type": "m5.large", "accelerators": "T4:1"}, (2, 1)),
    ({"instance_type": "m5.large", "cpus": 1}, (1, 0)),  # cpus= wins over the type's
    ({"ips": ["a", "b"], "cpus": 2}, (4, 0)),  # an SSH cluster's nodes
])
def test_size(spec, expected):
    assert size(spec) == expected


@pytest.mark.parametrize(("instance_type", "cpus"), [
    ("c5.2xlarge", 8), ("t3.medium", 1), ("n2-standard-8", 8), ("e2-highmem-4", 4),
    ("Standard_D4s_v3", 4), ("4CPU--16GB", 4), ("mystery-type", 0), ("m5.metal", 0),
])
def test_instance_cpus(instance_type, cpus):
    assert instance_cpus(instance_type) == cpus


def test_accelerators():
    assert accelerator_count(None) == 0
    assert accelerator_count("H100:8") == 8
    assert accelerator_count("TPU-v4:0.5") == 0.5
    assert accelerator_count("bad:x") == 0
