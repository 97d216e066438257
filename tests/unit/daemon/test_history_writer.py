"""The call records' writer (daemon/history.py) on a real SQLite file: what it writes reads back
whole and in the order the calls ended, whatever mix of plain rows (ok, nothing printed: their
constant columns are literals in the INSERT) and full rows, across the multi-row INSERTs' edges."""

from __future__ import annotations

import os
import sqlite3

import pytest

from tether.daemon import history
from tether.protocol import wire


@pytest.fixture
def recorder(tmp_path, monkeypatch):
    monkeypatch.setenv("TETHER_RECORDS", "1")
    h = history.History(tmp_path)
    h.close()  # its thread stopped: the test drives _write itself, on a connection of its own
    h._db = h._open()
    yield h
    h._db.close()


def _item(i: int, outcome: str, printed: bool) -> tuple:
    out = None
    if printed:
        out = history.CallOutput()
        out.add(wire.Message(wire.LOG, 0, [memoryview(b"out"), memoryview(f"line {i}\n".encode())]))
        history.LIVE.release(out)
    fields = history.OK if outcome == "ok" else (outcome, "ValueError", f"bad {i}", None)
    return (f"call-{i:04d}", f"obj-{i % 3}", "__call__", b"ann@box:42", 0, 1000.0 + i, 1000.5 + i,
            fields, os.getpid(), out)


@pytest.mark.parametrize("pattern", ["plain", "full", "mixed"])
def test_every_record_reads_back_whole_and_in_order(recorder, pattern):
    n = 3 * history.ROWS_PER_INSERT + 7  # whole statements and a rest, in runs of each kind
    kinds = {"plain": lambda i: ("ok", False), "full": lambda i: ("error", False),
             "mixed": lambda i: [("ok", False), ("error", False), ("ok", True)][(i // 23) % 3]}[pattern]
    items = [_item(i, *kinds(i)) for i in range(n)]
    recorder._write(items)
    db = sqlite3.connect(recorder.path)
    rows = db.execute(f"SELECT {', '.join(history.COLUMNS)} FROM calls ORDER BY seq").fetchall()
    db.close()
    assert len(rows) == n
    for i, row in enumerate(rows):
        got = dict(zip(history.COLUMNS, row, strict=True))
        outcome, printed = kinds(i)
        assert got["id"] == f"call-{i:04d}" and got["object"] == f"obj-{i % 3}" and got["method"] == "__call__"
        assert got["caller"] == '{"user": "ann", "host": "box", "pid": 42}'
        assert got["started"] == 1000.0 + i and got["duration"] == pytest.approx(0.5)
        assert got["outcome"] == outcome and got["node"] == 0
        assert got["peak_memory"] and got["peak_memory"] > 0  # this process's VmHWM
        assert (got["error_type"], got["error_message"]) == \
            ((None, None) if outcome == "ok" else ("ValueError", f"bad {i}"))
        assert (got["lines"], got["dropped"]) == ((1, 0) if printed else (0, 0))
    assert recorder.written == n


def _count(path, table: str) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


def test_the_count_bound_keeps_the_newest_records_and_the_full_trim_their_output(recorder):
    recorder.max_count = 40
    items = [_item(i, "ok", printed=i % 5 == 0) for i in range(100)]  # every 5th printed a line
    items[95] = items[95][:0] + ("call-0010",) + items[95][1:]  # a caller reused call 10's id
    recorder._write(items)

    def kept() -> tuple[list[str], list[str]]:
        db = sqlite3.connect(recorder.path)
        try:
            return ([r[0] for r in db.execute("SELECT id FROM calls ORDER BY seq")],
                    sorted(r[0] for r in db.execute("SELECT id FROM output")))
        finally:
            db.close()

    recorder._trim(now=2000.0, full=False)  # the frequent trim: calls by rowid only
    calls, outputs = kept()
    assert len(calls) == 40 and calls[0] == "call-0060" and calls[-1] == "call-0099"
    assert len(outputs) == 20  # every printed call's, until the full trim
    recorder._trim(now=2000.0, full=True)
    calls, outputs = kept()
    assert len(calls) == 40
    # the kept calls' output, and both rows of the reused id (one of its calls is kept)
    assert outputs == sorted(["call-0010", "call-0010", *(f"call-{i:04d}" for i in range(60, 95, 5))])


def test_the_age_bound_is_kept_by_the_full_trim(recorder):
    recorder.max_age = 30.0
    recorder._write([_item(i, "ok", printed=True) for i in range(50)])  # started 1000.0 .. 1049.0
    recorder._trim(now=1060.0, full=False)
    assert _count(recorder.path, "calls") == 50  # the frequent trim leaves the age bound alone
    recorder._trim(now=1060.0, full=True)
    assert _count(recorder.path, "calls") == 20  # started >= 1030.0
    assert _count(recorder.path, "output") == 20
