"""The benchmark's outputs: the table, the JSON file and the PNG chart, from one results dict.

``FIGURES`` lists the table's rows in order, each with its target from DESIGN.md ("Performance
targets"). A relative target compares tether's number to a peer's number measured in the same
run; an absolute one compares it to a bound. Only tether is judged; the peers are the yardstick.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEERS = (("tether", "tether"), ("ray", "Ray"), ("bare", "bare FastAPI"))


@dataclass(frozen=True)
class Target:
    text: str  # as DESIGN.md words it
    op: str  # "<=" or ">="
    bound: float  # the bound itself, or a factor of ``peer``'s value
    peer: str | None = None

    def limit(self, values: dict[str, float]) -> float | None:
        if self.peer is None:
            return self.bound
        ref = values.get(self.peer)
        return None if ref is None else self.bound * ref

    def judge(self, values: dict[str, float]) -> str:
        mine, limit = values.get("tether"), self.limit(values)
        if mine is None:
            return "n/a"
        if limit is None:
            return f"n/a (no {dict(PEERS)[self.peer]})"
        ok = mine <= limit if self.op == "<=" else mine >= limit
        return "pass" if ok else "FAIL"


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    fmt: str
    better: str  # "lower" or "higher"
    target: Target | None = None
    also: Target | None = None  # a second target (DESIGN.md round two), judged with the first

    @property
    def targets(self) -> tuple[Target, ...]:
        return tuple(t for t in (self.target, self.also) if t is not None)

    def judge(self, values: dict[str, float]) -> str:
        """pass when every target passes; FAIL when one fails; else why it cannot be judged."""
        verdicts = [t.judge(values) for t in self.targets]
        if "FAIL" in verdicts:
            return "FAIL"
        return next((v for v in verdicts if v != "pass"), "pass" if verdicts else "")


LINEAR = 1.15  # a growth exponent judged linear (bench/scale/growth.py: 1, plus a shared machine's noise)

FIGURES = (
    Figure("latency_p50_ms", "no-op call p50 latency, Python client (ms)", "{:.3f}", "lower",
           Target("<= Ray actor call p50", "<=", 1.0, "ray"), Target("<= 1.3 x bare", "<=", 1.3, "bare")),
    Figure("latency_p99_ms", "no-op call p99 latency, Python client (ms)", "{:.3f}", "lower"),
    Figure("threads16_calls_per_s", "calls/s, 16 client threads", "{:,.0f}", "higher",
           Target(">= Ray actor calls/s", ">=", 1.0, "ray")),
    Figure("records_on_off", "calls/s with every call recorded / without (16 threads)", "{:.3f}", "higher",
           Target(">= 0.95 (drop <= 5%)", ">=", 0.95)),
    Figure("inflight64_calls_per_s", "calls/s, 64 async calls in flight", "{:,.0f}", "higher"),
    Figure("acall64_calls_per_s", "calls/s, 64 in flight via DaemonClient.acall", "{:,.0f}", "higher"),
    Figure("wrk_calls_per_s", "calls/s, wrk on GET /noop/call", "{:,.0f}", "higher",
           Target(">= 0.5 x bare FastAPI", ">=", 0.5, "bare")),
    Figure("load_calls_per_s", "load: 100k calls, 32 threads + 64 async at once (calls/s)", "{:,.0f}", "higher"),
    Figure("load_bad_calls", "load: errors, mixed-up results, counter drift", "{:,.0f}", "lower",
           Target("== 0", "<=", 0.0)),
    Figure("load_daemon_rss_mib", "load: daemon memory after the run (MiB)", "{:,.0f}", "lower"),
    Figure("echo_1mb_ms", "1 MB numpy argument round trip (ms)", "{:.2f}", "lower"),
    Figure("echo_100mb_ms", "100 MB numpy argument round trip (ms)", "{:,.0f}", "lower",
           Target("<= 2 x Ray (shared memory)", "<=", 2.0, "ray")),
    Figure("echo_100mb_socket_ms", "100 MB round trip through the socket (ms)", "{:,.0f}", "lower",
           Target("<= 1.0 x bare (no extra copy)", "<=", 1.0, "bare")),
    Figure("to_s", ".to() of a function on a running cluster (s)", "{:.3f}", "lower",
           Target("<= 0.3 s", "<=", 0.3)),
    Figure("redeploy_s", "redeploy after an edit, to first new result (s)", "{:.3f}", "lower",
           Target("<= 0.3 s", "<=", 0.3)),
    Figure("cold_start_s", "local cluster cold start to first call (s)", "{:.3f}", "lower",
           Target("<= 1.5 s", "<=", 1.5)),
    Figure("cold_start_wall_s", "cold start as a new process, spawn to first call (s)", "{:.3f}", "lower"),
    Figure("import_ms", "`import` time, net of `python -c pass` (ms)", "{:,.0f}", "lower",
           Target("<= 150 ms", "<=", 150.0)),
    Figure("import_gross_ms", "`import` time, whole `python -c \"import ...\"` (ms)", "{:,.0f}", "lower"),
    # bench/remote.py: a test host reached over SSH (the bare endpoint on the same host, same path)
    Figure("ssh_bringup_first_s", "fresh SSH node up, caller's wheel cache empty (s)", "{:.2f}", "lower"),
    Figure("ssh_bringup_fresh_s", "fresh SSH node up: wheels sent, installed, daemon (s)", "{:.2f}", "lower",
           Target("<= 10 s", "<=", 10.0)),
    Figure("ssh_up_if_not_warm_s", "warm up_if_not() of an SSH cluster, new process (s)", "{:.3f}", "lower",
           Target("<= 0.1 s", "<=", 0.1)),
    Figure("ssh_latency_p50_ms", "SSH tunnel: no-op call p50 latency (ms)", "{:.3f}", "lower",
           Target("<= 1.2 x bare, same tunnel", "<=", 1.2, "bare")),
    Figure("ssh_latency_p99_ms", "SSH tunnel: no-op call p99 latency (ms)", "{:.3f}", "lower"),
    Figure("ssh_threads16_calls_per_s", "SSH tunnel: calls/s, 16 client threads", "{:,.0f}", "higher",
           Target(">= bare / 1.2, same tunnel", ">=", 1 / 1.2, "bare")),
    Figure("ssh_echo_100mb_ms", "SSH tunnel: 100 MB numpy round trip (ms)", "{:,.0f}", "lower",
           Target("<= 1.2 x bare, same tunnel", "<=", 1.2, "bare")),
    Figure("ssh_alone_100mb_ms", "SSH alone: 100 MB up, then 100 MB back (ms)", "{:,.0f}", "lower"),
    Figure("ssh_echo_100mb_vs_alone", "SSH tunnel: 100 MB round trip / ssh alone", "{:.2f}", "lower",
           Target("<= 1.2 x ssh alone", "<=", 1.2)),
    Figure("tls_latency_p50_ms", "direct TLS, no tunnel: no-op call p50 latency (ms)", "{:.3f}", "lower"),
    Figure("tls_threads16_calls_per_s", "direct TLS, no tunnel: calls/s, 16 client threads", "{:,.0f}", "higher"),
    Figure("tls_echo_100mb_ms", "direct TLS, no tunnel: 100 MB numpy round trip (ms)", "{:,.0f}", "lower"),
    # --env-build (bench/env_build.py): one env with three packages, built with uv, then with pip
    Figure("env_build_uv_cold_s", "env with 3 packages, uv, empty cache (s)", "{:.1f}", "lower"),
    Figure("env_build_pip_cold_s", "env with 3 packages, pip, empty cache (s)", "{:.1f}", "lower"),
    Figure("env_build_cold_uv_pip", "env build, empty caches: uv / pip", "{:.2f}", "lower",
           Target("<= 0.3 x pip", "<=", 0.3)),
    Figure("env_build_uv_cached_s", "env with 3 packages, uv, cache warm (s)", "{:.2f}", "lower"),
    Figure("env_build_pip_cached_s", "env with 3 packages, pip, cache warm (s)", "{:.2f}", "lower"),
    Figure("env_build_cached_uv_pip", "env build, caches warm: uv / pip", "{:.2f}", "lower",
           Target("<= 0.3 x pip", "<=", 0.3)),
    # memory at rest (every run) and --scale (bench/scale/): each series at several N, scale.png
    Figure("at_rest_rss_mib", "memory at rest, idle cluster: RSS summed (MiB)", "{:,.0f}", "lower"),
    Figure("at_rest_pss_mib", "memory at rest, idle cluster: PSS summed (MiB)", "{:,.0f}", "lower"),
    Figure("scale_clients_p50_ms", "N concurrent clients (1,000): p50 (ms)", "{:.1f}", "lower"),
    Figure("scale_clients_p99_ms", "N concurrent clients (1,000): p99 (ms)", "{:.1f}", "lower"),
    Figure("scale_clients_calls_per_s", "N concurrent clients (1,000): calls/s", "{:,.0f}", "higher"),
    Figure("scale_clients_daemon_mib", "N concurrent clients (1,000): daemon RSS (MiB)", "{:,.0f}", "lower"),
    Figure("scale_clients_growth", "N concurrent clients: growth exponent (1 = linear)", "{:.2f}", "lower",
           Target(f"<= {LINEAR} (no worse than linear)", "<=", LINEAR)),
    Figure("scale_objects_deploy_ms", "N objects (10,000): deploy time per object (ms)", "{:.2f}", "lower"),
    Figure("scale_objects_daemon_kib", "N objects (10,000): daemon memory per object (KiB)", "{:.1f}", "lower"),
    Figure("scale_objects_worker_kib", "N objects (10,000): worker memory per object (KiB)", "{:.1f}", "lower"),
    Figure("scale_objects_call_ratio", "N objects (10,000): call p50 at N / at 1", "{:.2f}", "lower",
           Target("<= 1.2 (unchanged)", "<=", 1.2)),
    Figure("scale_objects_growth", "N objects: growth exponent (1 = linear)", "{:.2f}", "lower",
           Target(f"<= {LINEAR} (no worse than linear)", "<=", LINEAR)),
    Figure("scale_envs_start_s", "N envs (64): start time per worker (s)", "{:.3f}", "lower"),
    Figure("scale_envs_worker_mib", "N envs (64): memory per worker, PSS (MiB)", "{:.1f}", "lower"),
    Figure("scale_envs_growth", "N envs: growth exponent (1 = linear)", "{:.2f}", "lower",
           Target(f"<= {LINEAR} (no worse than linear)", "<=", LINEAR)),
    Figure("scale_nodes_head_p50_ms", "4 nodes: no-op p50 through the cluster handle (ms)", "{:.3f}", "lower"),
    Figure("scale_nodes_forwarded_p50_ms", "4 nodes: no-op p50 forwarded by the head (ms)", "{:.3f}", "lower"),
    Figure("scale_nodes_direct_p50_ms", "4 nodes: no-op p50 calling the node (ms)", "{:.3f}", "lower"),
    Figure("scale_nodes_head_ratio", "4 nodes: head routing, via the handle / direct", "{:.2f}", "lower",
           Target("<= 1.1 x direct", "<=", 1.1)),
)

# Cells whose way of measuring differs from what the row says get a mark and a footnote.
_FLAGGED = ("pending", "internal")


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def values_of(results: dict[str, Any], key: str) -> dict[str, float]:
    raw = results.get("figures", {}).get(key, {})
    return {peer: v for peer, v in ((p, _number(raw.get(p))) for p, _ in PEERS) if v is not None}


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per table row: the figure's values, ratios, target and verdict."""
    out = []
    for fig in FIGURES:
        values = values_of(results, fig.key)
        errors = results.get("errors", {}).get(fig.key, {})
        skipped = results.get("skipped", {}).get(fig.key, {})
        if not values and not errors and not any(why != "no HTTP endpoint" for why in skipped.values()):
            continue
        mine = values.get("tether")
        ratios = {p: (mine / values[p] if mine is not None and values.get(p) else None) for p in ("ray", "bare")}
        out.append({
            "key": fig.key, "label": fig.label, "fmt": fig.fmt, "better": fig.better, "values": values,
            "errors": errors, "skipped": skipped, "ratios": ratios,
            "modes": results.get("modes", {}).get(fig.key, {}),
            "target": "; ".join(t.text for t in fig.targets),
            "verdict": fig.judge(values),
        })
    return out


def table(results: dict[str, Any]) -> str:
    """The plain-text table printed at the end of a run (and pasted into bench/README.md)."""
    widths = (53, 11, 11, 13, 11, 12, 36, 10)
    head = ("figure", "tether", "Ray", "bare FastAPI", "tether/Ray", "tether/bare", "target (DESIGN.md)", "result")
    lines = [_line(head, widths), "-" * (sum(widths) + len(widths) - 1)]
    notes: list[str] = []
    for row in rows(results):
        cells = [row["label"]]
        for peer, title in PEERS:
            if peer in row["values"]:
                cell = row["fmt"].format(row["values"][peer])
                mode = row["modes"].get(peer, "")
                if any(flag in mode for flag in _FLAGGED):
                    notes.append(f"{len(notes) + 1}) {title}, {row['label'].strip()}: {mode}")
                    cell += f" ({len(notes)})"
            elif peer in row["errors"]:
                cell = "error"
            elif peer in row["skipped"] and row["skipped"][peer] != "no HTTP endpoint":
                cell = "skipped"
            else:
                cell = "-"
            cells.append(cell)
        for peer in ("ray", "bare"):
            ratio = row["ratios"][peer]
            cells.append(f"{ratio:.2f}" if ratio is not None else "-")
        cells += [row["target"], row["verdict"]]
        lines.append(_line(cells, widths))
    for row in rows(results):
        for peer, why in {**row["skipped"], **row["errors"]}.items():
            if why != "no HTTP endpoint":
                notes.append(f"{dict(PEERS)[peer]}, {row['label'].strip()}: {why}")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def _line(cells, widths) -> str:
    first, *rest = cells
    return f"{first:<{widths[0]}}" + "".join(f" {c:>{w}}" for c, w in zip(rest[:5], widths[1:6], strict=True)) \
        + f"  {rest[5]:<{widths[6]}} {rest[6]:<{widths[7]}}".rstrip()


def how_measured(results: dict[str, Any]) -> str:
    """Every figure's way of measuring (per peer where they differ): the fine print under the table."""
    lines = []
    for fig in FIGURES:
        modes = results.get("modes", {}).get(fig.key, {})
        shown = [(title, modes[peer]) for peer, title in PEERS if peer in modes]
        if not shown:
            continue
        label = fig.label.strip()
        if len(shown) > 1 and len({mode for _, mode in shown}) == 1:
            lines.append(f"- {label}: {shown[0][1]} (all)")
        else:
            lines += [f"- {label} [{title}]: {mode}" for title, mode in shown]
    return "\n".join(lines)


def summary(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    before, after = m.get("loadavg_before", ["?"]), m.get("loadavg_after", ["?"])
    other = m.get("other_work") or {}
    busy = ""
    if isinstance(other.get("others_cores"), (int, float)):
        busy = f"; other processes used {other['others_cores']:.2f} CPU cores on average during the run"
        top = other.get("others_top") or {}
        if top:
            busy += " (" + ", ".join(f"{name} {cpu_s:g} s" for name, cpu_s in top.items()) + ")"
        if other["others_cores"] > 0.1:
            busy += " (they competed with the benchmark: numbers are noisy)"
    steal = m.get("cpu_steal_percent")
    if isinstance(steal, (int, float)):
        busy += f"; CPU steal {steal:.1f}%" + (" (the hypervisor was busy: numbers are noisy)" if steal > 5 else "")
    return (f"{m.get('cpus', '?')} CPUs ({m.get('cpu_model', '?')}), load average {before[0]} before, "
            f"{after[0]} after (the benchmark's own load included){busy}; Python {m.get('python', '?')}; "
            f"{'--quick run (noisy, for smoke tests)' if results.get('settings', {}).get('quick') else 'full run'}")


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**results, "table": rows(results)}
    path.write_text(json.dumps(data, indent=2, default=str, allow_nan=False) + "\n")


def chart(results: dict[str, Any], path: Path) -> None:
    """A PNG: one small bar chart per figure (tether, Ray, bare), with the target drawn in, and one
    per step-overhead row (the orchestrator's own no-op task vs tether's, ms per task)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows(results) if r["values"]]
    steps = list((results.get("step_overhead") or {}).get("rows", {}).values())
    if not shown and not steps:
        raise ValueError("no figure has a value to chart")
    cols = 4
    nrows = math.ceil((len(shown) + len(steps)) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.1 * nrows), squeeze=False)
    colors = {"tether": "#2b6cb0", "ray": "#dd6b20", "bare": "#718096"}
    targets = {f.key: f.targets for f in FIGURES}
    for ax, row in zip(axes.flat, shown, strict=False):
        peers = [(p, t) for p, t in PEERS if p in row["values"]]
        heights = [row["values"][p] for p, _ in peers]
        bars = ax.bar([t for _, t in peers], heights, color=[colors[p] for p, _ in peers])
        ax.bar_label(bars, labels=[row["fmt"].format(h) for h in heights], fontsize=8)
        title = row["label"].strip()
        for target in targets.get(row["key"], ()):
            limit = target.limit(row["values"])
            if limit is not None:
                ax.axhline(limit, color="#c53030", linestyle="--", linewidth=1)
        if row["target"]:
            title += f"\ntarget {row['target']}: {row['verdict']}"
        ax.set_title(title, fontsize=8.5)
        ax.tick_params(labelsize=8)
        ax.margins(y=0.25)
        ax.set_ylabel(f"{row['better']} is better", fontsize=7)
    for ax, row in zip(list(axes.flat)[len(shown):], steps, strict=False):
        heights = [row["native_ms_per_task"], row["tether_ms_per_task"]]
        bars = ax.bar(["native", "tether"], heights, color=[colors["bare"], colors["tether"]])
        ax.bar_label(bars, labels=[f"{h:.2f}" for h in heights], fontsize=8)
        ax.set_title(f"{row['label']}\nadded {row['added_ms_per_task']:+.2f} ms/task "
                     f"({row['tasks']} tasks x {row['reps']} runs)", fontsize=8.5)
        ax.tick_params(labelsize=8)
        ax.margins(y=0.25)
        ax.set_ylabel("ms per task, lower is better", fontsize=7)
    for ax in list(axes.flat)[len(shown) + len(steps):]:
        ax.axis("off")
    fig.suptitle(f"tether vs Ray vs bare FastAPI, {results.get('when', '')}\n{summary(results)}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
