"""A remote cluster's rows: bring-up, and calls through the SSH tunnel and over direct TLS.

The "remote" machine is a test host (``tests/integration/hosts.py``, imported by path): a network
namespace with its own sshd and user, reached only through SSH, on this machine's CPUs. Needs
root and sshd; without them every row here is "skipped" with the reason.

1. **Bring-up**: ``up_if_not()`` of an SSH cluster on a node with nothing of tether on it (its
   ``~/.tether`` wiped, no SSH master connection): probe, wheelhouse shipped, tether installed into
   ``~/.tether/venv``, daemon started, tunnel opened. The first one also builds the caller's wheel
   cache (``$TETHER_HOME/wheels``, empty in the run's throwaway home): its own row. Then a warm
   ``up_if_not()`` of the running cluster, from a new process (new handle: the records read,
   the tunnel found, ``/health`` through it) and again on the connected handle.
2. **Through the SSH tunnel**: ``noop`` and ``echo`` deployed to the head through its tunnel, and
   ``bench/bare_server.py`` started on the same host (the node's venv has FastAPI and uvicorn),
   reached through an SSH tunnel of the same kind (``cluster.ssh_tunnel``: its own ssh process and
   connection, as the daemon's tunnel). p50, 16 threads, 100 MB round trip for both, both up and
   taking turns (``floor_ab``'s alternation: blocks of calls, runs of threads, round trips).
3. **The tunnel alone**: 100 MB up through ``ssh`` (read by ``python3`` on the host), then 100 MB
   back, with the same ssh options as tether's connections, on a connection already logged in:
   what any 100 MB round trip through SSH costs at least (up, then down, as an echo call goes;
   ``ssh host cat`` would overlap the two ways).
4. **Direct TLS**: a second daemon on the same host listening on the host's address in TLS
   (``on_node up --cluster-host``, as a node of a multi-node cluster listens for its head),
   called without a tunnel (the client pins its certificate), next to ``bare_server.py`` serving
   TLS on the host's address.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import figures, measure, netns_hosts
from bench.peers.bare_peer import SERVER, BareClient

ROOT = Path(__file__).resolve().parents[1]
MB = figures.MB
ECHO_BYTES = 100 * MB  # the round trip rows' array (the smoke test makes it small)
# Every row of this module, for the skip reasons (the rows themselves are in bench/report.py)
FIGURE_KEYS = ("ssh_bringup_first_s", "ssh_bringup_fresh_s", "ssh_up_if_not_warm_s", "ssh_latency_p50_ms",
               "ssh_latency_p99_ms", "ssh_threads16_calls_per_s", "ssh_echo_100mb_ms", "ssh_alone_100mb_ms",
               "ssh_echo_100mb_vs_alone", "tls_latency_p50_ms", "tls_threads16_calls_per_s", "tls_echo_100mb_ms")

# In a new interpreter (tether imported first, not timed): a warm ``up_if_not()`` of a running
# SSH cluster from a new handle, as a second script of the user's would do it.
_WARM_CHILD = """
import json, sys, time
import tether
spec = json.loads(sys.argv[1])
cluster = tether.cluster(**spec)
t0 = time.perf_counter()
cluster.up_if_not()
print(time.perf_counter() - t0)
"""


def why_not() -> str | None:
    """Why the remote rows cannot run here (not root, no sshd...), or None."""
    return netns_hosts.missing_requirements()


def record(results: dict[str, Any], conf, log: Callable[[str], None], factory=None,
           fresh_reps: int | None = None) -> None:
    """Measure every remote row into ``results``. ``factory``: a ``HostFactory`` to make the test
    host with (the smoke test passes its session's); by default one of its own, closed at the end.
    ``fresh_reps``: bring-ups with the wheel cache warm (default: 1 in ``--quick``, else 2; 0: the
    first one only)."""
    reason = None if factory is not None else why_not()
    if reason:
        log(f"remote rows skipped: {reason}")
        for key in FIGURE_KEYS:
            figures.skip(results, key, "tether", reason)
        return
    own = factory is None
    if own:
        factory = netns_hosts.hosts_module().HostFactory()
    try:
        host = netns_hosts.create(factory)[0]
        reps = fresh_reps if fresh_reps is not None else 1 if conf.quick else 2
        Remote(host, conf, results, log, reps).run()
    finally:
        if own:
            factory.close()  # every process of the host's user goes with it


class Remote:
    def __init__(self, host, conf, results: dict[str, Any], log: Callable[[str], None], fresh_reps: int) -> None:
        self.host, self.conf, self.results, self.log = host, conf, results, log
        self.fresh_reps = fresh_reps
        self.cluster = None
        self.direct = None
        self._echo: Callable[[Any], Any] | None = None
        self._cleanup: list[Callable[[], None]] = []

    def run(self) -> None:
        try:
            self._bringups()
            if self.cluster is None:
                return
            self._warm()
            self._tunnel_rows()
            self._ssh_alone()
            self._direct_rows()
        finally:
            for step in reversed(self._cleanup):
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 - tidying; the host is removed anyway
                    self.log(f"remote: clean-up step failed: {type(exc).__name__}: {exc}")

    def _record(self, figure: str, peer: str, measure_it: Callable[[], dict | None]) -> None:
        figures.record(self.results, figure, peer, measure_it, self.log)

    # -- bring-up ---------------------------------------------------------------------------------

    def _spec(self, name: str) -> dict[str, Any]:
        return {"name": name, "ips": [self.host.ip], "ssh_creds": self.host.ssh_creds()}

    def _fresh(self, name: str) -> float:
        """``up_if_not()`` of a new cluster on the host, with nothing of tether there."""
        import tether as rh

        self.host.ssh("rm -rf ~/.tether")
        cluster = rh.cluster(**self._spec(name))
        self._cleanup.append(cluster.teardown)
        t0 = measure.clock()
        cluster.up_if_not()
        took = measure.clock() - t0
        self.cluster = cluster
        return took

    def _retire(self) -> None:
        """Tear the last cluster down (its ssh master connection goes too: a fresh node next)."""
        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            cluster.teardown()

    def _bringups(self) -> None:
        self.log("remote: fresh SSH node bring-up, the caller's wheel cache empty")
        self._record("ssh_bringup_first_s", "tether", lambda: {
            "value": self._fresh("bench-first"),
            "mode": "nothing on the node, nor in the caller's wheel cache: wheels collected, shipped, "
                    "installed, daemon started, tunnel opened"})
        reps = self.fresh_reps
        samples: list[float] = []

        def fresh() -> dict[str, Any]:
            for i in range(reps):
                self._retire()
                self.log(f"remote: fresh SSH node bring-up {i + 1}/{reps} (~/.tether wiped on the node)")
                samples.append(self._fresh(f"bench-fresh-{i}"))
            return {"value": statistics.median(samples), "samples_s": samples,
                    "mode": f"~/.tether wiped on the node, no SSH master connection; the caller's wheel "
                            f"cache warm; median of {reps}"}

        if reps:
            self._record("ssh_bringup_fresh_s", "tether", fresh)

    def _warm(self) -> None:
        self.log("remote: warm up_if_not(), from new processes and on the connected handle")

        def warm() -> dict[str, Any]:
            spec = json.dumps(self._spec(self.cluster.name))
            child = []
            for _ in range(3):
                out = subprocess.run([sys.executable, "-c", _WARM_CHILD, spec], capture_output=True, text=True,
                                     timeout=self.conf.subprocess_timeout_s, check=True)
                child.append(float(out.stdout.strip().splitlines()[-1]))
            handle = measure.repeat(self.cluster.up_if_not, 20, 10.0)
            return {"value": statistics.median(child), "new_process_samples_s": child,
                    "same_handle_median_s": handle["median_s"],
                    "mode": "a new process's new handle: records read, tunnel found, /health through it; "
                            "median of 3"}

        self._record("ssh_up_if_not_warm_s", "tether", warm)

    # -- through the tunnel ---------------------------------------------------------------------

    def _calls(self, prefix: str, sides: dict[str, tuple[Callable[[], Callable[[], object]], Callable[[Any], Any], str]]) -> None:
        """p50, n threads and 100 MB for tether and bare (``sides``: peer -> a no-op maker for
        a thread, the echo, how it is reached), both up and taking turns (``floor_ab``'s
        alternation): measured in turn, a minute apart, one run gave the tunnel p50 1.30x bare
        while the sides alternated gave 1.1x (2026-12-03)."""
        from bench import floor_ab

        s = self.conf
        hows = {peer: how for peer, (_, _, how) in sides.items()}
        self.log(f"remote: {prefix}: p50, {s.threads} threads, {ECHO_BYTES // MB} MB, tether and bare alternated")

        def latency() -> dict[str, Any]:
            got = floor_ab.latency_alternated({p: make() for p, (make, _, _) in sides.items()},
                                              s.warmup_calls, s.latency_calls, 2 * s.latency_max_s)
            return {p: {**v, "value": v["p50_ms"], "mode": f"{v['mode']}; {hows[p]}"} for p, v in got.items()}

        lat = self._both(f"{prefix}_latency_p50_ms", list(sides), latency)
        if prefix == "ssh":
            for peer, got in lat.items():
                self._record(f"{prefix}_latency_p99_ms", peer, lambda g=got: {"value": g["p99_ms"]})

        def threads() -> dict[str, Any]:
            got = floor_ab.threads_alternated({p: make for p, (make, _, _) in sides.items()},
                                              s.threads, s.seconds, s.warmup_calls, s.max_calls)
            return {p: {**v, "mode": f"{s.threads} threads, {hows[p]}; {floor_ab.THREAD_ROUNDS} runs alternated "
                                     "with the other side's"} for p, v in got.items()}

        self._both(f"{prefix}_threads16_calls_per_s", list(sides), threads)
        self._both(f"{prefix}_echo_100mb_ms", list(sides), lambda: floor_ab.echo_alternated(
            {p: echo for p, (_, echo, _) in sides.items()}, hows, s.echo_100mb_reps, 2 * s.echo_max_s, ECHO_BYTES))

    def _both(self, figure: str, peers: list[str], measure_both: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """File ``figure`` for each peer from one ``measure_both()`` (peer -> what to file); a
        failure is every peer's error. Returns what was measured ({} after a failure)."""
        outcome: dict[str, Any] = {}

        def one(peer: str) -> dict[str, Any]:
            if not outcome:
                try:
                    outcome["got"] = measure_both()
                except Exception as exc:  # noqa: BLE001 - filed for every peer by figures.record
                    outcome["error"] = exc
            if "error" in outcome:
                raise outcome["error"]
            return outcome["got"][peer]

        for peer in peers:
            self._record(figure, peer, lambda p=peer: one(p))
        return outcome.get("got", {})

    def _tunnel_rows(self) -> None:
        import tether as rh
        from bench.bench_code import echo, noop

        self.log("remote: numpy into the node's venv (wheels sent from here), noop and echo deployed")
        self.cluster.install_packages(["numpy"], from_local=True)  # the echo's array; no index there
        fn = rh.function(noop).to(self.cluster, name="noop")
        echo_fn = rh.function(echo).to(self.cluster, name="echo")
        fn()
        self._echo = echo_fn  # also alternated with ssh alone (``_ssh_alone``)
        port = self._start_bare([])
        tunnel = self.cluster.ssh_tunnel(0, port)
        self._cleanup.append(tunnel.close)
        local = tunnel.local_port
        self._calls("ssh", {
            "tether": (lambda: fn, echo_fn, "tether through the head's SSH tunnel (pickle 5, out-of-band frames over HTTP)"),
            "bare": (lambda: BareClient(local), BareClient(local).echo,
                     "bare FastAPI on the host, through an SSH tunnel of the same kind (raw bytes)")})

    def _start_bare(self, args: list[str]) -> int:
        """``bare_server.py`` on the host, with the node's venv (FastAPI, uvicorn); its port."""
        tag = os.urandom(3).hex()
        self._ssh("cat > ~/bare_server.py", SERVER.read_bytes())
        line = (f"nohup .tether/venv/bin/python bare_server.py {shlex.join(args)} > bare-{tag}.out "
                f"2> bare-{tag}.err < /dev/null & echo $!")
        pid = int(self._ssh(line).strip())
        self._cleanup.append(lambda: self._ssh(f"kill {pid}"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = self._ssh(f"cat bare-{tag}.out").strip()
            if out.isdigit():
                return int(out)
            time.sleep(0.1)
        raise RuntimeError(f"bare_server.py did not start on the host: {self._ssh(f'cat bare-{tag}.err')[-2000:]}")

    def _ssh(self, command: str, data: bytes | None = None) -> str:
        target = self.cluster.launcher.nodes(self.cluster)[0].target
        argv = ["ssh", *target.options(), "-T", target.host, command]
        proc = subprocess.run(argv, input=data, capture_output=True, timeout=60, env=target.env(),
                              stdin=subprocess.DEVNULL if data is None else None)
        if proc.returncode:
            raise RuntimeError(f"ssh {command!r}: exit {proc.returncode}: {proc.stderr.decode(errors='replace')}")
        return proc.stdout.decode(errors="replace")

    # -- the tunnel alone -------------------------------------------------------------------------

    def _ssh_alone(self) -> None:
        """ssh's own 100 MB round trip, alternated with tether's through the tunnel: the ratio
        of their medians is taken from the same minutes (measured apart, a busy minute on one
        side moved it from 1.09 to 1.36)."""
        s = self.conf
        if self._echo is None:  # the tunnel rows failed: already said
            return
        self.log("remote: 100 MB up through ssh alone, then 100 MB back, alternated with tether's")
        got: dict[str, Any] = {}

        def alone() -> dict[str, Any]:
            import numpy as np

            target = self.cluster.launcher.nodes(self.cluster)[0].target
            argv = ["ssh", *target.options(), "-o", "ControlPath=none", "-o", "ControlMaster=no", "-T",
                    target.host]
            array = np.arange(ECHO_BYTES // 8, dtype=np.float64)
            pipe = SshPipe(argv, target.env(), ECHO_BYTES)
            ours, theirs = [], []
            try:
                end = time.monotonic() + 2 * s.echo_max_s
                for _ in range(s.echo_100mb_reps):
                    t0 = measure.clock()
                    self._echo(array)
                    ours.append(measure.clock() - t0)
                    theirs.append(pipe.once())
                    if time.monotonic() > end:
                        break
            finally:
                pipe.close()
            got.update(ours=ours, theirs=theirs)
            return {"value": statistics.median(theirs) * 1e3, "samples_s": theirs,
                    "mode": "100 MB up through ssh (read by python3 on the host), then 100 MB back, on a "
                            "logged-in connection with tether's ssh options and its own connection, like "
                            "a tunnel's; median, alternated with tether's round trips through the tunnel"}

        self._record("ssh_alone_100mb_ms", "tether", alone)
        if got.get("ours") and got.get("theirs"):
            mine, alone_s = statistics.median(got["ours"]), statistics.median(got["theirs"])
            self._record("ssh_echo_100mb_vs_alone", "tether", lambda: {
                "value": mine / alone_s, "tether_samples_s": got["ours"],
                "mode": f"tether's 100 MB round trip through the tunnel / ssh's alone, {len(got['ours'])} "
                        "of each, alternated: the ratio of the medians"})

    # -- direct TLS -------------------------------------------------------------------------------

    def _direct_rows(self) -> None:
        import tether as rh
        from bench.bench_code import echo, noop
        from tether.core.cluster import shared_cluster
        from tether.launchers.ssh import codesync

        self.log("remote: a daemon on the host's address in TLS, called without a tunnel")
        ip = self.host.ip
        synced = codesync.remote_dir(self.cluster.name, ROOT)  # bench.bench_code, synced by .to()
        out = self._ssh(f"PYTHONPATH=$HOME/{synced} .tether/venv/bin/python -m tether.launchers.ssh.on_node "
                        f"up --cluster bench-direct --cluster-host {ip}")
        record = json.loads(out.strip().splitlines()[-1])
        if "error" in record or not record.get("cluster_tls"):
            raise RuntimeError(f"the direct daemon did not start with TLS: {record}")
        self._cleanup.append(lambda: self._ssh(f"kill {int(record['pid'])}"))
        host, port = record["cluster_address"]
        token = record["token"]
        direct = shared_cluster("bench-direct", {"host": host, "port": port, "fingerprint": record["fingerprint"]},
                                token_source=lambda: token)
        fn = rh.function(noop).to(direct, name="noop")
        echo_fn = rh.function(echo).to(direct, name="echo")
        fn()
        self._ssh(".tether/venv/bin/python -c " + shlex.quote(_MAKE_CERT) + f" {ip}")
        bare_port = self._start_bare(["--host", ip, "--certfile", "bare.crt", "--keyfile", "bare.key"])
        self._calls("tls", {
            "tether": (lambda: fn, echo_fn, "tether to the host's address in TLS (pinned), no tunnel"),
            "bare": (lambda: TlsBareClient(ip, bare_port), TlsBareClient(ip, bare_port).echo,
                     "bare FastAPI (uvicorn) in TLS on the host's address, no tunnel")})


_MAKE_CERT = """
import os, shutil, sys
from pathlib import Path
from tether.daemon.tls import make_certificate
folder = Path("bare-tls"); folder.mkdir(exist_ok=True)
cert, key, _ = make_certificate(folder, "bare", [sys.argv[1]])
shutil.copy(cert, "bare.crt"); shutil.copy(key, "bare.key")
"""


class TlsBareClient(BareClient):
    """``BareClient`` over TLS to ``host:port`` (the certificate not checked: the floor)."""

    def __init__(self, host: str, port: int) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.conn = http.client.HTTPSConnection(host, port, timeout=60, context=ctx)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# On the host (its python3): read N bytes, then write N bytes back, until stdin ends: a round trip
# of the tunnel alone, up then down as an echo call goes (``cat`` would overlap the two ways)
_SINK_THEN_SOURCE = """
import sys
n, inp, out, zeros = int(sys.argv[1]), sys.stdin.buffer, sys.stdout.buffer, bytes(1 << 20)
while True:
    left = n
    while left:
        got = inp.read1(min(left, 1 << 20))
        if not got:
            sys.exit()
        left -= len(got)
    for start in range(0, n, 1 << 20):
        out.write(zeros[:min(1 << 20, n - start)])
    out.flush()
"""


class SshPipe:
    """``nbytes`` up through ``argv`` (an ``ssh ... host`` to which the command is added), then
    ``nbytes`` back, on one logged-in connection: ``once()`` times one round trip. The login and
    a first round trip happen in ``__init__``, untimed."""

    def __init__(self, argv: list[str], env: dict[str, str], nbytes: int) -> None:
        self.nbytes = nbytes
        self.payload = os.urandom(min(nbytes, 1 << 20)) * max(1, nbytes >> 20)
        if len(self.payload) != nbytes:
            raise ValueError("nbytes must be a whole number of MiB, or less than one")
        argv = [*argv, f"python3 -c {shlex.quote(_SINK_THEN_SOURCE)} {nbytes}"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
        try:
            self.once()  # logs in
        except BaseException:
            self.close()
            raise

    def once(self) -> float:
        out, inp = self.proc.stdout.fileno(), self.proc.stdin.fileno()
        t0 = measure.clock()
        view = memoryview(self.payload)
        while view:
            view = view[os.write(inp, view[:1 << 20]):]
        left = self.nbytes
        while left > 0:
            chunk = os.read(out, min(left, 1 << 20))
            if not chunk:
                raise RuntimeError(f"the ssh round trip ended with {left} bytes still to come "
                                   f"(exit {self.proc.poll()})")
            left -= len(chunk)
        return measure.clock() - t0

    def close(self) -> None:
        proc = self.proc
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
