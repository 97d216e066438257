"""Code the climb tests deploy (imported by workers, by path): an instance that checkpoints what it
learned and reads it back in ``__tether_rebuild__``, remembering every context it was given."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


class Checkpointed:
    def __init__(self, folder: str, tag: str = "c") -> None:
        self.folder, self.tag = folder, tag
        self.fitted: int | None = None
        self.contexts: list[dict] = []

    def _save(self, value: int) -> None:
        Path(self.folder, f"{self.tag}.ckpt").write_text(str(value))

    def warm(self, n: int) -> int:
        """Learn something small (and checkpoint it)."""
        self.fitted = n
        self._save(n)
        return n

    def fit(self, mib: int) -> int:
        """Checkpoint, then hold ``mib`` MiB (resident) while fitting: a small rung kills it."""
        print(f"fitting {self.tag} on {mib} MiB", flush=True)
        self._save(mib)
        chunks = [bytearray(b"\x01" * (1 << 20)) for _ in range(mib)]
        self.fitted = len(chunks)
        return self.fitted

    def score(self) -> str:
        if self.fitted is None:
            raise RuntimeError("not fitted")
        return f"{self.tag}:{self.fitted}"

    def __tether_rebuild__(self, context) -> None:
        self.contexts.append(dataclasses.asdict(context))
        checkpoint = Path(self.folder, f"{self.tag}.ckpt")
        if checkpoint.exists():
            self.fitted = int(checkpoint.read_text())
        print(f"rebuilt {self.tag} from its checkpoint ({self.fitted})", flush=True)

    def rebuilds(self) -> list[dict]:
        return self.contexts

    def pid(self) -> int:
        return os.getpid()


def raises_not_found(marker: str) -> None:
    """Counts its runs in ``marker``, then raises tether's own NotFoundError (as user code may)."""
    import tether

    with open(marker, "a") as f:
        f.write("ran\n")
    raise tether.NotFoundError("the user's own lookup failed")
