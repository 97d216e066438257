"""Code the memory-limit and pipeline-step tests deploy (imported by workers, by path)."""

from __future__ import annotations

import os


def hog(mib: int) -> int:
    """Hold ``mib`` MiB, written so it is resident, then let it go."""
    chunks = [bytearray(b"\x01" * (1 << 20)) for _ in range(mib)]
    return len(chunks)


def raise_memory_error() -> None:
    raise MemoryError("could not allocate the batch")


def cuda_like_oom() -> None:
    raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 15.78 GiB total capacity)")


def my_cgroups() -> str:
    with open("/proc/self/cgroup") as f:
        return f.read()


def my_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def fail(message: str) -> None:
    raise ValueError(message)


class Model:
    """A stateful service: ``fit`` holds ``mib`` MiB while it runs and remembers what it saw."""

    def __init__(self, tag: str = "m") -> None:
        self.tag = tag
        self.fitted: int | None = None

    def fit(self, mib: int) -> int:
        print(f"fitting on {mib} MiB", flush=True)
        self.fitted = hog(mib)
        return self.fitted

    def score(self) -> str:
        if self.fitted is None:
            raise RuntimeError("not fitted")
        return f"{self.tag}:{self.fitted}"

    def pid(self) -> int:
        return os.getpid()
