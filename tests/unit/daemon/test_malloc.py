"""daemon/malloc.py: with glibc, a big body's chunks reuse the heap's pages instead of faulting
fresh ones in for each chunk."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# In a child (the thresholds are a process's for good): 50 rounds of 8 chunks of 256 KiB alive at
# once, then freed, as a big body's chunks read by uvloop are while the daemon spools or sends
# them; the page faults they cost.
CHILD = """
import resource, sys
from tether.daemon import malloc
if sys.argv[1] == "keep":
    assert malloc.keep_chunks()
def one_round():
    chunks = [bytes(256 << 10) for _ in range(8)]
    del chunks
one_round()  # the first round faults its pages in
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    one_round()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_kept_chunks_reuse_their_pages():
    default, kept = _faults("default"), _faults("keep")
    # defaults: the heap's top given back after each round and its pages faulted in again (up to
    # 50 x 8 x 64 = 25,600); kept: the same pages each round
    assert default > 5_000, default
    assert kept < 500, kept
