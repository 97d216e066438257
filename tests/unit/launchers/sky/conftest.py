"""SkyPilot in a throwaway HOME with a small catalog: its own classes validate what tether
builds, with no network and no cloud account.

No cloud exists here. What these tests use is SkyPilot itself (``sky.Resources``, ``sky.Task``,
its optimizer, its handle class, its exceptions), reading the CSV catalogs below from
``$HOME/.sky/catalogs/<schema version>/`` the way it reads the catalogs it downloads; a catalog
written by hand (no ``.meta/*.md5`` beside it) is one SkyPilot never replaces, so nothing is
fetched. The rows are real instance types with their real shapes; prices are approximate.

SkyPilot fixes its catalog directory when it is imported, so HOME is set before the first
``import sky`` of the session, for this package's tests only (and restored after them).
"""

from __future__ import annotations

import importlib.util
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

if importlib.util.find_spec("sky") is None:  # not imported here: HOME must be set first
    pytest.skip("SkyPilot is not installed: pip install 'tether[sky]'", allow_module_level=True)

GPU_A10G = ("\"{'Gpus': [{'Name': 'A10G', 'Manufacturer': 'NVIDIA', 'Count': 1, 'MemoryInfo': "
            "{'SizeInMiB': 24576}}], 'TotalGpuMemoryInMiB': 24576}\"")
HEADER = ("InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,"
          "Region,AvailabilityZone,Arch")
AWS_ROWS = [
    "m6i.large,,,2,8,,0.096,0.038,us-east-1,us-east-1a,x86_64",
    "m6i.xlarge,,,4,16,,0.192,0.076,us-east-1,us-east-1a,x86_64",
    "m6i.2xlarge,,,8,32,,0.384,0.152,us-east-1,us-east-1a,x86_64",
    f"g5.xlarge,A10G,1,4,16,{GPU_A10G},1.006,0.403,us-east-1,us-east-1a,x86_64",
    f"g5.xlarge,A10G,1,4,16,{GPU_A10G},1.006,0.421,us-west-2,us-west-2b,x86_64",
    f"g5.2xlarge,A10G,1,8,32,{GPU_A10G},1.212,0.485,us-east-1,us-east-1a,x86_64",
    "p3.2xlarge,V100,1,8,61,,3.06,0.918,us-east-1,us-east-1a,x86_64",
]
GCP_ROWS = [
    "n2-standard-8,,,8,32,,0.388,0.094,us-central1,us-central1-a,x86_64",
    "n1-standard-8,,,8,30,,0.38,0.08,us-central1,us-central1-a,x86_64",
    ",T4,1,,,,0.35,0.14,us-central1,us-central1-a,",
    "a2-highgpu-1g,A100,1,12,85,,3.67,1.1,us-central1,us-central1-a,x86_64",
]
ACCELERATORS = ["AcceleratorName,Clouds", "A10G,\"['AWS']\"", "A100,\"['GCP']\"",
                "T4,\"['AWS', 'GCP']\"", "V100,\"['AWS', 'GCP']\""]
GPU_MEMORY = ["GPU,MemoryGB,Manufacturer", "A10G,24,NVIDIA", "A100,40,NVIDIA", "T4,16,NVIDIA",
              "V100,16,NVIDIA"]
#: a kubeconfig whose cluster does not exist (nothing listens on port 9 of loopback)
KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {server: "https://127.0.0.1:9"}
contexts:
- name: lab-ctx
  context: {cluster: lab, user: lab-user}
- name: other-ctx
  context: {cluster: lab, user: lab-user, namespace: from-kubeconfig}
current-context: lab-ctx
users:
- name: lab-user
  user: {token: not-a-real-token}
"""


def write_catalog(home: Path) -> Path:
    """The catalog SkyPilot reads: aws and gcp VMs, the accelerator names, GPU memories."""
    from sky.skylet import constants

    root = home / ".sky" / "catalogs" / constants.CATALOG_SCHEMA_VERSION
    files = {"aws/vms.csv": [HEADER, *AWS_ROWS], "gcp/vms.csv": [HEADER, *GCP_ROWS],
             "common/accelerators.csv": ACCELERATORS, "common/metadata.csv": GPU_MEMORY}
    for name, lines in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="package", autouse=True)
def sky_home():
    """A throwaway HOME holding the catalog and a kubeconfig, set before SkyPilot is imported."""
    home = Path(tempfile.mkdtemp(prefix="tether-sky-home-"))
    patch = pytest.MonkeyPatch()
    patch.setenv("HOME", str(home))
    patch.delenv("SKY_RUNTIME_DIR", raising=False)
    patch.delenv("KUBECONFIG", raising=False)
    patch.setenv("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")
    (home / ".kube").mkdir()
    (home / ".kube" / "config").write_text(KUBECONFIG)
    if "sky" in sys.modules:  # imported earlier in this process: its catalog dir is elsewhere
        from sky.catalog import common

        assert common.get_catalog_path("").startswith(str(home)), (
            "SkyPilot was imported before this package's tests: its catalog is not the fixture's")
    import sky  # noqa: F401 - now, with HOME set

    write_catalog(home)
    yield home
    patch.undo()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def enabled_clouds():
    """Record in SkyPilot's own state (in the throwaway HOME) which clouds ``sky check`` found
    credentials for: the one thing of a cloud account SkyPilot's optimizer needs. No credential
    exists; nothing is launched."""
    from sky import check, global_user_state, skypilot_config
    from sky.clouds import cloud as sky_cloud

    def enable(*names: str) -> None:
        workspace = skypilot_config.get_active_workspace()
        global_user_state.set_allowed_clouds(check._get_workspace_allowed_clouds(workspace),
                                             workspace)
        global_user_state.set_enabled_clouds(list(names), sky_cloud.CloudCapability.COMPUTE,
                                             workspace)

    yield enable
    enable()


def _handle(infra: str, instance_type: str, ips: list[tuple[str, str]], *, ports=None,
            ssh_user: str = "ubuntu", docker_user: str | None = None, instance_ids=None,
            cluster: str = "trainer", cluster_yaml: str | None = None):
    """SkyPilot's handle of a launched cluster, as its client receives it (pickled)."""
    import sky
    from sky.backends import cloud_vm_ray_backend
    from sky.provision import common

    ids = instance_ids or [f"i-{n}" for n in range(len(ips))]
    info = common.ClusterInfo(
        instances={ids[n]: [common.InstanceInfo(instance_id=ids[n], internal_ip=internal,
                                                external_ip=external, tags={})]
                   for n, (internal, external) in enumerate(ips)},
        head_instance_id=ids[0], provider_name=infra.split("/")[0], ssh_user=ssh_user,
        docker_user=docker_user)
    made = cloud_vm_ray_backend.CloudVmRayResourceHandle(
        cluster_name=cluster, cluster_name_on_cloud=f"{cluster}-2ea4", cluster_yaml=cluster_yaml,
        launched_nodes=len(ips),
        launched_resources=sky.Resources(infra=infra, instance_type=instance_type),
        stable_internal_external_ips=ips, stable_ssh_ports=ports or [22] * len(ips),
        cluster_info=info)
    made.docker_user = docker_user
    return pickle.loads(pickle.dumps(made))


@pytest.fixture
def make_handle():
    """SkyPilot's handle of a launched cluster (``CloudVmRayResourceHandle`` with its
    ``ClusterInfo``, as its provisioner fills them), as its client receives it (pickled)."""
    return _handle
