"""What calls printed, read from the daemon (``tether logs CLUSTER --call ID | --service S``).

The daemon keeps each call's output with its id (docs/calls.md), so this works the same for a
local, an SSH or a cloud cluster: nothing is read from files here.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from tether.cli._common import CLIError, emit_json, err, out
from tether.cli.calls import call_line, list_calls, short_id

if TYPE_CHECKING:
    from tether.client.daemon_client import DaemonClient

_print_lock = threading.Lock()


def find_call(client: DaemonClient, cluster: str, call_id: str) -> dict[str, Any]:
    """The record of call ``call_id``, or of the one recorded call whose id starts with it (the
    short ids of `tether calls`); a CLIError naming the id when there is none, or several."""
    from tether.errors import NotFoundError

    try:
        return client.request_json("GET", f"/_tether/calls/{call_id}/record")
    except NotFoundError:
        pass
    rows = list_calls(client, {"limit": 1000}).get("calls") or []
    found = {r["id"]: r for r in rows if str(r.get("id", "")).startswith(call_id)}
    if len(found) == 1:
        return next(iter(found.values()))
    hint = f"List the recorded calls with: tether calls {cluster}"
    if found:
        raise CLIError(f"call id {call_id!r} is ambiguous on cluster {cluster!r}: it starts "
                       f"{', '.join(sorted(found)[:5])}{' ...' if len(found) > 5 else ''}.",
                       "Give more of the id. " + hint)
    raise CLIError(f"no call with id {call_id!r} is recorded on cluster {cluster!r}.",
                   hint + " (records are kept for the daemon's last calls: TETHER_RECORDS_MAX_COUNT, "
                   "TETHER_RECORDS_MAX_AGE).")


def print_output(client: DaemonClient, call_id: str, follow: bool, tail: int | None, json_out: bool,
                 prefix: str = "", tag: bool = False) -> None:
    """Print what call ``call_id`` printed: its stdout lines to stdout, its stderr (and logging)
    lines to stderr, each after ``prefix``; with ``follow``, as it prints them until it ends.
    With ``json_out``, the daemon's events as JSON Lines (``tag``: each with the call's id)."""
    params: dict[str, Any] = {"follow": 1} if follow else {}
    if tail is not None:
        params["tail"] = tail
    for event in client.stream_json(f"/_tether/calls/{call_id}/output", params):
        kind = event.get("event")
        if kind == "ping":
            continue
        with _print_lock:
            if json_out:
                emit_json({"call": call_id, **event} if tag else event)
            elif kind == "line":
                stream = sys.stdout if event.get("stream") == "out" else sys.stderr
                stream.write(prefix + str(event.get("text", "")))
                stream.flush()
            elif kind == "dropped":
                note = (f"[{event.get('lines', '?')} earlier line(s) were dropped: the daemon keeps "
                        "the newest TETHER_RECORDS_OUTPUT_LINES]")
                err.print(f"{escape(prefix)}[dim]{escape(note)}[/]")
            elif kind == "end" and event.get("outcome") not in ("ok", None):
                note = f"[the call ended: {event['outcome']}]"
                err.print(f"{escape(prefix)}[dim]{escape(note)}[/]")


def call_logs(client: DaemonClient, cluster: str, call_id: str, follow: bool, tail: int | None,
              json_out: bool) -> None:
    """``tether logs CLUSTER --call ID``."""
    record = find_call(client, cluster, call_id)
    print_output(client, record["id"], follow, tail, json_out)


def service_logs(client: DaemonClient, cluster: str, service: str, follow: bool, calls: int,
                 tail: int | None, json_out: bool) -> None:
    """``tether logs CLUSTER --service S``: the output of its last ``calls`` calls, each under a
    line naming it; with ``follow``, then of each new call as it runs, its lines marked with the
    service and the call's short id."""
    rows = list_calls(client, {"service": service, "limit": calls}).get("calls") or []
    if not rows and not follow:
        raise CLIError(f"no calls of service {service!r} are recorded on cluster {cluster!r}.",
                       f"List the recorded calls with: tether calls {cluster}")
    for row in reversed(rows):
        if not json_out:
            out.print(f"[dim]───[/] {call_line(row)} [dim]───[/]")
        print_output(client, row["id"], False, tail, json_out, tag=True)
    if follow:
        _follow_service(client, service, tail, json_out, seen={r["id"] for r in rows})


def _follow_service(client: DaemonClient, service: str, tail: int | None, json_out: bool,
                    seen: set[str]) -> None:
    """Each new call of ``service``: its output, followed on a thread (and a connection) of its
    own, so calls that overlap print as they go."""
    from tether.client.daemon_client import DaemonClient

    def one(call_id: str) -> None:
        own = DaemonClient(client.host, client.port, client.token, cluster=client.cluster,
                           fingerprint=client.fingerprint)
        try:
            print_output(own, call_id, True, tail, json_out, prefix=f"({service} {short_id(call_id)}) ", tag=True)
        except Exception:  # noqa: BLE001 - one call's stream lost: the others go on
            pass
        finally:
            own.close()

    for event in client.stream_json("/_tether/calls", {"service": service, "follow": 1, "limit": 1}):
        call = event.get("call")
        if event.get("event") != "started" or not isinstance(call, dict) or call.get("id") in seen:
            continue
        seen.add(call["id"])
        threading.Thread(target=one, args=(call["id"],), daemon=True).start()
