"""The registry's key files, in its key dir and never in the database.

``grant_signing.key``: the raw Ed25519 private key that signs grants (``tether.protocol.grants``),
made on first start, 0600. ``secrets.key``: the Fernet key (AES-128-CBC + HMAC-SHA256) secret
values are encrypted with before they reach the database (``tether.registry.vault``), made the
same way. Losing it loses every saved secret value; back it up with the database.
"""

from __future__ import annotations

import os
from pathlib import Path

from tether.errors import ConfigError
from tether.protocol import grants

GRANT_KEY = "grant_signing.key"
SECRETS_KEY = "secrets.key"


def _private_file(path: Path, make: bytes) -> bytes:
    """The bytes of ``path``; made with ``make`` (0600, exclusively) when missing."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # made before (or by another process just now)
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(make)
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} is readable by other users: chmod 600 {path}")
    return path.read_bytes()


def grant_key(key_dir: Path) -> bytes:
    """The registry's grant-signing key (made on first use)."""
    path = Path(key_dir) / GRANT_KEY
    key = _private_file(path, grants.new_private_key())
    if len(key) != 32:
        raise ConfigError(f"{path} is not a raw Ed25519 key (32 bytes); move it away to make a new one")
    return key


def secrets_key(key_dir: Path) -> bytes:
    """The registry's key for secret values at rest (a Fernet key, made on first use)."""
    from cryptography.fernet import Fernet

    path = Path(key_dir) / SECRETS_KEY
    key = _private_file(path, Fernet.generate_key()).strip()
    try:
        Fernet(key)
    except ValueError:
        raise ConfigError(f"{path} is not a Fernet key; move it away to make a new one (the secrets "
                          "saved with it can then no longer be read)") from None
    return key
