"""The systems the benchmark compares, each behind the same small interface.

A peer starts and stops its system and hands out callables; ``bench.figures`` measures them
with the same loops (``bench.measure``) for every peer. A figure a peer cannot take part in
returns ``None`` (e.g. Ray actors have no HTTP endpoint for wrk).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A figure measurement: {"value": float, "mode": "how it was measured", ...details}.
Measured = dict[str, Any]


@dataclass
class WrkTarget:
    """What wrk loads: a URL answering GET, and the headers every request carries."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)


class Peer:
    key = ""  # the peer's key in results: "tether", "ray", "bare"
    title = ""  # its column in the table
    echo_mode = ""  # how ``echo`` moves the array

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir  # a throwaway folder of this run, removed at the end
        self.details: dict[str, Any] = {}  # anything worth keeping, e.g. start-up times

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Bring the system up and deploy the no-op and echo targets."""
        raise NotImplementedError

    def stop(self) -> None:
        """Tear everything down; safe to call twice, and after a failed ``start``."""
        raise NotImplementedError

    # -- what the common figures measure ----------------------------------------------------------

    def noop(self) -> Callable[[], object]:
        """A no-op call for the calling thread (called once per thread, so it may own a connection)."""
        raise NotImplementedError

    def in_flight(self, n: int, seconds: float, warmup: int, max_calls: int) -> Measured:
        """Calls/s with ``n`` no-op calls in flight at once, the peer's natural way; ``mode`` says how."""
        raise NotImplementedError

    def echo(self) -> Callable[[Any], Any] | None:
        """A call that sends a numpy array and returns the array it gets back."""
        return None

    def echo_socket(self) -> Callable[[Any], Any] | None:
        """``echo`` with the array through a socket (what a remote cluster does), if the peer
        has such a path and ``echo`` does not already take it."""
        return None

    def wrk_target(self) -> WrkTarget | None:
        return None

    def extra_figures(self, settings) -> list[tuple[str, Callable[[], Measured | None]]]:
        """Figures only this peer has (e.g. tether's ``.to()``), as (figure key, measure) pairs."""
        return []

    # -- context manager: stop even on errors and Ctrl-C ----------------------------------------

    def __enter__(self) -> Peer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
