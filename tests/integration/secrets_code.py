"""What the secrets tests run in a worker: digests of what it was given, never the values (so the
call records the no-leak scan reads hold no secret either)."""

from __future__ import annotations

import hashlib
import os


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def env_digests(names: list[str]) -> dict[str, str | None]:
    """sha256 of each env var the worker has (None: not set)."""
    return {n: (digest(os.environ[n]) if n in os.environ else None) for n in names}


def file_of(var: str) -> dict[str, object]:
    """The file an env var names: its mode and the sha256 of its text."""
    path = os.environ[var]
    with open(path) as f:
        text = f.read()
    return {"mode": os.stat(path).st_mode & 0o777, "digest": digest(text), "path": path}
