"""Functions that tests run on a cluster through Dagster Pipes (``PipesTetherClient``): they report
with ``dagster_pipes``, as a user's remote code does."""

from dagster_pipes import open_dagster_pipes


def build(rows: int, mib: int = 0) -> str:
    """Log, print, optionally hold ``mib`` MiB, and report a materialization of ``rows`` rows."""
    with open_dagster_pipes() as pipes:
        pipes.log.info(f"building {rows} rows for {pipes.asset_key}")
        print("a plain line from the cluster")
        hold = bytearray(mib * 1024 * 1024)
        for i in range(0, len(hold), 4096):
            hold[i] = 1
        pipes.report_asset_materialization(
            metadata={"rows": rows, "table": pipes.extras.get("table", "?"), "held_mib": mib})
    return f"built {rows}"


def broken() -> None:
    with open_dagster_pipes() as pipes:
        pipes.log.warning("about to fail")
        raise ValueError("the source table is empty")


def slow(seconds: float, marker: str) -> None:
    """Report, write ``marker``, run ``seconds`` in small steps, then rename it to ``marker.done``."""
    import os
    import time

    with open_dagster_pipes() as pipes:
        pipes.log.info("slow: started")
        open(marker, "w").close()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.02)
        os.replace(marker, marker + ".done")
        pipes.report_asset_materialization(metadata={"slept": seconds})
