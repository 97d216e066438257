"""SkyPilot in a throwaway HOME with a small catalog: its own classes validate what tether
builds, with no network and no cloud account.

No cloud exists here. What these tests use is SkyPilot itself (``sky.Resources``, ``sky.Task``,
its optimizer, its handle class, its exceptions), reading the CSV catalogs of ``sky_catalog``
from ``$HOME/.sky/catalogs/<schema version>/`` the way it reads the catalogs it downloads.

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
from sky_catalog import KUBECONFIG, write_catalog

if importlib.util.find_spec("sky") is None:  # not imported here: HOME must be set first
    pytest.skip("SkyPilot is not installed: pip install 'tether[sky]'", allow_module_level=True)


@pytest.fixture(scope="package", autouse=True)
def sky_home():
    """A throwaway HOME holding the catalog and a kubeconfig, set before SkyPilot is imported."""
    home = Path(tempfile.mkdtemp(prefix="tether-sky-home-"))
    patch = pytest.MonkeyPatch()
    try:
        patch.setenv("HOME", str(home))
        patch.delenv("SKY_RUNTIME_DIR", raising=False)
        patch.delenv("KUBECONFIG", raising=False)
        patch.setenv("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")
        (home / ".kube").mkdir()
        (home / ".kube" / "config").write_text(KUBECONFIG)
        if "sky" in sys.modules:  # imported earlier in this process: its catalog is elsewhere
            from sky.catalog import common

            assert common.get_catalog_path("").startswith(str(home)), (
                "SkyPilot was imported before this folder's tests: its catalog is not the "
                "fixture's")
        import sky  # noqa: F401 - now, with HOME set

        write_catalog(home)
        yield home
    finally:
        patch.undo()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(autouse=True)
def _tracebacks_as_they_were():
    """SkyPilot leaves ``sys.tracebacklimit = 0`` after raising (see ``guard``); tests that call
    it directly must not empty the tracebacks of the tests after them."""
    saved = getattr(sys, "tracebacklimit", None)
    yield
    if saved is None:
        if hasattr(sys, "tracebacklimit"):
            del sys.tracebacklimit
    else:
        sys.tracebacklimit = saved


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
