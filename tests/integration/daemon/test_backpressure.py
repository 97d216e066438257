"""A caller that reads slower than its call produces never grows the daemon (issue 10).

Measured before: a fast generator whose caller did not read grew the daemon by 3 GB in 8 s, and a
call printing a lot by 1.5 GB. Now a generator waits on its credit window (``worker/flow.py``,
``TETHER_STREAM_WINDOW``, 8 MiB) and a call's queued output is bounded (``daemon/flow.py``,
``TETHER_OUTPUT_BUFFER``, 4 MiB), dropped beyond that with a count the caller gets. Each test
pauses a real caller, reads the daemon's resident memory from /proc, and checks that the caller
then gets everything in order (or exactly what was dropped), and that other calls of the same
env went on meanwhile: they share the worker's one socket, which must never stop.

The memory bound, 64 MiB: one window of items (8 MiB) or of output (4 MiB), the item being
received and the one being sent (1 MiB each), and the allocator's slack; before, the whole
output piled up (300 MiB and more here).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
import time
import uuid

import flow_code as fc
import pytest
import remote_code as rc
from process_helpers import wait_until

import tether as rh

MiB = 1 << 20
BOUND = 64 * MiB
PAUSE = 3.0  # seconds the caller reads nothing

GENERATORS = {"sync": (fc.items, fc.items_marked), "async": (fc.aitems, fc.aitems_marked)}
PRINTERS = {"sync": fc.chatter, "async": fc.achatter}


@pytest.fixture(scope="module")
def cluster():
    cluster = rh.cluster(name=f"flow-{uuid.uuid4().hex[:6]}", launcher="local").up_if_not()
    yield cluster
    cluster.teardown()


def deploy(cluster, fn):
    return rh.function(fn).to(cluster, name=f"{fn.__name__}-{uuid.uuid4().hex[:6]}")


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def assert_serving(echo) -> None:
    """Another call of the same env (the same worker socket) goes through meanwhile."""
    assert echo(7) == ((7,), {})


@pytest.mark.parametrize("kind", GENERATORS)
def test_a_generator_waits_for_a_caller_that_stops_reading(cluster, kind):
    items, n = deploy(cluster, GENERATORS[kind][0]), 300
    echo = deploy(cluster, rc.echo)
    assert sum(1 for _ in items(40, MiB, run_async=False)) == 40  # the daemon's allocator warmed up
    pid = cluster.status()["pid"]
    before = rss(pid)
    got = items(n, MiB, run_async=False)
    assert next(got)[0] == 0
    time.sleep(PAUSE)
    grew = rss(pid) - before
    assert_serving(echo)
    assert grew < BOUND, f"the daemon grew by {grew / MiB:.0f} MiB while the caller read nothing"
    rest = [(i, len(b)) for i, b in got]
    assert rest == [(i, MiB) for i in range(1, n)]  # then every item, in order
    assert_serving(echo)


@pytest.mark.parametrize("kind", GENERATORS)
def test_a_generator_waiting_for_its_caller_stops_when_the_caller_goes(cluster, kind, tmp_path):
    marked, n = deploy(cluster, GENERATORS[kind][1]), 1000
    echo = deploy(cluster, rc.echo)
    marker = str(tmp_path / "progress")
    got = marked(n, 256 * 1024, marker, run_async=False)
    next(got)

    def waiting() -> bool:  # the generator stopped making items: it waits for credit
        seen = set()
        for _ in range(4):
            seen.add(int(open(marker).read()))
            time.sleep(0.3)
        return len(seen) == 1

    wait_until(waiting, 30, "the generator to wait for its caller")
    stopped_at = int(open(marker).read())
    assert stopped_at < n - 1, "the generator ran to its end while its caller read nothing"
    got.close()
    wait_until(lambda: os.path.exists(marker + ".closed"), 30, "the waiting generator to stop")
    assert int(open(marker).read()) == stopped_at
    assert_serving(echo)


class _Stalled(io.TextIOBase):
    """A caller's stdout/stderr whose first write blocks until ``gate`` opens: the client stops
    reading its response meanwhile."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate, self.parts = gate, []

    def write(self, text: str) -> int:
        self.gate.wait()
        self.parts.append(text)
        return len(text)

    def text(self) -> str:
        return "".join(self.parts)


DROPPED = re.compile(r"\[tether\] ([\d,]+) lines \([\d,]+ bytes\) of output were dropped: the caller "
                     r"read slower than the call printed\. The worker log on the cluster has every "
                     r"line: (\S+)")


@pytest.mark.parametrize("kind", PRINTERS)
def test_output_of_a_call_whose_caller_stops_reading_is_dropped_with_a_count(cluster, kind, monkeypatch):
    monkeypatch.setenv("TETHER_LOG_PREFIX", "0")  # lines as printed (marks: test_call_observability)
    chatter, lines = deploy(cluster, PRINTERS[kind]), 200_000
    echo = deploy(cluster, rc.echo)
    chatter(2_000, run_async=False)  # warm up
    pid = cluster.status()["pid"]
    before, seen = rss(pid), {}
    gate = threading.Event()

    def later() -> None:
        try:
            time.sleep(PAUSE)
            seen["grew"] = rss(pid) - before
            seen["other call"] = echo(7, stream_logs=False)
        finally:
            gate.set()

    watcher = threading.Thread(target=later)
    watcher.start()
    out, err = _Stalled(gate), _Stalled(gate)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            assert chatter(lines, run_async=False) == lines
    finally:
        gate.set()
        watcher.join()
    assert seen["other call"] == ((7,), {})
    assert seen["grew"] < BOUND, f"the daemon grew by {seen['grew'] / MiB:.0f} MiB while the caller read nothing"
    received = [int(line.split()[1]) for line in out.text().splitlines() if line.startswith("line ")]
    assert received == sorted(set(received)), "lines arrived out of order or twice"
    notices = DROPPED.findall(err.text())
    assert notices, f"no dropped-output line reached the caller: {err.text()[:500]!r}"
    dropped = sum(int(count.replace(",", "")) for count, _ in notices)
    assert len(received) + dropped == lines  # exactly what was dropped is counted
    assert os.path.exists(notices[0][1])  # and the log it names has every line
    assert_serving(echo)


def test_a_fast_reader_gets_every_line(cluster, monkeypatch):
    monkeypatch.setenv("TETHER_LOG_PREFIX", "0")  # lines as printed (marks: test_call_observability)
    chatter = deploy(cluster, fc.chatter)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert chatter(50_000) == 50_000
    assert [int(line.split()[1]) for line in out.getvalue().splitlines()] == list(range(50_000))


def test_a_head_holds_a_bounded_part_of_a_forwarded_answer(make_cluster):
    """A head forwarding a generator of another node stops reading the node while its caller
    does not read: the node's generator waits, and neither daemon grows."""
    head, node = make_cluster(), make_cluster()
    nc = node.client
    head.client.request_json("POST", "/_tether/nodes", body={
        "nodes": [{"index": 1, "host": nc.host, "port": nc.port, "token": nc.token}]})
    name = f"far-items-{uuid.uuid4().hex[:6]}"
    head.client.deploy({"op": "deploy", "kind": "function", "name": name,
                        "env": {"name": "far", "node_idx": 1}, **rh.function(fc.items).spec.wire()})
    echo = deploy(head, rc.echo)
    n = 300
    assert sum(1 for _ in head.client.call(name, "call", (40, MiB))) == 40
    pids = {"head": head.status()["pid"], "node": node.status()["pid"]}
    before = {k: rss(pid) for k, pid in pids.items()}
    got = head.client.call(name, "call", (n, MiB))
    assert next(got)[0] == 0
    time.sleep(PAUSE)
    grew = {k: rss(pid) - before[k] for k, pid in pids.items()}
    assert_serving(echo)
    assert grew["head"] < BOUND, f"the head grew by {grew['head'] / MiB:.0f} MiB"
    assert grew["node"] < BOUND, f"the node grew by {grew['node'] / MiB:.0f} MiB"
    assert [i for i, _ in got] == list(range(1, n))



# -- run_bash ----------------------------------------------------------------------------------

LINE = 1_000_000  # bytes per line of the commands below (1 MB lines: few messages, much output)


def _printing(mib: int) -> str:
    return f"head -c {mib * MiB} /dev/zero | tr '\\0' x | fold -w {LINE}"


def test_run_output_whose_caller_stops_reading_is_bounded(cluster):
    """Before: run_bash's output went to an unbounded queue (the same growth as a call's).
    Now the run route's queue is a call's CallQueue: past TETHER_OUTPUT_BUFFER, dropped with a
    count the caller gets; the daemon's memory stays bounded while the caller reads nothing (the
    bound includes the TETHER_RUN_CAPTURE bytes kept for the result)."""
    import httpx

    client = cluster.client
    pid = cluster.status()["pid"]
    cluster.run_bash(["true"])  # the daemon's allocator warmed up by a first run
    before = rss(pid)
    with httpx.Client(base_url=client.url, headers={"Authorization": f"Bearer {client.token}"},
                      timeout=60) as http, http.stream(
            "POST", "/_tether/run", json={"commands": [_printing(300)], "kind": "bash"}) as resp:
        assert resp.status_code == 200
        time.sleep(PAUSE)  # headers read, the body not: the command prints on
        grew = rss(pid) - before
        body = b"".join(resp.iter_bytes())  # then everything that was kept, to the end
    assert grew < BOUND, f"the daemon grew by {grew / MiB:.0f} MiB while the caller read nothing"
    assert b"of output were dropped: the caller read slower than the call printed" in body
    assert cluster.run_bash(["echo still"])[0][1].strip() == "still"


def test_run_result_keeps_the_last_bytes_of_a_huge_output(cluster):
    """Before: every byte a command printed was also held for the RESULT (a command printing
    10 GB made a 10 GB answer). Now the last TETHER_RUN_CAPTURE bytes (8 MiB), after a line
    saying how much was left out."""
    from tether.daemon import shell

    (code, out, err), = cluster.run_bash([_printing(100)], stream_logs=False)
    assert code == 0 and err == ""
    head, _, rest = out.partition("\n")
    assert head.startswith("[tether] the first ") and "TETHER_RUN_CAPTURE" in head, head
    assert len(rest) == shell.CAPTURE
    assert set(rest) <= {"x", "\n"}
