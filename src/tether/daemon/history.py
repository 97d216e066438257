"""Every call recorded (docs/calls.md): kept in ``calls.sqlite`` in the state dir, off the call path.

The call path does two cheap things: a call's output lines go to its bounded ``CallOutput``
(only calls that print pay for it), and a call's end appends one tuple to ``History.ended`` (a
deque). A background thread drains that deque into SQLite in batches (one transaction each), reads
the worker's peak memory, and keeps the file within its bounds. If SQLite fails (a full disk, an
unwritable file) recording stops, logged once, and calls go on being served.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from tether.daemon.metrics import CallMetrics, memory_of
from tether.protocol import wire

log = logging.getLogger("tether.daemon")

FILE = "calls.sqlite"
LINE_MAX = 8192
# No index but the rowid (``seq``, the order calls ended in): each index costs every call an
# insert and a delete once the bound is reached, and a scan of ``max_count`` rows (a lookup by id,
# a filter) takes under a millisecond at the default bound.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
  seq INTEGER PRIMARY KEY, id TEXT, object TEXT, method TEXT, caller TEXT, node INTEGER,
  started REAL, duration REAL, outcome TEXT, error_type TEXT, error_message TEXT,
  peak_memory INTEGER, lines INTEGER, dropped INTEGER);
CREATE TABLE IF NOT EXISTS output (seq INTEGER PRIMARY KEY, id TEXT, bytes INTEGER, lines TEXT);
"""
COLUMNS = ("id", "object", "method", "caller", "node", "started", "duration", "outcome",
           "error_type", "error_message", "peak_memory", "lines", "dropped")
OUTCOMES = ("running", "ok", "error", "cancelled", "out_of_memory", "worker_died", "timeout")


def _knob(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


OK = ("ok", None, None, None)
#: lines of output kept per call (the newest)
MAX_LINES = max(1, int(_knob("TETHER_RECORDS_OUTPUT_LINES", 1000)))


#: what holding one line costs beyond its characters (a tuple, a str, a float), counted in the bound
LINE_COST = 100


class LiveOutput:
    """The output held in memory by the calls that run (each ``CallOutput`` until its call ends),
    bounded in total: past ``max`` bytes the biggest buffers lose their oldest lines (counted in
    their ``dropped``) down to 7/8 of it. Touched on the event loop only."""

    def __init__(self, max_bytes: int) -> None:
        self.max = max_bytes
        self.bytes = 0
        self.outputs: set[CallOutput] = set()

    def release(self, out: CallOutput) -> None:
        """``out``'s call ended: its lines go to the writer thread (then to disk), off this bound."""
        if out in self.outputs:
            self.outputs.discard(out)
            self.bytes -= out.size

    def shrink(self) -> None:
        target = self.max - self.max // 8
        for out in sorted(self.outputs, key=lambda o: o.size, reverse=True):
            lines = out.lines
            while lines and self.bytes > target:
                cost = len(lines.popleft()[1]) + LINE_COST
                out.size -= cost
                out.dropped += 1
                self.bytes -= cost
            if self.bytes <= target:
                return


#: the running calls' output, bounded by TETHER_RECORDS_OUTPUT_BYTES (set by ``History``)
LIVE = LiveOutput(64 << 20)


class CallOutput:
    """One call's output: the newest lines (a bounded deque), how many were dropped, and the
    queues of its followers (each gets every line from when it started following). Counted in
    ``LIVE`` while its call runs."""

    __slots__ = ("lines", "dropped", "followers", "ended", "partial", "size")

    def __init__(self, max_lines: int = MAX_LINES) -> None:
        self.lines: collections.deque = collections.deque(maxlen=max_lines)
        self.dropped = 0
        self.size = 0  # bytes counted in LIVE (characters + LINE_COST per line)
        self.followers: list[asyncio.Queue] | None = None
        self.ended: str | None = None  # the outcome, once ended
        self.partial: dict[str, str] | None = None  # a stream's line not ended yet
        LIVE.outputs.add(self)

    def add(self, msg: wire.Message) -> None:
        """A LOG message (``[stream, text]``, one write: part of a line, or several), from
        ``CallQueue._put``: kept and followed line by line."""
        stream = "err" if msg.frames[0] == b"err" else "out"
        text = bytes(msg.frames[1]).decode("utf-8", "replace")
        partial = self.partial
        if partial and stream in partial:
            text = partial.pop(stream) + text
        parts = text.split("\n")
        rest = parts.pop()
        for part in parts:
            self._line(stream, part + "\n")
        if rest:
            if len(rest) >= LINE_MAX:
                self._line(stream, rest)
            else:
                if partial is None:
                    partial = self.partial = {}
                partial[stream] = rest

    def finish(self) -> None:
        """The call ended: a line it left unfinished is kept as it is."""
        if self.partial:
            for stream, rest in list(self.partial.items()):
                self._line(stream, rest)
            self.partial = None

    def _line(self, stream: str, text: str) -> None:
        lines, live = self.lines, LIVE
        if len(text) > LINE_MAX:
            text = text[:LINE_MAX]
        cost = len(text) + LINE_COST
        if len(lines) == lines.maxlen:
            self.dropped += 1
            cost -= len(lines[0][1]) + LINE_COST
        line = (stream, text, time.time())
        lines.append(line)
        self.size += cost
        live.bytes += cost
        if live.bytes > live.max:
            live.shrink()
        if self.followers:
            event = {"event": "line", "stream": line[0], "text": line[1], "at": line[2]}
            for queue in self.followers:
                queue.put_nowait(event)


def outcome_of(msg: wire.Message) -> tuple[str, str | None, str | None, int | None]:
    """(outcome, error type, error message, peak memory when the error says it)."""
    if msg.kind != wire.ERROR:
        return "ok", None, None, None
    try:
        meta = msg.json(0)
    except (ValueError, TypeError):
        return "error", None, None, None
    kind, type_name = meta.get("kind"), meta.get("type") or None
    if type_name and type_name.startswith("builtins."):
        type_name = type_name[9:]
    message = (meta.get("message") or "")[:4000]
    if kind == wire.CANCELLED:
        return "cancelled", type_name, message, None
    if kind == wire.WORKER_DIED:
        if meta.get("oom"):
            return "out_of_memory", type_name, message, meta.get("peak")
        return "worker_died", type_name, message, None
    if type_name and "Timeout" in type_name:
        return "timeout", type_name, message, None
    return "error", type_name, message, None


def parse_caller(raw: bytes | None) -> dict[str, Any]:
    """``user@host:pid`` (the client's ``x-tether-caller``) as a dict; {} if absent or odd."""
    if not raw:
        return {}
    text = raw.decode("latin-1")[:300]
    user, _, rest = text.partition("@")
    host, _, pid = rest.rpartition(":")
    return {"user": user, "host": host, "pid": int(pid) if pid.isdigit() else None}


#: The INSERTs. A call that ended well and printed nothing (most calls) binds 8 values, its
#: constant columns written as literals; any other binds all 13. Each statement inserts up to
#: ``ROWS_PER_INSERT`` rows, so the sqlite3 module lets go of the GIL, and takes it back, once per
#: 50 rows instead of once per row (the event loop waits on this thread less). Measured: ``_write``
#: went from 4.0 to 2.3 us a row, and calls/s with records on / off (bench/records_ab.py) from
#: 0.955 to 0.97. 50 x 13 parameters stays far under SQLite's 32,766.
ROWS_PER_INSERT = 50
_INSERT = f"INSERT INTO calls ({','.join(COLUMNS)}) VALUES "
_FULL_ROW = f"({','.join('?' * len(COLUMNS))})"
_PLAIN_ROW = "(?,?,?,?,?,?,?,'ok',NULL,NULL,?,0,0)"  # id ... duration, peak_memory
_PLAIN_FIELDS = 8  # the values of a plain row: COLUMNS without outcome, error_*, lines, dropped


def _insert_rows(db: sqlite3.Connection, rows: list[tuple]) -> None:
    """``rows`` in order, each a plain row (8 values) or a full one (13), a run of one kind at a
    time, in statements of up to ``ROWS_PER_INSERT`` rows."""
    i, n = 0, len(rows)
    while i < n:
        width = len(rows[i])
        j = i + 1
        while j < n and len(rows[j]) == width:
            j += 1
        one = _PLAIN_ROW if width == _PLAIN_FIELDS else _FULL_ROW
        run = rows[i:j]
        whole = len(run) - len(run) % ROWS_PER_INSERT
        if whole:
            flat = [value for row in run[:whole] for value in row]
            step = ROWS_PER_INSERT * width
            db.executemany(_INSERT + ",".join([one] * ROWS_PER_INSERT),
                           [flat[k:k + step] for k in range(0, whole * width, step)])
        if whole < len(run):
            db.executemany(_INSERT + one, run[whole:])
        i = j


class History:
    """The records of one daemon's calls. ``ended`` is the call path's only touch point."""

    def __init__(self, state_dir: Path, node: int = 0) -> None:
        env = os.environ.get
        self.enabled = env("TETHER_RECORDS", "1") not in ("0", "false", "no")
        self.path = Path(env("TETHER_RECORDS_FILE") or state_dir / FILE)
        self.max_count = int(_knob("TETHER_RECORDS_MAX_COUNT", 10000))
        self.max_age = _knob("TETHER_RECORDS_MAX_AGE", 7 * 86400)
        self.max_lines = MAX_LINES
        self.max_output = LIVE.max = int(_knob("TETHER_RECORDS_OUTPUT_BYTES", 64 << 20))
        self.node = node
        self.metrics = CallMetrics()
        self.error: str | None = None
        self.written = 0  # records written since the daemon started
        self._callers: dict[bytes | None, str] = {}
        self.ended: collections.deque = collections.deque(maxlen=100_000)
        self.followers: list[tuple[asyncio.Queue, Any]] = []  # (queue, filter) of new calls
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None
        self._now = threading.Event()  # flush(): write what ended without gathering a batch first
        self.paused = False  # recording turned off at run time (``PUT /_tether/records``)
        self.paused_at = 0.0  # when: a call that started before it ends as its followers saw it
        if self.enabled:
            self._start()

    def _start(self) -> None:
        try:
            self._db = self._open()
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc)
        self._thread = threading.Thread(target=self._run, name="tether-history", daemon=True)
        self._thread.start()

    @property
    def kept(self) -> bool:
        """Records were kept by this daemon (now or before a pause): the routes read the file."""
        return self._thread is not None

    def set_recording(self, on: bool) -> None:
        """Pause or resume recording at run time: paused, calls end as with ``TETHER_RECORDS=0``
        (no record, no output kept for callers that do not read it); records kept so far still
        answer the routes. Resuming a daemon started with ``TETHER_RECORDS=0`` opens the file then.
        The route flushes after a pause: once it answers, every recorded call is on disk."""
        if on and self._thread is None:
            self._start()
        if not on and self.enabled:
            self.paused_at = time.time()
        self.enabled, self.paused = on, not on

    # -- the call path ------------------------------------------------------------------------

    def started(self, record: Any) -> None:
        if self.followers:
            self._tell("started", self.running_row(record))

    def end(self, record: Any, msg: wire.Message, pid: int | None) -> None:
        """A call ended: counted (``/_tether/metrics``), and one append (the thread does the rest)."""
        fields = OK if msg.kind != wire.ERROR else outcome_of(msg)
        self.metrics.ended(record.name, record.method, fields[0], (record.finished or record.started) - record.started)
        out = record.output  # (set only while recording: what the call printed)
        # not recording: only a call that started before a pause has something to finish (its
        # output, its followers)
        told = self.followers and record.started < self.paused_at
        if out is None and not self.enabled and not told:
            return
        # Only immutable scalars kept (the message is not held: its frames may be big, and a
        # tuple of scalars is soon untracked by the garbage collector).
        if out is not None:
            record.output = None  # the item holds it until written: kept results don't keep output
            if out.partial:
                out.finish()  # before the writer thread can see it
            LIVE.release(out)
        item = (record.id, record.name, record.method, record.caller, record.node,
                record.started, record.finished, fields, pid, out)
        if self.enabled:
            self.ended.append(item)
        # else: it began before a pause and ends during it: not recorded, its followers told
        if out is not None and out.followers:
            out.ended = fields[0]
            for queue in out.followers:
                queue.put_nowait(None)
        if self.followers and (self.enabled or told):
            self._tell("ended", self._row(item, None))
        if len(self.ended) == 1 and self.enabled:
            self._wake.set()

    def _tell(self, event: str, row: dict[str, Any]) -> None:
        for queue, wanted in self.followers:
            if wanted(row):
                if queue.qsize() < 10_000:
                    queue.put_nowait({"event": event, "call": row})
                else:
                    queue.dropped = getattr(queue, "dropped", 0) + 1

    # -- rows ----------------------------------------------------------------------------------

    def running_row(self, record: Any) -> dict[str, Any]:
        out = record.output
        return {"id": record.id, "object": record.name, "method": record.method,
                "caller": parse_caller(record.caller), "node": record.node or self.node,
                "started": record.started, "duration": None, "outcome": "running",
                "error_type": None, "error_message": None, "peak_memory": None,
                "output": {"lines": len(out.lines) if out else 0, "dropped": out.dropped if out else 0}}

    def _row(self, item: tuple, peak: int | None) -> dict[str, Any]:
        call_id, name, method, caller, node, started, finished, fields, pid, out = item
        outcome, etype, emsg, err_peak = fields
        return {"id": call_id, "object": name, "method": method, "caller": parse_caller(caller),
                "node": node or self.node, "started": started,
                "duration": (finished or started) - started, "outcome": outcome,
                "error_type": etype, "error_message": emsg, "peak_memory": err_peak or peak,
                "output": {"lines": len(out.lines) if out else 0, "dropped": out.dropped if out else 0}}

    # -- the background thread -------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        return db

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = f"{type(exc).__name__}: {exc} ({self.path})"
            log.error("call records stopped: %s. Calls are served as before; records of new calls "
                      "are not kept until the daemon restarts with a writable %s.", self.error, self.path)

    def _run(self) -> None:
        last_trim = last_full = 0.0
        dirty = False
        while not self._stop:
            if not self.ended:  # (end() wakes it when it appends to an empty deque)
                self._wake.wait(1.0)
            self._wake.clear()
            if self.ended and not self._now.is_set():
                self._now.wait(0.2)  # let a burst gather into one batch
            self._now.clear()
            # Taken off ``ended`` once written, not before: a record is always in memory or on
            # disk for the routes (``list()`` of a deque is one C call: atomic under the GIL).
            batch = list(self.ended)
            if self._db is None or self.error is not None:
                self._taken(batch)
                continue
            try:
                if batch:
                    try:
                        self._write(batch)
                    finally:
                        self._taken(batch)
                    dirty = True
                now = time.time()
                # the bounds are kept every few seconds (a trim costs little per row deleted)
                full = now - last_full > 60
                if (dirty and (now - last_trim > 5 or len(batch) > 500)) or full:
                    self._trim(now, full)
                    last_trim, dirty = now, False
                    if full:
                        last_full = now
            except (sqlite3.Error, OSError) as exc:
                self._fail(exc)
            except Exception:  # a bug here must not end recording for good: this batch is lost
                log.exception("call records: a batch of %d records was not written", len(batch))
        if self._db is not None:  # the last connection closed: SQLite folds the -wal file in, removes -wal/-shm
            try:
                self._db.close()
            except sqlite3.Error:
                pass

    def _taken(self, batch: list[tuple]) -> None:
        ended = self.ended
        for item in batch:
            if ended and ended[0] is item:  # (a full deque may have pushed it out already)
                ended.popleft()

    def _write(self, batch: list[tuple]) -> None:
        # This thread shares the GIL with the event loop: per row only what must be done (one
        # peak read per worker per batch, each caller's JSON made once).
        rows, outputs, peaks, callers = [], [], {}, self._callers
        for call_id, name, method, caller, node, started, finished, fields, pid, out in batch:
            outcome, etype, emsg, peak = fields
            if peak is None and pid:
                peak = peaks.get(pid, -1)
                if peak == -1:
                    peak = peaks[pid] = memory_of(pid)[1]  # VmHWM
            who = callers.get(caller)
            if who is None:
                if len(callers) > 10_000:
                    callers.clear()
                who = callers[caller] = json.dumps(parse_caller(caller))
            lines = dropped = 0
            if out is not None:
                lines, dropped = len(out.lines), out.dropped
                if lines:
                    text = json.dumps(list(out.lines))
                    outputs.append((call_id, len(text), text))
            row = (call_id, name, method, who, node or self.node, started, (finished or started) - started)
            if outcome == "ok" and not lines and not dropped:
                rows.append((*row, peak))  # a plain row (_PLAIN_ROW)
            else:
                rows.append((*row, outcome, etype, emsg, peak, lines, dropped))
        db = self._db
        db.execute("BEGIN")
        try:
            _insert_rows(db, rows)
            db.executemany("INSERT INTO output (id, bytes, lines) VALUES (?,?,?)", outputs)
            db.execute("COMMIT")
            self.written += len(rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _trim(self, now: float, full: bool) -> None:
        """The count bound: a range of the rowid, what it deletes is all it costs (under load it
        runs every batch). ``full``: also the age bound and the output of calls no longer kept,
        each a scan of a table (~1 ms at 10,000 records: once a minute, not 5 times a second).
        Output is matched by call id, and an id a caller reused keeps its output while any call
        of that id is kept; meanwhile the output's bytes stay bounded at every trim."""
        db = self._db
        last = db.execute("SELECT MAX(seq) FROM calls").fetchone()[0] or 0
        db.execute("DELETE FROM calls WHERE seq <= ?", (last - self.max_count,))
        outputs = db.execute("SELECT EXISTS (SELECT 1 FROM output)").fetchone()[0]
        if full:
            db.execute("DELETE FROM calls WHERE started < ?", (now - self.max_age,))
            first = db.execute("SELECT MIN(seq) FROM calls").fetchone()[0] or last + 1
            if outputs:
                db.execute("DELETE FROM output WHERE id NOT IN (SELECT id FROM calls WHERE seq >= ?)", (first,))
        if not outputs:
            return
        total = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM output").fetchone()[0]
        if total > self.max_output:  # the oldest calls' output goes first
            cut, over = None, total - self.max_output
            for seq, size in db.execute("SELECT seq, bytes FROM output ORDER BY seq"):
                over -= size
                cut = seq
                if over <= 0:
                    break
            db.execute("DELETE FROM output WHERE seq <= ?", (cut,))

    def info(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "paused": self.paused, "error": self.error, "written": self.written,
                "max_count": self.max_count, "max_age": self.max_age, "file": str(self.path),
                "live_output": {"bytes": LIVE.bytes, "max_bytes": LIVE.max, "calls": len(LIVE.outputs)}}

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until what ended is written (tests, shutdown)."""
        end = time.monotonic() + timeout
        while self.ended and time.monotonic() < end and self._thread and self._thread.is_alive():
            self._now.set()
            self._wake.set()
            time.sleep(0.001)

    def close(self) -> None:
        self.flush()
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2)
