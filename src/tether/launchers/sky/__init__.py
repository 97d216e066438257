"""The ``sky`` provisioner: on-demand clusters on the clouds SkyPilot speaks to, and Kubernetes.

::

    pip install -e '.[sky]' -c constraints.txt   # in a clone of tether: SkyPilot, pinned
    sky check aws                  # SkyPilot finds your credentials

    import tether as rh
    gpu = rh.ondemand_cluster("a10g", instance_type="g5.xlarge", provider="aws",
                              region="us-east-1", use_spot=True, autostop_mins=30)
    gpu.up_if_not()

    k8s = rh.ondemand_cluster("pods", provider="kubernetes", cpus="4+", memory="16+",
                              context="my-ctx", namespace="team-a", num_nodes=2)

Each on-demand cluster is a SkyPilot cluster of the same name (``sky status`` lists it). Built
in the same way as a third-party provisioner: through the ``tether_provisioners`` hook, from
the ``tether`` entry-point group. SkyPilot is imported inside the methods only (it takes
seconds): ``import tether`` and building the plugin manager do not import it.

- ``translate``: a ``MachineRequest`` as ``sky.Resources``/``sky.Task``/``sky.launch`` keywords;
- ``machines``: a SkyPilot handle and its credentials as ``Machine``s (SSH endpoints);
- ``errors``: SkyPilot's exceptions as tether's (close matches, ``sky check``, what was cleaned up);
- ``provisioner``: ``SkyProvisioner`` on SkyPilot's client SDK (request ids, ``sky.get``).
"""

from __future__ import annotations

from tether.launchers.ondemand.provisioner import Provisioner
from tether.launchers.sky.provisioner import SkyProvisioner
from tether.plugins import hookimpl

__all__ = ["SkyProvisioner"]


@hookimpl(trylast=True)
def tether_provisioners() -> list[type[Provisioner]]:
    return [SkyProvisioner]
