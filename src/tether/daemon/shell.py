"""``cluster.run_bash`` / ``cluster.run_python`` on the daemon's node.

Each command runs in its own subprocess (its own process group); its output is streamed to the
caller line by line as LOG messages, and the final RESULT lists ``[exit_code, stdout, stderr]`` per
command. When the caller goes away or the daemon stops, the task is cancelled and the whole process
group of the running command is killed: nothing outlives its caller. A daemon killed outright
takes its running commands with it too (``daemon/children.py``: the command dies with its parent,
and the reaper kills its process group). What a command that *ended* left running in the
background (``nohup server &``) is the user's and stays.
"""

from __future__ import annotations

import asyncio
import os
import signal

from tether.daemon import children
from tether.protocol import wire

_running = 0  # commands running now (``/_tether/status``: a daemon busy with them is not idle)


def running() -> int:
    return _running


async def run_commands(commands: list[str], kind: str, python: str, cwd: str | None,
                       env_vars: dict[str, str], stop_on_error: bool, out: asyncio.Queue) -> None:
    global _running
    results = []
    _running += 1
    try:
        for command in commands:
            if kind == "python":
                argv = [python, "-c", command]
            else:
                argv = ["bash", "-c", command]
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
            results.append([code, captured[0], captured[1]])
            if code and stop_on_error:
                break
        out.put_nowait(wire.Message(wire.RESULT, 0, [memoryview(wire.json_frame(results))]))
    except Exception as exc:  # noqa: BLE001
        out.put_nowait(wire.Message(wire.ERROR, 0, [memoryview(f) for f in wire.error_frames(exc)]))
    finally:
        _running -= 1


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _pump(stream, name: bytes, out: asyncio.Queue) -> str:
    chunks = []
    async for line in stream:
        chunks.append(line)
        out.put_nowait(wire.Message(wire.LOG, 0, [memoryview(name), memoryview(line)]))
    return b"".join(chunks).decode(errors="replace")
