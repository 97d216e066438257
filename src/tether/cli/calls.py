"""``tether calls``: the calls a cluster's daemon ran (its call records, docs/calls.md), as a
table, or live as they start and end (``--follow``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tether.cli._common import (
    ClusterArg,
    JsonOpt,
    MaybeClusterOpt,
    _daemon_client,
    _pick,
    emit_json,
    err,
    out,
)

if TYPE_CHECKING:
    from tether.client.daemon_client import DaemonClient

OUTCOME_STYLE = {"ok": "green", "running": "cyan", "error": "red", "cancelled": "yellow",
                 "out_of_memory": "bold magenta", "worker_died": "bold red", "timeout": "yellow"}
ServiceOpt = Annotated[list[str] | None, typer.Option(
    "--service", "-s", metavar="NAME", help="Only the calls of this service (repeat for several).")]


def calls(
    cluster_arg: ClusterArg = None,
    service: ServiceOpt = None,
    failed: Annotated[bool, typer.Option(
        "--failed", help="Only calls that did not succeed (error, cancelled, out of memory, ...).")] = False,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Then print calls as they start and end, until Ctrl-C.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many recent calls.")] = 20,
    json_out: JsonOpt = False,
    cluster: MaybeClusterOpt = None,
    pause: Annotated[bool, typer.Option(
        "--pause", help="Stop recording new calls on this daemon (they are still served; the "
        "records kept so far stay) until --resume or the daemon restarts.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Record calls again after --pause.")] = False,
) -> None:
    """List the calls a cluster ran, newest first: id, service.method, caller, start, duration,
    outcome and error.

    The daemon records every call (docs/calls.md); ids print shortened, and any unique prefix
    works with `tether logs CLUSTER --call ID`. Never starts the cluster.

    With --json: a JSON array of the records (the keys of docs/calls.md); with --follow, JSON
    Lines: one {"event": "call" | "started" | "ended" | "dropped", ...} object per line.

    **Examples**

    ```
    tether calls
    tether calls dev --failed --service embed
    tether calls dev --follow
    tether calls --json | jq -r '.[] | select(.outcome != "ok") | .id'
    tether calls dev --pause      # a hot loop you do not want on record; --resume after
    ```
    """
    name = _pick(cluster_arg, cluster)
    if pause or resume:
        _set_recording(name, resume, pause, json_out)
        return
    params: dict[str, Any] = {"limit": limit}
    if service:
        params["service"] = service
    if failed:
        params["failed"] = 1
    client = _daemon_client(name)
    try:
        if follow:
            _follow(client, params, json_out)
            return
        answer = list_calls(client, params)
    finally:
        client.close()
    rows = answer.get("calls") or []
    if json_out:
        emit_json(rows)
        return
    _warn_recording(answer.get("recording") or {})
    if not rows:
        what = " matching" if service or failed else ""
        out.print(f"No{what} calls recorded on cluster {escape(repr(name))}.")
        return
    out.print(calls_table(rows))


def list_calls(client: DaemonClient, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /_tether/calls`` with repeatable parameters (``service``)."""
    from urllib.parse import urlencode

    return client.request_json("GET", f"/_tether/calls?{urlencode(params, doseq=True)}")


def _set_recording(name: str, resume: bool, pause: bool, json_out: bool) -> None:
    if resume == pause:
        err.print("[red]Give --pause or --resume, not both.[/]")
        raise typer.Exit(2)
    client = _daemon_client(name)
    try:
        recording = client.request_json("PUT", "/_tether/records", body={"enabled": resume})
    finally:
        client.close()
    if json_out:
        emit_json(recording)
    elif resume:
        out.print(f"Recording calls on cluster {escape(repr(name))} ({recording.get('file')}).")
    else:
        out.print(f"Recording paused on cluster {escape(repr(name))}: calls are served, not recorded, "
                  "until `tether calls --resume` or the daemon restarts.")


def _warn_recording(recording: dict[str, Any]) -> None:
    if recording.get("paused"):
        err.print("[yellow]Recording is paused on this daemon[/] (`tether calls --pause`): "
                  "no new calls are recorded until `tether calls --resume`.")
    elif recording.get("enabled") is False:
        err.print("[yellow]Recording is off on this daemon[/] (TETHER_RECORDS=0 where it runs): "
                  "no new calls are recorded.")
    elif recording.get("error"):
        err.print(f"[yellow]Recording stopped on this daemon:[/] {escape(str(recording['error']))}")


def _follow(client: DaemonClient, params: dict[str, Any], json_out: bool) -> None:
    try:
        for event in client.stream_json("/_tether/calls", {**params, "follow": 1}):
            kind = event.get("event")
            if kind == "ping":
                continue
            if json_out:
                emit_json(event)
            elif kind == "dropped":
                err.print(f"[yellow]{event.get('count', '?')} call event(s) dropped[/] (this terminal read too slowly)")
            elif isinstance(event.get("call"), dict):
                out.print(call_line(event["call"]))
    except KeyboardInterrupt:
        pass


# -- formatting ------------------------------------------------------------------------------------


def short_id(call_id: Any) -> str:
    return str(call_id)[:8]


def when(started: Any) -> str:
    if not isinstance(started, (int, float)):
        return "-"
    fmt = "%H:%M:%S" if time.localtime(started)[:3] == time.localtime()[:3] else "%Y-%m-%d %H:%M:%S"
    return time.strftime(fmt, time.localtime(started))


def duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else f"{seconds * 1e6:.0f} us"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m {secs}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60}m"


def caller(value: Any) -> str:
    if not isinstance(value, dict) or not value:
        return "-"
    return f"{value.get('user', '?')}@{value.get('host', '?')}:{value.get('pid', '?')}"


def outcome(value: Any) -> str:
    text = str(value or "?")
    return f"[{OUTCOME_STYLE.get(text, 'white')}]{escape(text)}[/]"


def error_text(row: dict[str, Any], width: int = 80) -> str:
    if not row.get("error_type") and not row.get("error_message"):
        return ""
    text = ": ".join(str(p) for p in (row.get("error_type"), row.get("error_message")) if p)
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def calls_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Calls ({len(rows)}, newest first)", title_justify="left")
    for col in ("id", "call", "caller", "started", "duration", "outcome", "error"):
        table.add_column(col, overflow="fold", no_wrap=col in ("id", "started", "duration"))
    for row in rows:
        table.add_row(short_id(row.get("id")), escape(f"{row.get('object')}.{row.get('method')}"),
                      escape(caller(row.get("caller"))), when(row.get("started")),
                      duration(row.get("duration")), outcome(row.get("outcome")), escape(error_text(row)))
    return table


def call_line(row: dict[str, Any]) -> str:
    """One call on one line (``--follow``, ``tether logs --service``)."""
    parts = [when(row.get("started")), short_id(row.get("id")),
             escape(f"{row.get('object')}.{row.get('method')}"), outcome(row.get("outcome")),
             duration(row.get("duration")), escape(caller(row.get("caller")))]
    error = error_text(row)
    return "  ".join(parts + ([f"[red]{escape(error)}[/]"] if error else []))
