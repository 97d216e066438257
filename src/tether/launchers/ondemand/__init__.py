"""Clusters made on demand: machines from a ``Provisioner`` (SkyPilot built in), tether on them
through the SSH launcher's path."""
