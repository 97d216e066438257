"""How a cost grows with N: the exponent of its last decade, and the PNG that shows it.

A metric is measured at a few N (1, 10, 100, ...). Its *growth exponent* is the slope of log(total
cost) against log(N) between the two largest N: 1 is linear, 2 quadratic; a fixed part of the cost
pulls it below 1. What the metric is decides what its total cost is:

- ``total``: the value is the whole cost at N (memory of N objects, p50 with N callers queued);
- ``per_item``: the value is the cost of one of N (deploy time of one object): total = N x value;
- ``rate``: the value is a throughput (calls/s): the cost of one call is 1/value, total = N / value.

"No worse than linear" is an exponent <= ``report.LINEAR`` (1, plus room for the noise of a shared
machine). A metric with ``judged=False`` is charted and its exponent given, but the worst is taken
over the judged ones: a raw time whose drift-corrected twin (``reference.py``) is judged instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import LINEAR as LINEAR_BOUND


@dataclass(frozen=True)
class Metric:
    key: str  # in each point of the series
    label: str
    kind: str  # "total", "per_item" or "rate"
    judged: bool = True  # False: shown, but a corrected twin of it is what is judged


def exponent(xs: list[float], ys: list[float], kind: str) -> float | None:
    """The growth exponent of the total cost over the two largest N (None: not enough points)."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x and y and y > 0]
    if len(pairs) < 2:
        return None
    (x1, y1), (x2, y2) = sorted(pairs)[-2:]
    if x2 == x1:
        return None
    slope = math.log(y2 / y1) / math.log(x2 / x1)
    return {"total": slope, "per_item": 1 + slope, "rate": 1 - slope}[kind]


def judge(series: dict[str, Any], metrics: list[Metric]) -> dict[str, Any]:
    """Each metric's exponent, the worst judged one, and which metric it was."""
    xs = [p["n"] for p in series["points"]]
    out, judged = {}, set()
    for m in metrics:
        ys = [p.get(m.key) for p in series["points"]]
        if any(y is None for y in ys[-2:]):
            continue
        e = exponent(xs, [y if y is not None else 0 for y in ys], m.kind)
        if e is not None:
            out[m.key] = e
            if m.judged:
                judged.add(m.key)
    if not judged:
        return {"exponents": out, "worst": None, "worst_metric": None}
    worst = max(judged, key=out.get)
    return {"exponents": out, "worst": out[worst], "worst_metric": worst}


def chart(panels: list[tuple[str, str, dict[str, Any], list[Metric]]], path: Path, subtitle: str = "") -> None:
    """One log-log panel per metric of each series: the points, and a dashed reference line
    through the first point: linear for a total, flat for a per-item cost or a rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [(title, xlabel, series, m) for title, xlabel, series, metrics in panels for m in metrics
             if sum((p.get(m.key) or 0) > 0 for p in series["points"]) >= 2]
    if not cells:
        raise ValueError("no series has two points to chart")
    cols = 4
    rows = math.ceil(len(cells) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, (title, xlabel, series, m) in zip(axes.flat, cells, strict=False):
        pts = [(p["n"], p[m.key]) for p in series["points"] if p.get(m.key) is not None and p[m.key] > 0]
        xs, ys = [x for x, _ in pts], [y for _, y in pts]
        ax.loglog(xs, ys, "o-", color="#2b6cb0", label="measured")
        x0, y0 = xs[0], ys[0]
        if m.kind == "total":
            ref = [y0 * x / x0 for x in xs]
            ref_label = "linear from the first point"
        else:
            ref = [y0 for _ in xs]
            ref_label = "flat (total linear)"
            # a decade either way at least: noise looks like noise, a cost growing with N stands out
            ax.set_ylim(min([y0 / 10, *ys]) / 1.2, max([y0 * 10, *ys]) * 1.2)
        ax.loglog(xs, ref, "--", color="#a0aec0", label=ref_label)
        e = exponent(xs, ys, m.kind)
        if e is None:
            verdict = ""
        elif not m.judged:
            verdict = f"\ngrowth exponent {e:.2f} (raw: its ratio to the reference is judged)"
        else:
            verdict = f"\ngrowth exponent {e:.2f}: " + ("pass" if e <= LINEAR_BOUND else "WORSE THAN LINEAR")
        ax.set_title(f"{title}: {m.label}{verdict}", fontsize=8.5)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(cells):]:
        ax.axis("off")
    fig.suptitle(f"tether at scale: cost against N (log-log){subtitle}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
