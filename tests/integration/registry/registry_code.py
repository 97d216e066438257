"""A module-level function the registry tests save as a resource (functions travel by import path)."""


def embed(text: str) -> int:
    return len(text)
