"""``python -m tether.launchers.ssh.on_node``: what the ssh launcher runs on a node, over SSH, with
the node's ``~/.tether/venv`` interpreter once tether is installed there.

* ``up --cluster NAME``: start this node's daemon unless it runs. On the node, an SSH cluster's
  daemon is an ordinary local daemon (the ``local`` launcher's start: a file lock, a detached
  process, ``~/.tether/clusters/<name>/``), so this is a thin command around it that prints one
  JSON line for the caller: the daemon record and its token, or ``{"error": ...}`` with exit code 1.
  With ``--cluster-host``, the daemon also listens there for the head, in TLS (its record carries
  ``cluster_tls`` and the certificate's ``fingerprint``, which the head pins); one that runs
  without that listener, or from a tether that predates TLS, is restarted.
* ``autostop --cluster NAME --minutes M``: change the running daemon's autostop (it re-reads the
  setting), written through ``tether.state`` like every other state file.
"""

from __future__ import annotations

import argparse
import json
import sys


def _up(args: argparse.Namespace) -> int:
    from tether import state
    from tether.core.cluster import Cluster
    from tether.errors import TetherError

    folder = state.cluster_dir(args.cluster)
    try:
        spec = {} if args.autostop_mins is None else {"autostop_mins": args.autostop_mins}
        if args.cluster_host:
            spec["cluster_host"] = args.cluster_host
        cluster = Cluster(args.cluster, launcher="local", **spec)
        endpoint = cluster.launcher.up(cluster)
        record = state.read_daemon_record(folder) or {}
        address = record.get("cluster_address")
        if args.cluster_host and (not address or address[0] != args.cluster_host or "cluster_tls" not in record):
            cluster.launcher.down(cluster)  # it runs, but the head could not reach it (or not over TLS)
            endpoint = cluster.launcher.up(cluster)
            record = state.read_daemon_record(folder) or {}
    except (TetherError, OSError, ValueError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps({**record, "token": endpoint.token}))
    return 0


def _autostop(args: argparse.Namespace) -> int:
    from tether import state

    folder = state.cluster_dir(args.cluster)
    if folder.is_dir():
        state.write_autostop(folder, None if args.minutes < 0 else args.minutes)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tether.launchers.ssh.on_node", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster's daemon unless it runs; print its record")
    up.add_argument("--cluster", required=True)
    up.add_argument("--autostop-mins", type=float, default=None)
    up.add_argument("--cluster-host", default=None, help="also listen here, for the cluster's head")
    autostop = sub.add_parser("autostop", help="set the running daemon's autostop (-1: never)")
    autostop.add_argument("--cluster", required=True)
    autostop.add_argument("--minutes", type=float, required=True)
    args = parser.parse_args(argv)
    return _up(args) if args.command == "up" else _autostop(args)


if __name__ == "__main__":
    sys.exit(main())
