"""``python -m tether.daemon.node up --cluster NAME``: start this node's daemon for an SSH cluster.

The ssh launcher runs this over SSH with the node's ``~/.tether/venv`` interpreter once tether is
installed there. On the node, an SSH cluster's daemon is an ordinary local daemon (the ``local``
launcher's start: a file lock, a detached process, ``~/.tether/clusters/<name>/``), so this is a
thin command around it that prints one JSON line for the caller: the daemon record and its token,
or ``{"error": ...}`` with exit code 1.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tether.daemon.node", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster's daemon unless it runs; print its record")
    up.add_argument("--cluster", required=True)
    up.add_argument("--autostop-mins", type=float, default=None)
    up.add_argument("--cluster-host", default=None, help="also listen here, for the cluster's head")
    args = parser.parse_args(argv)

    from tether.core.cluster import Cluster
    from tether.core.errors import TetherError
    from tether.core.paths import cluster_dir

    try:
        spec = {} if args.autostop_mins is None else {"autostop_mins": args.autostop_mins}
        if args.cluster_host:
            spec["cluster_host"] = args.cluster_host
        cluster = Cluster(args.cluster, launcher="local", **spec)
        endpoint = cluster.launcher.up(cluster)
        record = json.loads((cluster_dir(args.cluster) / "daemon.json").read_text())
        address = record.get("cluster_address")
        if args.cluster_host and (not address or address[0] != args.cluster_host):
            cluster.launcher.down(cluster)  # it runs, but the head could not reach it
            endpoint = cluster.launcher.up(cluster)
            record = json.loads((cluster_dir(args.cluster) / "daemon.json").read_text())
    except (TetherError, OSError, ValueError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps({**record, "token": endpoint.token}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
