"""Running the ``tether`` console script from tests (tests/integration/cli/test_cli_observe*.py):
once (``cli``), as JSON (``cli_json``), or read line by line while it runs (``Lines``)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from tether import state

TETHER = Path(sys.executable).with_name("tether")
if not TETHER.exists():
    TETHER = Path(shutil.which("tether") or TETHER)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return {**env, "TETHER_HOME": str(state.tether_home()), **extra}


def cli(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(TETHER), *args], env=cli_env(**env), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def cli_json(*args: str):
    result = cli(*args, "--json")
    assert result.returncode == 0, result
    return json.loads(result.stdout)


class Lines:
    """A CLI subprocess whose stdout is read line by line on a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([str(TETHER), *args], env=cli_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.proc.stdout],
                         daemon=True).start()

    def until(self, predicate, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if predicate(line):
                return line
        raise AssertionError(f"no such line within {timeout} s (exit code {self.proc.poll()})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def health(url: str) -> dict:
    parts = urlsplit(url)
    token = parts.fragment.removeprefix("token=")
    request = urllib.request.Request(f"http://{parts.netloc}/health", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def dashboard_page(url: str) -> str:
    """The page the printed URL opens (its fragment is the token the page logs in with)."""
    parts = urlsplit(url)
    token = parts.fragment.removeprefix("token=")
    request = urllib.request.Request(f"http://{parts.netloc}{parts.path}",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200 and resp.headers.get_content_type() == "text/html"
        return resp.read().decode()
