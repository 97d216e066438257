"""The fixture catalog and kubeconfig SkyPilot reads in tether's tests (no network, no cloud).

The rows are real instance types with their real shapes; prices are approximate. A catalog
written by hand (no ``.meta/*.md5`` beside it) is one SkyPilot never replaces, so nothing is
fetched. Used by this folder's conftest and by the client the SkyPilot API server test runs.
"""

from __future__ import annotations

from pathlib import Path

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
