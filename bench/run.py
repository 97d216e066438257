"""`make bench`: tether next to a Ray actor and a bare FastAPI endpoint, in one run on this machine.

    python bench/run.py                    # the full run (~2.5 min on 2 cores)
    python bench/run.py --quick            # a smoke run (~1.5 min): same figures, fewer samples
    python bench/run.py --peers none       # the step-overhead rows only (~1 min)
    python bench/run.py --no-orchestrators # everything but the step-overhead rows (~1.5 min)
    python bench/run.py --env-build --peers none --no-orchestrators   # only: an env with 3 packages, uv vs pip
    python bench/run.py --scale            # also 1,000 clients, 10,000 objects, 64 envs, 4 nodes (~4 min more)
    python bench/run.py --remote --peers none --no-orchestrators      # only: a remote SSH node (root, sshd)

1. In fresh interpreters: ``import tether`` (and ``import ray``) time, and local cluster cold starts.
2. Each peer in turn, alone on the machine: started, measured on the same figures through the same
   harness (``bench/figures.py``), stopped. tether runs on its local cluster in a throwaway
   ``TETHER_HOME``; Ray is a local ``ray.init()`` with one actor; bare is ``bare_server.py``.
3. Step overhead, per orchestrator (``bench/orchestrators/``): a pipeline of N no-op tasks of the
   orchestrator's own vs N tether call steps, each orchestrator in a child process of its own.
4. Prints the table (figure, each peer, tether/peer ratios, the DESIGN.md target, pass/fail), the
   step-overhead rows, and writes ``bench/results/latest.json`` and ``latest.png``.

Everything listens and connects on 127.0.0.1, every loop is bounded in count and seconds, and
everything started is stopped at the end, also on errors, Ctrl-C and SIGTERM. Timing belongs
here, never in an asserting test.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if not __package__:  # run as a script: make `bench` importable as a package
    sys.path.insert(0, str(ROOT))

from bench import env_build, figures, lifecycle, machine, processes, report, scale, settings, wrk  # noqa: E402
from bench.orchestrators import ORCHESTRATORS  # noqa: E402
from bench.orchestrators import runner as orchestrators  # noqa: E402
from bench.orchestrators import table as steps_table  # noqa: E402

PEER_CLASSES = {
    "tether": ("bench.peers.tether_peer", "TetherPeer"),
    "ray": ("bench.peers.ray_peer", "RayPeer"),
    "bare": ("bench.peers.bare_peer", "BarePeer"),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run (~1.5 min): fewer samples, shorter runs")
    p.add_argument("--peers", default="tether,ray,bare",
                   help="comma-separated subset of tether,ray,bare (default: all), or none")
    p.add_argument("--orchestrators", default=",".join(ORCHESTRATORS),
                   help="step-overhead rows: comma-separated subset of airflow,prefect,dagster (default: all)")
    p.add_argument("--no-orchestrators", action="store_true", help="skip the step-overhead rows")
    p.add_argument("--orch-tasks", type=int, help="no-op tasks per pipeline in the step-overhead rows")
    p.add_argument("--seconds", type=float, help="duration of each calls/s measurement")
    p.add_argument("--wrk-seconds", type=float, help="duration of each wrk run")
    p.add_argument("--latency-calls", type=int, help="sequential calls for p50/p99")
    p.add_argument("--echo-100mb-reps", type=int, help="repetitions of the 100 MB round trip")
    p.add_argument("--cold-starts", type=int, help="local cluster cold starts (fresh interpreters)")
    p.add_argument("--import-runs", type=int, help="fresh interpreters for the import time")
    p.add_argument("--no-wrk", action="store_true", help="skip the wrk figure")
    p.add_argument("--no-install", action="store_true",
                   help="never apt-get install wrk (by default it is installed when missing, as root)")
    p.add_argument("--no-chart", action="store_true", help="do not draw the PNG chart")
    p.add_argument("--env-build", action="store_true",
                   help="also build an env with three packages, with uv and with pip, cold and cached "
                        "(bench/env_build.py; downloads from the package index, ~2 min)")
    p.add_argument("--scale", action="store_true",
                   help="also the scale rows: 1,000 clients, 10,000 objects, 64 envs, 4 nodes via the head, "
                        "each at several N, drawn in scale.png (bench/scale/; ~4 min)")
    p.add_argument("--remote", action=argparse.BooleanOptionalAction, default=None,
                   help="the remote rows: bring-up of an SSH node, calls through the SSH tunnel and over "
                        "direct TLS, on a test host (bench/remote.py; root and sshd, ~2 min). Default: "
                        "with the tether peer")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results",
                   help="folder for latest.json and latest.png (default: bench/results)")
    args = p.parse_args(argv)
    args.peers = [x.strip() for x in args.peers.split(",") if x.strip() and x.strip() != "none"]
    unknown = sorted(set(args.peers) - set(PEER_CLASSES))
    if unknown:
        p.error(f"--peers: unknown {unknown}; choose from {', '.join(PEER_CLASSES)}, or none")
    args.orchestrators = [] if args.no_orchestrators else \
        [x.strip() for x in args.orchestrators.split(",") if x.strip() and x.strip() != "none"]
    unknown = sorted(set(args.orchestrators) - set(ORCHESTRATORS))
    if unknown:
        p.error(f"--orchestrators: unknown {unknown}; choose from {', '.join(ORCHESTRATORS)}, or none")
    if args.remote is None:
        args.remote = "tether" in args.peers
    if not args.peers and not args.orchestrators and not args.env_build and not args.remote:
        p.error("nothing to measure: --peers none, no orchestrators, no --env-build and no --remote")
    return args


def configure(args: argparse.Namespace) -> settings.Settings:
    chosen = settings.QUICK if args.quick else settings.FULL
    overrides = {name: getattr(args, name) for name in
                 ("seconds", "wrk_seconds", "latency_calls", "echo_100mb_reps", "cold_starts", "import_runs",
                  "orch_tasks")
                 if getattr(args, name) is not None}
    return dataclasses.replace(chosen, **overrides)


def _raise_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`: everything is stopped


def start_sampler() -> subprocess.Popen:
    """``background.py``: measures the CPU other processes use during the run (shared machines)."""
    return subprocess.Popen([sys.executable, str(ROOT / "bench" / "background.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, start_new_session=True)


def stop_sampler(proc: subprocess.Popen | None) -> dict | None:
    if proc is None:
        return None
    try:
        proc.stdin.close()  # its signal to report and exit
        line = processes.read_line(proc, 10)
        return json.loads(line) if line else None
    except (OSError, ValueError):
        return None
    finally:
        processes.stop(proc)


def make_peer(key: str, workdir: Path):
    module, name = PEER_CLASSES[key]
    folder = workdir / key
    folder.mkdir(parents=True, exist_ok=True)
    return getattr(importlib.import_module(module), name)(folder)


def import_figures(results: dict, module: str, conf: settings.Settings) -> None:
    got: dict = {}

    def timed() -> dict:
        got.update(lifecycle.import_time(module, conf.import_runs, conf.subprocess_timeout_s))
        return got

    figures.record(results, "import_ms", module, timed, log)
    if got:
        figures.record(results, "import_gross_ms", module, lambda: {"value": got["gross_ms"]}, log)


def measure_all(args, conf: settings.Settings, workdir: Path, results: dict) -> None:
    wants_wrk = not args.no_wrk and any(p in args.peers for p in ("tether", "bare"))
    wrk_found: tuple[str | None, str | None] = (None, "--no-wrk")
    if wants_wrk:
        wrk_found = wrk.find(install=not args.no_install, log=log)
        if wrk_found[0]:
            results["versions"]["wrk"] = wrk.version(wrk_found[0])
        else:
            log(f"wrk figure skipped: {wrk_found[1]}")

    imports = [m for m in ("tether", "ray") if m in args.peers and importlib.util.find_spec(m)]
    for module in imports:
        log(f"import {module}: {conf.import_runs} fresh interpreters (and as many `python -c pass`)")
        import_figures(results, module, conf)

    if "tether" in args.peers:
        log(f"tether: {conf.cold_starts} local cluster cold start(s), each in a fresh interpreter and TETHER_HOME")
        cold: dict = {}
        figures.record(results, "cold_start_s", "tether", lambda: cold.setdefault("r", lifecycle.cold_starts(
            workdir / "cold", conf.cold_starts, conf.subprocess_timeout_s, log))["cold_start_s"], log)
        if "r" in cold:
            figures.record(results, "cold_start_wall_s", "tether", lambda: cold["r"]["cold_start_wall_s"], log)
            results["details"].setdefault("tether", {})["cold_start_samples"] = cold["r"]["samples"]

    if args.env_build:
        log("== env build: three packages, uv then pip, each with an empty cache, then cached")
        env_build.record(results, workdir, log)

    scale.record(results, args.peers, args.scale, conf.quick, workdir,
                 None if args.no_chart else args.out / "scale.png", log)
    if args.remote:
        from bench import remote

        machine.settle(log)
        log("== remote: a test host over SSH (bring-up, the SSH tunnel, direct TLS)")
        remote.record(results, conf, log)

    if "tether" in args.peers:
        from bench import records_ab

        machine.settle(log)
        log("tether: recording every call on vs off (switched in two daemons, alternating windows)")
        # 16x the calls/s seconds: one 40 s run of this A/B moved by +-2% on this VM (sd of 9 runs)
        figures.record(results, "records_on_off", "tether", lambda: records_ab.measure(16 * conf.seconds), log)

    # the rows judged against bare's (p50 <= 1.3x, 100 MB socket <= 1.0x, wrk >= 0.5x): both up
    # at once, alternated (floor_ab.py); Ray's cells of those rows from its own phase
    floor_ab = "tether" in args.peers and "bare" in args.peers
    for key in args.peers:
        machine.settle(log)
        log(f"== {key}")
        peer = make_peer(key, workdir)
        try:
            with peer:
                results["details"].setdefault(key, {})["start"] = peer.details.get("start")
                figures.measure_peer(peer, conf, results, wrk_found, log,
                                     floor_rows=key == "ray" or not floor_ab)
        except Exception as exc:  # noqa: BLE001 - a peer that cannot start must not lose the others
            results["peer_errors"][key] = f"{type(exc).__name__}: {exc}"
            log(f"{key}: failed: {type(exc).__name__}: {exc}")
        log(f"{key}: stopped")

    if floor_ab:
        from bench import floor_ab as floor

        machine.settle(log)
        floor.record(results, workdir, conf, log, wrk_found)

    if args.orchestrators:  # last: every peer is stopped, the machine is as quiet as it gets
        log(f"== step overhead: {', '.join(args.orchestrators)}")
        orchestrators.measure_all(args.orchestrators, conf, workdir, results, log)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    conf = configure(args)
    workdir = Path(tempfile.mkdtemp(prefix="tb-"))  # short: Ray's socket paths must fit in 107 bytes
    # Before tether is imported anywhere: this run's tether never touches ~/.tether.
    os.environ["TETHER_HOME"] = str(workdir / "tether" / "home")
    # Inherited by everything this run starts, so that everything can be stopped at the end.
    os.environ[processes.RUN_MARKER] = str(workdir)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_on_signal)

    results = figures.new_results()
    results.update({
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": conf.as_dict(), "peers": args.peers,
        "orchestrators": args.orchestrators,
        "machine": {**machine.info(), "loadavg_before": machine.load()},
        "versions": machine.versions(), "source": machine.source(ROOT), "peer_errors": {},
    })
    log(f"bench: {'quick' if conf.quick else 'full'} run of {', '.join(args.peers + args.orchestrators)}; "
        f"{results['machine']['cpus']} CPUs, load average {results['machine']['loadavg_before']}")
    t0, ticks = time.monotonic(), machine.cpu_ticks()
    status = 0
    sampler = None
    try:
        sampler = start_sampler()
        measure_all(args, conf, workdir, results)
    except (KeyboardInterrupt, SystemExit) as exc:
        results["interrupted"] = True
        log(f"interrupted ({type(exc).__name__}); stopping everything")
        status = 130 if isinstance(exc, KeyboardInterrupt) else (exc.code or 1)
    except Exception as exc:  # noqa: BLE001 - still stop everything and report what was measured
        results["peer_errors"]["run"] = f"{type(exc).__name__}: {exc}"
        log(f"the run failed: {type(exc).__name__}: {exc}")
        status = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C must not
            signal.signal(sig, signal.SIG_IGN)  # cut the clean-up short
        results["machine"]["other_work"] = stop_sampler(sampler)
        stray = processes.sweep(workdir)
        if stray:
            log(f"stopped {len(stray)} process(es) left running: {stray}")
        results["machine"]["loadavg_after"] = machine.load()
        results["machine"]["cpu_steal_percent"] = machine.steal_percent(ticks, machine.cpu_ticks())
        results["elapsed_s"] = round(time.monotonic() - t0, 1)
        shutil.rmtree(workdir, ignore_errors=True)

    out_json, out_png = args.out / "latest.json", args.out / "latest.png"
    report.write_json(results, out_json)
    print()
    if report.rows(results) or not args.orchestrators:
        print(report.table(results))
        print()
    if args.orchestrators:
        print(steps_table.table(results))
        print()
    for key, why in results["peer_errors"].items():
        print(f"{key} could not be measured: {why}")
    print("\n".join(x for x in (report.how_measured(results), steps_table.how_measured(results)) if x))
    print(f"\n{report.summary(results)}; {results['elapsed_s']:.0f} s in all")
    written = [out_json]
    if not args.no_chart:
        try:
            report.chart(results, out_png)
            written.append(out_png)
        except Exception as exc:  # noqa: BLE001 - the table and JSON are already out
            print(f"chart not drawn: {type(exc).__name__}: {exc}")
    print("written: " + ", ".join(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in written))
    if status:
        return status
    steps_failed = results.get("step_overhead", {}).get("errors")
    return 1 if results["errors"] or results["peer_errors"] or steps_failed else 0


if __name__ == "__main__":
    sys.exit(main())
