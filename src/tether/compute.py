"""Compute specs as plain data: what size of machine a cluster (or a ladder's rung) is.

A compute spec is a dict: ``{"memory": "2Gi", "cpus": 2}``, ``{"instance_type": "g5.xlarge"}``,
``{"accelerators": "A10G:1"}``, or ``{"cluster": "big"}`` (a cluster defined elsewhere, by name).
Memory sizes take Kubernetes' suffixes (``Ki Mi Gi Ti``, powers of 1024; ``k M G T``, powers of
1000), plain bytes, or a number followed by ``B``/``iB`` (``"512MB"``, ``"512MiB"``). The keys a
launcher understands are its business (``local`` takes ``memory`` and ``cpus``): this module only
parses, compares and prints them, so that the caller, the ladder and the daemon agree.

Any JSON form of a value is accepted, since rungs travel through orchestrators' configs (Dagster's
run config, Airflow's params, Prefect's parameters) where a number may arrive as a string:
``{"memory": "256Mi", "cpus": 1}``, ``{"memory": 268435456, "cpus": "1"}`` and
``{"memory": "256MiB", "cpus": 1.0}`` are one rung. ``normalize`` writes each in one canonical
form (memory as the shortest exact quantity, ``"256Mi"``; cpus as an int when whole, ``1``), so
rungs compare equal with ``==`` wherever they came from.
"""

from __future__ import annotations

import math
import re
from typing import Any

from tether.errors import ConfigError

#: keys of a compute spec with a meaning of their own (others go to the launcher as they are)
COMPUTE_KEYS = ("cluster", "memory", "cpus", "instance_type", "accelerators")

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
    "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?(b)?\s*$", re.IGNORECASE)


def parse_memory(value: Any, what: str = "memory") -> int:
    """Bytes in a memory size: ``"512Mi"`` -> 536870912; an int is bytes already."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}={value!r} is not a size: use bytes or e.g. '512Mi', '2Gi'")
    if isinstance(value, int | float):
        size = value
    else:
        match = _SIZE_RE.match(str(value))
        if not match:
            raise ConfigError(f"{what}={value!r} is not a size: use bytes or e.g. '512Mi', '2Gi', '1.5G'")
        number, unit = match.group(1), (match.group(2) or "").lower()
        size = float(number) * _UNITS[unit]
    if size <= 0 or math.isinf(size) or math.isnan(size):
        raise ConfigError(f"{what}={value!r} must be a positive size")
    return int(size)


def parse_cpus(value: Any, what: str = "cpus") -> float:
    """A positive number of CPUs (fractions allowed: ``0.5`` is half a core's time)."""
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}={value!r} is not a number of CPUs") from None
    if isinstance(value, bool) or not cpus > 0 or math.isinf(cpus):
        raise ConfigError(f"{what}={value!r} must be a positive number of CPUs")
    return cpus


def format_bytes(size: int | None) -> str:
    """``268435456`` -> ``"256 MiB"`` (for messages)."""
    if size is None:
        return "unknown"
    for unit, scale in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            text = f"{size / scale:.1f}".removesuffix(".0")
            return f"{text} {unit}"
    return f"{size} B"


def format_quantity(size: int) -> str | int:
    """Bytes as the shortest exact quantity: ``268435456`` -> ``"256Mi"``, ``1500000000`` ->
    ``"1500M"``; a size no unit divides stays an int of bytes."""
    for unit in ("Ti", "Gi", "Mi", "Ki", "T", "G", "M", "k"):
        scale = _UNITS[unit.lower()]
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return size


def canonical_cpus(value: Any) -> int | float:
    """``"1"``, ``1.0`` and ``1`` -> ``1``; ``"0.5"`` -> ``0.5``."""
    cpus = parse_cpus(value)
    return int(cpus) if cpus.is_integer() else cpus


def normalize(spec: dict[str, Any] | str) -> dict[str, Any]:
    """A compute spec with checked values in their canonical form (``memory`` as a quantity
    string, ``cpus`` as a number: see the module's docstring); a bare string is a cluster name."""
    if isinstance(spec, str):
        spec = {"cluster": spec}
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"a compute spec is a dict such as {{'memory': '2Gi', 'cpus': 2}} or a "
                          f"cluster name, not {spec!r}")
    out = dict(spec)
    if "memory" in out:
        out["memory"] = format_quantity(parse_memory(out["memory"]))
    if "cpus" in out:
        out["cpus"] = canonical_cpus(out["cpus"])
    if "cluster" in out and (not isinstance(out["cluster"], str) or not out["cluster"]):
        raise ConfigError(f"'cluster' in a compute spec is a cluster name, not {out['cluster']!r}")
    return out


def same_value(key: str, a: Any, b: Any) -> bool:
    """Equal as compute values: ``"1Gi" == 1073741824``, ``2 == 2.0``."""
    if a == b:
        return True
    try:
        if key == "memory":
            return parse_memory(a) == parse_memory(b)
        if key == "cpus":
            return parse_cpus(a) == parse_cpus(b)
    except ConfigError:
        return False
    return False


def contains(current: dict[str, Any], rung: dict[str, Any]) -> bool:
    """Whether ``current`` is at least what ``rung`` asks, key by key (extra keys are ignored)."""
    return all(key in current and same_value(key, current[key], value) for key, value in rung.items())


def describe(spec: dict[str, Any] | None) -> str:
    """``{"memory": "2Gi", "cpus": 2}`` -> ``"memory=2Gi cpus=2"``; a named cluster -> its name."""
    if not spec:
        return "(no spec)"
    if set(spec) == {"cluster"}:
        return f"cluster {spec['cluster']!r}"
    order = {key: i for i, key in enumerate(COMPUTE_KEYS)}  # one order, wherever the spec came from
    keys = sorted(spec, key=lambda key: (order.get(key, len(order)), key))
    return " ".join(f"{key}={spec[key]}" for key in keys)
