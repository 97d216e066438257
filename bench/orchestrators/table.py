"""The step-overhead rows as printed under the main table, and how each was measured.

No target is set for them (issue 11 asks for a number to watch); bench/README.md proposes one.
"""

from __future__ import annotations

from typing import Any

from bench.orchestrators import ORCHESTRATORS

HEAD = ("step overhead: a no-op task (ms per task)", "native", "tether", "added", "tether/native",
        "spread", "call alone", "tasks x runs")
WIDTHS = (53, 9, 9, 9, 13, 8, 10, 12)


def section(results: dict[str, Any]) -> dict[str, Any]:
    return results.get("step_overhead") or {}


def ordered_rows(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The measured rows, orchestrator by orchestrator (ORCHESTRATORS' order), then as filed."""
    rows = section(results).get("rows", {})
    order = list(ORCHESTRATORS)

    def rank(key: str) -> int:
        return next((i for i, name in enumerate(order) if key == name or key.startswith(name + "_")), len(order))

    return sorted(rows.items(), key=lambda item: rank(item[0]))


def table(results: dict[str, Any]) -> str:
    """The rows, one per pair of pipelines, then a line per skipped or failed orchestrator."""
    steps = section(results)
    if not steps:
        return ""
    lines = [_line(HEAD), "-" * (sum(WIDTHS) + len(WIDTHS) - 1)]
    for _, row in ordered_rows(results):
        ratio = row.get("ratio")
        lines.append(_line((
            row["label"], f"{row['native_ms_per_task']:.2f}", f"{row['tether_ms_per_task']:.2f}",
            f"{row['added_ms_per_task']:+.2f}", f"{ratio:.2f}" if ratio is not None else "-",
            f"{row.get('spread_ms_per_task', 0):.2f}", _ms(row.get("action_call_ms")),
            f"{row['tasks']} x {row['reps']}")))
    notes = [f"{name}: skipped: {why}" for name, why in steps.get("skipped", {}).items()]
    notes += [f"{key}: error: {why}" for key, why in steps.get("errors", {}).items()]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def _ms(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def _line(cells) -> str:
    first, *rest = cells
    return f"{first:<{WIDTHS[0]}}" + "".join(f" {c:>{w}}" for c, w in zip(rest, WIDTHS[1:], strict=True))


def how_measured(results: dict[str, Any]) -> str:
    """The fine print: what each side of each row ran, and what the columns mean."""
    rows = ordered_rows(results)
    if not rows:
        return ""
    lines = [
        "- step overhead: each side's figure is the median over its timed runs of (run wall time / N "
        "tasks), after one untimed run of each; the two sides alternate (native, tether, tether, "
        "native, ...); added = tether - native; spread = the larger of the two sides' median absolute "
        "deviation across runs (an added figure below it is within the run-to-run noise); call alone = "
        "the median of 200 tether.steps.actions.call(<the service>) in the same child, no orchestrator "
        "around them (the floor of what a call step adds). Each orchestrator runs in a child process "
        "with throwaway homes; the service is deployed before timing.",
    ]
    for _, row in rows:
        lines.append(f"- {row['label']}: native: {row['native_how']}; tether: {row['tether_how']}")
    return "\n".join(lines)
