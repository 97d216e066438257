"""``cluster.run_bash`` / ``cluster.run_python`` on the daemon's node.

Each command runs in its own subprocess (its own process group); its output is streamed to the
caller line by line as LOG messages, and the final RESULT lists ``[exit_code, stdout, stderr]`` per
command. When the caller goes away or the daemon stops, the task is cancelled and the whole process
group of the running command is killed: nothing outlives its caller. A daemon killed outright
takes its running commands with it too (``daemon/children.py``: the command dies with its parent,
and the reaper kills its process group). What a command that *ended* left running in the
background (``nohup server &``) is the user's and stays.

Bounded like a call's output (``daemon/flow.py``): the route's queue is a ``CallQueue``, so lines
a caller does not read are dropped with a count past ``TETHER_OUTPUT_BUFFER``; and what the
RESULT returns of each stream is its last ``TETHER_RUN_CAPTURE`` bytes (default 8 MiB), after
a line saying how much came before.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import deque
from collections.abc import Awaitable, Callable

from tether.daemon import children, installer
from tether.daemon.envs import Progress
from tether.protocol import wire

_running = 0  # commands running now (``/_tether/status``: a daemon busy with them is not idle)
#: bytes of each command's stdout and of its stderr kept for the RESULT (the last ones)
CAPTURE = wire.size_knob("TETHER_RUN_CAPTURE", 8 << 20)
_PIECE = 1 << 16


def running() -> int:
    return _running


async def run_commands(commands: list[str], kind: str, python: str | Callable[[Progress], Awaitable[str]],
                       cwd: str | None, env_vars: dict[str, str], stop_on_error: bool, out: asyncio.Queue) -> None:
    """Run ``commands``; ``python`` is the interpreter, or (``cluster.run(..., env=...)``) what
    finds an env's, building its venv first: the commands then have it first on PATH."""
    global _running
    results = []
    _running += 1
    try:
        if callable(python):
            async def progress(text: str) -> None:
                _log(out, b"err", text)

            python = await python(progress)
            env_vars = on_path(python, env_vars)
        if kind == "install":  # one install of every requirement, by the node's installer
            tool = installer.find()
            header = f"[tether] installing {' '.join(commands)} with {tool.label}\n"
            _log(out, b"out", header)
            argvs = [tool.install_argv(python, commands)]
        else:
            header = ""
            argvs = [[python, "-c", c] if kind == "python" else ["bash", "-c", c] for c in commands]
        for argv in argvs:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL, cwd=cwd or None, env={**os.environ, **env_vars},
                start_new_session=True, preexec_fn=children.preexec(),
            )
            children.watch(proc.pid)  # its own group: the reaper kills it if the daemon dies
            try:
                captured = await asyncio.gather(_pump(proc.stdout, b"out", out), _pump(proc.stderr, b"err", out))
                code = await proc.wait()
            except asyncio.CancelledError:
                _kill_group(proc.pid)
                await proc.wait()
                raise
            finally:
                children.unwatch(proc.pid)
            results.append([code, header + captured[0], captured[1]])
            if code and stop_on_error:
                break
        out.put_nowait(wire.Message(wire.RESULT, 0, [memoryview(wire.json_frame(results))]))
    except Exception as exc:  # noqa: BLE001
        out.put_nowait(wire.Message(wire.ERROR, 0, [memoryview(f) for f in wire.error_frames(exc)]))
    finally:
        _running -= 1


def _log(out: asyncio.Queue, stream: bytes, text: str) -> None:
    out.put_nowait(wire.Message(wire.LOG, 0, [memoryview(stream), memoryview(text.encode())]))


def on_path(python: str, env_vars: dict[str, str]) -> dict[str, str]:
    """``env_vars`` with ``python``'s folder first on PATH, and ``VIRTUAL_ENV`` when it is a venv's."""
    bin_dir = os.path.dirname(python)
    found = {**env_vars, "PATH": os.pathsep.join([bin_dir, env_vars.get("PATH", os.environ.get("PATH", ""))])}
    venv = os.path.dirname(bin_dir)
    if os.path.exists(os.path.join(venv, "pyvenv.cfg")):
        found["VIRTUAL_ENV"] = venv
    return found


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _pump(stream, name: bytes, out: asyncio.Queue, capture: int | None = None) -> str:
    """Stream the command's output to the caller as it comes; return its last ``capture`` bytes.

    Read in pieces of up to 64 KiB, each sent up to its last newline (a line longer than that,
    minified JSON say, goes out in pieces cut between characters): reading line by line failed a
    command whose line passed asyncio's 64 KiB limit, and sent a message per line."""
    capture = CAPTURE if capture is None else capture
    kept: deque[bytes] = deque()
    size = dropped = 0
    pending = b""
    while True:
        data = await stream.read(_PIECE)
        if data:
            pending += data
            cut = pending.rfind(b"\n") + 1 or (_char_boundary(pending) if len(pending) >= _PIECE else 0)
        else:
            cut = len(pending)
        if cut:
            piece, pending = pending[:cut], pending[cut:]
            out.put_nowait(wire.Message(wire.LOG, 0, [memoryview(name), memoryview(piece)]))
            kept.append(piece)
            size += len(piece)
            while size > capture:  # keep the last ``capture`` bytes, from a character's start
                first, excess = kept[0], size - capture
                if len(first) <= excess:
                    kept.popleft()
                    cut = len(first)
                else:
                    cut = excess
                    while cut < len(first) and first[cut] & 0xC0 == 0x80:  # a continuation byte
                        cut += 1
                    kept[0] = first[cut:]
                size -= cut
                dropped += cut
        if not data:
            break
    text = b"".join(kept).decode(errors="replace")
    if dropped:
        text = (f"[tether] the first {dropped:,} bytes of this output were left out: the result keeps "
                f"the last {capture:,} (TETHER_RUN_CAPTURE on the daemon)\n") + text
    return text


def _char_boundary(data: bytes) -> int:
    """The length of ``data`` without an unfinished UTF-8 character at its end."""
    end = len(data)
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: a character starts here
            needed = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
            return end if back >= needed else end - back
    return end
